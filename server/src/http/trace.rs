//! W3C Trace Context (`traceparent`): join the caller's trace, or start one.
//!
//! An incoming `traceparent` (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`) that is
//! well formed (lowercase hex, version not `ff`, ids not all zeros) gives the request its trace
//! id and flags; anything else — absent, malformed — starts a new trace. Every request gets a
//! new span id of its own. The trace id goes into the request's tracing span (so every log
//! line of the request carries it), and the response echoes `traceparent` with the same trace
//! id and this request's span id, so a caller can find our logs for its trace.
//!
//! When spans are exported ([`crate::telemetry`]), a new trace is sampled (flags `01`) for a
//! share `tracing.sample_ratio` of trace ids ([`samples`]) and a sampled request's span is
//! exported under these ids; otherwise a new trace's flags are `00` (nothing records it). On a
//! cluster node the request's `traceparent` travels with the work it causes on the leader
//! ([`serving`], [`current`]).

use warp::http::HeaderMap;

/// The header.
pub const TRACEPARENT: &str = "traceparent";

tokio::task_local! {
    /// The `traceparent` of the request a task serves (our span as the parent), set around
    /// each request's handler, so that work it causes elsewhere (a write forwarded to the
    /// leader) joins its trace. `None` where nothing would use it.
    static CURRENT: Option<String>;
}

/// Runs `work` as serving the request of `context` (see [`current`]); `propagate` false
/// (a single node: no work leaves the process) skips formatting the header.
pub fn serving<F: std::future::Future>(
    context: &TraceContext,
    propagate: bool,
    work: F,
) -> tokio::task::futures::TaskLocalFuture<Option<String>, F> {
    CURRENT.scope(propagate.then(|| context.header_value()), work)
}

/// The `traceparent` of the request this task serves, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Option::clone).ok().flatten()
}

/// A request's place in a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// This request's span id: 16 lowercase hex digits.
    pub span_id: String,
    /// The caller's span id, when it sent one.
    pub parent_id: Option<String>,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `bytes` uniformly random bytes in hex (a trace id's bits must all be random: sampling reads
/// its last 8 bytes; a v4 UUID's would not do, its version and variant bits are fixed). All
/// zeros, which W3C forbids, is drawn again.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    loop {
        if getrandom::fill(&mut buf).is_err() {
            // No OS randomness: fall back to the generator behind v4 UUIDs. The two halves of
            // one have their fixed bits (version, variant) in different places, so their XOR
            // is uniform.
            for chunk in buf.chunks_mut(8) {
                let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
                let n = (high ^ low).to_le_bytes();
                chunk.copy_from_slice(&n[..chunk.len()]);
            }
        }
        if buf.iter().any(|b| *b != 0) {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let mut out = String::with_capacity(bytes * 2);
            for b in &buf {
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            return out;
        }
    }
}

/// Parses a `traceparent` value: `(trace id, parent id, flags)` when well formed.
///
/// ```
/// use mussikon_server::http::trace::parse;
/// let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// assert_eq!(parse(v).unwrap().0, "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
/// ```
pub fn parse(value: &str) -> Option<(String, String, u8)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    // Version 00 has exactly four fields; later versions may append more.
    if !is_hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if !is_hex(trace, 32) || !is_hex(parent, 16) || !is_hex(flags, 2) {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace.to_string(), parent.to_string(), flags))
}

/// Whether a new trace with `trace_id` (32 hex digits) is sampled at `ratio`: its last 16 hex
/// digits, read as a number, fall in the lowest `ratio` share of their range — the rule of
/// OpenTelemetry's `TraceIdRatioBased` sampler, so every node decides alike for one trace id.
///
/// ```
/// use mussikon_server::http::trace::samples;
/// let id = "4bf92f3577b34da6a3ce929d0e0e4736";
/// assert!(samples(id, 1.0) && !samples(id, 0.0));
/// ```
pub fn samples(trace_id: &str, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio.is_nan() || ratio <= 0.0 {
        return false;
    }
    let tail = trace_id
        .get(trace_id.len().saturating_sub(16)..)
        .unwrap_or("");
    let Ok(n) = u64::from_str_radix(tail, 16) else {
        return false;
    };
    // ratio < 1, so the product is below 2^63 and the cast cannot saturate.
    (n >> 1) < (ratio * (1u64 << 63) as f64) as u64
}

impl TraceContext {
    /// The context of a request whose `headers` carry a well-formed `traceparent`: that trace
    /// joined under a new span id; `None` without one.
    pub fn joined(headers: &HeaderMap) -> Option<TraceContext> {
        TraceContext::join(headers.get(TRACEPARENT)?.to_str().ok()?)
    }

    /// The trace a `traceparent` value names, joined under a new span id; `None` when it is
    /// malformed.
    pub fn join(traceparent: &str) -> Option<TraceContext> {
        let (trace_id, parent, flags) = parse(traceparent)?;
        Some(TraceContext {
            trace_id,
            span_id: random_hex(8),
            parent_id: Some(parent),
            flags,
        })
    }

    /// The context of a request with `headers`. A new trace is marked sampled for a share
    /// `new_trace_ratio` of trace ids (0 when spans are not exported; see [`samples`]).
    pub fn from_headers(headers: &HeaderMap, new_trace_ratio: f64) -> TraceContext {
        match TraceContext::joined(headers) {
            Some(joined) => joined,
            None => {
                let trace_id = random_hex(16);
                let flags = u8::from(samples(&trace_id, new_trace_ratio));
                TraceContext {
                    trace_id,
                    span_id: random_hex(8),
                    parent_id: None,
                    flags,
                }
            }
        }
    }

    /// Whether the trace is sampled (flags bit 0): its spans are recorded.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The `traceparent` to send onwards (and back): our span as the parent.
    pub fn header_value(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use warp::http::HeaderValue;

    #[test]
    fn joins_a_valid_trace_and_starts_one_otherwise() {
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let c = TraceContext::from_headers(&h, 0.0);
        assert_eq!(c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(c.span_id, "00f067aa0ba902b7");
        let v = c.header_value();
        assert!(v.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && v.ends_with("-01"));
        assert!(parse(&v).is_some());

        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6-00f067aa0ba902b7-01",
        ] {
            h.insert(TRACEPARENT, HeaderValue::from_str(bad).unwrap());
            let c = TraceContext::from_headers(&h, 0.0);
            assert_eq!(c.parent_id, None, "{bad:?}");
            assert_eq!(c.flags, 0, "{bad:?}");
            assert_eq!(TraceContext::from_headers(&h, 1.0).flags, 1, "{bad:?}");
            assert!(is_hex(&c.trace_id, 32) && is_hex(&c.span_id, 16));
            assert!(parse(&c.header_value()).is_some());
        }
    }

    #[test]
    fn a_share_of_new_traces_is_sampled_and_a_callers_decision_is_kept() {
        let none = HeaderMap::new();
        let sampled = (0..2000)
            .filter(|_| TraceContext::from_headers(&none, 0.25).sampled())
            .count();
        // 2,000 draws at p = 0.25: mean 500, standard deviation about 19.
        assert!((380..=620).contains(&sampled), "{sampled} of 2000");
        // The decision is the trace id's: the same id, the same answer at any node.
        assert!(samples("00000000000000000000000000000000", 0.01));
        assert!(!samples("ffffffffffffffffffffffffffffffff", 0.99));
        // A caller's flags win over the ratio.
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        );
        assert!(!TraceContext::from_headers(&h, 1.0).sampled());
    }
}
