//! JSON nesting depth: bodies nesting arrays/objects deeper than `http.max_json_depth` get 400
//! naming the rule, before any parsing; brackets inside strings do not count.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!([v]);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_deep_bodies_are_400_naming_the_rule() {
    let s = TestServer::start().await;
    // 64 levels in all (the object is one): the parser sees it and names the unknown field.
    let mut m = musician("m-1");
    m["extra"] = nested(63);
    let p = problem(
        s.put("/v1/musicians/m-1", &m).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(fields(&p), ["extra"]);

    m["extra"] = nested(64);
    let p = problem(
        s.put("/v1/musicians/m-1", &m).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(p["type"], "urn:mussikon:problem:json-too-deep");
    assert_eq!(p["max_depth"], 64);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("http.max_json_depth"),
        "{p}"
    );

    // Brackets in strings are text.
    let mut m = musician("m-2");
    m["bio"] = json!("[".repeat(500));
    assert_eq!(
        s.put("/v1/musicians/m-2", &m).await.status(),
        StatusCode::CREATED
    );

    // Every JSON route is covered, NDJSON line by line.
    let p = problem(
        s.post("/v1/match", &json!({"gig": nested(100)})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(p["max_depth"], 64);
    let line = format!("{}\n", json!({"id": "m-3", "x": nested(80)}));
    let r = s
        .client
        .post(s.url("/v1/musicians/bulk"))
        .header("content-type", "application/x-ndjson")
        .body(line)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST).await;
    s.stop().await;
}
