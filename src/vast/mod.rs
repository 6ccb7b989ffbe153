//! The Vast.ai side: one call, `POST /get_workergroup_workers/`, parsed tolerantly.
//!
//! The real service answers in four shapes (a bare array, `{"workers": [...]}`,
//! `{"error_msg": "..."}` and a bare JSON string), all with HTTP 200, and its worker
//! objects carry more, fewer or differently typed fields than documented. [`parse`]
//! accepts what the service really sends (pure), [`client`] makes the HTTP call and
//! [`error`] classifies failures; see `docs/architecture.md`.

pub mod client;
pub mod coalesce;
pub mod error;
pub mod parse;

pub use client::{MAX_BODY_BYTES, Transport, VastClient, check_url};
pub use coalesce::{Coalescer, Fetched, ShareKey};
pub use error::{MAX_ERROR_TEXT, VastError};
pub use parse::{
    Worker, classify_response, error_from_text, parse_time, parse_worker, parse_workers,
};
