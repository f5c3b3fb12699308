//! Who is calling, and what they may do: bearer tokens (JWT) verified into a [`Caller`], and the
//! role and ownership rules checked against it.
//!
//! Tokens: `Authorization: Bearer <JWT>`, signed HS256 with the configured secret or RS256 with
//! the configured public key (only the configured algorithm is accepted, so a token cannot pick
//! its own), with claims `sub`, `role` (`admin` | `organizer` | `musician`) and `exp`
//! (required); `iss` and `aud` are required and checked only when configured.
//!
//! Rules ([`authorize`] before the body is read; then, against the stored gig, guards the
//! engine checks in the same apply as the write ([`Caller::gig_owner_condition`],
//! [`Caller::chat_guard`]) or checks on a read ([`Caller::may_manage_gig`],
//! [`Caller::may_follow_gig`], [`Caller::may_follow_musician`])):
//! - `/health`, `/health/ready`, `/metrics`: open to all.
//! - reads (musicians, search, gigs): any valid token, or no token with `auth.public_reads`;
//! - musicians: `admin`, or a `musician` whose subject is the musician's id (PUT, DELETE);
//!   bulk upload: `admin`; ratings: `admin` or `organizer`;
//! - gigs: `admin`, or an `organizer` for gigs they own (create, replace, delete, book, cancel,
//!   match); a gig an organizer creates is owned by their subject; `POST /v1/match` (a gig
//!   that is not stored): `admin` or `organizer`.
//! - a gig's chat (`POST`/`GET /v1/gigs/{id}/messages`) and its `gig:ID` events: `admin`, the
//!   gig's owner and the musicians booked on it; `musician:ID` events: `admin` and that
//!   musician. The WebSocket at `/v1/events` needs a token of any role (header, or
//!   `access_token` query parameter for browsers) and each subscribed topic is checked.
//!
//! 401 (with `WWW-Authenticate: Bearer`) means "no valid token": missing, malformed, expired,
//! badly signed. 403 means "valid token, but not allowed". With authentication off every caller
//! is [`Caller::Unrestricted`]. Tokens are never logged or echoed: errors say what was wrong,
//! not what was sent.

use crate::config::{AuthConfig, AuthKey};
use crate::http::problem::ApiError;
use crate::http::router::RouteId;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use mussikon_engine::{GigView, Guard};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use warp::http::{HeaderMap, Method};

/// What a token holder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May do everything.
    Admin,
    /// Creates gigs and manages the gigs they own; rates musicians.
    Organizer,
    /// Manages their own musician profile.
    Musician,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Admin => "admin",
            Role::Organizer => "organizer",
            Role::Musician => "musician",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "organizer" => Ok(Role::Organizer),
            "musician" => Ok(Role::Musician),
            other => Err(format!(
                "unknown role `{other}`; roles are admin, organizer, musician"
            )),
        }
    }
}

/// The claims of a MussikOn token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: the user id (for a musician, their musician id).
    pub sub: String,
    /// Role.
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Longest subject accepted, bytes.
pub const MAX_SUBJECT_BYTES: usize = 256;

/// A verified token holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`.
    pub subject: String,
    /// The token's `role`.
    pub role: Role,
}

/// Who is making a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Authentication is off: everything is allowed.
    Unrestricted,
    /// No token, on a route that needs none (public reads, operations endpoints).
    Anonymous,
    /// A verified token holder.
    User(Principal),
}

impl Caller {
    /// The subject, for logs and rate limiting (never the token).
    pub fn subject(&self) -> Option<&str> {
        match self {
            Caller::User(p) => Some(&p.subject),
            _ => None,
        }
    }

    /// Does this caller manage every gig whoever owns it (admin, or authentication off)?
    pub fn manages_all_gigs(&self) -> bool {
        match self {
            Caller::Unrestricted => true,
            Caller::User(p) => p.role == Role::Admin,
            Caller::Anonymous => false,
        }
    }

    /// May this caller change, delete, book, cancel or match a stored gig owned by `owner`?
    pub fn may_manage_gig(&self, gig_id: &str, owner: Option<&str>) -> Result<(), ApiError> {
        match self {
            Caller::Unrestricted => Ok(()),
            Caller::User(p) if p.role == Role::Admin => Ok(()),
            Caller::User(p) if p.role == Role::Organizer && owner == Some(p.subject.as_str()) => {
                Ok(())
            }
            Caller::User(p) if p.role == Role::Organizer => Err(ApiError::Forbidden(format!(
                "gig {gig_id} is not owned by {}; an organizer manages only their own gigs",
                p.subject
            ))),
            Caller::User(p) => Err(ApiError::Forbidden(format!(
                "the {} role may not manage gigs",
                p.role
            ))),
            Caller::Anonymous => Err(ApiError::Unauthorized {
                reason: "this route needs a bearer token".into(),
                token_given: false,
            }),
        }
    }

    /// The owner a stored gig must have for this caller to manage it, as a guard the engine
    /// checks in the same apply as the change: the subject of a token holder other than an
    /// admin; none for admins and unrestricted callers, who manage every gig.
    pub fn gig_owner_condition(&self) -> Option<String> {
        match self {
            Caller::User(p) if p.role != Role::Admin => Some(p.subject.clone()),
            _ => None,
        }
    }

    /// The guard under which this caller may post in a gig's chat, checked by the engine in
    /// the same apply as the message: an organizer must own the gig, a musician must be booked
    /// on it; admins and unrestricted callers need none.
    pub fn chat_guard(&self) -> Guard {
        match self {
            Caller::User(p) if p.role == Role::Organizer => Guard {
                owner: Some(p.subject.clone()),
                ..Guard::default()
            },
            Caller::User(p) if p.role == Role::Musician => Guard {
                booked: Some(p.subject.clone()),
                ..Guard::default()
            },
            _ => Guard::default(),
        }
    }

    /// May this caller read gig `gig`'s chat and follow its events? The gig's owner (an
    /// organizer), the musicians booked on it and admins may; everyone else gets a 403 that
    /// says who may.
    pub fn may_follow_gig(&self, gig: &GigView) -> Result<(), ApiError> {
        let allowed = match self {
            Caller::Unrestricted => true,
            Caller::Anonymous => false,
            Caller::User(p) => match p.role {
                Role::Admin => true,
                Role::Organizer => gig.gig.owner.as_deref() == Some(p.subject.as_str()),
                Role::Musician => gig.bookings.iter().any(|b| b.musician_id == p.subject),
            },
        };
        if allowed {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "only the owner of gig {} and the musicians booked on it may follow its chat and events",
            gig.gig.id
        )))
    }

    /// May this caller follow the events of musician `id`? Only that musician and admins.
    pub fn may_follow_musician(&self, id: &str) -> Result<(), ApiError> {
        match self {
            Caller::Unrestricted => Ok(()),
            Caller::User(p) if p.role == Role::Admin => Ok(()),
            Caller::User(p) if p.role == Role::Musician && p.subject == id => Ok(()),
            _ => Err(ApiError::Forbidden(format!(
                "only musician {id} and admins may follow musician {id}'s events"
            ))),
        }
    }

    /// The owner a gig gets when this caller writes it with `requested` in the body: an
    /// organizer's gigs are theirs (asking for another owner is forbidden); admins and
    /// unrestricted callers set any owner, or none.
    pub fn owner_for_new_gig(&self, requested: Option<String>) -> Result<Option<String>, ApiError> {
        match self {
            Caller::User(p) if p.role == Role::Organizer => match requested {
                Some(o) if o != p.subject => Err(ApiError::Forbidden(format!(
                    "an organizer may not set another owner ({o}); leave owner out or set it to {}",
                    p.subject
                ))),
                _ => Ok(Some(p.subject.clone())),
            },
            _ => Ok(requested),
        }
    }
}

/// Why a bearer token was not accepted; every case is a 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization` header.
    #[error("this route needs a bearer token (Authorization: Bearer <token>)")]
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("the Authorization header must be `Bearer <token>`")]
    NotBearer,
    /// The token has expired.
    #[error("the token has expired")]
    Expired,
    /// The signature does not verify with the configured key, or the algorithm is not the
    /// configured one.
    #[error("the token's signature is not valid for this server")]
    BadSignature,
    /// `iss` or `aud` is not the configured one.
    #[error("the token was issued by or for another party (iss/aud)")]
    WrongParty,
    /// Not a JWT, or claims missing or of the wrong type.
    #[error("the token is malformed or lacks a required claim: {0}")]
    Malformed(String),
}

/// The key could not be used.
#[derive(Debug, thiserror::Error)]
#[error("the token key cannot be used: {0}")]
pub struct KeyError(String);

/// Checks tokens against the configured key.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for `config`, or `None` when authentication is off.
    pub fn new(config: &AuthConfig) -> Result<Option<Verifier>, KeyError> {
        let Some(key) = &config.key else {
            return Ok(None);
        };
        let (key, alg) = match key {
            AuthKey::Hs256(secret) => (
                DecodingKey::from_secret(secret.expose()).map_err(|e| KeyError(e.to_string()))?,
                Algorithm::HS256,
            ),
            AuthKey::Rs256 { public_key_pem } => (
                DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
                    .map_err(|e| KeyError(format!("not an RSA public key in PEM form ({e})")))?,
                Algorithm::RS256,
            ),
        };
        let mut validation = Validation::new(alg);
        validation.leeway = config.leeway_s;
        let mut required = vec!["exp", "sub"];
        match &config.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Some(Verifier { key, validation }))
    }

    /// The principal of a valid `token`.
    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    TokenError::BadSignature
                }
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => TokenError::WrongParty,
                ErrorKind::MissingRequiredClaim(c) => {
                    TokenError::Malformed(format!("`{c}` is required"))
                }
                ErrorKind::Json(_) => TokenError::Malformed(
                    "the claims must include sub (text), role (admin, organizer or musician) and exp (seconds)".into(),
                ),
                _ => TokenError::Malformed("not a JWT this server can read".into()),
            },
        )?;
        let c = data.claims;
        if c.sub.is_empty() || c.sub.len() > MAX_SUBJECT_BYTES {
            return Err(TokenError::Malformed(format!(
                "sub must be 1-{MAX_SUBJECT_BYTES} bytes"
            )));
        }
        Ok(Principal {
            subject: c.sub,
            role: c.role,
        })
    }
}

/// The bearer token of a request: `Ok(None)` when there is no `Authorization` header.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, TokenError> {
    let Some(v) = headers.get(warp::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| TokenError::NotBearer)?;
    let (scheme, token) = v.split_once(' ').ok_or(TokenError::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(TokenError::NotBearer);
    }
    Ok(Some(token))
}

/// What a route asks of its caller before its body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, token or not (operations endpoints).
    Open,
    /// Any valid token; no token with `public_reads`.
    Read,
    /// One of these roles (further checks, e.g. ownership, in the handler).
    Roles(&'static [Role]),
    /// `admin`, or a `musician` whose subject is the first path parameter.
    MusicianSelf,
}

const ADMIN: &[Role] = &[Role::Admin];
const ADMIN_ORGANIZER: &[Role] = &[Role::Admin, Role::Organizer];
const ALL_ROLES: &[Role] = &[Role::Admin, Role::Organizer, Role::Musician];

/// What `route` with `method` asks of its caller.
pub fn access(route: RouteId, method: &Method) -> Access {
    let read = *method == Method::GET || *method == Method::HEAD;
    match route {
        RouteId::Health | RouteId::Ready | RouteId::Metrics | RouteId::OpenApi => Access::Open,
        RouteId::Musicians | RouteId::Gigs | RouteId::MusicianSearch => Access::Read,
        // Chat and events: a token of any role here; the gig's owner, the musicians booked on
        // it and admins only, checked against the stored gig by the handler (reads, topics)
        // or by the engine (posts, as a guard on the command).
        RouteId::Events | RouteId::GigMessages => Access::Roles(ALL_ROLES),
        RouteId::Musician | RouteId::Gig if read => Access::Read,
        RouteId::Musician => Access::MusicianSelf,
        RouteId::MusicianBulk => Access::Roles(ADMIN),
        RouteId::MusicianRatings
        | RouteId::Gig
        | RouteId::GigMatches
        | RouteId::GigBookings
        | RouteId::GigBooking
        | RouteId::Match => Access::Roles(ADMIN_ORGANIZER),
    }
}

/// The outcome of reading a request's token: who is calling, or why the token was refused
/// (kept so that rate limiting can count a refused request against the client's address
/// before the 401 is answered).
pub type Identified = Result<Caller, TokenError>;

/// Reads the request's token. Operations routes ignore tokens entirely.
pub fn identify(verifier: Option<&Verifier>, headers: &HeaderMap, access: Access) -> Identified {
    let Some(verifier) = verifier else {
        return Ok(Caller::Unrestricted);
    };
    if access == Access::Open {
        return Ok(Caller::Anonymous);
    }
    match bearer(headers)? {
        None => Ok(Caller::Anonymous),
        Some(token) => verifier.verify(token).map(Caller::User),
    }
}

/// Applies the route's [`Access`] to an identified caller: 401 or 403 when refused.
pub fn authorize(
    identified: Identified,
    access: Access,
    public_reads: bool,
    params: &[String],
) -> Result<Caller, ApiError> {
    let caller = identified.map_err(|e| ApiError::Unauthorized {
        reason: e.to_string(),
        token_given: e != TokenError::Missing,
    })?;
    let principal = match &caller {
        Caller::Unrestricted => return Ok(caller),
        Caller::Anonymous => {
            return match access {
                Access::Open => Ok(caller),
                Access::Read if public_reads => Ok(caller),
                _ => Err(ApiError::Unauthorized {
                    reason: TokenError::Missing.to_string(),
                    token_given: false,
                }),
            }
        }
        Caller::User(p) => p,
    };
    let allowed = match access {
        Access::Open | Access::Read => true,
        Access::Roles(roles) => roles.contains(&principal.role),
        Access::MusicianSelf => match principal.role {
            Role::Admin => true,
            Role::Musician => params.first().is_some_and(|id| *id == principal.subject),
            Role::Organizer => false,
        },
    };
    if allowed {
        return Ok(caller);
    }
    Err(ApiError::Forbidden(match access {
        Access::MusicianSelf if principal.role == Role::Musician => format!(
            "a musician may change only their own profile ({})",
            principal.subject
        ),
        Access::Roles(roles) => format!(
            "the {} role may not do this; allowed: {}",
            principal.role,
            roles
                .iter()
                .map(Role::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => format!("the {} role may not do this", principal.role),
    }))
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
#[error("could not sign the token: {0}")]
pub struct MintError(String);

/// Signs an HS256 token for `sub` with `role`, valid for `ttl` from now.
///
/// ```
/// use mussikon_server::config::{AuthConfig, AuthKey, Secret};
/// use mussikon_server::http::auth::{mint, Role, Verifier};
/// let secret = Secret::new(vec![7; 32]);
/// let token = mint(secret.expose(), "org-1", Role::Organizer, std::time::Duration::from_secs(60), None, None).unwrap();
/// let config = AuthConfig { key: Some(AuthKey::Hs256(secret)), ..AuthConfig::default() };
/// let p = Verifier::new(&config).unwrap().unwrap().verify(&token).unwrap();
/// assert_eq!((p.subject.as_str(), p.role), ("org-1", Role::Organizer));
/// ```
pub fn mint(
    secret: &[u8],
    sub: &str,
    role: Role,
    ttl: Duration,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, MintError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| MintError(format!("the system clock is before 1970: {e}")))?
        .as_secs();
    let claims = Claims {
        sub: sub.to_string(),
        role,
        exp: now.saturating_add(ttl.as_secs()),
        iat: Some(now),
        iss: issuer.map(str::to_string),
        aud: audience.map(str::to_string),
    };
    let key = EncodingKey::from_secret(secret).map_err(|e| MintError(e.to_string()))?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|e| MintError(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_route_has_a_rule_and_only_ops_are_open() {
        for def in crate::http::router::ROUTES {
            for m in def.methods {
                let a = access(def.id, m);
                let ops = def.template == "/metrics"
                    || def.template == "/openapi.json"
                    || def.template.starts_with("/health");
                assert_eq!(a == Access::Open, ops, "{} {m}", def.template);
            }
        }
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), Ok(None));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), Err(TokenError::NotBearer));
        h.insert("authorization", "bearer abc.def.ghi".parse().unwrap());
        assert_eq!(bearer(&h), Ok(Some("abc.def.ghi")));
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), Err(TokenError::NotBearer));
    }
}
