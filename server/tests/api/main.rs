//! The HTTP API end to end: a real server on a loopback port, a real HTTP client.
#![allow(clippy::unwrap_used)]

mod auth;
mod bookings;
mod chat_auth;
mod common;
mod cors;
mod depth;
mod errors;
mod events;
mod gigs;
mod limits;
mod messages;
mod musicians;
mod openapi;
mod ops;
mod ratelimit;
mod search;
#[path = "../support/ws.rs"]
mod ws;
