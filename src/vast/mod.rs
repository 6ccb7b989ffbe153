//! The Vast.ai side: `POST /get_workergroup_workers/` and `/get_endpoint_workers/`,
//! parsed tolerantly, and the console's listings read for settings ([`console`]).
//!
//! The real service answers in four shapes (a bare array, `{"workers": [...]}`,
//! `{"error_msg": "..."}` and a bare JSON string), all with HTTP 200, and its worker
//! objects carry more, fewer or differently typed fields than documented. [`parse`]
//! accepts what the service really sends (pure), [`client`] makes the HTTP call and
//! [`error`] classifies failures; see `docs/architecture.md`.

pub mod client;
pub mod coalesce;
pub mod console;
pub mod error;
pub mod http;
pub mod parse;

pub use client::{Transport, VastClient, check_url};
pub use coalesce::{Coalescer, Fetched, ShareKey};
pub use console::{Account, ConsoleClient, Listing};
pub use error::{MAX_ERROR_TEXT, VastError};
pub use http::MAX_BODY_BYTES;
pub use parse::{
    Worker, classify_response, error_from_text, parse_time, parse_worker, parse_workers,
};
