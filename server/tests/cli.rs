//! The `mussikon` binary as a person or a supervisor uses it: serve and stop on SIGTERM, and the
//! offline commands (gen, import, export, restore, healthcheck, version) with their exit codes.
#![allow(clippy::unwrap_used)]

use futures_util::StreamExt;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[path = "support/otlp.rs"]
mod otlp;

const BIN: &str = env!("CARGO_BIN_EXE_mussikon");
/// Longest a child may take to exit after SIGTERM in these tests.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

fn musician(id: &str) -> Value {
    json!({
        "id": id, "name": format!("Musician {id}"),
        "instruments": [{"name": "guitar", "level": 4}],
        "location": {"lat": 40.4168, "lon": -3.7038},
        "travel_radius_km": 50, "fee": {"amount": 15000, "currency": "EUR"}
    })
}

/// A `mussikon serve` child and the address it printed.
struct Served {
    child: Child,
    base: String,
}

async fn serve(data_dir: &Path, extra: &[&str]) -> Served {
    serve_with_env(data_dir, extra, &[]).await
}

/// [`serve`] with more environment variables.
async fn serve_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Served {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .envs(env.iter().copied())
        .env("MUSSIKON_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await.unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Served {
        child,
        base: format!("http://{addr}"),
    }
}

impl Served {
    fn sigterm(&self) {
        let pid = Pid::from_raw(self.child.id().unwrap() as i32);
        kill(pid, Signal::SIGTERM).unwrap();
    }

    async fn exit_code(mut self) -> i32 {
        let status = tokio::time::timeout(EXIT_DEADLINE, self.child.wait())
            .await
            .expect("the server did not exit after SIGTERM")
            .unwrap();
        status.code().expect("the server was killed by a signal")
    }
}

async fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("MUSSIKON_LOG_FORMAT", "json")
        .output()
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[]).await;
    let client = reqwest::Client::new();

    let resp = client
        .put(format!("{}/v1/musicians/m-acked", server.base))
        .json(&musician("m-acked"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    // Start a bulk upload whose body is still being sent when the signal arrives.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream(rx));
    let upload = tokio::spawn(
        client
            .post(format!("{}/v1/musicians/bulk", server.base))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send(),
    );
    tx.send(Ok(format!("{}\n", musician("m-bulk-0"))))
        .await
        .unwrap();
    // The only way to know the server is handling the upload is to ask it: poll the in-flight
    // gauge (bounded: at most 10 s).
    let metrics_url = format!("{}/metrics", server.base);
    let mut in_flight = false;
    for _ in 0..500 {
        let m = client
            .get(&metrics_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // The scrape itself is one request in flight; the upload makes two.
        let now = m
            .lines()
            .find_map(|l| l.strip_prefix("http_requests_in_flight "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if now >= 2.0 {
            in_flight = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(in_flight, "the upload never showed up as in flight");

    server.sigterm();
    tx.send(Ok(format!("{}\n", musician("m-bulk-1"))))
        .await
        .unwrap();
    drop(tx);
    let resp = upload.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let report: Value = resp.json().await.unwrap();
    assert_eq!(report["accepted"], 2);
    assert_eq!(server.exit_code().await, 0);

    let engine =
        mussikon_engine::Engine::open(dir.path(), mussikon_engine::Config::default()).unwrap();
    for id in ["m-acked", "m-bulk-0", "m-bulk-1"] {
        assert!(engine.musician(id).unwrap().is_some(), "{id} was lost");
    }
}

/// A stream of body chunks fed through a channel.
fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_data_and_healthcheck() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &["--demo", "500"]).await;
    let page: Value = reqwest::get(format!("{}/v1/gigs?limit=1000", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 10);
    let search: Value = reqwest::get(format!(
        "{}/v1/musicians/search?instrument=guitar&limit=3",
        server.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(!search["hits"].as_array().unwrap().is_empty());

    let ok = run(&["healthcheck", "--url", &server.base]).await;
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stdout));
    let base = server.base.clone();
    server.sigterm();
    assert_eq!(server.exit_code().await, 0);
    let down = run(&["healthcheck", "--url", &base, "--timeout-ms", "2000"]).await;
    assert_eq!(down.status.code(), Some(1));
    assert!(text(&down.stdout).starts_with("not ready"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gen_import_export_restore_round_trip() {
    let work = tempfile::tempdir().unwrap();
    let gen_dir = work.path().join("gen");
    let data = work.path().join("data");
    let copy = work.path().join("copy");
    let snap = work.path().join("backup.snap");
    let p = |p: &Path| p.to_str().unwrap().to_string();

    let out = run(&[
        "gen",
        "--musicians",
        "300",
        "--gigs",
        "12",
        "--seed",
        "7",
        "--out-dir",
        &p(&gen_dir),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&[
        "import",
        &p(&gen_dir.join("musicians.jsonl")),
        "--data-dir",
        &p(&data),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("imported 300 musicians and 0 gigs"));
    let out = run(&[
        "import",
        &p(&gen_dir.join("gigs.jsonl")),
        "--data-dir",
        &p(&data),
    ])
    .await;
    assert!(text(&out.stdout).contains("imported 0 musicians and 12 gigs"));

    let out = run(&["export", "--data-dir", &p(&data), "--out", &p(&snap)]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("exported 300 musicians and 12 gigs"));
    // `backup` is the same command.
    let backup = work.path().join("second.snap");
    let out = run(&["backup", "--data-dir", &p(&data), "--out", &p(&backup)]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("exported 300 musicians and 12 gigs"));

    let out = run(&["restore", "--data-dir", &p(&copy), "--in", &p(&snap)]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("restored 300 musicians and 12 gigs"));

    // A second restore needs --force, and says so.
    let out = run(&["restore", "--data-dir", &p(&copy), "--in", &p(&snap)]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&[
        "restore",
        "--data-dir",
        &p(&copy),
        "--in",
        &p(&snap),
        "--force",
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    let engine = mussikon_engine::Engine::open(&copy, mussikon_engine::Config::default()).unwrap();
    let status = engine.status().unwrap();
    assert_eq!((status.musicians, status.gigs), (300, 12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_bad_lines_and_reject_all_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("mixed.jsonl");
    let data = work.path().join("data");
    std::fs::write(
        &file,
        format!(
            "{}\n{{\"id\":\"bad id\"}}\n{}\n",
            musician("m-1"),
            musician("m-2")
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let d = data.to_str().unwrap();

    let out = run(&["import", f, "--data-dir", d, "--reject-all"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("nothing imported"), "{stdout}");
    assert!(stdout.contains("line 2:"), "{stdout}");

    let out = run(&["import", f, "--data-dir", d]).await;
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("imported 2 musicians"), "{stdout}");
    assert!(stdout.contains("line 2:"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_get_a_message_and_a_non_zero_exit() {
    let work = tempfile::tempdir().unwrap();
    let d = work.path().join("data");
    let d = d.to_str().unwrap();

    let out = run(&["import", "/no/such/file.jsonl", "--data-dir", d]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("could not open /no/such/file.jsonl"));

    let out = run(&["export", "--data-dir", "/no/such/dir", "--out", "x.snap"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("does not exist"));

    let out = run(&["healthcheck", "--url", "https://example.invalid"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not an http:// URL"));

    let out = run(&["serve", "--listen", "not-an-address"]).await;
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    assert!(text(&out.stderr).contains("--listen"));

    // A port already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["serve", "--listen", &addr, "--data-dir", d]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("could not listen"),
        "{}",
        text(&out.stderr)
    );

    for out in [&run(&["import"]).await, &run(&["bogus"]).await] {
        assert_eq!(out.status.code(), Some(2));
        assert!(!text(&out.stderr).contains("panicked"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_and_version() {
    // The long help of each subcommand carries an example (or a try-this line).
    for sub in ["serve", "import", "export", "restore", "gen", "healthcheck"] {
        let out = run(&[sub, "--help"]).await;
        assert!(out.status.success(), "{sub}");
        let help = text(&out.stdout);
        assert!(help.contains("Usage: mussikon"), "{sub}");
        assert!(
            help.contains("Example") || help.contains("Try:"),
            "{sub}: {help}"
        );
    }
    let out = run(&["version"]).await;
    assert!(text(&out.stdout).starts_with("mussikon "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_replays_the_first_answer_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let gig = json!({
        "id": "g-1", "title": "Wedding", "date": "2026-12-05",
        "location": {"lat": 40.42, "lon": -3.70}, "radius_km": 30,
        "slots": [{"instrument": "guitar", "count": 1}],
        "budget": {"max_fee": 20000, "currency": "EUR"}
    });
    let book = |base: &str| {
        client
            .post(format!("{base}/v1/gigs/g-1/bookings"))
            .header("idempotency-key", "retry-me")
            .json(&json!({"slot": 0, "musician_id": "m-1"}))
            .send()
    };

    let server = serve(dir.path(), &[]).await;
    for (path, body) in [
        ("/v1/musicians/m-1", musician("m-1")),
        ("/v1/gigs/g-1", gig),
    ] {
        let resp = client
            .put(format!("{}{path}", server.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    let first = book(&server.base).await.unwrap();
    assert_eq!(first.status(), 201);
    let first_body = first.text().await.unwrap();
    server.sigterm();
    assert_eq!(server.exit_code().await, 0);

    // A new process over the same data: the retry gets the first answer, and the booking that
    // was cancelled meanwhile is not made again.
    let server = serve(dir.path(), &[]).await;
    let cancel = client
        .delete(format!("{}/v1/gigs/g-1/bookings/m-1", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 204);
    let again = book(&server.base).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.unwrap(), first_body);
    let g: Value = client
        .get(format!("{}/v1/gigs/g-1", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(g["bookings"], json!([]));
    server.sigterm();
    assert_eq!(server.exit_code().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_are_exported_over_otlp_under_the_callers_trace_and_flushed_at_shutdown() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use otlp::{attribute, hex, ids, Collector};
    let mut collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("tracing.otlp_endpoint={}", collector.base);
    // A hosted collector's key, from the environment (a secret cannot be a flag).
    let headers = [(
        "MUSSIKON_TRACING_OTLP_HEADERS",
        "x-api-key=k3y-0042,x-tenant=blue",
    )];
    let server = serve_with_env(dir.path(), &["--set", &endpoint], &headers).await;
    let client = reqwest::Client::new();
    let get = |path: &str, traceparent: Option<&str>| {
        let mut r = client.get(format!("{}{path}", server.base));
        if let Some(t) = traceparent {
            r = r.header("traceparent", t);
        }
        r.send()
    };

    // The caller did not sample this trace: no span may be exported for it.
    let unsampled = "00-11111111111111111111111111111111-2222222222222222-00";
    let r = get("/health", Some(unsampled)).await.unwrap();
    assert_eq!(r.headers()["traceparent"].to_str().unwrap().len(), 55);
    // A sampled caller: our span joins its trace under its span.
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = get("/v1/musicians/nobody", Some(caller)).await.unwrap();
    assert_eq!(r.status(), 404);
    let joined = r.headers()["traceparent"].to_str().unwrap().to_string();
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    // No caller: a new trace, sampled because spans are exported.
    let r = get("/health", None).await.unwrap();
    let fresh = r.headers()["traceparent"].to_str().unwrap().to_string();
    assert!(fresh.ends_with("-01"), "{fresh}");

    // Whatever is still queued must reach the collector before the process exits.
    server.sigterm();
    assert_eq!(server.exit_code().await, 0);
    let spans = collector.drain();
    assert!(spans
        .iter()
        .all(|s| s.service.as_deref() == Some("mussikon")));
    assert!(spans.iter().all(|s| s.headers["x-api-key"] == "k3y-0042"));
    assert!(spans.iter().all(|s| s.headers["x-tenant"] == "blue"));
    let find = |traceparent: &str| {
        let (trace, span) = ids(traceparent);
        &spans
            .iter()
            .find(|s| hex(&s.span.trace_id) == trace && hex(&s.span.span_id) == span)
            .unwrap_or_else(|| panic!("no span for {traceparent}"))
            .span
    };

    let span = find(&joined);
    assert_eq!(hex(&span.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(span.name, "GET /v1/musicians/{id}");
    assert_eq!(span.kind, 2, "SPAN_KIND_SERVER");
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    assert_eq!(
        attribute(span, "http.response.status_code"),
        Some(Any::IntValue(404))
    );
    assert_eq!(
        attribute(span, "http.request.method"),
        Some(Any::StringValue("GET".into()))
    );
    assert_eq!(
        attribute(span, "url.path"),
        Some(Any::StringValue("/v1/musicians/nobody".into()))
    );
    assert_eq!(
        attribute(span, "mussikon.request_id"),
        Some(Any::StringValue(request_id))
    );

    let root = find(&fresh);
    assert!(
        root.parent_span_id.is_empty(),
        "a new trace's span has no parent"
    );
    assert_eq!(root.name, "GET /health");

    assert!(
        !spans
            .iter()
            .any(|s| hex(&s.span.trace_id) == "11111111111111111111111111111111"),
        "the unsampled trace was exported"
    );
    assert_eq!(spans.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tracing_setting_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    for (name, bad) in [
        ("tracing.otlp_endpoint", "otel:4318"),
        ("tracing.otlp_endpoint", "http://"),
        ("tracing.otlp_endpoint", "http://otel:4318/x?y=1"),
        ("tracing.sample_ratio", "1.5"),
        ("tracing.sample_ratio", "-0.1"),
        ("tracing.service_name", ""),
    ] {
        let set = format!("{name}={bad}");
        let args = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            d,
            "--set",
            &set,
        ];
        let out = run(&args).await;
        assert_eq!(out.status.code(), Some(1), "{set}");
        let err = text(&out.stderr);
        assert!(err.contains(name), "{set}: {err}");
    }
    assert!(
        !Path::new(d).exists(),
        "a refused start created no data directory"
    );
}
