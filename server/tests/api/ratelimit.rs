//! Rate limits: a burst is served, the next request gets 429 with `Retry-After`, the refusal is
//! counted on `/metrics`; clients (token subjects, addresses) and classes have their own
//! buckets; operations endpoints are never limited.

use crate::common::*;
use mussikon_server::config::Rate;
use mussikon_server::http::auth::Role;
use reqwest::{Method, StatusCode};

/// Bursts of 3 that refill once every 1000 s: nothing refills during a test.
fn limited(mut config: mussikon_server::config::HttpConfig) -> mussikon_server::config::HttpConfig {
    let tight = Rate {
        per_second: 0.001,
        burst: 3,
    };
    config.rate_limit.enabled = true;
    config.rate_limit.reads = tight;
    config.rate_limit.writes = tight;
    config.rate_limit.matches = tight;
    config
}

/// The value of `name{label}` in a Prometheus exposition (0 when absent).
fn sample(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_then_429_with_retry_after_counted_in_metrics() {
    let s = TestServer::start_with(limited(mussikon_server::config::HttpConfig::default())).await;
    let series = "mussikon_rate_limited_total{class=\"reads\"}";
    let before = sample(&s.get("/metrics").await.text().await.unwrap(), series);
    for _ in 0..3 {
        assert_eq!(s.get("/v1/musicians").await.status(), StatusCode::OK);
    }
    let resp = s.get("/v1/musicians").await;
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is whole seconds");
    assert!(retry >= 1);
    let p = problem(resp, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(p["type"], "urn:mussikon:problem:rate-limited");
    assert_eq!(p["retry_after_s"], retry);

    // Writes and matches have their own buckets; operations endpoints have none.
    assert_eq!(
        s.put("/v1/musicians/m-1", &musician("m-1")).await.status(),
        StatusCode::CREATED
    );
    for _ in 0..10 {
        assert_eq!(s.get("/health").await.status(), StatusCode::OK);
    }
    let metrics = s.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("# HELP mussikon_rate_limited_total"),
        "{metrics}"
    );
    assert!(sample(&metrics, series) >= before + 1.0, "{metrics}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_subjects_have_their_own_buckets() {
    let s = TestServer::start_with(limited(auth_config())).await;
    let a = token("a", Role::Admin);
    let b = token("b", Role::Admin);
    for _ in 0..3 {
        let r = s.send_as(Some(&a), Method::GET, "/v1/gigs", None).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = s.send_as(Some(&a), Method::GET, "/v1/gigs", None).await;
    problem(r, StatusCode::TOO_MANY_REQUESTS).await;
    let r = s.send_as(Some(&b), Method::GET, "/v1/gigs", None).await;
    assert_eq!(r.status(), StatusCode::OK, "another subject is not limited");
    // Requests without a valid token are charged to the address, and still limited: guessing
    // tokens is rate limited too.
    for _ in 0..3 {
        let r = s.send_as(Some("bad"), Method::GET, "/v1/gigs", None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = s.send_as(Some("bad"), Method::GET, "/v1/gigs", None).await;
    problem(r, StatusCode::TOO_MANY_REQUESTS).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_keys_clients_only_when_trusted() {
    async fn burst_from(s: &TestServer, addr: &str) -> StatusCode {
        let mut last = StatusCode::OK;
        for _ in 0..4 {
            last = s
                .client
                .get(s.url("/v1/gigs"))
                .header("x-forwarded-for", addr)
                .send()
                .await
                .unwrap()
                .status();
        }
        last
    }
    let mut trusted = limited(mussikon_server::config::HttpConfig::default());
    trusted.trust_forwarded = true;
    let s = TestServer::start_with(trusted).await;
    assert_eq!(
        burst_from(&s, "198.51.100.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The proxy appends the client's address last; a client-supplied first entry is ignored.
    assert_eq!(
        burst_from(&s, "198.51.100.1, 198.51.100.2").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let r = s
        .client
        .get(s.url("/v1/gigs"))
        .header("x-forwarded-for", "198.51.100.3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;

    let s = TestServer::start_with(limited(mussikon_server::config::HttpConfig::default())).await;
    assert_eq!(
        burst_from(&s, "198.51.100.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let r = s
        .client
        .get(s.url("/v1/gigs"))
        .header("x-forwarded-for", "198.51.100.3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "untrusted X-Forwarded-For is ignored: same peer, same bucket"
    );
    s.stop().await;
}
