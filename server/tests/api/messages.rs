//! Gig chat messages: post and list, pagination, idempotency, and bad input that changes nothing.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn thread(s: &TestServer, gig: &str) -> Value {
    json_of(
        s.get(&format!("/v1/gigs/{gig}/messages?limit=1000")).await,
        StatusCode::OK,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_and_list_in_order_with_pages() {
    let s = TestServer::start().await;
    s.put("/v1/gigs/g-1", &gig("g-1", "2026-12-05")).await;
    let mut versions = Vec::new();
    for i in 1..=5 {
        let m = json_of(
            s.post(
                "/v1/gigs/g-1/messages",
                &json!({"author": "m-1", "text": format!("  line {i}\n")}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(m["gig_id"], "g-1");
        assert_eq!(m["seq"], i);
        assert_eq!(m["author"], "m-1");
        assert_eq!(m["text"], format!("line {i}"));
        let at = m["at"].as_str().unwrap();
        assert!(at.ends_with('Z') && at.len() == 24, "{at}");
        assert!(m["at_ms"].as_i64().unwrap() > 0);
        assert!(m.get("message_id").is_none());
        versions.push(m["version"].as_u64().unwrap());
    }
    assert!(versions.windows(2).all(|w| w[0] < w[1]));

    let page = json_of(s.get("/v1/gigs/g-1/messages?limit=2").await, StatusCode::OK).await;
    let seqs = |p: &Value| -> Vec<u64> {
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&page), [1, 2]);
    assert_eq!(page["next"], 2);
    let page = json_of(
        s.get("/v1/gigs/g-1/messages?after=2&limit=2").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(seqs(&page), [3, 4]);
    assert_eq!(page["next"], 4);
    let page = json_of(s.get("/v1/gigs/g-1/messages?after=4").await, StatusCode::OK).await;
    assert_eq!(seqs(&page), [5]);
    assert_eq!(page["next"], json!(null));

    // A client message id is echoed, and a second use of it in the gig is a 409.
    let body = json!({"author": "m-2", "text": "mine", "message_id": "c-1"});
    let m = json_of(
        s.post("/v1/gigs/g-1/messages", &body).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(m["message_id"], "c-1");
    let p = problem(
        s.post("/v1/gigs/g-1/messages", &body).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(p["conflict"]["conflict"], "message_id_taken");

    // Deleting the gig deletes the thread.
    s.delete("/v1/gigs/g-1").await;
    problem(s.get("/v1/gigs/g-1/messages").await, StatusCode::NOT_FOUND).await;
    s.put("/v1/gigs/g-1", &gig("g-1", "2026-12-05")).await;
    assert_eq!(thread(&s, "g-1").await["items"], json!([]));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_post_with_the_same_idempotency_key_posts_once() {
    let s = TestServer::start().await;
    s.put("/v1/gigs/g-1", &gig("g-1", "2026-12-05")).await;
    let body = json!({"author": "m-1", "text": "only once"});
    let mut answers = Vec::new();
    for _ in 0..2 {
        let resp = s
            .client
            .post(s.url("/v1/gigs/g-1/messages"))
            .header("idempotency-key", "post-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        answers.push(json_of(resp, StatusCode::CREATED).await);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(
        thread(&s, "g-1").await["items"].as_array().unwrap().len(),
        1
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_their_4xx_and_change_nothing() {
    let s = TestServer::start().await;
    s.put("/v1/gigs/g-1", &gig("g-1", "2026-12-05")).await;
    s.post(
        "/v1/gigs/g-1/messages",
        &json!({"author": "m-1", "text": "first"}),
    )
    .await;
    let before = (thread(&s, "g-1").await, state(&s).await);

    struct Case {
        name: &'static str,
        path: &'static str,
        body: String,
        status: StatusCode,
        fields: &'static [&'static str],
    }
    let case = |name, path, body: Value, status, fields| Case {
        name,
        path,
        body: body.to_string(),
        status,
        fields,
    };
    let ok = "/v1/gigs/g-1/messages";
    let cases = vec![
        case(
            "empty text",
            ok,
            json!({"author": "m-1", "text": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
            &["text"],
        ),
        case(
            "blank text",
            ok,
            json!({"author": "m-1", "text": "   \n "}),
            StatusCode::UNPROCESSABLE_ENTITY,
            &["text"],
        ),
        case(
            "text too long",
            ok,
            json!({"author": "m-1", "text": "x".repeat(2001)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            &["text"],
        ),
        case(
            "unknown field",
            ok,
            json!({"author": "m-1", "text": "hi", "colour": "red"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            &["colour"],
        ),
        case(
            "missing text",
            ok,
            json!({"author": "m-1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            &["text"],
        ),
        case(
            "author not an id",
            ok,
            json!({"author": "Ana Pérez", "text": "hi"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            &["author"],
        ),
        case(
            "bad message id",
            ok,
            json!({"author": "m-1", "text": "hi", "message_id": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
            &["message_id"],
        ),
        case(
            "missing gig",
            "/v1/gigs/g-404/messages",
            json!({"author": "m-1", "text": "hi"}),
            StatusCode::NOT_FOUND,
            &[],
        ),
        case(
            "gig id not an id",
            "/v1/gigs/g%20x/messages",
            json!({"author": "m-1", "text": "hi"}),
            StatusCode::NOT_FOUND,
            &[],
        ),
        Case {
            name: "malformed JSON",
            path: ok,
            body: "{\"author\":".into(),
            status: StatusCode::BAD_REQUEST,
            fields: &[],
        },
    ];
    for c in cases {
        let resp = s
            .client
            .post(s.url(c.path))
            .header("content-type", "application/json")
            .body(c.body)
            .send()
            .await
            .unwrap();
        let p = problem(resp, c.status).await;
        assert_eq!(fields(&p), c.fields, "{}: {p}", c.name);
    }
    for (query, field) in [
        ("after=-1", "after"),
        ("after=x", "after"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limt=5", "limt"),
    ] {
        let p = problem(
            s.get(&format!("/v1/gigs/g-1/messages?{query}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(fields(&p), [field], "{query}");
    }
    let resp = s.send(reqwest::Method::PUT, ok, Some(&json!({}))).await;
    assert_eq!(resp.headers()["allow"], "GET, HEAD, POST");
    problem(resp, StatusCode::METHOD_NOT_ALLOWED).await;

    let after = (thread(&s, "g-1").await, state(&s).await);
    assert_eq!(before, after, "rejected requests changed nothing");
    s.stop().await;
}
