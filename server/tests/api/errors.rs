//! Bad input, route by route: each case gets its 4xx as a problem+json body, and changes nothing.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// One bad request and what it must get.
struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    /// Raw body; sent with `content_type`.
    body: Option<String>,
    content_type: Option<&'static str>,
    status: StatusCode,
    /// For 422: fields that must be named.
    fields: Vec<&'static str>,
}

fn case(name: &'static str, method: Method, path: &'static str, status: StatusCode) -> Case {
    Case {
        name,
        method,
        path,
        headers: Vec::new(),
        body: None,
        content_type: None,
        status,
        fields: Vec::new(),
    }
}

impl Case {
    fn json(mut self, body: Value) -> Case {
        self.body = Some(body.to_string());
        self.content_type = Some("application/json");
        self
    }
    fn raw(mut self, body: &str, content_type: Option<&'static str>) -> Case {
        self.body = Some(body.to_string());
        self.content_type = content_type;
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Case {
        self.headers.push((name, value));
        self
    }
    fn fields(mut self, fields: &[&'static str]) -> Case {
        self.fields = fields.to_vec();
        self
    }
}

fn with(mut v: Value, path: &[&str], value: Value) -> Value {
    let mut at = &mut v;
    for p in &path[..path.len() - 1] {
        at = match p.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[*p],
        };
    }
    at[path[path.len() - 1]] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

fn cases() -> Vec<Case> {
    use StatusCode as S;
    let m = musician("m-1");
    let g = gig("g-1", "2026-12-05");
    let big = format!(
        "{{\"id\":\"m-1\",\"bio\":\"{}\"}}",
        "x".repeat(1024 * 1024 + 10)
    );
    vec![
        // PUT /v1/musicians/{id}
        case(
            "malformed json",
            Method::PUT,
            "/v1/musicians/m-1",
            S::BAD_REQUEST,
        )
        .raw("{\"id\": \"m-1\",\n  \"name\": ", Some("application/json")),
        case(
            "trailing bytes",
            Method::PUT,
            "/v1/musicians/m-1",
            S::BAD_REQUEST,
        )
        .raw(&format!("{m} x"), Some("application/json")),
        case(
            "empty body",
            Method::PUT,
            "/v1/musicians/m-1",
            S::BAD_REQUEST,
        )
        .raw("", Some("application/json")),
        case(
            "no content type",
            Method::PUT,
            "/v1/musicians/m-1",
            S::UNSUPPORTED_MEDIA_TYPE,
        )
        .raw(&m.to_string(), None),
        case(
            "form content type",
            Method::PUT,
            "/v1/musicians/m-1",
            S::UNSUPPORTED_MEDIA_TYPE,
        )
        .raw(&m.to_string(), Some("application/x-www-form-urlencoded")),
        case(
            "path id differs",
            Method::PUT,
            "/v1/musicians/m-1",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(musician("m-2"))
        .fields(&["id"]),
        case(
            "invalid id",
            Method::PUT,
            "/v1/musicians/bad%20id",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(musician("bad id"))
        .fields(&["id"]),
        case(
            "every bad field",
            Method::PUT,
            "/v1/musicians/m-1",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(with(
            with(m.clone(), &["instruments", "0", "level"], json!(9)),
            &["location", "lat"],
            json!(200),
        ))
        .fields(&["instruments[0].level", "location.lat"]),
        case(
            "missing field",
            Method::PUT,
            "/v1/musicians/m-1",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(without(m.clone(), "name"))
        .fields(&["name"]),
        case(
            "unknown field",
            Method::PUT,
            "/v1/musicians/m-1",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(with(m.clone(), &["nickname"], json!("x")))
        .fields(&["nickname"]),
        case(
            "wrong type",
            Method::PUT,
            "/v1/musicians/m-1",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(with(m.clone(), &["fee", "amount"], json!("cheap")))
        .fields(&["fee.amount"]),
        case(
            "too large",
            Method::PUT,
            "/v1/musicians/m-1",
            S::PAYLOAD_TOO_LARGE,
        )
        .raw(&big, Some("application/json")),
        case(
            "stale if-match",
            Method::PUT,
            "/v1/musicians/m-1",
            S::PRECONDITION_FAILED,
        )
        .json(with(m.clone(), &["name"], json!("Changed")))
        .header("if-match", "\"999\""),
        // Not entity-tag syntax: refused, no longer read as a tag that never matches (412).
        case(
            "if-match not a tag",
            Method::PUT,
            "/v1/musicians/m-1",
            S::BAD_REQUEST,
        )
        .json(with(m.clone(), &["name"], json!("Changed")))
        .header("if-match", "J"),
        case(
            "if-match unquoted",
            Method::DELETE,
            "/v1/musicians/m-1",
            S::BAD_REQUEST,
        )
        .header("if-match", "7"),
        case(
            "if-match star and tag",
            Method::DELETE,
            "/v1/gigs/g-1",
            S::BAD_REQUEST,
        )
        .header("if-match", "*, \"1\""),
        case(
            "bad method",
            Method::PATCH,
            "/v1/musicians/m-1",
            S::METHOD_NOT_ALLOWED,
        ),
        // GET/DELETE /v1/musicians/{id}
        case(
            "missing musician",
            Method::GET,
            "/v1/musicians/nobody",
            S::NOT_FOUND,
        ),
        case(
            "delete missing",
            Method::DELETE,
            "/v1/musicians/nobody",
            S::NOT_FOUND,
        ),
        case(
            "delete invalid id",
            Method::DELETE,
            "/v1/musicians/bad%20id",
            S::NOT_FOUND,
        ),
        case(
            "delete stale",
            Method::DELETE,
            "/v1/musicians/m-1",
            S::PRECONDITION_FAILED,
        )
        .header("if-match", "\"999\""),
        // GET /v1/musicians
        case(
            "limit 0",
            Method::GET,
            "/v1/musicians?limit=0",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["limit"]),
        case(
            "limit text",
            Method::GET,
            "/v1/musicians?limit=ten",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["limit"]),
        case(
            "limit 1001",
            Method::GET,
            "/v1/gigs?limit=1001",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["limit"]),
        case(
            "unknown param",
            Method::GET,
            "/v1/musicians?limt=5",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["limt"]),
        case(
            "bad after",
            Method::GET,
            "/v1/musicians?after=a%20b",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["after"]),
        case(
            "post list",
            Method::POST,
            "/v1/musicians",
            S::METHOD_NOT_ALLOWED,
        )
        .json(m.clone()),
        // POST /v1/musicians/{id}/ratings
        case(
            "six stars",
            Method::POST,
            "/v1/musicians/m-1/ratings",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(json!({"stars": 6}))
        .fields(&["stars"]),
        case(
            "text stars",
            Method::POST,
            "/v1/musicians/m-1/ratings",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(json!({"stars": "five"}))
        .fields(&["stars"]),
        case(
            "rate nobody",
            Method::POST,
            "/v1/musicians/nobody/ratings",
            S::NOT_FOUND,
        )
        .json(json!({"stars": 4})),
        // PUT /v1/gigs/{id}
        case(
            "bad gig date",
            Method::PUT,
            "/v1/gigs/g-1",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(with(g.clone(), &["date"], json!("2026-02-30")))
        .fields(&["date"]),
        case(
            "no slots",
            Method::PUT,
            "/v1/gigs/g-1",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(with(g.clone(), &["slots"], json!([])))
        .fields(&["slots"]),
        case(
            "gig id differs",
            Method::PUT,
            "/v1/gigs/g-1",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(gig("g-2", "2026-12-05"))
        .fields(&["id"]),
        case(
            "stale gig",
            Method::PUT,
            "/v1/gigs/g-1",
            S::PRECONDITION_FAILED,
        )
        .json(g.clone())
        .header("if-match", "\"999\""),
        case("missing gig", Method::GET, "/v1/gigs/nothing", S::NOT_FOUND),
        case(
            "delete missing gig",
            Method::DELETE,
            "/v1/gigs/nothing",
            S::NOT_FOUND,
        ),
        // GET /v1/gigs/{id}/matches
        case(
            "k 0",
            Method::GET,
            "/v1/gigs/g-1/matches?k=0",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["k"]),
        case(
            "k text",
            Method::GET,
            "/v1/gigs/g-1/matches?k=many",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["k"]),
        case(
            "negative weight",
            Method::GET,
            "/v1/gigs/g-1/matches?w_rating=-1",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["weights"]),
        case(
            "match nothing",
            Method::GET,
            "/v1/gigs/nothing/matches",
            S::NOT_FOUND,
        ),
        // POST /v1/match
        case(
            "ad-hoc bad gig",
            Method::POST,
            "/v1/match",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(json!({"gig": with(g.clone(), &["radius_km"], json!(0))}))
        .fields(&["gig.radius_km"]),
        case(
            "ad-hoc k",
            Method::POST,
            "/v1/match",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(json!({"gig": g.clone(), "k": 1000}))
        .fields(&["k"]),
        case(
            "ad-hoc no gig",
            Method::POST,
            "/v1/match",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(json!({"k": 3}))
        .fields(&["gig"]),
        // POST /v1/gigs/{id}/bookings
        case(
            "book malformed",
            Method::POST,
            "/v1/gigs/g-1/bookings",
            S::BAD_REQUEST,
        )
        .raw("{\"slot\": 0,", Some("application/json")),
        case(
            "book nobody",
            Method::POST,
            "/v1/gigs/g-1/bookings",
            S::NOT_FOUND,
        )
        .json(json!({"slot": 0, "musician_id": "nobody"})),
        case(
            "book no gig",
            Method::POST,
            "/v1/gigs/nothing/bookings",
            S::NOT_FOUND,
        )
        .json(json!({"slot": 0, "musician_id": "m-1"})),
        case(
            "book bad slot",
            Method::POST,
            "/v1/gigs/g-1/bookings",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(json!({"slot": -1, "musician_id": "m-1"}))
        .fields(&["slot"]),
        case(
            "book missing slot",
            Method::POST,
            "/v1/gigs/g-1/bookings",
            S::CONFLICT,
        )
        .json(json!({"slot": 5, "musician_id": "m-1"})),
        case(
            "book drummer",
            Method::POST,
            "/v1/gigs/g-1/bookings",
            S::CONFLICT,
        )
        .json(json!({"slot": 0, "musician_id": "m-drums"})),
        case(
            "empty key",
            Method::POST,
            "/v1/gigs/g-1/bookings",
            S::BAD_REQUEST,
        )
        .json(json!({"slot": 0, "musician_id": "m-1"}))
        .header("idempotency-key", ""),
        case(
            "cancel nothing",
            Method::DELETE,
            "/v1/gigs/g-1/bookings/m-1",
            S::NOT_FOUND,
        ),
        // GET|POST /v1/musicians/search
        case(
            "near incomplete",
            Method::GET,
            "/v1/musicians/search?lat=40",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["lon", "radius_km"]),
        case(
            "distance without near",
            Method::GET,
            "/v1/musicians/search?sort=distance",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["sort"]),
        case(
            "level 9",
            Method::GET,
            "/v1/musicians/search?instrument=guitar&min_level=9",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["min_level"]),
        // Refused even without `instrument`, where the level would otherwise go unused.
        case(
            "level 0 alone",
            Method::GET,
            "/v1/musicians/search?min_level=0",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["min_level"]),
        case(
            "bad lat",
            Method::GET,
            "/v1/musicians/search?lat=95&lon=0&radius_km=5",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["lat"]),
        // Message numbers are int64: 2^63 is out of range, not read as a u64.
        case(
            "messages after 2^63",
            Method::GET,
            "/v1/gigs/g-1/messages?after=9223372036854775808",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["after"]),
        case(
            "messages after -1",
            Method::GET,
            "/v1/gigs/g-1/messages?after=-1",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["after"]),
        case(
            "bad cursor",
            Method::GET,
            "/v1/musicians/search?cursor=zzz",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["cursor"]),
        case(
            "bad sort",
            Method::GET,
            "/v1/musicians/search?sort=random",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["sort"]),
        case(
            "fee without currency",
            Method::GET,
            "/v1/musicians/search?max_fee=100",
            S::UNPROCESSABLE_ENTITY,
        )
        .fields(&["currency"]),
        case(
            "post search limit",
            Method::POST,
            "/v1/musicians/search",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(json!({"limit": 0}))
        .fields(&["limit"]),
        case(
            "post search unknown",
            Method::POST,
            "/v1/musicians/search",
            S::UNPROCESSABLE_ENTITY,
        )
        .json(json!({"instrument": "guitar"}))
        .fields(&["instrument"]),
        case(
            "put search",
            Method::PUT,
            "/v1/musicians/search",
            S::METHOD_NOT_ALLOWED,
        )
        .json(musician("search")),
        // POST /v1/musicians/bulk
        case(
            "bulk as json",
            Method::POST,
            "/v1/musicians/bulk",
            S::UNSUPPORTED_MEDIA_TYPE,
        )
        .json(m.clone()),
        // Unknown routes and operations endpoints.
        case("no route", Method::GET, "/v2/musicians", S::NOT_FOUND),
        case(
            "trailing slash",
            Method::GET,
            "/v1/musicians/",
            S::NOT_FOUND,
        ),
        // The cluster's admin routes are served beside the router's table; a method they do
        // not serve gets 405 like any other route (it fell through to a 404).
        case(
            "trace cluster status",
            Method::TRACE,
            "/v1/cluster/status",
            S::METHOD_NOT_ALLOWED,
        ),
        case(
            "patch cluster member",
            Method::PATCH,
            "/v1/cluster/members/2",
            S::METHOD_NOT_ALLOWED,
        ),
        case(
            "get cluster leader",
            Method::GET,
            "/v1/cluster/leader",
            S::METHOD_NOT_ALLOWED,
        ),
        case(
            "delete cluster step-down",
            Method::DELETE,
            "/v1/cluster/step-down",
            S::METHOD_NOT_ALLOWED,
        ),
        case(
            "post health",
            Method::POST,
            "/health",
            S::METHOD_NOT_ALLOWED,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_problem_and_changes_nothing() {
    let s = TestServer::start().await;
    assert_eq!(
        s.put("/v1/musicians/m-1", &musician("m-1")).await.status(),
        StatusCode::CREATED
    );
    let mut drummer = musician("m-drums");
    drummer["instruments"] = json!([{"name": "drums", "level": 5}]);
    assert_eq!(
        s.put("/v1/musicians/m-drums", &drummer).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        s.put("/v1/gigs/g-1", &gig("g-1", "2026-12-05"))
            .await
            .status(),
        StatusCode::CREATED
    );
    let before = state(&s).await;
    for c in cases() {
        let mut req = s.client.request(c.method.clone(), s.url(c.path));
        for (k, v) in &c.headers {
            req = req.header(*k, *v);
        }
        if let Some(ct) = c.content_type {
            req = req.header("content-type", ct);
        }
        if let Some(b) = &c.body {
            req = req.body(b.clone());
        }
        let resp = req.send().await.unwrap();
        let allow = resp
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string());
        let status = resp.status();
        assert_eq!(status, c.status, "case {:?}", c.name);
        let p = problem(resp, c.status).await;
        let named = fields(&p);
        for f in &c.fields {
            assert!(
                named.iter().any(|n| n == f),
                "case {:?}: field {f} not named in {p}",
                c.name
            );
        }
        match c.status {
            StatusCode::METHOD_NOT_ALLOWED => assert!(allow.is_some(), "case {:?}", c.name),
            StatusCode::BAD_REQUEST if c.name.contains("malformed") => {
                assert!(p["line"].as_u64().unwrap() >= 1, "case {:?}: {p}", c.name);
                assert!(p["column"].is_u64(), "case {:?}: {p}", c.name);
            }
            _ => {}
        }
        assert_eq!(
            state(&s).await,
            before,
            "case {:?} changed the state",
            c.name
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_not_allowed_lists_the_allowed_ones() {
    let s = TestServer::start().await;
    let resp = s.send(Method::PATCH, "/v1/gigs/g-1", None).await;
    assert_eq!(resp.headers()["allow"], "PUT, GET, HEAD, DELETE");
    problem(resp, StatusCode::METHOD_NOT_ALLOWED).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_reports_line_and_column() {
    let s = TestServer::start().await;
    let resp = s
        .client
        .put(s.url("/v1/musicians/m-1"))
        .header("content-type", "application/json")
        .body("{\n  \"id\": \"m-1\",\n  \"name\" \"x\"\n}")
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(p["line"], 3);
    assert_eq!(p["column"], 10);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_gets_413() {
    let s = TestServer::start_with(mussikon_server::config::HttpConfig {
        max_body_bytes: 1000,
        ..mussikon_server::config::HttpConfig::default()
    })
    .await;
    // No Content-Length: the limit is enforced while reading.
    let chunks: Vec<Result<String, std::io::Error>> =
        (0..20).map(|_| Ok("x".repeat(100))).collect();
    let resp = s
        .client
        .put(s.url("/v1/musicians/m-1"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(p["limit_bytes"], 1000);
    problem(s.get("/v1/musicians/m-1").await, StatusCode::NOT_FOUND).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_floats_are_integers_and_a_key_twice_is_refused() {
    let s = TestServer::start().await;
    // JSON Schema's `integer` (the document's) admits `4.0`; the server reads it as 4.
    let mut m = musician("m-1");
    m["instruments"] = json!([{"name": "guitar", "level": 4.0}]);
    let view = json_of(s.put("/v1/musicians/m-1", &m).await, StatusCode::CREATED).await;
    assert_eq!(view["musician"]["instruments"][0]["level"], json!(4));
    m["instruments"] = json!([{"name": "guitar", "level": 4.5}]);
    let p = problem(
        s.put("/v1/musicians/m-1", &m).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(fields(&p).iter().any(|f| f.contains("level")), "{p}");
    // A key given twice is refused, not resolved to one of its values.
    let resp = s
        .client
        .post(s.url("/v1/musicians/m-1/ratings"))
        .header("content-type", "application/json")
        .body(r#"{"stars": 1, "stars": 5}"#)
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        p["detail"].as_str().unwrap().contains("duplicate field"),
        "{p}"
    );
    s.stop().await;
}
