//! Who may take part in a gig's chat and follow its events: the gig's owner, the musicians
//! booked on it and admins; everyone else gets 403 (chat) or an error frame (event topics), and
//! a WebSocket without a token is refused before the upgrade.

use crate::common::*;
use crate::ws::next_frame;
use futures_util::SinkExt;
use mussikon_server::http::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Gig g-1 owned by org-a with m-1 booked on it; m-2 exists but is not booked.
async fn seeded() -> TestServer {
    let s = TestServer::start_with(auth_config()).await;
    let admin = token("root", Role::Admin);
    let org = token("org-a", Role::Organizer);
    for (t, path, body) in [
        (&admin, "/v1/musicians/m-1", musician("m-1")),
        (&admin, "/v1/musicians/m-2", musician("m-2")),
        (&org, "/v1/gigs/g-1", gig("g-1", "2026-12-05")),
    ] {
        let r = s.send_as(Some(t), Method::PUT, path, Some(&body)).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{path}");
    }
    let r = s
        .send_as(
            Some(&org),
            Method::POST,
            "/v1/gigs/g-1/bookings",
            Some(&json!({"slot": 0, "musician_id": "m-1"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_booked_musicians_and_admins_use_a_gigs_chat() {
    let s = seeded().await;
    let allowed = [
        token("org-a", Role::Organizer),
        token("m-1", Role::Musician),
        token("root", Role::Admin),
    ];
    for (i, t) in allowed.iter().enumerate() {
        let body = json!({"author": "x", "text": format!("hello {i}")});
        let r = s
            .send_as(Some(t), Method::POST, "/v1/gigs/g-1/messages", Some(&body))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "allowed caller {i}");
        let page = json_of(
            s.send_as(Some(t), Method::GET, "/v1/gigs/g-1/messages", None)
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(page["items"].as_array().unwrap().len(), i + 1);
    }
    let refused = [
        token("org-b", Role::Organizer),
        token("m-2", Role::Musician),
    ];
    for t in &refused {
        let body = json!({"author": "x", "text": "let me in"});
        let p = problem(
            s.send_as(Some(t), Method::POST, "/v1/gigs/g-1/messages", Some(&body))
                .await,
            StatusCode::FORBIDDEN,
        )
        .await;
        assert_eq!(p["type"], "urn:mussikon:problem:forbidden");
        problem(
            s.send_as(Some(t), Method::GET, "/v1/gigs/g-1/messages", None)
                .await,
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    // No token at all is a 401, not a 403.
    let r = s
        .send_as(None, Method::GET, "/v1/gigs/g-1/messages", None)
        .await;
    problem(r, StatusCode::UNAUTHORIZED).await;
    // The refused posts changed nothing.
    let page = json_of(
        s.send_as(
            Some(&allowed[2]),
            Method::GET,
            "/v1/gigs/g-1/messages",
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_topics_are_checked_against_the_token() {
    let s = seeded().await;
    // No token: refused before the upgrade, with a problem body.
    match tokio_tungstenite::connect_async(s.ws_url("/v1/events")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 401)
        }
        other => panic!("expected a 401, got {:?}", other.map(|(_, r)| r.status())),
    }

    // A token in the header (m-2, not booked) and one in the query (m-1, booked).
    let mut req = s.ws_url("/v1/events").into_client_request().unwrap();
    let t = token("m-2", Role::Musician);
    req.headers_mut()
        .insert("authorization", format!("Bearer {t}").parse().unwrap());
    let (mut stranger, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let t = token("m-1", Role::Musician);
    let (mut booked, _) =
        tokio_tungstenite::connect_async(s.ws_url(&format!("/v1/events?access_token={t}")))
            .await
            .unwrap();

    let sub =
        |topics: &[&str]| Message::text(json!({"op": "subscribe", "topics": topics}).to_string());
    for (who, topics, ok) in [
        (0, &["gig:g-1"][..], false),
        (0, &["musician:m-1"][..], false),
        (0, &["musician:m-2"][..], true),
        (1, &["gig:g-1", "musician:m-2"][..], false),
        (1, &["gig:g-1", "musician:m-1"][..], true),
    ] {
        let ws = if who == 0 { &mut stranger } else { &mut booked };
        ws.send(sub(topics)).await.unwrap();
        let reply = next_frame(ws).await;
        let want = if ok { "subscribed" } else { "error" };
        assert_eq!(reply["type"], want, "{topics:?}: {reply}");
    }

    // The booked musician gets the gig's messages; the stranger, subscribed only to themself,
    // gets nothing of g-1 (the next frame it sees is its own event).
    let admin = token("root", Role::Admin);
    let r = s
        .send_as(
            Some(&admin),
            Method::POST,
            "/v1/gigs/g-1/messages",
            Some(&json!({"author": "root", "text": "welcome"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let e = next_frame(&mut booked).await;
    assert_eq!(
        (e["type"].as_str(), e["topic"].as_str()),
        (Some("message.posted"), Some("gig:g-1"))
    );
    let r = s
        .send_as(
            Some(&admin),
            Method::POST,
            "/v1/musicians/m-2/ratings",
            Some(&json!({"stars": 5})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let e = next_frame(&mut stranger).await;
    assert_eq!(e["topic"], "musician:m-2", "{e}");
    s.stop().await;
}
