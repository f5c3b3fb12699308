//! The event hub: who listens to which topic, and the one way events reach them.
//!
//! Each connection registers as a subscriber with its own bounded queue (a tokio mpsc channel
//! of serialized frames). Promises:
//! - [`Hub::publish`] never waits: it serializes each event once, then `try_send`s it to every
//!   subscriber of its topic, under a read lock that is never held across an await. It can be
//!   called from async tasks and from blocking threads alike.
//! - A subscriber whose queue is full is removed and told so through its [`Kick`] channel (its
//!   socket task then closes with code 1013); it is counted in
//!   `mussikon_ws_dropped_subscribers_total`. A subscriber whose queue is closed is removed.
//!   The kick is always sent before the queue's sender is dropped, so a socket task that sees
//!   its queue end finds the kick waiting.
//! - All events of one `publish` call are enqueued under one lock, so a subscriber that has
//!   received one of them is certain the others are already queued for everyone.
//! - A subscription is registered before it is acknowledged, so every event published after
//!   the acknowledgement is queued.
//! - [`Subscription`] removes itself when dropped; `mussikon_ws_connections` follows.

use crate::config::EventsConfig;
use crate::http::events::Event;
use crate::http::metrics;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::{mpsc, oneshot};

/// Why the hub ends a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kick {
    /// Its queue was full when an event was published.
    TooSlow,
    /// The server is shutting down.
    ShuttingDown,
}

impl Kick {
    /// The WebSocket close code and reason for this kick.
    pub fn close_frame(self) -> (u16, &'static str) {
        match self {
            Kick::TooSlow => (1013, "subscriber too slow: its event queue was full"),
            Kick::ShuttingDown => (1001, "server shutting down"),
        }
    }
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The connection would hold more topics than allowed.
    #[error("a connection may subscribe to at most {max} topics ({have} now, {asked} more asked)")]
    TooManyTopics {
        /// The limit.
        max: usize,
        /// Topics subscribed now.
        have: usize,
        /// New topics asked for.
        asked: usize,
    },
    /// The subscriber is gone (kicked).
    #[error("the subscription has ended")]
    Gone,
}

/// Counters of the hub, for tests and diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubStats {
    /// Subscribers connected now.
    pub connections: usize,
    /// Subscribers dropped because their queue was full, since start.
    pub dropped: u64,
    /// Event frames queued to subscribers, since start.
    pub delivered: u64,
}

struct Sub {
    tx: mpsc::Sender<Arc<str>>,
    topics: HashSet<String>,
    kick: Option<oneshot::Sender<Kick>>,
}

#[derive(Default)]
struct State {
    subs: HashMap<u64, Sub>,
    topics: HashMap<String, HashSet<u64>>,
    /// Subscriptions (connection × topic) to `musician:` topics.
    musician_subscriptions: usize,
    closed: bool,
}

impl State {
    fn remove(&mut self, id: u64) -> Option<Sub> {
        let sub = self.subs.remove(&id)?;
        for t in &sub.topics {
            self.unlink(id, t);
        }
        Some(sub)
    }

    fn unlink(&mut self, id: u64, topic: &str) {
        if let Some(ids) = self.topics.get_mut(topic) {
            if ids.remove(&id) && topic.starts_with("musician:") {
                self.musician_subscriptions -= 1;
            }
            if ids.is_empty() {
                self.topics.remove(topic);
            }
        }
    }
}

struct Inner {
    config: EventsConfig,
    state: RwLock<State>,
    next_id: AtomicU64,
    dropped: AtomicU64,
    delivered: AtomicU64,
    /// Connections admitted and not yet closed (see [`Hub::try_admit`]).
    admitted: AtomicUsize,
}

/// The event hub. Cheap to clone (shared).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// One subscriber's end: its queue and its kick signal. Dropping it unsubscribes everything.
pub struct Subscription {
    hub: Hub,
    /// This subscriber's id in the hub.
    pub id: u64,
    /// Serialized event frames, in publication order.
    pub events: mpsc::Receiver<Arc<str>>,
    /// Fires when the hub ends the subscription.
    pub kicked: oneshot::Receiver<Kick>,
}

/// A place held by one WebSocket connection (see [`Hub::try_admit`]).
pub struct Admission {
    hub: Hub,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.hub.inner.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.write().remove(self.id);
        metrics::ws_disconnected();
    }
}

impl Hub {
    /// An empty hub.
    pub fn new(config: EventsConfig) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                config,
                state: RwLock::new(State::default()),
                next_id: AtomicU64::new(1),
                dropped: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                admitted: AtomicUsize::new(0),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &EventsConfig {
        &self.inner.config
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new subscriber with no topics. After [`Hub::shutdown`] the subscription is
    /// kicked at once.
    pub fn connect(&self) -> Subscription {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, events) = mpsc::channel(self.inner.config.queue.max(1));
        let (kick_tx, kicked) = oneshot::channel();
        metrics::ws_connected();
        {
            let mut st = self.write();
            if st.closed {
                let _ = kick_tx.send(Kick::ShuttingDown);
            } else {
                st.subs.insert(
                    id,
                    Sub {
                        tx,
                        topics: HashSet::new(),
                        kick: Some(kick_tx),
                    },
                );
            }
        }
        Subscription {
            hub: self.clone(),
            id,
            events,
            kicked,
        }
    }

    /// Adds `topics` (already validated) to subscriber `id`, all or none.
    pub fn subscribe(&self, id: u64, topics: &[String]) -> Result<(), SubscribeError> {
        let mut st = self.write();
        let st = &mut *st;
        let sub = st.subs.get_mut(&id).ok_or(SubscribeError::Gone)?;
        let new: Vec<&String> = topics.iter().filter(|t| !sub.topics.contains(*t)).collect();
        let max = self.inner.config.max_topics;
        if sub.topics.len() + new.len() > max {
            return Err(SubscribeError::TooManyTopics {
                max,
                have: sub.topics.len(),
                asked: new.len(),
            });
        }
        for t in new {
            sub.topics.insert(t.clone());
            st.topics.entry(t.clone()).or_default().insert(id);
            if t.starts_with("musician:") {
                st.musician_subscriptions += 1;
            }
        }
        Ok(())
    }

    /// Removes `topics` from subscriber `id` (topics it does not have are ignored).
    pub fn unsubscribe(&self, id: u64, topics: &[String]) {
        let mut st = self.write();
        let Some(sub) = st.subs.get_mut(&id) else {
            return;
        };
        let removed: Vec<String> = topics
            .iter()
            .filter(|t| sub.topics.remove(*t))
            .cloned()
            .collect();
        for t in removed {
            st.unlink(id, &t);
        }
    }

    /// True when some subscriber listens to `topic`.
    pub fn has_subscribers(&self, topic: &str) -> bool {
        self.read().topics.contains_key(topic)
    }

    /// True when some subscriber listens to any `musician:` topic.
    pub fn has_musician_subscribers(&self) -> bool {
        self.read().musician_subscriptions > 0
    }

    /// Queues `events` for their subscribers without waiting; see the module documentation.
    pub fn publish(&self, events: &[Event]) {
        let mut slow = Vec::new();
        let mut gone = Vec::new();
        {
            let st = self.read();
            for ev in events {
                let Some(ids) = st.topics.get(&ev.topic) else {
                    continue;
                };
                let text: Arc<str> = match serde_json::to_string(ev) {
                    Ok(t) => t.into(),
                    Err(e) => {
                        tracing::error!(error = %e, kind = ev.kind, "could not serialize an event");
                        continue;
                    }
                };
                let mut queued = 0u64;
                for id in ids {
                    let Some(sub) = st.subs.get(id) else { continue };
                    match sub.tx.try_send(text.clone()) {
                        Ok(()) => queued += 1,
                        Err(mpsc::error::TrySendError::Full(_)) => slow.push(*id),
                        Err(mpsc::error::TrySendError::Closed(_)) => gone.push(*id),
                    }
                }
                self.inner.delivered.fetch_add(queued, Ordering::Relaxed);
                metrics::ws_events(ev.kind, queued);
            }
        }
        if slow.is_empty() && gone.is_empty() {
            return;
        }
        let mut st = self.write();
        for id in gone {
            st.remove(id);
        }
        slow.sort_unstable();
        slow.dedup();
        for id in slow {
            if let Some(mut sub) = st.remove(id) {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::ws_dropped();
                tracing::warn!(subscriber = id, "dropping a slow event subscriber");
                if let Some(k) = sub.kick.take() {
                    let _ = k.send(Kick::TooSlow);
                }
            }
        }
    }

    /// Reserves a place for one more WebSocket connection, or `None` when
    /// `max_subscribers` are open. Taken before the upgrade is answered, so a flood of
    /// upgrades is refused before any socket task exists; the place is freed when the
    /// [`Admission`] is dropped.
    pub fn try_admit(&self) -> Option<Admission> {
        let max = self.inner.config.max_subscribers;
        self.inner
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Admission { hub: self.clone() })
    }

    /// Ends every subscription (code 1001) and refuses new ones.
    pub fn shutdown(&self) {
        let mut st = self.write();
        st.closed = true;
        let ids: Vec<u64> = st.subs.keys().copied().collect();
        for id in ids {
            if let Some(mut sub) = st.remove(id) {
                if let Some(k) = sub.kick.take() {
                    let _ = k.send(Kick::ShuttingDown);
                }
            }
        }
    }

    /// Counters.
    pub fn stats(&self) -> HubStats {
        HubStats {
            connections: self.read().subs.len(),
            dropped: self.inner.dropped.load(Ordering::Relaxed),
            delivered: self.inner.delivered.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ev(topic: &str, seq: u64) -> Event {
        Event {
            kind: crate::http::events::kind::GIG_CREATED,
            topic: topic.into(),
            seq,
            data: serde_json::json!({}),
        }
    }

    #[test]
    fn events_reach_only_their_topics_subscribers() {
        let hub = Hub::new(EventsConfig::default());
        let mut a = hub.connect();
        let mut b = hub.connect();
        hub.subscribe(a.id, &["gig:g-1".into()]).unwrap();
        hub.subscribe(b.id, &["gig:g-2".into()]).unwrap();
        hub.publish(&[ev("gig:g-1", 1), ev("gig:g-3", 2)]);
        assert!(a.events.try_recv().unwrap().contains("\"seq\":1"));
        assert!(a.events.try_recv().is_err());
        assert!(b.events.try_recv().is_err());
        hub.unsubscribe(a.id, &["gig:g-1".into()]);
        assert!(!hub.has_subscribers("gig:g-1"));
        hub.publish(&[ev("gig:g-1", 3)]);
        assert!(a.events.try_recv().is_err());
    }

    #[test]
    fn a_full_queue_kicks_only_that_subscriber() {
        let hub = Hub::new(EventsConfig {
            queue: 2,
            ..EventsConfig::default()
        });
        let mut slow = hub.connect();
        let mut fast = hub.connect();
        for s in [&slow, &fast] {
            hub.subscribe(s.id, &["gig:g-1".into()]).unwrap();
        }
        for seq in 0..3 {
            hub.publish(&[ev("gig:g-1", seq)]);
            while fast.events.try_recv().is_ok() {}
        }
        assert_eq!(slow.kicked.try_recv().unwrap(), Kick::TooSlow);
        assert!(fast.kicked.try_recv().is_err());
        assert_eq!(hub.stats().connections, 1);
        assert_eq!(hub.stats().dropped, 1);
        hub.publish(&[ev("gig:g-1", 9)]);
        assert!(fast.events.try_recv().unwrap().contains("\"seq\":9"));
    }

    #[test]
    fn topic_limits_are_all_or_nothing_and_dropping_unsubscribes() {
        let hub = Hub::new(EventsConfig {
            max_topics: 2,
            ..EventsConfig::default()
        });
        let s = hub.connect();
        hub.subscribe(s.id, &["musician:m-1".into()]).unwrap();
        assert!(hub.has_musician_subscribers());
        let err = hub
            .subscribe(s.id, &["gig:a".into(), "gig:b".into()])
            .unwrap_err();
        assert!(matches!(err, SubscribeError::TooManyTopics { .. }));
        assert!(!hub.has_subscribers("gig:a"));
        // Topics already held do not count twice.
        hub.subscribe(s.id, &["musician:m-1".into(), "gig:a".into()])
            .unwrap();
        drop(s);
        assert!(!hub.has_musician_subscribers());
        assert!(!hub.has_subscribers("gig:a"));
        assert_eq!(hub.stats().connections, 0);
    }
}
