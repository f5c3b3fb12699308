//! # mussikon-engine
//!
//! The embedded matching engine of MussikOn: musicians, gigs and bookings in a `sled` store
//! (the source of truth), a `tantivy` index for instrument, genre, availability, text and
//! location search, exact ranked matching scored in parallel with `rayon`, and optimal
//! assignment of a gig's seats.
//!
//! Every change is a [`Command`] applied through one deterministic [`Engine::apply`] path, so a
//! single node and a replicated state machine run the same code. The engine knows nothing of
//! HTTP or Raft.
//!
//! ```
//! use mussikon_engine::{Engine, Config, generate::{Generator, GenConfig}, MatchRequest, MatchTarget, Command};
//! let dir = tempfile::tempdir().unwrap();
//! let engine = Engine::open(dir.path(), Config::default()).unwrap();
//! let gen = Generator::new(GenConfig { musicians: 500, gigs: 5, ..GenConfig::default() }).unwrap();
//! engine.execute(&Command::BulkUpsert { musicians: gen.musicians().collect(), gigs: gen.gigs().collect() }).unwrap();
//! engine.refresh().unwrap(); // make the writes searchable now rather than within 250 ms
//! let result = engine.match_gig(&MatchRequest { target: MatchTarget::Stored(gen.gig(0).id), k: Some(3), weights: None }).unwrap();
//! assert_eq!(result.slots.len(), gen.gig(0).slots.len());
//! ```
//!
//! Modules: [`model`] (the JSON contract), [`validate`] (the one validation path),
//! [`command`] (commands and outcomes), `store` (sled, apply), `index` (tantivy), [`geo`]
//! (distances and cells), [`search`], [`matching`] (ranking and assignment), [`snapshot`]
//! (export/restore), [`import`] (JSON Lines), [`generate`] (seeded data), [`codec`] (bytes).
//!
//! Feature `openapi` (off by default): the types of the JSON contract (model, search, matching
//! results, effects, conflicts, field and line errors) also derive `utoipa::ToSchema`, so an
//! HTTP layer can publish OpenAPI schemas generated from the very structs serde uses.

pub mod codec;
mod columns;
pub mod command;
mod engine;
pub mod generate;
pub mod geo;
pub mod import;
mod index;
pub mod matching;
pub mod model;
mod overlay;
mod replica;
pub mod search;
mod search_scan;
mod slot_scan;
pub mod snapshot;
mod store;
pub mod validate;
mod view;

pub use command::{
    Command, Conflict, Effect, Expected, Guard, IdempotencyKey, Outcome, Refusal,
    IDEMPOTENCY_KEYS_KEPT, IDEMPOTENCY_TTL_MS, MAX_BATCH,
};
pub use engine::{
    Config, Durability, Engine, EngineError, Executed, MatchRequest, MatchResult, MatchTarget,
    SlotMatches, Status, DEFAULT_K, MAX_K,
};
pub use import::{ImportOptions, ImportProgress, ImportReport, LineError, OnError};
pub use index::IndexError;
pub use matching::{Assignment, Candidate, Components, Seat, Weights};
pub use model::*;
pub use search::{
    InstrumentFilter, InstrumentMode, Near, SearchHit, SearchPage, SearchQuery, SortBy,
};
pub use snapshot::{IdempotencyRecord, SnapshotSummary};
pub use store::{GigRecord, MusicianRecord, StoreError};
pub use validate::{
    is_valid_currency, is_valid_date, is_valid_id, validate_booking, validate_gig,
    validate_musician, FieldError, ValidationError,
};
