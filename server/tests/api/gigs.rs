//! Gigs: create, replace, read, list, delete, If-Match; matching stored and ad-hoc gigs.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_list_delete() {
    let s = TestServer::start().await;
    let resp = s.put("/v1/gigs/g-1", &gig("g-1", "2026-12-05")).await;
    assert_eq!(resp.headers()["location"], "/v1/gigs/g-1");
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    let created = json_of(resp, StatusCode::CREATED).await;
    assert_eq!(created["gig"]["id"], "g-1");
    assert_eq!(created["bookings"], json!([]));

    let resp = s.get("/v1/gigs/g-1").await;
    assert_eq!(resp.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(json_of(resp, StatusCode::OK).await, created);

    let mut changed = gig("g-1", "2026-12-05");
    changed["title"] = json!("Renamed");
    let resp = s
        .client
        .put(s.url("/v1/gigs/g-1"))
        .header("if-match", "\"999999\"")
        .json(&changed)
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::PRECONDITION_FAILED).await;
    let resp = s
        .client
        .put(s.url("/v1/gigs/g-1"))
        .header("if-match", &etag)
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(resp, StatusCode::OK).await["gig"]["title"],
        "Renamed"
    );

    s.put("/v1/gigs/g-2", &gig("g-2", "2026-12-06")).await;
    let page = json_of(s.get("/v1/gigs?limit=1").await, StatusCode::OK).await;
    assert_eq!(page["items"][0]["gig"]["id"], "g-1");
    assert_eq!(page["next"], "g-1");
    let page = json_of(s.get("/v1/gigs?after=g-1").await, StatusCode::OK).await;
    assert_eq!(page["items"][0]["gig"]["id"], "g-2");
    assert_eq!(page["next"], json!(null));

    assert_eq!(
        s.delete("/v1/gigs/g-1").await.status(),
        StatusCode::NO_CONTENT
    );
    problem(s.get("/v1/gigs/g-1").await, StatusCode::NOT_FOUND).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_rank_candidates_and_assign_seats() {
    let s = TestServer::start().await;
    for i in 0..4 {
        let id = format!("m-{i}");
        let mut m = musician(&id);
        m["fee"]["amount"] = json!(10000 + i * 1000);
        s.put(&format!("/v1/musicians/{id}"), &m).await;
    }
    s.put("/v1/gigs/g-1", &gig("g-1", "2026-12-05")).await;
    s.refresh().await;
    let r = json_of(s.get("/v1/gigs/g-1/matches?k=3").await, StatusCode::OK).await;
    assert_eq!(r["gig_id"], "g-1");
    assert_eq!(r["slots"][0]["candidates"].as_array().unwrap().len(), 3);
    assert_eq!(r["slots"][0]["eligible"], 4);
    assert_eq!(r["assignment"]["seats"].as_array().unwrap().len(), 2);
    assert_eq!(r["assignment"]["unfilled"], 0);

    // Weights left out keep their defaults; price alone ranks the cheapest first.
    let r = json_of(
        s.get("/v1/gigs/g-1/matches?k=1&w_proximity=0&w_rating=0&w_genres=0&w_level=0&w_price=1")
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(r["slots"][0]["candidates"][0]["musician_id"], "m-0");

    // An ad-hoc gig is matched without being stored.
    let r = json_of(
        s.post(
            "/v1/match",
            &json!({"gig": gig("adhoc-1", "2026-12-07"), "k": 2}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(r["gig_id"], "adhoc-1");
    assert_eq!(r["slots"][0]["candidates"].as_array().unwrap().len(), 2);
    problem(s.get("/v1/gigs/adhoc-1").await, StatusCode::NOT_FOUND).await;
    s.stop().await;
}
