//! Limits and abuse: hostile clients are refused cheaply, with the right status, and the node's
//! memory stays bounded (resident set measured before and after; the bounds are generous
//! factors, not tight figures, and nothing here asserts a wall-clock duration).

use crate::common::TestServer;
use mussikon_server::config::{ConnectionLimits, EventsConfig, HttpConfig};
use reqwest::StatusCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "../support/rss.rs"]
mod support_rss;

/// Resident set of this process (server and clients together), bytes.
fn rss() -> u64 {
    support_rss::rss_of("self")
}

const MIB: u64 = 1024 * 1024;

/// Sends `body` as JSON (whatever it holds) with `method` to `path`.
async fn send_json(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    s.client
        .request(method, s.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn oversized_and_deep_bodies_are_refused_without_memory_growth() {
    let s = TestServer::start().await;
    let big = vec![b' '; 3 * 1024 * 1024];
    let deep = "[".repeat(512 * 1024);
    // Warm up allocators and connection pools first, then measure.
    for _ in 0..2 {
        let r = send_json(&s, reqwest::Method::PUT, "/v1/musicians/m-1", big.clone()).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    let before = rss();
    for _ in 0..40 {
        let r = send_json(&s, reqwest::Method::PUT, "/v1/musicians/m-1", big.clone()).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let r = send_json(
            &s,
            reqwest::Method::POST,
            "/v1/musicians/search",
            deep.clone(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["type"], "urn:mussikon:problem:json-too-deep");
    }
    let grown = rss().saturating_sub(before);
    // 40 × (3 MiB + 0.5 MiB) = 140 MiB were sent; a body is never buffered past its limit.
    assert!(grown < 48 * MIB, "resident set grew by {} MiB", grown / MIB);
}

#[tokio::test]
async fn a_slow_loris_client_is_cut_off_by_the_header_read_timeout() {
    let config = HttpConfig {
        connections: ConnectionLimits {
            header_read_timeout: Duration::from_millis(500),
            ..ConnectionLimits::default()
        },
        ..HttpConfig::default()
    };
    let s = TestServer::start_with(config).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    // One byte of a never-ending header every 100 ms: far slower than any real client.
    let header = format!(
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {}",
        "a".repeat(10_000)
    );
    let mut sent = 0;
    let mut buf = [0u8; 256];
    let closed = loop {
        if conn
            .write_all(&header.as_bytes()[sent..=sent])
            .await
            .is_err()
        {
            break true;
        }
        sent += 1;
        match tokio::time::timeout(Duration::from_millis(100), conn.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => break true, // EOF, a 408, or a reset: the server gave up
            Err(_) => {}                          // still open
        }
        assert!(sent < header.len(), "the whole slow header was accepted");
    };
    assert!(closed);
    assert!(sent < header.len());
    // A normal client is still served.
    let r = s.client.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_on_accept() {
    let config = HttpConfig {
        connections: ConnectionLimits {
            max_connections: 8,
            ..ConnectionLimits::default()
        },
        ..HttpConfig::default()
    };
    let s = TestServer::start_with(config).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        // A complete request proves the connection was accepted and is being served.
        c.write_all(format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        idle.push(c);
    }
    let before = rss();
    for _ in 0..200 {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        let _ = c.write_all(b"GET /health HTTP/1.1\r\n\r\n").await;
        let mut buf = [0u8; 64];
        // Closed without an answer: EOF or a reset, never a response.
        match c.read(&mut buf).await {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!(
                "a connection over the cap was served: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
        }
    }
    assert!(rss().saturating_sub(before) < 32 * MIB);
    drop(idle);
    // Once the idle connections are gone, new clients are served again.
    let mut served = false;
    for _ in 0..100 {
        if let Ok(r) = s.client.get(s.url("/health")).send().await {
            served = r.status() == StatusCode::OK;
            if served {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served);
}

#[tokio::test]
async fn a_websocket_flood_is_capped_with_503() {
    let config = HttpConfig {
        events: EventsConfig {
            max_subscribers: 20,
            ..EventsConfig::default()
        },
        ..HttpConfig::default()
    };
    let s = TestServer::start_with(config).await;
    let url = s.ws_url("/v1/events");
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(tokio_tungstenite::connect_async(&url).await.unwrap().0);
    }
    let before = rss();
    let (mut accepted, mut refused) = (5, 0);
    for _ in 0..200 {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((ws, _)) => {
                accepted += 1;
                open.push(ws);
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
                refused += 1;
            }
            Err(e) => panic!("unexpected handshake error: {e}"),
        }
    }
    assert_eq!((accepted, refused), (20, 185));
    assert!(rss().saturating_sub(before) < 32 * MIB);
    drop(open);
    // The places are freed when the sockets close: a new subscriber gets in again.
    let mut again = false;
    for _ in 0..100 {
        if tokio_tungstenite::connect_async(&url).await.is_ok() {
            again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again);
}
