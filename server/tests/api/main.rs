//! The HTTP API end to end: a real server on a loopback port, a real HTTP client.
#![allow(clippy::unwrap_used)]

mod bookings;
mod common;
mod errors;
mod gigs;
mod musicians;
mod openapi;
mod ops;
mod search;
