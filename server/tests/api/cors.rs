//! CORS preflights for allowed and other origins, CORS headers on actual requests, and the
//! security headers every response carries (HSTS only over HTTPS as told by a trusted proxy).

use crate::common::*;
use mussikon_server::config::HttpConfig;
use reqwest::{Method, StatusCode};

const ALLOWED: &str = "http://localhost:3000";

async fn preflight(s: &TestServer, origin: &str) -> reqwest::Response {
    s.client
        .request(Method::OPTIONS, s.url("/v1/musicians/m-1"))
        .header("origin", origin)
        .header("access-control-request-method", "PUT")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_from_an_allowed_origin_is_answered() {
    let s = TestServer::start_with(auth_config()).await;
    let r = preflight(&s, ALLOWED).await;
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "no token needed for a preflight"
    );
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], ALLOWED);
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("PUT") && methods.contains("DELETE"),
        "{methods}"
    );
    let headers = h["access-control-allow-headers"].to_str().unwrap();
    assert!(headers.contains("Authorization"), "{headers}");
    assert_eq!(h["access-control-max-age"], "600");
    assert_eq!(h["x-content-type-options"], "nosniff");

    // Actual requests from it may read the answer and its headers.
    let r = s
        .client
        .get(s.url("/health"))
        .header("origin", ALLOWED)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], ALLOWED);
    assert!(r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("ETag"));
    assert_eq!(r.headers()["vary"], "Origin");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_origins_get_no_cors_headers() {
    let mut config = HttpConfig::default();
    config.cors.allowed_origins = vec!["https://app.example".into()];
    let s = TestServer::start_with(config).await;
    for origin in [ALLOWED, "https://evil.example", "https://app.example.evil"] {
        let r = preflight(&s, origin).await;
        assert!(
            !r.headers().contains_key("access-control-allow-origin"),
            "{origin}"
        );
        let p = problem(r, StatusCode::FORBIDDEN).await;
        assert_eq!(p["type"], "urn:mussikon:problem:cors-origin-not-allowed");
        let r = s
            .client
            .get(s.url("/health"))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(!r.headers().contains_key("access-control-allow-origin"));
    }
    let r = preflight(&s, "https://app.example").await;
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    s.stop().await;
}

fn assert_security_headers(r: &reqwest::Response) {
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff", "{}", r.url());
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(
        h["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_on_every_response_and_hsts_only_over_trusted_https() {
    let s = TestServer::start_with(auth_config()).await;
    for path in ["/health", "/nope", "/v1/musicians", "/metrics"] {
        let r = s.get(path).await;
        assert_security_headers(&r);
        assert!(!r.headers().contains_key("strict-transport-security"));
    }
    // X-Forwarded-Proto from an untrusted peer is ignored.
    let r = s
        .client
        .get(s.url("/health"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("strict-transport-security"));
    s.stop().await;

    let s = TestServer::start_with(HttpConfig {
        trust_forwarded: true,
        ..HttpConfig::default()
    })
    .await;
    let r = s
        .client
        .get(s.url("/health"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_security_headers(&r);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    let r = s
        .client
        .get(s.url("/health"))
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("strict-transport-security"));
    s.stop().await;
}
