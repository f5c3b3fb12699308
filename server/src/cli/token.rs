//! `mussikon token`: mint an HS256 bearer token for an operator or a test client.
//!
//! The secret comes from `--secret-file` or `MUSSIKON_AUTH_SECRET` (the same secret the server
//! verifies with; a trailing newline in the file is ignored) and must be at least 32 bytes.
//! The token is printed alone on stdout, so `TOKEN=$(mussikon token …)` works; nothing about
//! it is logged.

use crate::config::sources::read_secret_file;
use crate::config::{Secret, MIN_SECRET_BYTES};
use crate::http::auth::{mint, Role};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The long `--help` text of `mussikon token`.
pub const TOKEN_HELP: &str = "Mint an HS256 bearer token and print it on stdout.\n\n\
    The secret is read from --secret-file or MUSSIKON_AUTH_SECRET: the one the server uses.\n\n\
    Try: MUSSIKON_AUTH_SECRET=$(cat jwt.secret) mussikon token --sub org-1 --role organizer --ttl 8h\n  \
    curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/v1/gigs";

/// `mussikon token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Subject: the user id (for a musician, their musician id).
    #[arg(long, value_name = "ID")]
    pub sub: String,

    /// admin, organizer or musician.
    #[arg(long, value_name = "ROLE")]
    pub role: Role,

    /// How long the token is valid: a number with s, m, h or d (e.g. 90s, 15m, 1h, 7d).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,

    /// File holding the HS256 secret; without it, MUSSIKON_AUTH_SECRET is used.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,

    /// `iss` claim, for a server configured with auth.issuer.
    #[arg(long, value_name = "ISSUER")]
    pub issuer: Option<String>,

    /// `aud` claim, for a server configured with auth.audience.
    #[arg(long, value_name = "AUDIENCE")]
    pub audience: Option<String>,
}

/// Reads `90s`, `15m`, `1h`, `7d` (a bare number is seconds).
///
/// ```
/// use mussikon_server::cli::token::parse_ttl;
/// assert_eq!(parse_ttl("15m").unwrap().as_secs(), 900);
/// assert!(parse_ttl("0h").is_err());
/// assert!(parse_ttl("soon").is_err());
/// ```
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 90s, 15m, 1h or 7d"))?;
    let unit_s = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: the unit must be s, m, h or d")),
    };
    match n.checked_mul(unit_s) {
        Some(0) => Err("the duration must be more than 0".into()),
        Some(secs) => Ok(Duration::from_secs(secs)),
        None => Err(format!("`{s}` is too long")),
    }
}

/// Runs `mussikon token`.
pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let secret = match &args.secret_file {
        Some(path) => read_secret_file(path)?,
        None => Secret::new(
            std::env::var("MUSSIKON_AUTH_SECRET")
                .context("no secret: pass --secret-file FILE or set MUSSIKON_AUTH_SECRET")?
                .into_bytes(),
        ),
    };
    if secret.expose().len() < MIN_SECRET_BYTES {
        anyhow::bail!(
            "the secret is {} bytes; HS256 secrets must be at least {MIN_SECRET_BYTES} bytes",
            secret.expose().len()
        );
    }
    if args.sub.is_empty() {
        anyhow::bail!("--sub must not be empty");
    }
    let token = mint(
        secret.expose(),
        &args.sub,
        args.role,
        args.ttl,
        args.issuer.as_deref(),
        args.audience.as_deref(),
    )?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
