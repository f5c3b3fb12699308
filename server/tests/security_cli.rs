//! The `mussikon` binary's security settings as an operator meets them: production refusing to
//! start without a key, secrets redacted in the logged configuration, the development-mode
//! warning, file < environment < flag precedence end to end, and `mussikon token`.
#![allow(clippy::unwrap_used)]

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mussikon");
const SECRET: &str = "cli-test-secret-cli-test-secret-0123456789";
/// Longest a child may take to exit after SIGTERM in these tests.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `mussikon` command with a clean `MUSSIKON_*` environment and JSON logs.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("MUSSIKON_") {
            c.env_remove(k);
        }
    }
    c.args(args).env("MUSSIKON_LOG_FORMAT", "json");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env).output().await.unwrap()
}

/// Serves until the first stdout line, then stops with SIGTERM; returns the base URL's answer
/// to `probe` (status of a GET) and everything logged on stderr.
async fn serve_and_probe(args: &[&str], env: &[(&str, &str)], probe: &str) -> (u16, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let mut all = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", &data];
    all.extend_from_slice(args);
    let mut child = command(&all, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut s = String::new();
        stderr.read_to_string(&mut s).await.unwrap();
        s
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let status = reqwest::get(format!("http://{addr}{probe}"))
        .await
        .unwrap()
        .status()
        .as_u16();
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let exit = tokio::time::timeout(EXIT_DEADLINE, child.wait())
        .await
        .expect("the server did not exit after SIGTERM")
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    (status, logs.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_refuses_to_start_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let out = run(&["serve", "--mode", "production", "--data-dir", &data], &[]).await;
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty(), "it never listened");
    let err = text(&out.stderr);
    assert!(
        err.contains("production mode requires authentication"),
        "{err}"
    );
    assert!(err.contains("auth.secret_file"), "says what to do: {err}");

    // The same through the environment, and a secret that is too short.
    let out = run(
        &["serve", "--data-dir", &data],
        &[
            ("MUSSIKON_MODE", "production"),
            ("MUSSIKON_AUTH_SECRET", "short"),
        ],
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("at least 32 bytes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logged_configuration_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    // A setting that fails resolution stops the server right after the configuration is
    // logged, so no signal is needed.
    let out = run(
        &[
            "serve",
            "--data-dir",
            &data,
            "--set",
            "http.max_json_depth=0",
        ],
        &[("MUSSIKON_AUTH_SECRET", SECRET)],
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(err.contains("starting with this configuration"), "{err}");
    assert!(err.contains("<redacted>"), "{err}");
    assert!(!err.contains(SECRET), "the secret leaked: {err}");
    assert!(err.contains("http.max_json_depth"), "{err}");

    // A secret on the command line is refused outright.
    let out = run(&["serve", "--set", &format!("auth.secret={SECRET}")], &[]).await;
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("cannot be a flag"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_then_environment_then_flags() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("mussikon.toml");
    std::fs::write(
        &file,
        "mode = \"production\"\n[auth]\npublic_reads = false\n[rate_limit]\nenabled = false\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let secret = [("MUSSIKON_AUTH_SECRET", SECRET)];

    // The file alone: reads need a token.
    let (status, logs) = serve_and_probe(&["--config", &file], &secret, "/v1/musicians").await;
    assert_eq!(status, 401);
    assert!(!logs.contains("AUTHENTICATION IS OFF"));
    assert!(!logs.contains(SECRET));

    // The environment overrides the file.
    let env = [secret[0], ("MUSSIKON_AUTH_PUBLIC_READS", "true")];
    let (status, _) = serve_and_probe(&["--config", &file], &env, "/v1/musicians").await;
    assert_eq!(status, 200);

    // A flag overrides the environment.
    let (status, _) = serve_and_probe(
        &["--config", &file, "--set", "auth.public_reads=false"],
        &env,
        "/v1/musicians",
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_without_a_key_warns_loudly() {
    let (status, logs) = serve_and_probe(&[], &[], "/v1/musicians").await;
    assert_eq!(status, 200);
    let warning = logs
        .lines()
        .find(|l| l.contains("AUTHENTICATION IS OFF"))
        .unwrap_or_else(|| panic!("no warning in {logs}"));
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mints_what_the_server_accepts() {
    let work = tempfile::tempdir().unwrap();
    let secret_file = work.path().join("jwt.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let secret_file = secret_file.display().to_string();
    let out = run(
        &[
            "token",
            "--sub",
            "org-1",
            "--role",
            "organizer",
            "--ttl",
            "15m",
            "--secret-file",
            &secret_file,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");

    let config = mussikon_server::config::AuthConfig {
        key: Some(mussikon_server::config::AuthKey::Hs256(
            mussikon_server::config::Secret::new(SECRET.as_bytes().to_vec()),
        )),
        ..Default::default()
    };
    let verifier = mussikon_server::http::auth::Verifier::new(&config)
        .unwrap()
        .unwrap();
    let p = verifier.verify(&token).unwrap();
    assert_eq!(p.subject, "org-1");
    assert_eq!(p.role, mussikon_server::http::auth::Role::Organizer);

    // The environment works too; a bad role or a short secret is a clear error.
    let out = run(
        &["token", "--sub", "root", "--role", "admin"],
        &[("MUSSIKON_AUTH_SECRET", SECRET)],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    let out = run(
        &["token", "--sub", "x", "--role", "king"],
        &[("MUSSIKON_AUTH_SECRET", SECRET)],
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("unknown role"));
    let out = run(
        &["token", "--sub", "x", "--role", "admin"],
        &[("MUSSIKON_AUTH_SECRET", "short")],
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("at least 32 bytes"));
}

/// One access-log line per answered request, in target `mussikon::access` with the request's
/// span; `MUSSIKON_LOG=info,mussikon::access=off` drops those lines and keeps the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_its_own_target() {
    let access_lines = |logs: &str| -> Vec<serde_json::Value> {
        logs.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "request answered")
            .collect()
    };
    let (status, logs) = serve_and_probe(&[], &[], "/health").await;
    assert_eq!(status, 200);
    let lines = access_lines(&logs);
    assert_eq!(lines.len(), 1, "{logs}");
    assert_eq!(lines[0]["target"], "mussikon::access", "{}", lines[0]);
    assert_eq!(lines[0]["fields"]["status"], 200, "{}", lines[0]);
    assert_eq!(lines[0]["span"]["route"], "/health", "{}", lines[0]);

    let (status, logs) = serve_and_probe(
        &[],
        &[("MUSSIKON_LOG", "info,mussikon::access=off")],
        "/health",
    )
    .await;
    assert_eq!(status, 200);
    assert!(access_lines(&logs).is_empty(), "{logs}");
    assert!(logs.contains("starting with this configuration"), "{logs}");
}
