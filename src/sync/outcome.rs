//! What one poll found out ([`PollOutcome`]), the input of everything else in `sync`.

use crate::crd::WorkerStatus;
use crate::reasons::Reason;
use crate::vast::{VastError, Worker};

use super::workers::to_status_workers;

/// What one poll found out.
#[derive(Debug, Clone)]
pub enum PollOutcome {
    /// Vast answered with these workers (as status entries, sorted by id).
    Synced(Vec<WorkerStatus>),
    /// `spec.suspend` is true: nothing was asked.
    Suspended,
    /// An error that retrying may fix.
    Transient(String),
    /// An error that retrying will not fix (reason, message).
    Terminal {
        /// The reason, e.g. [`Reason::SecretNotFound`].
        reason: Reason,
        /// Message for the condition and the event.
        message: String,
    },
}

impl PollOutcome {
    /// The outcome of a Vast call.
    pub fn from_vast(result: Result<Vec<Worker>, VastError>) -> Self {
        match result {
            Ok(found) => PollOutcome::Synced(to_status_workers(&found)),
            Err(e) => e.into(),
        }
    }
}

impl PollOutcome {
    /// The `result` label of `vast_operator_reconciles_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            PollOutcome::Synced(_) => "synced",
            PollOutcome::Suspended => "suspended",
            PollOutcome::Transient(_) => "poll_failed",
            PollOutcome::Terminal { .. } => "terminal_error",
        }
    }
}

impl From<VastError> for PollOutcome {
    fn from(e: VastError) -> Self {
        if e.is_terminal() {
            PollOutcome::Terminal {
                reason: e.reason(),
                message: e.to_string(),
            }
        } else {
            PollOutcome::Transient(e.to_string())
        }
    }
}
