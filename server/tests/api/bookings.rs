//! Bookings: book and cancel, conflicts, idempotent retries, and racing requests.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn book_conflict_cancel() {
    let s = TestServer::start().await;
    s.put("/v1/musicians/m-1", &musician("m-1")).await;
    s.put("/v1/gigs/g-1", &gig("g-1", "2026-12-05")).await;
    s.put("/v1/gigs/g-2", &gig("g-2", "2026-12-05")).await;

    let resp = s
        .post(
            "/v1/gigs/g-1/bookings",
            &json!({"slot": 0, "musician_id": "m-1"}),
        )
        .await;
    assert_eq!(resp.headers()["location"], "/v1/gigs/g-1/bookings/m-1");
    let b = json_of(resp, StatusCode::CREATED).await;
    assert_eq!(b, json!({"gig_id": "g-1", "slot": 0, "musician_id": "m-1"}));
    let g = json_of(s.get("/v1/gigs/g-1").await, StatusCode::OK).await;
    assert_eq!(g["bookings"], json!([b]));

    // Same date, other gig: the engine's typed conflict comes back in the problem.
    let p = problem(
        s.post(
            "/v1/gigs/g-2/bookings",
            &json!({"slot": 0, "musician_id": "m-1"}),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        p["conflict"],
        json!({"conflict": "musician_already_booked", "musician_id": "m-1", "date": "2026-12-05", "gig_id": "g-1"})
    );

    // A gig change that would break the booking is a conflict too.
    let p = problem(
        s.put("/v1/gigs/g-1", &gig("g-1", "2026-12-24")).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(p["conflict"]["conflict"], "gig_has_bookings");

    assert_eq!(
        s.delete("/v1/gigs/g-1/bookings/m-1").await.status(),
        StatusCode::NO_CONTENT
    );
    problem(
        s.delete("/v1/gigs/g-1/bookings/m-1").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let m = json_of(s.get("/v1/musicians/m-1").await, StatusCode::OK).await;
    assert_eq!(m["booked"], json!([]));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_books_once_and_replays_the_answer() {
    let s = TestServer::start().await;
    s.put("/v1/musicians/m-1", &musician("m-1")).await;
    s.put("/v1/gigs/g-1", &gig("g-1", "2026-12-05")).await;
    let body = json!({"slot": 0, "musician_id": "m-1"});
    let send = |key: &'static str, body: Value| {
        s.client
            .post(s.url("/v1/gigs/g-1/bookings"))
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = send("key-1", body.clone()).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let first_body = first.text().await.unwrap();

    let again = send("key-1", body.clone()).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.unwrap(), first_body);

    let g = json_of(s.get("/v1/gigs/g-1").await, StatusCode::OK).await;
    assert_eq!(g["bookings"].as_array().unwrap().len(), 1);

    // Without the key, the retry is a new request and the engine refuses the double booking.
    problem(
        s.post("/v1/gigs/g-1/bookings", &body).await,
        StatusCode::CONFLICT,
    )
    .await;
    // The same key for a different request is refused.
    let other = send("key-1", json!({"slot": 0, "musician_id": "m-2"}))
        .await
        .unwrap();
    let p = problem(other, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(fields(&p), ["Idempotency-Key"]);
    // A key with a tab or a space inside is not visible ASCII: 400, and nothing is booked.
    for bad in ["key\t2", "key 2"] {
        let r = send(bad, json!({"slot": 0, "musician_id": "m-2"}))
            .await
            .unwrap();
        problem(r, StatusCode::BAD_REQUEST).await;
    }
    let g = json_of(s.get("/v1/gigs/g-1").await, StatusCode::OK).await;
    assert_eq!(g["bookings"].as_array().unwrap().len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_bookings_of_one_musician_on_one_date_book_once() {
    let s = TestServer::start().await;
    s.put("/v1/musicians/m-1", &musician("m-1")).await;
    let gigs = 8;
    for i in 0..gigs {
        let id = format!("g-{i}");
        s.put(&format!("/v1/gigs/{id}"), &gig(&id, "2026-12-05"))
            .await;
    }
    let mut tasks = Vec::new();
    for i in 0..gigs {
        let client = s.client.clone();
        let url = s.url(&format!("/v1/gigs/g-{i}/bookings"));
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"slot": 0, "musician_id": "m-1"}))
                .send()
                .await
                .unwrap()
        }));
    }
    let mut created = 0;
    for t in tasks {
        let resp = t.await.unwrap();
        match resp.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                let p = problem(resp, StatusCode::CONFLICT).await;
                assert_eq!(p["conflict"]["conflict"], "musician_already_booked");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 1);
    let m = json_of(s.get("/v1/musicians/m-1").await, StatusCode::OK).await;
    assert_eq!(m["booked"].as_array().unwrap().len(), 1);
    s.stop().await;
}
