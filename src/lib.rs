//! vast-operator: mirrors Vast.ai serverless workergroups into `WorkerGroup` resources.
//!
//! Data flows one way: [`vast`] (HTTP client, tolerant parsing) -> [`sync`] (pure: diff,
//! conditions, the write decision, events) -> [`controller`] (status patch, events) and
//! [`discovery`] (Service and EndpointSlices). [`runtime`] holds the process-level pieces
//! (metrics, health probes, leader election, logging) and [`app`] wires them together.
//!
//! Modules are layered; a module imports only modules of a lower layer (a test checks
//! it, see `docs/architecture.md`):
//!
//! | layer | modules |
//! |---|---|
//! | 0 | [`duration`], [`error`], [`reasons`], [`shared`], [`text`] |
//! | 1 | [`crd`], [`runtime`] |
//! | 2 | [`vast`] |
//! | 3 | [`sync`] (pure: no I/O) |
//! | 4 | [`discovery`] |
//! | 5 | [`controller`] |
//! | 6 | [`app`] |

pub mod app;
pub mod controller;
pub mod crd;
pub mod discovery;
pub mod duration;
pub mod error;
pub mod reasons;
pub mod runtime;
pub mod shared;
pub mod sync;
pub mod text;
pub mod vast;

pub use error::Error;
pub use shared::{FIELD_MANAGER, install_crypto_provider};
