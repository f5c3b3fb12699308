//! A real server on 127.0.0.1 (port 0) over a fresh data directory, a real HTTP client, and
//! sample records.

use mussikon_engine::{Config, Engine};
use mussikon_server::config::{AuthConfig, AuthKey, HttpConfig, Secret};
use mussikon_server::http::auth::{mint, Role};
use mussikon_server::http::{self, app::App, Stopped};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// A running server and a handle on its engine (to make writes searchable without waiting).
pub struct TestServer {
    pub base: String,
    pub engine: Engine,
    /// The server's shared state (its event hub, for counters).
    pub app: App,
    pub client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Stopped>>,
    _dir: tempfile::TempDir,
}

/// Engine settings small enough for many engines in one test process.
pub fn small_engine_config() -> Config {
    Config {
        cache_bytes: 8 * 1024 * 1024,
        index_writer_threads: 1,
        index_heap_bytes: 20 * 1024 * 1024,
        ..Config::default()
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(HttpConfig::default()).await
    }

    pub async fn start_with(config: HttpConfig) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), small_engine_config()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = App::new(engine.clone(), config).unwrap();
        let served = app.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(http::serve(
            listener,
            served,
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        ));
        TestServer {
            base: format!("http://{addr}"),
            engine,
            app,
            client: Client::new(),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// The WebSocket URL of `path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{}", self.base.replacen("http://", "ws://", 1), path)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.unwrap()
    }

    /// Sends with `Authorization: Bearer <token>` when a token is given.
    pub async fn send_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Response {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.send(Method::DELETE, path, None).await
    }

    /// Makes every write so far searchable.
    pub async fn refresh(&self) {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.refresh().unwrap())
            .await
            .unwrap();
    }

    /// Stops the server and says how it stopped.
    pub async fn stop(mut self) -> Stopped {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }
}

/// The body of a response as JSON, with its status checked.
pub async fn json_of(resp: Response, status: StatusCode) -> Value {
    let got = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Checks that `resp` is a problem+json body with `status`, and returns it.
pub async fn problem(resp: Response, status: StatusCode) -> Value {
    let got = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(resp.headers().contains_key("x-request-id"));
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "unexpected status; body: {text}");
    assert_eq!(ct, "application/problem+json", "body: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], json!(status.as_u16()));
    assert!(body["type"]
        .as_str()
        .unwrap()
        .starts_with("urn:mussikon:problem:"));
    assert!(body["title"].is_string());
    assert!(body["detail"].is_string());
    assert!(body["errors"].is_array());
    assert!(body["request_id"].is_string());
    body
}

/// The field names of a 422 problem.
pub fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

pub fn musician(id: &str) -> Value {
    json!({
        "id": id,
        "name": format!("Musician {id}"),
        "instruments": [{"name": "guitar", "level": 4}],
        "genres": ["jazz"],
        "location": {"lat": 40.4168, "lon": -3.7038},
        "city": "Madrid",
        "travel_radius_km": 50,
        "fee": {"amount": 15000, "currency": "EUR"}
    })
}

pub fn gig(id: &str, date: &str) -> Value {
    json!({
        "id": id,
        "title": format!("Gig {id}"),
        "date": date,
        "location": {"lat": 40.42, "lon": -3.70},
        "radius_km": 30,
        "slots": [{"instrument": "guitar", "count": 2, "min_level": 3}],
        "genres": ["jazz"],
        "budget": {"max_fee": 20000, "currency": "EUR"}
    })
}

/// Every musician and gig as the API lists them: the state a rejected request must not change.
pub async fn state(s: &TestServer) -> (Value, Value) {
    let m = json_of(s.get("/v1/musicians?limit=1000").await, StatusCode::OK).await;
    let g = json_of(s.get("/v1/gigs?limit=1000").await, StatusCode::OK).await;
    (m, g)
}

/// The HS256 secret of servers started with [`auth_config`].
pub const SECRET: &[u8] = b"test-secret-test-secret-test-secret-0123";

/// HTTP settings requiring tokens signed with [`SECRET`].
pub fn auth_config() -> HttpConfig {
    let mut c = HttpConfig::default();
    c.auth = AuthConfig {
        key: Some(AuthKey::Hs256(Secret::new(SECRET.to_vec()))),
        ..c.auth
    };
    c
}

/// A token for `sub` with `role`, valid for an hour, signed with [`SECRET`].
pub fn token(sub: &str, role: Role) -> String {
    mint(SECRET, sub, role, Duration::from_secs(3600), None, None).unwrap()
}
