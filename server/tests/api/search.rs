//! Search by query parameters and by JSON body; bulk NDJSON upload.

use crate::common::*;
use mussikon_server::config::HttpConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn ids(page: &Value) -> Vec<String> {
    page["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["musician"]["id"].as_str().unwrap().to_string())
        .collect()
}

async fn seed(s: &TestServer) {
    let mut a = musician("m-a");
    a["instruments"] = json!([{"name": "guitar", "level": 5}]);
    a["bio"] = json!("Bossa nova and jazz standards");
    let mut b = musician("m-b");
    b["instruments"] = json!([{"name": "guitar", "level": 2}, {"name": "bass", "level": 4}]);
    b["busy"] = json!(["2026-12-05"]);
    let mut c = musician("m-c");
    c["instruments"] = json!([{"name": "drums", "level": 4}]);
    c["location"] = json!({"lat": 41.3874, "lon": 2.1686}); // Barcelona
    c["fee"] = json!({"amount": 9000, "currency": "EUR"});
    for m in [a, b, c] {
        let id = m["id"].as_str().unwrap().to_string();
        assert_eq!(
            s.put(&format!("/v1/musicians/{id}"), &m).await.status(),
            StatusCode::CREATED
        );
    }
    s.refresh().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_search_filters_like_the_engine() {
    let s = TestServer::start().await;
    seed(&s).await;
    let page = json_of(
        s.get("/v1/musicians/search?instrument=guitar&min_level=3")
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ids(&page), ["m-a"]);
    let page = json_of(
        s.get("/v1/musicians/search?instrument=guitar,drums&mode=any&sort=fee")
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ids(&page), ["m-c", "m-a", "m-b"]);
    let page = json_of(
        s.get("/v1/musicians/search?instrument=guitar&instrument=bass&mode=all")
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ids(&page), ["m-b"]);
    let page = json_of(
        s.get("/v1/musicians/search?lat=40.4168&lon=-3.7038&radius_km=20&sort=distance&available_on=2026-12-05")
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ids(&page), ["m-a"]);
    let page = json_of(
        s.get("/v1/musicians/search?text=bossa&genre=jazz").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ids(&page), ["m-a"]);
    let page = json_of(
        s.get(
            "/v1/musicians/search?max_fee=10000&currency=EUR&min_rating=1&include_inactive=false",
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ids(&page), ["m-c"]);
    // Pages follow the cursor.
    let first = json_of(s.get("/v1/musicians/search?limit=2").await, StatusCode::OK).await;
    assert_eq!(ids(&first).len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = json_of(
        s.client
            .get(s.url("/v1/musicians/search"))
            .query(&[("limit", "2"), ("cursor", cursor)])
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(ids(&rest).len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_search_takes_a_search_query() {
    let s = TestServer::start().await;
    seed(&s).await;
    let page = json_of(
        s.post(
            "/v1/musicians/search",
            &json!({"instruments": [{"name": "Guitar", "min_level": 3}], "near": {"lat": 40.4, "lon": -3.7, "radius_km": 25}, "sort": "distance"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ids(&page), ["m-a"]);
    assert!(page["hits"][0]["distance_km"].as_f64().unwrap() < 25.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_ndjson_imports_good_lines_and_reports_bad_ones() {
    let s = TestServer::start().await;
    let mut body = String::new();
    for i in 0..50 {
        body.push_str(&musician(&format!("bulk-{i:02}")).to_string());
        body.push('\n');
    }
    body.push_str("{\"id\":\"bad id\"}\n");
    body.push_str("not json\n");
    let resp = s
        .client
        .post(s.url("/v1/musicians/bulk"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let r = json_of(resp, StatusCode::OK).await;
    assert_eq!(r["accepted"], 50);
    assert_eq!(r["rejected"], 2);
    assert_eq!(r["errors"][0]["line"], 51);
    assert_eq!(r["errors"][1]["line"], 52);
    let page = json_of(s.get("/v1/musicians?limit=1000").await, StatusCode::OK).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 50);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_bodies_over_their_own_limit_get_413() {
    let s = TestServer::start_with(HttpConfig {
        max_bulk_bytes: 4096,
        ..HttpConfig::default()
    })
    .await;
    let line = format!("{}\n", musician("m-x"));
    let body = line.repeat(4096 / line.len() + 2);
    let resp = s
        .client
        .post(s.url("/v1/musicians/bulk"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(p["limit_bytes"], 4096);
    let page = json_of(s.get("/v1/musicians").await, StatusCode::OK).await;
    assert_eq!(page["items"], json!([]));
    s.stop().await;
}
