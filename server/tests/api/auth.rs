//! Authentication and authorization: 401 versus 403 per role and route class, expired and
//! badly signed tokens, organizer ownership of gigs, musicians changing only themselves,
//! public reads, and RS256.

use crate::common::*;
use mussikon_server::config::{AuthConfig, AuthKey, HttpConfig};
use mussikon_server::http::auth::{Claims, Role};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Seeds musician m-1 and gig g-org (owned by org-1) with admin/organizer tokens.
async fn seeded(config: HttpConfig) -> TestServer {
    let s = TestServer::start_with(config).await;
    let admin = token("root", Role::Admin);
    let org = token("org-1", Role::Organizer);
    let r = s
        .send_as(
            Some(&admin),
            Method::PUT,
            "/v1/musicians/m-1",
            Some(&musician("m-1")),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .send_as(
            Some(&org),
            Method::PUT,
            "/v1/gigs/g-org",
            Some(&gig("g-org", "2026-12-05")),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    s.refresh().await;
    s
}

/// Checks a 401: problem body, `WWW-Authenticate: Bearer`, and the reason in `detail`.
async fn unauthorized(resp: reqwest::Response, token_given: bool) -> Value {
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .expect("a 401 carries WWW-Authenticate")
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert_eq!(
        challenge.contains("invalid_token"),
        token_given,
        "{challenge}"
    );
    let body = problem(resp, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body["type"], "urn:mussikon:problem:unauthorized");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_by_role_and_route_class() {
    let s = seeded(auth_config()).await;
    let admin = token("root", Role::Admin);
    let org = token("org-1", Role::Organizer);
    let me = token("m-1", Role::Musician);
    let other = token("m-2", Role::Musician);
    let rating = json!({"stars": 5});
    let adhoc = json!({"gig": gig("g-x", "2026-12-07")});
    let m1 = musician("m-1");
    let g_org = gig("g-org", "2026-12-05");
    let ndjson_ok = StatusCode::UNSUPPORTED_MEDIA_TYPE; // authorized: reaches the body check
    let u = StatusCode::UNAUTHORIZED;
    let f = StatusCode::FORBIDDEN;
    let ok = StatusCode::OK;
    // (method, path, body, [none, admin, organizer, musician m-1, musician m-2])
    type Row<'a> = (Method, &'a str, Option<&'a Value>, [StatusCode; 5]);
    let rows: Vec<Row> = vec![
        (Method::GET, "/health", None, [ok, ok, ok, ok, ok]),
        (Method::GET, "/metrics", None, [ok, ok, ok, ok, ok]),
        (Method::GET, "/v1/musicians", None, [u, ok, ok, ok, ok]),
        (Method::GET, "/v1/musicians/m-1", None, [u, ok, ok, ok, ok]),
        (
            Method::GET,
            "/v1/musicians/search?instrument=guitar",
            None,
            [u, ok, ok, ok, ok],
        ),
        (Method::GET, "/v1/gigs", None, [u, ok, ok, ok, ok]),
        (Method::GET, "/v1/gigs/g-org", None, [u, ok, ok, ok, ok]),
        (
            Method::PUT,
            "/v1/musicians/m-1",
            Some(&m1),
            [u, ok, f, ok, f],
        ),
        (
            Method::POST,
            "/v1/musicians/m-1/ratings",
            Some(&rating),
            [u, ok, ok, f, f],
        ),
        (
            Method::POST,
            "/v1/musicians/bulk",
            Some(&rating),
            [u, ndjson_ok, f, f, f],
        ),
        (
            Method::GET,
            "/v1/gigs/g-org/matches",
            None,
            [u, ok, ok, f, f],
        ),
        (Method::POST, "/v1/match", Some(&adhoc), [u, ok, ok, f, f]),
        (
            Method::PUT,
            "/v1/gigs/g-org",
            Some(&g_org),
            [u, ok, ok, f, f],
        ),
        (
            Method::DELETE,
            "/v1/gigs/g-org/bookings/m-1",
            None,
            [u, StatusCode::NOT_FOUND, StatusCode::NOT_FOUND, f, f],
        ),
    ];
    let callers = [None, Some(&admin), Some(&org), Some(&me), Some(&other)];
    for (method, path, body, want) in rows {
        for (caller, want) in callers.iter().zip(want) {
            let resp = s
                .send_as(caller.map(|t| t.as_str()), method.clone(), path, body)
                .await;
            let got = resp.status();
            let text = resp.text().await.unwrap();
            assert_eq!(
                got,
                want,
                "{method} {path} as {:?}: {text}",
                caller.map(|_| "token")
            );
            if got == u {
                assert!(text.contains("bearer token"), "{text}");
            }
            if got == f {
                assert!(text.contains("urn:mussikon:problem:forbidden"), "{text}");
            }
        }
    }
    // A musician cannot rate themselves through their profile: the stored rating stays.
    let mut boasted = musician("m-1");
    boasted["rating"] = json!({"average": 5.0, "count": 1000});
    let r = s
        .send_as(Some(&me), Method::PUT, "/v1/musicians/m-1", Some(&boasted))
        .await;
    let stored = json_of(r, ok).await;
    // Two ratings were given above (admin, organizer).
    assert_eq!(stored["musician"]["rating"]["count"], 2, "{stored}");

    // The musician deleting someone else: 403; themselves: 204.
    let r = s
        .send_as(Some(&other), Method::DELETE, "/v1/musicians/m-1", None)
        .await;
    problem(r, f).await;
    let r = s
        .send_as(Some(&me), Method::DELETE, "/v1/musicians/m-1", None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_expired_wrong_and_malformed_tokens_are_401() {
    let s = seeded(auth_config()).await;
    let body = unauthorized(s.get("/v1/musicians").await, false).await;
    assert!(body["detail"].as_str().unwrap().contains("bearer token"));

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &Claims {
            sub: "root".into(),
            role: Role::Admin,
            exp: now - 3600,
            iat: None,
            iss: None,
            aud: None,
        },
        &jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap();
    let body = unauthorized(
        s.send_as(Some(&expired), Method::GET, "/v1/musicians", None)
            .await,
        true,
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    assert!(
        !body.to_string().contains(&expired),
        "the token is not echoed"
    );

    let forged = mussikon_server::http::auth::mint(
        b"another-secret-another-secret-another-secret",
        "root",
        Role::Admin,
        std::time::Duration::from_secs(600),
        None,
        None,
    )
    .unwrap();
    let body = unauthorized(
        s.send_as(Some(&forged), Method::GET, "/v1/musicians", None)
            .await,
        true,
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("signature"),
        "{body}"
    );

    for bad in ["Basic cm9vdDpyb290", "Bearer not-a-jwt"] {
        let r = s
            .client
            .get(s.url("/v1/musicians"))
            .header("authorization", bad)
            .send()
            .await
            .unwrap();
        unauthorized(r, true).await;
    }

    // A token with a role the server does not know.
    let odd = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "x", "role": "superuser", "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap();
    unauthorized(
        s.send_as(Some(&odd), Method::GET, "/v1/musicians", None)
            .await,
        true,
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizers_manage_only_their_own_gigs() {
    let s = seeded(auth_config()).await;
    let org1 = token("org-1", Role::Organizer);
    let org2 = token("org-2", Role::Organizer);
    let admin = token("root", Role::Admin);

    // The creator owns the gig.
    let view = json_of(
        s.send_as(Some(&org1), Method::GET, "/v1/gigs/g-org", None)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(view["gig"]["owner"], "org-1");

    // Someone else's gig: every management action is 403, and nothing changes.
    let booking = json!({"slot": 0, "musician_id": "m-1"});
    let g = gig("g-org", "2026-12-05");
    for (method, path, body) in [
        (Method::PUT, "/v1/gigs/g-org", Some(&g)),
        (Method::DELETE, "/v1/gigs/g-org", None),
        (Method::POST, "/v1/gigs/g-org/bookings", Some(&booking)),
        (Method::DELETE, "/v1/gigs/g-org/bookings/m-1", None),
        (Method::GET, "/v1/gigs/g-org/matches", None),
    ] {
        let r = s.send_as(Some(&org2), method.clone(), path, body).await;
        let p = problem(r, StatusCode::FORBIDDEN).await;
        assert!(
            p["detail"].as_str().unwrap().contains("not owned by"),
            "{method} {path}: {p}"
        );
    }
    // Its owner may.
    let r = s
        .send_as(
            Some(&org1),
            Method::POST,
            "/v1/gigs/g-org/bookings",
            Some(&booking),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .send_as(
            Some(&org1),
            Method::DELETE,
            "/v1/gigs/g-org/bookings/m-1",
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // An organizer cannot give a gig to someone else, nor take over an id someone else owns.
    let mut given = gig("g-new", "2026-12-06");
    given["owner"] = json!("org-2");
    let r = s
        .send_as(Some(&org1), Method::PUT, "/v1/gigs/g-new", Some(&given))
        .await;
    problem(r, StatusCode::FORBIDDEN).await;
    let r = s
        .send_as(Some(&org2), Method::PUT, "/v1/gigs/g-org", Some(&g))
        .await;
    problem(r, StatusCode::FORBIDDEN).await;

    // Replacing without `owner` keeps the owner; an admin may hand the gig over.
    let r = s
        .send_as(Some(&org1), Method::PUT, "/v1/gigs/g-org", Some(&g))
        .await;
    assert_eq!(json_of(r, StatusCode::OK).await["gig"]["owner"], "org-1");
    let mut handed = g.clone();
    handed["owner"] = json!("org-2");
    let r = s
        .send_as(Some(&admin), Method::PUT, "/v1/gigs/g-org", Some(&handed))
        .await;
    assert_eq!(json_of(r, StatusCode::OK).await["gig"]["owner"], "org-2");
    let r = s
        .send_as(Some(&org1), Method::DELETE, "/v1/gigs/g-org", None)
        .await;
    problem(r, StatusCode::FORBIDDEN).await;
    let r = s
        .send_as(Some(&org2), Method::DELETE, "/v1/gigs/g-org", None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // An invalid owner is a validation error, like any other field.
    let mut bad = gig("g-bad", "2026-12-06");
    bad["owner"] = json!("not/an/id");
    let r = s
        .send_as(Some(&admin), Method::PUT, "/v1/gigs/g-bad", Some(&bad))
        .await;
    let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(fields(&p), ["owner"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_reads_open_reads_only() {
    let mut config = auth_config();
    config.auth.public_reads = true;
    let s = seeded(config).await;
    json_of(s.get("/v1/musicians").await, StatusCode::OK).await;
    json_of(s.get("/v1/gigs/g-org").await, StatusCode::OK).await;
    json_of(
        s.get("/v1/musicians/search?instrument=guitar").await,
        StatusCode::OK,
    )
    .await;
    unauthorized(s.put("/v1/musicians/m-9", &musician("m-9")).await, false).await;
    unauthorized(s.get("/v1/gigs/g-org/matches").await, false).await;
    // A bad token is refused even where no token is needed: the client should know.
    unauthorized(
        s.send_as(Some("x.y.z"), Method::GET, "/v1/musicians", None)
            .await,
        true,
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens_verify_with_the_public_key() {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use rsa::Generate;
    // A fresh key per run: no private key is ever committed.
    let private = rsa::PrivateKey::generate();
    let private_pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
    let public_pem = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let mut config = HttpConfig::default();
    config.auth = AuthConfig {
        key: Some(AuthKey::Rs256 {
            public_key_pem: public_pem,
        }),
        issuer: Some("https://auth.test".into()),
        audience: Some("mussikon".into()),
        ..config.auth
    };
    let s = TestServer::start_with(config).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |iss: &str, aud: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &Claims {
                sub: "root".into(),
                role: Role::Admin,
                exp: now + 600,
                iat: Some(now),
                iss: Some(iss.into()),
                aud: Some(aud.into()),
            },
            &jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let good = sign("https://auth.test", "mussikon");
    json_of(
        s.send_as(Some(&good), Method::GET, "/v1/musicians", None)
            .await,
        StatusCode::OK,
    )
    .await;
    for bad in [
        sign("https://evil.test", "mussikon"),
        sign("https://auth.test", "other"),
    ] {
        let body = unauthorized(
            s.send_as(Some(&bad), Method::GET, "/v1/musicians", None)
                .await,
            true,
        )
        .await;
        assert!(
            body["detail"].as_str().unwrap().contains("iss/aud"),
            "{body}"
        );
    }
    // An HS256 token is refused by an RS256 server, even one "signed" with the public key.
    let hs = mussikon_server::http::auth::mint(
        SECRET,
        "root",
        Role::Admin,
        std::time::Duration::from_secs(600),
        Some("https://auth.test"),
        Some("mussikon"),
    )
    .unwrap();
    unauthorized(
        s.send_as(Some(&hs), Method::GET, "/v1/musicians", None)
            .await,
        true,
    )
    .await;
    s.stop().await;
}
