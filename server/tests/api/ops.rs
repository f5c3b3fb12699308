//! Operations: liveness, readiness, metrics, request ids, graceful stop of the in-process server.

use crate::common::*;
use mussikon_server::http::Stopped;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_and_readiness() {
    let s = TestServer::start().await;
    let live = json_of(s.get("/health").await, StatusCode::OK).await;
    assert_eq!(live, json!({"status": "healthy"}));
    let ready = json_of(s.get("/health/ready").await, StatusCode::OK).await;
    assert_eq!(ready["status"], "healthy");
    for check in ["store", "index"] {
        assert_eq!(ready["checks"][check]["status"], "healthy", "{ready}");
        assert!(ready["checks"][check]["duration_ms"].is_number());
        assert!(ready["checks"][check]["detail"].is_string());
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_help_lines_and_route_templates() {
    let s = TestServer::start().await;
    s.put("/v1/musicians/m-1", &musician("m-1")).await;
    s.get("/v1/musicians/m-1").await;
    s.get("/v1/musicians/no-such-musician").await;
    s.get("/some/raw/path/that/matches/nothing").await;
    s.put("/v1/gigs/g-1", &gig("g-1", "2026-12-05")).await;
    s.refresh().await;
    // A new fee alone: the index keeps it in its facts overlay rather than re-indexing m-1.
    let mut m = musician("m-1");
    m["fee"]["amount"] = json!(17_500);
    s.put("/v1/musicians/m-1", &m).await;
    s.refresh().await;
    s.get("/v1/gigs/g-1/matches").await;
    let resp = s.get("/metrics").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    for name in [
        "http_requests_total",
        "http_request_duration_seconds",
        "http_requests_in_flight",
        "mussikon_matches_total",
        "mussikon_match_duration_seconds",
        "mussikon_index_lag_seconds",
        "mussikon_index_overlay_musicians",
        "mussikon_store_bytes",
        "mussikon_musicians",
        "mussikon_gigs",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{text}"
        );
    }
    assert!(
        text.contains("\nmussikon_index_overlay_musicians 1\n"),
        "m-1's new fee is not in the overlay:\n{text}"
    );
    assert!(text.contains("# TYPE http_request_duration_seconds histogram"));
    assert!(text.contains("http_request_duration_seconds_bucket{route=\"/v1/musicians/{id}\",method=\"GET\",le=\"0.0005\"}"), "{text}");
    assert!(text.contains("route=\"/v1/musicians/{id}\",method=\"PUT\",status=\"201\""));
    assert!(text.contains("route=\"/v1/musicians/{id}\",method=\"GET\",status=\"404\""));
    assert!(text.contains("route=\"unmatched\""));
    assert!(text.contains("mussikon_matches_total{instrument=\"guitar\"}"));
    assert!(
        !text.contains("/v1/musicians/m-1"),
        "a raw path leaked into a label"
    );
    assert!(
        !text.contains("/some/raw/path"),
        "a raw path leaked into a label"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id() {
    let s = TestServer::start().await;
    let resp = s
        .client
        .get(s.url("/health"))
        .header("x-request-id", "trace-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-abc.123");
    let resp = s.get("/nowhere").await;
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a generated UUID");
    let p = problem(resp, StatusCode::NOT_FOUND).await;
    assert_eq!(p["request_id"], json!(id));
    // An id that is not safe to echo is replaced.
    let resp = s
        .client
        .get(s.url("/health"))
        .header("x-request-id", "has spaces and \"quotes\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"].len(), 36);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drains_and_reports_it() {
    let s = TestServer::start().await;
    assert_eq!(s.get("/health").await.status(), StatusCode::OK);
    assert_eq!(s.stop().await, Stopped::Drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_gzipped_only_when_accept_encoding_allows() {
    use std::io::Read;
    let s = TestServer::start().await;
    for i in 0..20 {
        s.put(
            &format!("/v1/musicians/m-{i:02}"),
            &musician(&format!("m-{i:02}")),
        )
        .await;
    }
    let get = |encoding: Option<&'static str>| {
        let mut req = s.client.get(s.url("/v1/musicians?limit=20"));
        if let Some(e) = encoding {
            req = req.header("accept-encoding", e);
        }
        req.send()
    };
    let plain = get(None).await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.headers()["vary"], "accept-encoding");
    let plain = plain.bytes().await.unwrap();
    assert!(plain.len() > 1024, "the page is big enough to compress");

    let gz = get(Some("br;q=1, gzip;q=0.5")).await.unwrap();
    assert_eq!(gz.status(), StatusCode::OK);
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let packed = gz.bytes().await.unwrap();
    assert!(packed.len() < plain.len());
    let mut unpacked = Vec::new();
    flate2::read::GzDecoder::new(&packed[..])
        .read_to_end(&mut unpacked)
        .unwrap();
    assert_eq!(unpacked, plain);

    for refused in ["gzip;q=0", "identity", "br"] {
        let r = get(Some(refused)).await.unwrap();
        assert!(r.headers().get("content-encoding").is_none(), "{refused}");
        assert_eq!(r.bytes().await.unwrap(), plain);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_is_joined_and_echoed() {
    let s = TestServer::start().await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = s
        .client
        .get(s.url("/health"))
        .header("traceparent", incoming)
        .send()
        .await
        .unwrap();
    let echoed = r.headers()["traceparent"].to_str().unwrap().to_string();
    let parts: Vec<&str> = echoed.split('-').collect();
    assert_eq!(parts.len(), 4, "{echoed}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_ne!(parts[2], "00f067aa0ba902b7", "our own span id");
    assert_eq!(parts[3], "01", "flags kept");

    // A malformed one (or none) starts a new trace.
    let r = s
        .client
        .get(s.url("/health"))
        .header("traceparent", "00-xyz-00f067aa0ba902b7-01")
        .send()
        .await
        .unwrap();
    let fresh = r.headers()["traceparent"].to_str().unwrap().to_string();
    assert_eq!(fresh.len(), 55, "{fresh}");
    assert!(!fresh.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
    s.stop().await;
}
