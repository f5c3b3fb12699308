//! Per-client rate limits: one keyed token bucket (governor's GCRA) per class of request —
//! reads, writes, matches — keyed by the client.
//!
//! The client is the token subject when the request carries a valid token, otherwise its IP
//! address: the peer's, or with `http.trust_forwarded` the last address of `X-Forwarded-For`
//! (the one the trusted proxy appended; earlier ones are whatever the client claimed). A
//! request refused by its bucket gets 429 with `Retry-After` (whole seconds, at least 1) and
//! is counted in `mussikon_rate_limited_total{class}`. Operations endpoints (`/health…`,
//! `/metrics`) are never limited, so probes and scrapes cannot be starved.
//!
//! Memory is bounded: [`RateLimits::upkeep`] (run every few seconds by [`crate::http::serve`])
//! forgets clients whose buckets are full again, and a class that still tracks more than
//! `max_clients` clients is reset to empty (limits forgotten for a moment, never unbounded).

use crate::config::{Rate, RateLimitConfig};
use crate::http::auth::Caller;
use crate::http::metrics;
use crate::http::problem::ApiError;
use crate::http::router::RouteId;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use warp::http::{HeaderMap, Method};

/// The kinds of request limited separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Reads and searches.
    Reads,
    /// Changes.
    Writes,
    /// Matching (the expensive reads).
    Matches,
}

impl Class {
    /// The `class` metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Class::Reads => "reads",
            Class::Writes => "writes",
            Class::Matches => "matches",
        }
    }
}

/// The class of a request to `route` (`None`: a request that matched no route) with `method`;
/// `None` for operations endpoints, which are not limited.
pub fn class_of(route: Option<RouteId>, method: &Method) -> Option<Class> {
    let read = *method == Method::GET || *method == Method::HEAD;
    match route {
        Some(RouteId::Health | RouteId::Ready | RouteId::Metrics) => None,
        Some(RouteId::GigMatches | RouteId::Match) => Some(Class::Matches),
        Some(RouteId::MusicianSearch) => Some(Class::Reads),
        _ if read => Some(Class::Reads),
        // Unrouted paths (404/405) count as reads whatever the method: they change nothing.
        None => Some(Class::Reads),
        Some(_) => Some(Class::Writes),
    }
}

/// The address a request came from: the peer, or with `trust_forwarded` the last valid address
/// in `X-Forwarded-For`.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trust_forwarded: bool,
) -> Option<IpAddr> {
    if trust_forwarded {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .next_back();
        if forwarded.is_some() {
            return forwarded;
        }
    }
    peer.map(|p| p.ip())
}

/// The rate-limit key of a request.
pub fn client_key(caller: Option<&Caller>, ip: Option<IpAddr>) -> String {
    match (caller.and_then(Caller::subject), ip) {
        (Some(sub), _) => format!("sub:{sub}"),
        (None, Some(ip)) => format!("ip:{ip}"),
        (None, None) => "ip:unknown".to_string(),
    }
}

struct Bucket {
    quota: Quota,
    limiter: RwLock<Arc<DefaultKeyedRateLimiter<String>>>,
}

impl Bucket {
    fn new(rate: Rate) -> Bucket {
        let quota = quota(rate);
        Bucket {
            quota,
            limiter: RwLock::new(Arc::new(governor::RateLimiter::keyed(quota))),
        }
    }

    fn current(&self) -> Arc<DefaultKeyedRateLimiter<String>> {
        self.limiter
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn quota(rate: Rate) -> Quota {
    let burst = NonZeroU32::new(rate.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    // Config resolution guarantees per_second > 0; guard anyway.
    let per_second = if rate.per_second.is_finite() && rate.per_second > 0.0 {
        rate.per_second
    } else {
        1.0
    };
    let period = Duration::from_secs_f64(1.0 / per_second).max(Duration::from_nanos(1));
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

/// The three limiters.
pub struct RateLimits {
    reads: Bucket,
    writes: Bucket,
    matches: Bucket,
    max_clients: usize,
}

impl RateLimits {
    /// Limiters for `config`, or `None` when rate limiting is off.
    pub fn new(config: &RateLimitConfig) -> Option<RateLimits> {
        config.enabled.then(|| RateLimits {
            reads: Bucket::new(config.reads),
            writes: Bucket::new(config.writes),
            matches: Bucket::new(config.matches),
            max_clients: config.max_clients,
        })
    }

    fn bucket(&self, class: Class) -> &Bucket {
        match class {
            Class::Reads => &self.reads,
            Class::Writes => &self.writes,
            Class::Matches => &self.matches,
        }
    }

    /// Takes one token from `key`'s bucket of `class`, or answers 429.
    pub fn check(&self, class: Class, key: &str) -> Result<(), ApiError> {
        let limiter = self.bucket(class).current();
        match limiter.check_key(&key.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(limiter.clock().now());
                metrics::record_rate_limited(class.label());
                Err(ApiError::TooManyRequests {
                    class: class.label(),
                    retry_after_s: retry_after_secs(wait),
                })
            }
        }
    }

    /// Forgets clients whose buckets are full again; resets a class that still tracks more
    /// than `max_clients` clients.
    pub fn upkeep(&self) {
        for (class, bucket) in [
            (Class::Reads, &self.reads),
            (Class::Writes, &self.writes),
            (Class::Matches, &self.matches),
        ] {
            let limiter = bucket.current();
            limiter.retain_recent();
            limiter.shrink_to_fit();
            let tracked = limiter.len();
            if tracked > self.max_clients {
                tracing::warn!(
                    class = class.label(),
                    tracked,
                    max_clients = self.max_clients,
                    "rate limiter tracks too many clients; resetting this class"
                );
                *bucket.limiter.write().unwrap_or_else(|p| p.into_inner()) =
                    Arc::new(governor::RateLimiter::keyed(bucket.quota));
            }
        }
    }

    /// Clients tracked now, per class (reads, writes, matches).
    pub fn tracked(&self) -> [usize; 3] {
        [
            self.reads.current().len(),
            self.writes.current().len(),
            self.matches.current().len(),
        ]
    }
}

/// `Retry-After` seconds for a wait: rounded up, at least 1.
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    #[test]
    fn classes() {
        assert_eq!(class_of(Some(RouteId::Metrics), &Method::GET), None);
        assert_eq!(
            class_of(Some(RouteId::Match), &Method::POST),
            Some(Class::Matches)
        );
        assert_eq!(
            class_of(Some(RouteId::MusicianSearch), &Method::POST),
            Some(Class::Reads)
        );
        assert_eq!(
            class_of(Some(RouteId::Gig), &Method::PUT),
            Some(Class::Writes)
        );
        assert_eq!(class_of(None, &Method::DELETE), Some(Class::Reads));
    }

    #[test]
    fn forwarded_for_is_used_only_when_trusted_and_its_last_entry_wins() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4, 5.6.7.8".parse().unwrap());
        assert_eq!(
            client_ip(Some(peer), &h, false),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            client_ip(Some(peer), &h, true),
            Some("5.6.7.8".parse().unwrap())
        );
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(
            client_ip(Some(peer), &h, true),
            Some("10.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn a_burst_is_allowed_then_refused_and_state_is_bounded() {
        let config = RateLimitConfig {
            enabled: true,
            reads: Rate {
                per_second: 0.001,
                burst: 2,
            },
            max_clients: 3,
            ..RateLimitConfig::default()
        };
        let limits = RateLimits::new(&config).unwrap();
        assert!(limits.check(Class::Reads, "a").is_ok());
        assert!(limits.check(Class::Reads, "a").is_ok());
        match limits.check(Class::Reads, "a") {
            Err(ApiError::TooManyRequests { retry_after_s, .. }) => assert!(retry_after_s >= 1),
            other => panic!("{other:?}"),
        }
        assert!(
            limits.check(Class::Writes, "a").is_ok(),
            "classes are apart"
        );
        assert!(limits.check(Class::Reads, "b").is_ok(), "clients are apart");
        for k in ["c", "d", "e"] {
            limits.check(Class::Reads, k).unwrap();
        }
        // Buckets refill only every 1000 s, so every client is still tracked: over the cap.
        limits.upkeep();
        assert_eq!(limits.tracked()[0], 0);
        assert!(limits.check(Class::Reads, "a").is_ok(), "reset");
    }
}
