//! From engine effects to events: what each applied command announces, and the background
//! matcher behind `gig.matching`.
//!
//! Promises: only commands that took effect (`Outcome::Done`) publish; the events of one
//! command go to the hub in one batch; publishing never blocks the caller (a created gig's
//! matching is queued for the matcher task, or skipped and counted when its queue is full);
//! nothing is serialized for a topic nobody listens to.

use crate::http::events::hub::Hub;
use crate::http::events::{gig_topic, kind, musician_topic, Event, IMPORTS_TOPIC};
use crate::http::metrics;
use mussikon_engine::{Effect, Engine, Executed, MatchRequest, MatchTarget, Outcome};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// A created gig waiting for its `gig.matching` events.
#[derive(Debug)]
struct MatchJob {
    seq: u64,
    gig_id: String,
}

/// The hub plus the matcher queue: what the write path publishes through. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    hub: Hub,
    jobs: mpsc::Sender<MatchJob>,
    /// Taken by [`Events::start_matcher`].
    pending: Arc<Mutex<Option<mpsc::Receiver<MatchJob>>>>,
}

impl Events {
    /// Events over `hub`; gig matching waits until [`Events::start_matcher`].
    pub fn new(hub: Hub) -> Events {
        let (jobs, rx) = mpsc::channel(hub.config().match_queue.max(1));
        Events {
            hub,
            jobs,
            pending: Arc::new(Mutex::new(Some(rx))),
        }
    }

    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Starts the task that computes `gig.matching` for created gigs (once; later calls return
    /// `None`). Call from within a tokio runtime.
    pub fn start_matcher(&self, engine: Engine) -> Option<tokio::task::JoinHandle<()>> {
        let mut rx = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        let hub = self.hub.clone();
        Some(tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                if !hub.has_musician_subscribers() {
                    continue;
                }
                let engine = engine.clone();
                let k = hub.config().match_k.clamp(1, mussikon_engine::MAX_K);
                let gig_id = job.gig_id.clone();
                let result = tokio::task::spawn_blocking(move || {
                    engine.match_gig(&MatchRequest {
                        target: MatchTarget::Stored(gig_id),
                        k: Some(k),
                        weights: None,
                    })
                })
                .await;
                match result {
                    Ok(Ok(r)) => hub.publish(&matching_events(job.seq, &r)),
                    Ok(Err(e)) => {
                        tracing::debug!(gig = %job.gig_id, error = %e, "no gig.matching for this gig")
                    }
                    Err(e) => {
                        tracing::error!(gig = %job.gig_id, error = %e, "gig.matching task failed")
                    }
                }
            }
        }))
    }

    /// Announces a finished bulk upload on `imports`; `seq` is the applied sequence after it.
    /// Never blocks.
    pub fn imported(&self, seq: u64, accepted: u64, rejected: u64) {
        if self.hub.has_subscribers(IMPORTS_TOPIC) {
            self.hub.publish(&[Event {
                kind: kind::IMPORT_APPLIED,
                topic: IMPORTS_TOPIC.to_string(),
                seq,
                data: json!({ "accepted": accepted, "rejected": rejected }),
            }]);
        }
    }

    /// Publishes what an executed command announces. Never blocks.
    pub fn executed(&self, done: &Executed) {
        self.outcome(done.seq, &done.outcome);
    }

    /// Publishes what the command applied as sequence `seq` with `outcome` announces (a
    /// cluster node's state machine tells every applied command this way). Never blocks.
    pub fn outcome(&self, seq: u64, outcome: &Outcome) {
        let Outcome::Done(effect) = outcome else {
            return;
        };
        let mut events = Vec::new();
        let mut job = None;
        let mut add = |kind: &'static str, topic: String, data: &dyn Fn() -> serde_json::Value| {
            if self.hub.has_subscribers(&topic) {
                events.push(Event {
                    kind,
                    topic,
                    seq,
                    data: data(),
                });
            }
        };
        match effect {
            Effect::Booked(b) | Effect::Cancelled(b) => {
                let k = if matches!(effect, Effect::Booked(_)) {
                    kind::BOOKING_CREATED
                } else {
                    kind::BOOKING_CANCELLED
                };
                let data = || json!(b);
                add(k, gig_topic(&b.gig_id), &data);
                add(k, musician_topic(&b.musician_id), &data);
            }
            Effect::GigUpserted { id, created: true } => {
                add(
                    kind::GIG_CREATED,
                    gig_topic(id),
                    &|| json!({ "gig_id": id }),
                );
                if self.hub.has_musician_subscribers() {
                    job = Some(MatchJob {
                        seq,
                        gig_id: id.clone(),
                    });
                }
            }
            Effect::Rated {
                musician_id,
                average,
                count,
            } => add(
                kind::RATING_CHANGED,
                musician_topic(musician_id),
                &|| json!({ "musician_id": musician_id, "average": average, "count": count }),
            ),
            Effect::MessagePosted(m) => {
                add(kind::MESSAGE_POSTED, gig_topic(&m.gig_id), &|| json!(m))
            }
            Effect::GigUpserted { id, created: false } => add(
                kind::GIG_UPDATED,
                gig_topic(id),
                &|| json!({ "gig_id": id }),
            ),
            Effect::GigDeleted { id, released } => add(
                kind::GIG_DELETED,
                gig_topic(id),
                &|| json!({ "gig_id": id, "released": released }),
            ),
            // Bulk batches reach the server only through the bulk route, which announces the
            // whole upload once ([`Events::imported`]).
            Effect::BulkUpserted { .. }
            | Effect::MusicianUpserted { .. }
            | Effect::MusicianDeleted { .. } => {}
        }
        if !events.is_empty() {
            self.hub.publish(&events);
        }
        // Only now, so that `gig.matching` never overtakes the `gig.created` it follows.
        if let Some(job) = job {
            let id = job.gig_id.clone();
            if self.jobs.try_send(job).is_err() {
                metrics::ws_matching_skipped();
                tracing::warn!(gig = %id, "matching queue full; no gig.matching events");
            }
        }
    }
}

/// One `gig.matching` event per musician ranked for any slot, in musician id order.
fn matching_events(seq: u64, r: &mussikon_engine::MatchResult) -> Vec<Event> {
    let mut per: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    for s in &r.slots {
        for c in &s.candidates {
            per.entry(c.musician_id.as_str()).or_default().push(json!({
                "slot": s.slot,
                "instrument": s.instrument,
                "score": c.score,
            }));
        }
    }
    per.into_iter()
        .map(|(m, slots)| Event {
            kind: kind::GIG_MATCHING,
            topic: musician_topic(m),
            seq,
            data: json!({ "gig_id": r.gig_id, "date": r.date, "slots": slots }),
        })
        .collect()
}
