//! The WebSocket event stream: delivery by topic, unsubscribe, bad frames, slow and dead
//! subscribers, shutdown — with a real WebSocket client against a real server.

use crate::common::*;
use crate::ws::{next_frame, GUARD};
use futures_util::{SinkExt, StreamExt};
use mussikon_server::config::{EventsConfig, HttpConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

struct Ws<S> {
    inner: WebSocketStream<S>,
}

async fn connect(s: &TestServer) -> Ws<MaybeTlsStream<tokio::net::TcpStream>> {
    let (inner, resp) = tokio_tungstenite::connect_async(s.ws_url("/v1/events"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 101);
    Ws { inner }
}

impl<S> Ws<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    async fn send(&mut self, v: Value) {
        self.inner.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next data frame as JSON (see [`next_frame`]).
    async fn next(&mut self) -> Value {
        next_frame(&mut self.inner).await
    }

    async fn subscribe(&mut self, topics: &[&str]) {
        self.send(json!({"op": "subscribe", "topics": topics}))
            .await;
        assert_eq!(
            self.next().await,
            json!({"type": "subscribed", "topics": topics})
        );
    }

    /// The next event, checked to be of `kind` on `topic`.
    async fn expect(&mut self, kind: &str, topic: &str) -> Value {
        let ev = self.next().await;
        assert_eq!(
            (ev["type"].as_str(), ev["topic"].as_str()),
            (Some(kind), Some(topic)),
            "{ev}"
        );
        assert!(ev["seq"].as_u64().unwrap() > 0);
        ev
    }

    /// Reads until the connection ends: the data frames seen and the close frame, if any.
    async fn drain_to_end(&mut self) -> (usize, Option<CloseCode>) {
        let mut frames = 0;
        loop {
            match tokio::time::timeout(GUARD, self.inner.next())
                .await
                .expect("the connection ends within the guard time")
            {
                Some(Ok(Message::Close(c))) => return (frames, c.map(|c| c.code)),
                Some(Ok(Message::Text(_))) => frames += 1,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return (frames, None),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_type_reaches_its_topics_and_no_others() {
    let s = TestServer::start().await;
    s.put("/v1/musicians/m-1", &musician("m-1")).await;
    let mut drummer = musician("m-2");
    drummer["instruments"] = json!([{"name": "drums", "level": 5}]);
    s.put("/v1/musicians/m-2", &drummer).await;
    s.refresh().await;

    let mut a = connect(&s).await;
    a.subscribe(&["gig:g-1", "musician:m-1"]).await;
    let mut b = connect(&s).await;
    b.subscribe(&["gig:g-2", "musician:m-2"]).await;

    // A gig is created: gig.created on its topic, then gig.matching for the guitarist.
    let resp = s.put("/v1/gigs/g-1", &gig("g-1", "2026-12-05")).await;
    let etag: u64 = resp.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap();
    let created = a.expect("gig.created", "gig:g-1").await;
    assert_eq!(created["seq"], etag);
    assert_eq!(created["data"], json!({"gig_id": "g-1"}));
    let matching = a.expect("gig.matching", "musician:m-1").await;
    assert_eq!(matching["seq"], etag);
    assert_eq!(matching["data"]["gig_id"], "g-1");
    assert_eq!(matching["data"]["date"], "2026-12-05");
    assert_eq!(matching["data"]["slots"][0]["instrument"], "guitar");
    // Updating the gig is not a creation: gig.updated, and no gig.matching.
    s.put("/v1/gigs/g-1", &gig("g-1", "2026-12-05")).await;
    let updated = a.expect("gig.updated", "gig:g-1").await;
    assert_eq!(updated["data"], json!({"gig_id": "g-1"}));

    // A booking: once per topic, gig first.
    let booking = json!({"gig_id": "g-1", "slot": 0, "musician_id": "m-1"});
    let resp = s
        .post(
            "/v1/gigs/g-1/bookings",
            &json!({"slot": 0, "musician_id": "m-1"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let on_gig = a.expect("booking.created", "gig:g-1").await;
    let on_musician = a.expect("booking.created", "musician:m-1").await;
    assert_eq!(on_gig["data"], booking);
    assert_eq!(on_musician["data"], booking);
    assert_eq!(on_gig["seq"], on_musician["seq"]);
    assert!(on_gig["seq"].as_u64() > created["seq"].as_u64());

    // A refused booking announces nothing; the next event is the rating.
    let resp = s
        .post(
            "/v1/gigs/g-1/bookings",
            &json!({"slot": 0, "musician_id": "m-2"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    s.post("/v1/musicians/m-1/ratings", &json!({"stars": 5}))
        .await;
    let rated = a.expect("rating.changed", "musician:m-1").await;
    assert_eq!(rated["data"]["musician_id"], "m-1");
    assert_eq!(rated["data"]["count"], 1);
    assert!(rated["seq"].as_u64() > on_gig["seq"].as_u64());

    let posted = json_of(
        s.post(
            "/v1/gigs/g-1/messages",
            &json!({"author": "m-1", "text": "see you there"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let ev = a.expect("message.posted", "gig:g-1").await;
    assert_eq!(ev["data"], posted);
    assert_eq!(ev["seq"], posted["version"]);

    s.delete("/v1/gigs/g-1/bookings/m-1").await;
    let cancelled = a.expect("booking.cancelled", "gig:g-1").await;
    assert_eq!(cancelled["data"], booking);
    a.expect("booking.cancelled", "musician:m-1").await;

    // B heard none of it: its first events are for its own gig (a drummer's gig, which the
    // drummer m-2 matches and the guitarist m-1 does not), then its own musician.
    let mut drums = gig("g-2", "2026-12-06");
    drums["slots"] = json!([{"instrument": "drums", "count": 1}]);
    s.put("/v1/gigs/g-2", &drums).await;
    b.expect("gig.created", "gig:g-2").await;
    let matching = b.expect("gig.matching", "musician:m-2").await;
    assert_eq!(matching["data"]["gig_id"], "g-2");
    s.post("/v1/musicians/m-2/ratings", &json!({"stars": 3}))
        .await;
    b.expect("rating.changed", "musician:m-2").await;
    // And A heard none of B's: its next event is the next one on g-1.
    s.post(
        "/v1/gigs/g-1/messages",
        &json!({"author": "m-1", "text": "sentinel"}),
    )
    .await;
    let ev = a.expect("message.posted", "gig:g-1").await;
    assert_eq!(ev["data"]["text"], "sentinel");

    // A bulk import announces its counts on `imports`; deleting a gig announces gig.deleted.
    let mut c = connect(&s).await;
    c.subscribe(&["imports"]).await;
    let ndjson = format!("{}\n{}\n", musician("m-3"), musician("m-4"));
    let resp = s
        .client
        .post(s.url("/v1/musicians/bulk"))
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{:?}", resp.text().await);
    let imported = c.expect("import.applied", "imports").await;
    assert_eq!(imported["data"], json!({"accepted": 2, "rejected": 0}));
    s.delete("/v1/gigs/g-1").await;
    let deleted = a.expect("gig.deleted", "gig:g-1").await;
    assert_eq!(deleted["data"], json!({"gig_id": "g-1", "released": 0}));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery() {
    let s = TestServer::start().await;
    s.put("/v1/gigs/g-1", &gig("g-1", "2026-12-05")).await;
    s.put("/v1/gigs/g-2", &gig("g-2", "2026-12-05")).await;
    let mut ws = connect(&s).await;
    ws.subscribe(&["gig:g-1", "gig:g-2"]).await;
    let say = |gig: &'static str, text: &'static str| {
        let s = &s;
        async move {
            let r = s
                .post(
                    &format!("/v1/gigs/{gig}/messages"),
                    &json!({"author": "m-1", "text": text}),
                )
                .await;
            assert_eq!(r.status(), StatusCode::CREATED);
        }
    };
    say("g-1", "one").await;
    assert_eq!(
        ws.expect("message.posted", "gig:g-1").await["data"]["text"],
        "one"
    );

    ws.send(json!({"op": "unsubscribe", "topics": ["gig:g-1", "gig:g-1"]}))
        .await;
    assert_eq!(
        ws.next().await,
        json!({"type": "unsubscribed", "topics": ["gig:g-1"]})
    );
    say("g-1", "unheard").await;
    say("g-2", "heard").await;
    assert_eq!(
        ws.expect("message.posted", "gig:g-2").await["data"]["text"],
        "heard"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_an_error_and_the_connection_stays_usable() {
    let s = TestServer::start_with(HttpConfig {
        events: EventsConfig {
            max_topics: 3,
            ..EventsConfig::default()
        },
        ..HttpConfig::default()
    })
    .await;
    s.put("/v1/gigs/g-1", &gig("g-1", "2026-12-05")).await;
    let mut ws = connect(&s).await;
    let bad: Vec<(&str, Message)> = vec![
        ("not JSON", Message::text("hello")),
        (
            "unknown op",
            Message::text(r#"{"op":"dance","topics":["gig:g-1"]}"#),
        ),
        ("no op", Message::text(r#"{"topics":["gig:g-1"]}"#)),
        (
            "unknown field",
            Message::text(r#"{"op":"subscribe","topics":["gig:g-1"],"x":1}"#),
        ),
        (
            "no topics",
            Message::text(r#"{"op":"subscribe","topics":[]}"#),
        ),
        (
            "bad topic kind",
            Message::text(r#"{"op":"subscribe","topics":["band:b-1"]}"#),
        ),
        (
            "bad topic id",
            Message::text(r#"{"op":"subscribe","topics":["gig:a b"]}"#),
        ),
        (
            "one bad topic among good ones",
            Message::text(r#"{"op":"subscribe","topics":["gig:g-1","gig:"]}"#),
        ),
        (
            "over the topic limit",
            Message::text(r#"{"op":"subscribe","topics":["gig:a","gig:b","gig:c","gig:g-1"]}"#),
        ),
        ("binary", Message::binary(b"{}".to_vec())),
    ];
    for (name, frame) in bad {
        ws.inner.send(frame).await.unwrap();
        let reply = ws.next().await;
        assert_eq!(reply["type"], "error", "{name}: {reply}");
        assert!(!reply["message"].as_str().unwrap().is_empty(), "{name}");
    }
    // None of the refused frames subscribed anything: the first event is for the one topic
    // subscribed now.
    ws.subscribe(&["gig:g-1"]).await;
    s.post(
        "/v1/gigs/g-1/messages",
        &json!({"author": "m-1", "text": "still here"}),
    )
    .await;
    let ev = ws.expect("message.posted", "gig:g-1").await;
    assert_eq!(ev["data"]["text"], "still here");
    // Three topics fit, counting the one already held once.
    ws.subscribe(&["gig:g-1", "gig:a", "gig:b"]).await;

    // A frame over the size limit ends the connection; others are unaffected.
    ws.inner
        .send(Message::text("x".repeat(70 * 1024)))
        .await
        .unwrap();
    let (_, code) = ws.drain_to_end().await;
    assert!(matches!(code, None | Some(CloseCode::Size)), "{code:?}");
    let mut again = connect(&s).await;
    again.subscribe(&["gig:g-1"]).await;

    // The path speaks only WebSocket.
    let p = problem(s.get("/v1/events").await, StatusCode::UPGRADE_REQUIRED).await;
    assert_eq!(p["type"], "urn:mussikon:problem:upgrade-required");
    let resp = s.post("/v1/events", &json!({})).await;
    assert_eq!(resp.headers()["allow"], "GET, HEAD");
    problem(resp, StatusCode::METHOD_NOT_ALLOWED).await;
    s.stop().await;
}

/// A client socket with a tiny receive buffer, so that a client that does not read pushes back
/// on the server after a few kilobytes rather than megabytes.
async fn tiny_buffer_client(s: &TestServer) -> Ws<MaybeTlsStream<tokio::net::TcpStream>> {
    let addr: std::net::SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (inner, _) =
        tokio_tungstenite::client_async(s.ws_url("/v1/events"), MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    Ws { inner }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_dropped_while_writers_and_readers_carry_on() {
    let s = TestServer::start().await;
    s.put("/v1/gigs/g-1", &gig("g-1", "2026-12-05")).await;
    let dropped_before = s.app.events().hub().stats().dropped;

    let mut slow = tiny_buffer_client(&s).await;
    slow.subscribe(&["gig:g-1"]).await;
    // From here on `slow` reads nothing until the end of the test.

    let mut reader = connect(&s).await;
    reader.subscribe(&["gig:g-1"]).await;
    let reading = tokio::spawn(async move {
        let mut seqs = Vec::new();
        loop {
            let ev = reader.expect("message.posted", "gig:g-1").await;
            seqs.push(ev["data"]["seq"].as_u64().unwrap());
            if ev["data"]["text"] == "last" {
                return seqs;
            }
        }
    });

    let text = "x".repeat(2000);
    let mut posted = 0u64;
    let mut after_drop = 0;
    // The bound is a failure guard: the slow subscriber must be dropped long before.
    while after_drop < 20 {
        assert!(posted < 10_000, "the slow subscriber was never dropped");
        let resp = tokio::time::timeout(
            GUARD,
            s.post(
                "/v1/gigs/g-1/messages",
                &json!({"author": "m-1", "text": text}),
            ),
        )
        .await
        .expect("a write completes although a subscriber does not read");
        assert_eq!(resp.status(), StatusCode::CREATED);
        posted += 1;
        if s.app.events().hub().stats().dropped > dropped_before {
            after_drop += 1;
        }
    }
    s.post(
        "/v1/gigs/g-1/messages",
        &json!({"author": "m-1", "text": "last"}),
    )
    .await;
    posted += 1;

    // The reading subscriber got every message, in order.
    let seqs = tokio::time::timeout(GUARD, reading).await.unwrap().unwrap();
    assert_eq!(seqs, (1..=posted).collect::<Vec<_>>());

    // The slow one was cut off part-way; if its close frame got through, it says why.
    let (frames, code) = slow.drain_to_end().await;
    eprintln!("slow subscriber: {frames} of {posted} frames, close {code:?}");
    assert!((frames as u64) < posted, "{frames} of {posted}");
    assert!(matches!(code, None | Some(CloseCode::Again)), "{code:?}");
    assert_eq!(s.app.events().hub().stats().dropped, dropped_before + 1);

    let metrics = s.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("# HELP mussikon_ws_dropped_subscribers_total"));
    assert!(metrics.contains("# HELP mussikon_ws_connections"));
    assert!(metrics.contains("mussikon_ws_events_total{type=\"message.posted\"}"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_pings_is_closed() {
    let s = TestServer::start_with(HttpConfig {
        events: EventsConfig {
            ping_interval: Duration::from_millis(100),
            ..EventsConfig::default()
        },
        ..HttpConfig::default()
    })
    .await;
    // A raw TCP client: it completes the handshake, then only reads bytes, so no pong is ever
    // sent.
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(
        format!(
            "GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(GUARD, tcp.read_to_end(&mut bytes))
        .await
        .expect("the server closes a silent connection")
        .unwrap();
    assert!(bytes.starts_with(b"HTTP/1.1 101"));
    // Server frames are unmasked: a ping (0x89), then a close (0x88) with code 1001.
    let head = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let frames = &bytes[head + 4..];
    assert_eq!(frames.first(), Some(&0x89), "a ping first");
    let close = frames
        .windows(4)
        .position(|w| w[0] == 0x88 && w[2..4] == [0x03, 0xE9])
        .is_some();
    assert!(close, "a close frame with code 1001");
    assert_eq!(s.app.events().hub().stats().connections, 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_event_sockets_with_going_away() {
    let s = TestServer::start().await;
    let mut ws = connect(&s).await;
    ws.subscribe(&["gig:g-1"]).await;
    let stopping = tokio::spawn(s.stop());
    let (_, code) = ws.drain_to_end().await;
    assert_eq!(code, Some(CloseCode::Away));
    tokio::time::timeout(GUARD, stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_beyond_max_subscribers_get_503() {
    let s = TestServer::start_with(HttpConfig {
        events: EventsConfig {
            max_subscribers: 1,
            ..EventsConfig::default()
        },
        ..HttpConfig::default()
    })
    .await;
    let mut first = connect(&s).await;
    first.subscribe(&["gig:g-1"]).await;
    match tokio_tungstenite::connect_async(s.ws_url("/v1/events")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503)
        }
        other => panic!("expected a 503, got {:?}", other.map(|(_, r)| r.status())),
    }
    s.stop().await;
}
