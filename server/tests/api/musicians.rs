//! Musicians: create, replace, read, list, rate, delete; ETag and If-Match.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_replace_delete() {
    let s = TestServer::start().await;
    let resp = s.put("/v1/musicians/m-1", &musician("m-1")).await;
    assert_eq!(resp.headers()["location"], "/v1/musicians/m-1");
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    let created = json_of(resp, StatusCode::CREATED).await;
    assert_eq!(created["musician"]["id"], "m-1");
    assert_eq!(etag, format!("\"{}\"", created["version"]));

    let resp = s.get("/v1/musicians/m-1").await;
    assert_eq!(resp.headers()["etag"].to_str().unwrap(), etag);
    let read = json_of(resp, StatusCode::OK).await;
    assert_eq!(read, created);

    let mut changed = musician("m-1");
    changed["name"] = json!("Ana Replaced");
    let replaced = json_of(s.put("/v1/musicians/m-1", &changed).await, StatusCode::OK).await;
    assert_eq!(replaced["musician"]["name"], "Ana Replaced");
    assert!(replaced["version"].as_u64() > created["version"].as_u64());

    assert_eq!(
        s.delete("/v1/musicians/m-1").await.status(),
        StatusCode::NO_CONTENT
    );
    problem(s.get("/v1/musicians/m-1").await, StatusCode::NOT_FOUND).await;
    problem(s.delete("/v1/musicians/m-1").await, StatusCode::NOT_FOUND).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_with_a_cursor() {
    let s = TestServer::start().await;
    for i in 0..5 {
        let id = format!("m-{i}");
        assert_eq!(
            s.put(&format!("/v1/musicians/{id}"), &musician(&id))
                .await
                .status(),
            StatusCode::CREATED
        );
    }
    let page = json_of(s.get("/v1/musicians?limit=2").await, StatusCode::OK).await;
    let ids: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["musician"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["m-0", "m-1"]);
    assert_eq!(page["next"], "m-1");
    let page = json_of(
        s.get("/v1/musicians?after=m-3&limit=2").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["next"], json!(null));
    let all = json_of(s.get("/v1/musicians").await, StatusCode::OK).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratings_fold_into_the_average() {
    let s = TestServer::start().await;
    s.put("/v1/musicians/m-1", &musician("m-1")).await;
    let r = json_of(
        s.post("/v1/musicians/m-1/ratings", &json!({"stars": 5}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(r["effect"], "rated");
    assert_eq!(r["count"], 1);
    let r = json_of(
        s.post("/v1/musicians/m-1/ratings", &json!({"stars": 3}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(r["average"], 4.0);
    let m = json_of(s.get("/v1/musicians/m-1").await, StatusCode::OK).await;
    assert_eq!(m["musician"]["rating"], json!({"average": 4.0, "count": 2}));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_guards_put_and_delete() {
    let s = TestServer::start().await;
    let resp = s.put("/v1/musicians/m-1", &musician("m-1")).await;
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    // A replace with the current ETag succeeds and moves the ETag on.
    let resp = s
        .client
        .put(s.url("/v1/musicians/m-1"))
        .header("if-match", &etag)
        .json(&musician("m-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let new_etag = resp.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(new_etag, etag);
    // The stale ETag is refused, and nothing changes.
    let mut changed = musician("m-1");
    changed["name"] = json!("Lost Update");
    let resp = s
        .client
        .put(s.url("/v1/musicians/m-1"))
        .header("if-match", &etag)
        .json(&changed)
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(p["current_etag"], json!(new_etag));
    let resp = s
        .client
        .delete(s.url("/v1/musicians/m-1"))
        .header("if-match", &etag)
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::PRECONDITION_FAILED).await;
    let now = s.get("/v1/musicians/m-1").await;
    assert_eq!(now.headers()["etag"].to_str().unwrap(), new_etag);
    let now = json_of(now, StatusCode::OK).await;
    assert_eq!(now["musician"]["name"], "Musician m-1");
    // If-Match: * needs the record to exist.
    let resp = s
        .client
        .put(s.url("/v1/musicians/m-2"))
        .header("if-match", "*")
        .json(&musician("m-2"))
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::PRECONDITION_FAILED).await;
    problem(s.get("/v1/musicians/m-2").await, StatusCode::NOT_FOUND).await;
    // The current ETag deletes.
    let resp = s
        .client
        .delete(s.url("/v1/musicians/m-1"))
        .header("if-match", &new_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_puts_with_one_etag_update_once() {
    // Every request carries the same ETag; the engine checks it in the same apply as the
    // write, so exactly one replaces the record and the others get 412 — a check read before
    // the write would let several through.
    let s = TestServer::start().await;
    let resp = s.put("/v1/musicians/m-1", &musician("m-1")).await;
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let mut body = musician("m-1");
        body["name"] = json!(format!("Writer {i}"));
        let req = s
            .client
            .put(s.url("/v1/musicians/m-1"))
            .header("if-match", &etag)
            .json(&body);
        tasks.push(tokio::spawn(
            async move { req.send().await.unwrap().status() },
        ));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::PRECONDITION_FAILED => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_like_get_without_a_body() {
    let s = TestServer::start().await;
    s.put("/v1/musicians/m-1", &musician("m-1")).await;
    let resp = s.send(Method::HEAD, "/v1/musicians/m-1", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().contains_key("etag"));
    assert!(resp.text().await.unwrap().is_empty());
    s.stop().await;
}
