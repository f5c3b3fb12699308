//! The OpenAPI document: it covers the route table and nothing more, it is well-formed OpenAPI
//! 3.1, its examples obey its schemas, and what the real server answers obeys them too.

use crate::common::*;
use mussikon_server::http::cluster::ADMIN_ROUTES;
use mussikon_server::http::openapi::{self, AHEAD_OF_ROUTER, BEARER};
use mussikon_server::http::router::ROUTES;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// Every `(method, path)` operation of the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                out.insert((method.clone(), path.clone()));
            }
        }
    }
    out
}

fn op<'d>(doc: &'d Value, method: &str, path: &str) -> &'d Value {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not documented");
    op
}

/// Follows a `$ref` within the document (once is enough: the document does not chain them).
fn resolve<'d>(doc: &'d Value, v: &'d Value) -> &'d Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.strip_prefix('#').unwrap())
            .unwrap_or_else(|| panic!("unresolved {r}")),
        None => v,
    }
}

/// JSON Schema validation of instances against schemas of the document, with
/// `#/components/schemas/…` references resolved against the document's components.
struct Schemas {
    components: Value,
}

impl Schemas {
    fn of(doc: &Value) -> Schemas {
        Schemas {
            components: json!({"schemas": doc["components"]["schemas"].clone()}),
        }
    }

    fn check(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let mut root: Map<String, Value> = match schema {
            Value::Object(m) => m.clone(),
            Value::Bool(true) => Map::new(),
            other => return Err(format!("not a schema object: {other}")),
        };
        root.insert("components".into(), self.components.clone());
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&Value::Object(root))
            .map_err(|e| format!("schema does not compile: {e}; schema: {schema}"))?;
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

#[test]
fn every_route_of_the_table_is_documented_and_nothing_else() {
    let doc = openapi::document();
    let documented = operations(&doc);
    let mut served = BTreeSet::new();
    for def in ROUTES {
        for m in def.methods {
            served.insert((m.as_str().to_ascii_lowercase(), def.template.to_string()));
        }
    }
    for (m, path) in ADMIN_ROUTES {
        served.insert((m.to_string(), path.to_string()));
    }
    let missing: Vec<_> = served.difference(&documented).collect();
    assert!(missing.is_empty(), "served but not documented: {missing:?}");
    let ahead: BTreeSet<(String, String)> = AHEAD_OF_ROUTER
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let extra: Vec<_> = documented
        .difference(&served)
        .filter(|o| !ahead.contains(*o))
        .collect();
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
    for o in &ahead {
        assert!(
            documented.contains(o),
            "{o:?} is listed as ahead of the router but not documented"
        );
    }
}

/// Every `$ref` in `v`, with where it was found.
fn refs(v: &Value, at: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(r) = x.as_str() {
                        out.push((at.clone(), r.to_string()));
                    }
                } else {
                    refs(x, format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                refs(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_is_openapi_3_1_with_resolvable_refs() {
    let doc = openapi::document();
    // It survives a round trip through text, as a client reads it.
    let text = serde_json::to_string(&doc).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let mut all = Vec::new();
    refs(&doc, String::new(), &mut all);
    assert!(all.len() > 50, "suspiciously few $refs: {}", all.len());
    for (at, r) in &all {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: {r} is not local"));
        assert!(doc.pointer(pointer).is_some(), "{at}: {r} does not resolve");
    }

    let mut ids = BTreeSet::new();
    for (method, path) in operations(&doc) {
        let o = op(&doc, &method, &path);
        let id = o["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
        assert!(o["summary"].is_string(), "{method} {path}: no summary");

        // Path parameters are exactly the template's placeholders.
        let placeholders: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_string)
            .collect();
        let params = o["parameters"].as_array().cloned().unwrap_or_default();
        let in_path: BTreeSet<String> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(
                    p["required"], true,
                    "{method} {path}: path parameters are required"
                );
                p["name"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(placeholders, in_path, "{method} {path}: path parameters");
        assert!(
            params
                .iter()
                .any(|p| p["in"] == "header" && p["name"] == "X-Request-Id"),
            "{method} {path}: X-Request-Id"
        );

        // /v1 is secured by the bearer scheme; the operations endpoints are open.
        if path.starts_with("/v1/") {
            assert_eq!(o["security"], json!([{ BEARER: [] }]), "{method} {path}");
        } else {
            assert!(o.get("security").is_none(), "{method} {path} must be open");
        }

        // Every response carries X-Request-Id; every error is a problem+json Problem.
        let responses = o["responses"].as_object().unwrap();
        assert!(responses.contains_key("500"), "{method} {path}: no 500");
        if path.starts_with("/v1/") {
            for s in ["401", "403", "429"] {
                assert!(responses.contains_key(s), "{method} {path}: no {s}");
            }
        }
        for (status, r) in responses {
            let r = resolve(&doc, r);
            assert!(r["description"].is_string(), "{method} {path} {status}");
            assert!(
                r["headers"]["X-Request-Id"].is_object(),
                "{method} {path} {status}: X-Request-Id"
            );
            let code: u16 = status.parse().unwrap();
            if code >= 400 && code != 503 {
                assert_eq!(
                    r["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
                // The example is of its own status, and of the generic kind only for a 500.
                let example = &r["content"]["application/problem+json"]["example"];
                assert_eq!(example["status"], json!(code), "{method} {path} {status}");
                assert_eq!(
                    example["type"] == "urn:mussikon:problem:internal",
                    code == 500,
                    "{method} {path} {status}: {example}"
                );
            }
        }
    }

    // Every error status has a reusable response; 405 names Allow, 429 Retry-After.
    let components = doc["components"]["responses"].as_object().unwrap();
    let statuses: BTreeSet<u64> = components
        .values()
        .map(|r| {
            r["content"]["application/problem+json"]["example"]["status"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let want: BTreeSet<u64> = [400, 401, 403, 404, 405, 409, 412, 413, 415, 422, 429, 500].into();
    assert_eq!(statuses, want);
    assert!(components["MethodNotAllowed"]["headers"]["Allow"].is_object());
    assert!(components["TooManyRequests"]["headers"]["Retry-After"].is_object());
    let scheme = &doc["components"]["securitySchemes"][BEARER];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");
}

/// Validates every example under `v`: schema `examples` arrays, and the `example`/`examples` of
/// media types and parameters against their `schema`.
fn examples(
    schemas: &Schemas,
    v: &Value,
    at: String,
    checked: &mut usize,
    failures: &mut Vec<String>,
) {
    match v {
        Value::Object(m) => {
            let mut check = |schema: &Value, instance: &Value, what: String| {
                *checked += 1;
                if let Err(e) = schemas.check(schema, instance) {
                    failures.push(format!("{what}: {e}"));
                }
            };
            if let Some(Value::Array(list)) = m.get("examples") {
                // An array of examples belongs to a schema object: `v` itself.
                for (i, x) in list.iter().enumerate() {
                    check(v, x, format!("{at}/examples/{i}"));
                }
            }
            if let Some(schema) = m.get("schema") {
                if let Some(x) = m.get("example") {
                    check(schema, x, format!("{at}/example"));
                }
                if let Some(Value::Object(named)) = m.get("examples") {
                    for (name, x) in named {
                        if let Some(x) = x.get("value") {
                            check(schema, x, format!("{at}/examples/{name}"));
                        }
                    }
                }
            }
            for (k, x) in m {
                examples(schemas, x, format!("{at}/{k}"), checked, failures);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                examples(schemas, x, format!("{at}/{i}"), checked, failures);
            }
        }
        _ => {}
    }
}

#[test]
fn every_example_validates_against_its_schema() {
    let doc = openapi::document();
    for name in ["Musician", "Gig", "Booking"] {
        assert!(
            doc["components"]["schemas"][name]["examples"][0].is_object(),
            "{name} has no example"
        );
    }
    let schemas = Schemas::of(&doc);
    let mut checked = 0;
    let mut failures = Vec::new();
    examples(&schemas, &doc, String::new(), &mut checked, &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 20, "only {checked} examples checked");
}

#[test]
fn the_schemas_refuse_what_the_server_refuses() {
    // A sanity check of the validation itself: the schemas are not vacuous.
    let doc = openapi::document();
    let schemas = Schemas::of(&doc);
    let musician = json!({"$ref": "#/components/schemas/Musician"});
    assert!(schemas.check(&musician, &musician_value("m-1")).is_ok());
    let mut unknown = musician_value("m-1");
    unknown["nickname"] = json!("x");
    assert!(
        schemas.check(&musician, &unknown).is_err(),
        "unknown fields are refused"
    );
    let mut missing = musician_value("m-1");
    missing.as_object_mut().unwrap().remove("fee");
    assert!(
        schemas.check(&musician, &missing).is_err(),
        "fee is required"
    );
    let query = json!({"$ref": "#/components/schemas/SearchQuery"});
    assert!(
        schemas.check(&query, &json!({})).is_ok(),
        "every search field is optional"
    );
    assert!(schemas.check(&query, &json!({"sort": "price"})).is_err());
    // Rules the server enforces that schemathesis found missing (docs/reliability.md).
    assert!(schemas.check(&query, &json!({"sort": "distance"})).is_err());
    let near = json!({"lat": 40.4, "lon": -3.7, "radius_km": 25});
    assert!(schemas
        .check(&query, &json!({"sort": "distance", "near": near}))
        .is_ok());
    assert!(schemas.check(&query, &json!({"cursor": ""})).is_err());
    assert!(schemas
        .check(&query, &json!({"cursor": "c1.3ff0000000000000.m-1"}))
        .is_ok());
    assert!(schemas
        .check(&query, &json!({"cursor": "c1.7ff0000000000000.m-1"}))
        .is_err());
    let weights = json!({"$ref": "#/components/schemas/Weights"});
    let w = |v: f64| json!({"proximity": v, "rating": 0, "genres": 0.0, "price": 0, "level": 0});
    assert!(schemas.check(&weights, &w(0.0)).is_err(), "all zero");
    assert!(schemas.check(&weights, &w(-1.0)).is_err(), "negative");
    assert!(schemas.check(&weights, &w(0.5)).is_ok());
    let booking = json!({"$ref": "#/components/schemas/BookingBody"});
    for (slot, ok) in [(0, true), (15, true), (16, false), (-1, false)] {
        let b = json!({"slot": slot, "musician_id": "m-1"});
        assert_eq!(schemas.check(&booking, &b).is_ok(), ok, "slot {slot}");
    }
    let ad_hoc = json!({"$ref": "#/components/schemas/AdHocBody"});
    let g = doc["components"]["schemas"]["Gig"]["examples"][0].clone();
    assert!(schemas.check(&ad_hoc, &json!({"gig": g, "k": 0})).is_err());
    let message = json!({"$ref": "#/components/schemas/MessageBody"});
    let m = json!({"author": "m-1", "text": "hi", "message_id": "x-1"});
    assert!(schemas.check(&message, &m).is_ok());
    assert!(schemas
        .check(&message, &json!({"author": "m-1", "text": "  "}))
        .is_err());
    assert!(schemas
        .check(
            &message,
            &json!({"author": "m-1", "text": "hi", "extra": 1})
        )
        .is_err());
}

#[test]
fn header_schemas_have_the_syntax_the_server_enforces() {
    let doc = openapi::document();
    let schemas = Schemas::of(&doc);
    let header = |method: &str, path: &str, name: &str| -> Value {
        op(&doc, method, path)["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["in"] == "header" && p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path}: no {name}"))["schema"]
            .clone()
    };
    let if_match = header("put", "/v1/musicians/{id}", "If-Match");
    for good in [
        "*",
        "\"7\"",
        "W/\"7\", \"abc\"",
        "\"1\",\"2\"",
        "",
        "\"1\",,\"2\"",
    ] {
        assert!(schemas.check(&if_match, &json!(good)).is_ok(), "{good}");
    }
    for bad in ["J", "null", "7", "*, \"1\"", "W/7"] {
        assert!(schemas.check(&if_match, &json!(bad)).is_err(), "{bad}");
    }
    for (method, path) in [
        ("post", "/v1/gigs/{id}/bookings"),
        ("post", "/v1/musicians/{id}/ratings"),
        ("post", "/v1/gigs/{id}/messages"),
    ] {
        let key = header(method, path, "Idempotency-Key");
        assert!(schemas.check(&key, &json!("k-1")).is_ok());
        for bad in ["", "a b", "tab\there", "é"] {
            assert!(schemas.check(&key, &json!(bad)).is_err(), "{path}: {bad:?}");
        }
    }
    // A request id never fails a request: any value is schema-valid (the server replaces it).
    let rid = header("get", "/health", "X-Request-Id");
    assert!(schemas.check(&rid, &json!("not safe {}")).is_ok());
}

fn musician_value(id: &str) -> Value {
    musician(id)
}

/// Checks a real response against the document: the status is documented for the operation,
/// the content type is one it lists, the body validates against its schema, and every header it
/// documents (except those sent only sometimes) is present. Returns the body.
async fn conforms(doc: &Value, method: &str, path: &str, resp: Response) -> Value {
    let status = resp.status().as_u16().to_string();
    let o = op(doc, method, path);
    let documented = o["responses"]
        .get(&status)
        .unwrap_or_else(|| panic!("{method} {path} answered {status}, which is not documented"));
    let r = resolve(doc, documented);
    let headers = resp.headers().clone();
    for (name, _) in r["headers"].as_object().into_iter().flatten() {
        if ["Idempotent-Replayed", "Retry-After"].contains(&name.as_str()) {
            continue;
        }
        assert!(
            headers.contains_key(name.as_str()),
            "{method} {path} {status}: no {name} header"
        );
    }
    let essence = headers.get("content-type").map(|v| {
        v.to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_string()
    });
    let text = resp.text().await.unwrap();
    let Some(essence) = essence else {
        assert!(
            r.get("content").is_none(),
            "{method} {path} {status}: no body sent"
        );
        return Value::Null;
    };
    let media = &r["content"][essence.as_str()];
    assert!(
        media.is_object(),
        "{method} {path} {status}: {essence} is not documented"
    );
    if !essence.ends_with("json") {
        return Value::String(text);
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    if let Err(e) = Schemas::of(doc).check(&media["schema"], &body) {
        panic!("{method} {path} {status}: the body does not match its schema: {e}\nbody: {body}");
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_the_document_and_its_answers_match_it() {
    let s = TestServer::start().await;
    let doc = openapi::document();

    let resp = s.get("/openapi.json").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let served = conforms(&doc, "get", "/openapi.json", resp).await;
    assert_eq!(served, doc);

    // Musicians: create, read, replace, list, rate; the named errors.
    let m = musician("m-1");
    let created = conforms(
        &doc,
        "put",
        "/v1/musicians/{id}",
        s.put("/v1/musicians/m-1", &m).await,
    )
    .await;
    assert_eq!(created["musician"]["id"], "m-1");
    let read = conforms(
        &doc,
        "get",
        "/v1/musicians/{id}",
        s.get("/v1/musicians/m-1").await,
    )
    .await;
    assert_eq!(read["version"], created["version"]);
    conforms(
        &doc,
        "put",
        "/v1/musicians/{id}",
        s.put("/v1/musicians/m-1", &m).await,
    )
    .await;
    conforms(
        &doc,
        "get",
        "/v1/musicians",
        s.get("/v1/musicians?limit=1").await,
    )
    .await;
    let rated = s
        .post("/v1/musicians/m-1/ratings", &json!({"stars": 5}))
        .await;
    assert_eq!(rated.status(), StatusCode::OK);
    let rated = conforms(&doc, "post", "/v1/musicians/{id}/ratings", rated).await;
    assert_eq!(rated["effect"], "rated");

    let mut bad = musician("m-2");
    bad["instruments"][0]["level"] = json!(9);
    let invalid = s.put("/v1/musicians/m-2", &bad).await;
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem = conforms(&doc, "put", "/v1/musicians/{id}", invalid).await;
    assert_eq!(problem["errors"][0]["field"], "instruments[0].level");
    let missing = s.get("/v1/musicians/nobody").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    conforms(&doc, "get", "/v1/musicians/{id}", missing).await;
    let stale = s
        .client
        .delete(s.url("/v1/musicians/m-1"))
        .header("if-match", "\"999999\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    conforms(&doc, "delete", "/v1/musicians/{id}", stale).await;
    let text = s
        .client
        .put(s.url("/v1/musicians/m-1"))
        .header("content-type", "text/plain")
        .body(m.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    conforms(&doc, "put", "/v1/musicians/{id}", text).await;
    let broken = s
        .client
        .post(s.url("/v1/match"))
        .header("content-type", "application/json")
        .body("{\"gig\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    let broken = conforms(&doc, "post", "/v1/match", broken).await;
    assert!(broken["line"].is_number());

    // Bulk.
    let ndjson = format!("{}\n{}\nnot json\n", musician("m-3"), musician("m-4"));
    let bulk = s
        .client
        .post(s.url("/v1/musicians/bulk"))
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    let report = conforms(&doc, "post", "/v1/musicians/bulk", bulk).await;
    assert_eq!(report["rejected"], 1);

    // Gigs, search, matching, bookings.
    s.refresh().await;
    let g = gig("g-1", "2026-12-05");
    conforms(
        &doc,
        "put",
        "/v1/gigs/{id}",
        s.put("/v1/gigs/g-1", &g).await,
    )
    .await;
    conforms(&doc, "get", "/v1/gigs/{id}", s.get("/v1/gigs/g-1").await).await;
    conforms(&doc, "get", "/v1/gigs", s.get("/v1/gigs").await).await;
    let hits = conforms(
        &doc,
        "get",
        "/v1/musicians/search",
        s.get("/v1/musicians/search?instrument=guitar&lat=40.4&lon=-3.7&radius_km=50&sort=distance&limit=2").await,
    )
    .await;
    assert!(!hits["hits"].as_array().unwrap().is_empty(), "{hits}");
    conforms(
        &doc,
        "post",
        "/v1/musicians/search",
        s.post("/v1/musicians/search", &json!({"text": "musician"}))
            .await,
    )
    .await;
    let matched = conforms(
        &doc,
        "get",
        "/v1/gigs/{id}/matches",
        s.get("/v1/gigs/g-1/matches?k=3&w_rating=1").await,
    )
    .await;
    assert!(
        !matched["slots"][0]["candidates"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{matched}"
    );
    conforms(
        &doc,
        "post",
        "/v1/match",
        s.post("/v1/match", &json!({"gig": g, "k": 2})).await,
    )
    .await;
    let booked = s
        .post(
            "/v1/gigs/g-1/bookings",
            &json!({"slot": 0, "musician_id": "m-1"}),
        )
        .await;
    assert_eq!(booked.status(), StatusCode::CREATED);
    conforms(&doc, "post", "/v1/gigs/{id}/bookings", booked).await;
    s.put("/v1/gigs/g-2", &gig("g-2", "2026-12-05")).await;
    let clash = s
        .post(
            "/v1/gigs/g-2/bookings",
            &json!({"slot": 0, "musician_id": "m-1"}),
        )
        .await;
    assert_eq!(clash.status(), StatusCode::CONFLICT);
    let clash = conforms(&doc, "post", "/v1/gigs/{id}/bookings", clash).await;
    assert_eq!(clash["conflict"]["conflict"], "musician_already_booked");
    conforms(
        &doc,
        "delete",
        "/v1/gigs/{id}/bookings/{musician_id}",
        s.delete("/v1/gigs/g-1/bookings/m-1").await,
    )
    .await;
    conforms(
        &doc,
        "delete",
        "/v1/gigs/{id}",
        s.delete("/v1/gigs/g-2").await,
    )
    .await;
    conforms(
        &doc,
        "delete",
        "/v1/musicians/{id}",
        s.delete("/v1/musicians/m-4").await,
    )
    .await;

    // Operations.
    conforms(&doc, "get", "/health", s.get("/health").await).await;
    conforms(&doc, "get", "/health/ready", s.get("/health/ready").await).await;
    s.stop().await;
}

/// The query parameter names a 422 for an unknown parameter says the route knows.
async fn known_parameters(s: &TestServer, path: &str) -> BTreeSet<String> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let resp = s
        .send(
            Method::GET,
            &format!("{path}{sep}zz_not_a_parameter=1"),
            None,
        )
        .await;
    let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    let rule = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["field"] == "zz_not_a_parameter")
        .and_then(|e| e["rule"].as_str())
        .unwrap_or_else(|| panic!("{p}"))
        .to_string();
    let list = rule
        .split_once("(known: ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{rule}"));
    list.split(", ").map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_query_parameters_are_the_ones_the_routes_read() {
    let s = TestServer::start().await;
    let doc = openapi::document();
    for (template, concrete) in [
        ("/v1/musicians", "/v1/musicians"),
        ("/v1/gigs", "/v1/gigs"),
        ("/v1/musicians/search", "/v1/musicians/search"),
        ("/v1/gigs/{id}/matches", "/v1/gigs/g-1/matches"),
    ] {
        let mut documented: BTreeSet<String> = op(&doc, "get", template)["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        // `consistency` is taken by the pipeline (cluster read barrier) before the route.
        assert!(
            documented.remove("consistency"),
            "{template} documents consistency"
        );
        assert_eq!(
            known_parameters(&s, concrete).await,
            documented,
            "{template}"
        );
    }
    s.stop().await;
}
