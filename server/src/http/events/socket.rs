//! One WebSocket connection of `GET /v1/events`: the loop that reads client frames, answers
//! them, forwards queued events and pings.
//!
//! Promises: the loop never blocks the hub (events wait in the subscriber's bounded queue);
//! a kick from the hub is acted on even while a send is stuck on a peer that does not read —
//! the close frame is then given [`CLOSE_GRACE`] to go out before the connection is dropped;
//! a peer silent for two ping intervals is dropped; the subscription ends when the loop ends,
//! whatever the reason; a topic is subscribed only when the connection's caller may follow it
//! ([`TopicAccess`]).

use crate::http::auth::Caller;
use crate::http::events::hub::{Hub, Kick, SubscribeError, Subscription};
use crate::http::events::{is_valid_topic, ClientFrame, Reply};
use futures_util::{SinkExt, StreamExt};
use mussikon_engine::Engine;
use std::time::Duration;
use tokio::time::Instant;
use warp::ws::{Message, WebSocket};

/// How long a close frame may take to go out before the connection is simply dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Why the loop stops.
enum Stop {
    /// The hub ended the subscription.
    Kicked(Kick),
    /// The peer is silent past the ping deadline.
    Dead,
    /// The peer closed, or the connection failed.
    Gone,
}

/// Who is connected, and the engine to check their topics against.
pub struct TopicAccess {
    /// The caller the upgrade request authenticated.
    pub caller: Caller,
    /// The engine (gig owners and bookings).
    pub engine: Engine,
}

impl TopicAccess {
    /// Ok when the caller may follow every topic (see [`crate::http::auth`]): `gig:ID` needs
    /// the gig's owner, a musician booked on it or an admin, `musician:ID` that musician or an
    /// admin. Otherwise the reason, naming the first topic refused.
    async fn check(&self, topics: &[String]) -> Result<(), String> {
        if self.caller.manages_all_gigs() {
            return Ok(());
        }
        let caller = self.caller.clone();
        let engine = self.engine.clone();
        let topics = topics.to_vec();
        let verdict = tokio::task::spawn_blocking(move || {
            for topic in &topics {
                let refused = match topic.split_once(':') {
                    Some(("gig", id)) => match engine.gig(id) {
                        Ok(Some(gig)) => caller.may_follow_gig(&gig).err().map(|e| e.to_string()),
                        Ok(None) => Some(format!("gig {id} does not exist")),
                        Err(e) => Some(format!("cannot check gig {id} now: {e}")),
                    },
                    Some(("musician", id)) => {
                        caller.may_follow_musician(id).err().map(|e| e.to_string())
                    }
                    // `imports`: admins only, and they returned above.
                    _ => Some("only admins may follow imports".to_string()),
                };
                if let Some(why) = refused {
                    return Err(format!("not allowed to subscribe to {topic}: {why}"));
                }
            }
            Ok(())
        })
        .await;
        verdict.unwrap_or_else(|_| Err("the topic check failed; try again".into()))
    }
}

/// Serves one upgraded connection until it ends.
pub async fn serve(hub: Hub, access: TopicAccess, ws: WebSocket) {
    let mut sub = hub.connect();
    let (mut sink, mut stream) = ws.split();
    let interval = hub.config().ping_interval.max(Duration::from_millis(10));
    let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
    let mut heard = Instant::now();
    let stop = loop {
        let outgoing = tokio::select! {
            // A kick wins over everything, so that its close frame is sent.
            biased;
            kick = &mut sub.kicked => break kick.map(Stop::Kicked).unwrap_or(Stop::Gone),
            frame = sub.events.recv() => match frame {
                Some(text) => Message::text(&*text),
                // The hub dropped our queue: it sends the kick before it does so.
                None => break sub.kicked.try_recv().map(Stop::Kicked).unwrap_or(Stop::Gone),
            },
            incoming = stream.next() => match incoming {
                Some(Ok(msg)) => {
                    heard = Instant::now();
                    if msg.is_close() {
                        break Stop::Gone;
                    }
                    match answer(&hub, &access, &sub, &msg).await {
                        Some(reply) => Message::text(reply.to_text()),
                        None => continue,
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "event socket failed");
                    break Stop::Gone;
                }
                None => break Stop::Gone,
            },
            _ = ping.tick() => {
                if heard.elapsed() > interval * 2 {
                    break Stop::Dead;
                }
                Message::ping(Vec::new())
            }
        };
        tokio::select! {
            biased;
            kick = &mut sub.kicked => break kick.map(Stop::Kicked).unwrap_or(Stop::Gone),
            sent = sink.send(outgoing) => if sent.is_err() { break Stop::Gone },
        }
    };
    let close = match stop {
        Stop::Kicked(k) => Some(k.close_frame()),
        Stop::Dead => Some((1001, "no pong within two ping intervals")),
        Stop::Gone => None,
    };
    if let Some((code, reason)) = close {
        tracing::info!(subscriber = sub.id, code, reason, "closing an event socket");
        let _ =
            tokio::time::timeout(CLOSE_GRACE, sink.send(Message::close_with(code, reason))).await;
    }
    drop(sub);
}

/// The reply to a client frame, if it needs one (pings and pongs do not).
async fn answer(
    hub: &Hub,
    access: &TopicAccess,
    sub: &Subscription,
    msg: &Message,
) -> Option<Reply> {
    if msg.is_ping() || msg.is_pong() {
        return None;
    }
    let Ok(text) = msg.to_str() else {
        return Some(error("send JSON text frames, not binary ones"));
    };
    let frame: ClientFrame = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            return Some(error(format!(
                "not a subscribe or unsubscribe frame: {e}; send {{\"op\":\"subscribe\",\"topics\":[\"gig:ID\",\"musician:ID\"]}}"
            )))
        }
    };
    let (subscribe, topics) = match frame {
        ClientFrame::Subscribe { topics } => (true, topics),
        ClientFrame::Unsubscribe { topics } => (false, topics),
    };
    if topics.is_empty() {
        return Some(error("topics must name at least one topic"));
    }
    let max = hub.config().max_topics;
    if topics.len() > max {
        return Some(error(format!("at most {max} topics per frame")));
    }
    if let Some(bad) = topics.iter().find(|t| !is_valid_topic(t)) {
        return Some(error(format!(
            "bad topic {bad:?}: a topic is gig:ID, musician:ID or imports, ids being 1-64 characters of [A-Za-z0-9._-]"
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(topics.len());
    let unique: Vec<String> = topics
        .into_iter()
        .filter(|t| seen.insert(t.clone()))
        .collect();
    if subscribe {
        if let Err(why) = access.check(&unique).await {
            return Some(error(why));
        }
        match hub.subscribe(sub.id, &unique) {
            Ok(()) => Some(Reply::Subscribed { topics: unique }),
            Err(e @ SubscribeError::TooManyTopics { .. }) => Some(error(e.to_string())),
            Err(SubscribeError::Gone) => None,
        }
    } else {
        hub.unsubscribe(sub.id, &unique);
        Some(Reply::Unsubscribed { topics: unique })
    }
}

fn error(message: impl Into<String>) -> Reply {
    Reply::Error {
        message: message.into(),
    }
}
