//! Real-time events in a cluster: every node announces every applied change, whichever node
//! took the request, once, with the same sequence number everywhere.

use crate::harness::*;
use crate::ws::next_frame;
use futures_util::SinkExt;
use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A subscriber on node `id`'s `/v1/events` to `topics`, once the node confirmed.
async fn subscribe(c: &Cluster, id: u64, topics: &[&str]) -> Socket {
    let url = format!("ws://{}/v1/events", c.nodes[&id].addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let op = json!({"op": "subscribe", "topics": topics}).to_string();
    ws.send(Message::text(op)).await.unwrap();
    assert_eq!(next_frame(&mut ws).await["type"], "subscribed");
    ws
}

#[tokio::test(flavor = "multi_thread")]
async fn every_node_announces_every_change_once_whichever_node_took_it() {
    let c = Cluster::start(3, &[]).await;
    let topic = "gig:g-ev";
    let mut sockets = Vec::new();
    for id in [1, 2, 3] {
        sockets.push(subscribe(&c, id, &[topic]).await);
    }
    // Each change through another node: the gig through 1, the booking through 2, the
    // cancellation through 3.
    let r = c.put(1, "/v1/musicians/m-ev", &musician("m-ev")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c.put(1, "/v1/gigs/g-ev", &gig("g-ev", "2026-12-05")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .http
        .post(c.url(2, "/v1/gigs/g-ev/bookings"))
        .json(&json!({"slot": 0, "musician_id": "m-ev"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .http
        .delete(c.url(3, "/v1/gigs/g-ev/bookings/m-ev"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "cancel: {}", r.status());

    let mut seen: Vec<Vec<(String, u64)>> = Vec::new();
    for ws in &mut sockets {
        let mut events = Vec::new();
        for _ in 0..3 {
            let ev = next_frame(ws).await;
            assert_eq!(ev["topic"], topic, "{ev}");
            events.push((
                ev["type"].as_str().unwrap().to_string(),
                ev["seq"].as_u64().unwrap(),
            ));
        }
        seen.push(events);
    }
    let kinds: Vec<&str> = seen[0].iter().map(|(k, _)| k.as_str()).collect();
    // In order, once each: a duplicate would come before the next change's event.
    assert_eq!(
        kinds,
        ["gig.created", "booking.created", "booking.cancelled"],
        "{seen:?}"
    );
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
}
