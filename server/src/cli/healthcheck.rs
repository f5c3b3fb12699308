//! `mussikon healthcheck`: asks a running server's `/health/ready` and turns the answer into an
//! exit code (0 ready, 1 not), for container health checks that have no curl.
//!
//! It speaks just enough HTTP/1.1 over a plain TCP connection: one `GET` with
//! `Connection: close`, then the status line is read. No TLS, so the binary links no TLS or
//! OpenSSL library; put a health check behind TLS through the load balancer instead.

use anyhow::Context;
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The long `--help` text of `mussikon healthcheck`.
pub const HEALTHCHECK_HELP: &str =
    "Ask a running server whether it is ready: GET URL/health/ready. Exit 0 when it \
    answers 200, 1 otherwise (503, no answer, timeout). Only http:// URLs.\n\nExample (Docker): \
    HEALTHCHECK CMD [\"mussikon\", \"healthcheck\", \"--url\", \"http://127.0.0.1:8080\"]";

/// `mussikon healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Base URL of the server.
    #[arg(long, env = "MUSSIKON_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// Give up after this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    pub timeout_ms: u64,
}

/// Host, port and path prefix of an `http://` URL.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// Port (80 when absent).
    pub port: u16,
    /// Path prefix, without a trailing slash.
    pub base: String,
}

/// Parses `http://host[:port][/prefix]`.
///
/// ```
/// use mussikon_server::cli::healthcheck::parse_url;
/// let t = parse_url("http://[::1]:9000/api/").unwrap();
/// assert_eq!((t.host.as_str(), t.port, t.base.as_str()), ("::1", 9000, "/api"));
/// assert!(parse_url("https://x").is_err());
/// ```
pub fn parse_url(url: &str) -> anyhow::Result<Target> {
    let rest = url.strip_prefix("http://").with_context(|| {
        format!("{url:?} is not an http:// URL; give one like http://127.0.0.1:8080")
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .with_context(|| format!("{url:?} has an unclosed [ in its host"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        anyhow::bail!("{url:?} has no host; give one like http://127.0.0.1:8080");
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .with_context(|| format!("{url:?} has a bad port {p:?}"))?,
        None => 80,
    };
    Ok(Target {
        host: host.to_string(),
        port,
        base: path.trim_end_matches('/').to_string(),
    })
}

async fn status_of(target: &Target) -> anyhow::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
        .await
        .with_context(|| {
            format!(
                "could not connect to {}:{}; is the server running?",
                target.host, target.port
            )
        })?;
    let host = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let request = format!(
        "GET {}/health/ready HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mussikon-healthcheck\r\n\
         Accept: application/json\r\nConnection: close\r\n\r\n",
        target.base
    );
    stream
        .write_all(request.as_bytes())
        .await
        .context("could not send the request")?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .await
        .context("could not read the answer")?;
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .with_context(|| format!("the answer is not HTTP: {:?}", line.trim_end()))?;
    Ok(code)
}

/// Runs `mussikon healthcheck`.
pub fn run(args: HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let target = parse_url(&args.url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let answer =
        runtime.block_on(async { tokio::time::timeout(timeout, status_of(&target)).await });
    match answer {
        Ok(Ok(200)) => {
            println!("ready");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(code)) => {
            println!("not ready: {}/health/ready answered {code}", args.url);
            Ok(ExitCode::FAILURE)
        }
        Ok(Err(e)) => {
            println!("not ready: {e:#}");
            Ok(ExitCode::FAILURE)
        }
        Err(_) => {
            println!(
                "not ready: no answer from {} within {} ms",
                args.url, args.timeout_ms
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
