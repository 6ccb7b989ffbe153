//! The events a plan asks for: one per transition, never one per poll.

use crate::text::cut;

use super::diff::MAX_NOTE;
use crate::reasons::Reason;

/// One event to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// The reason.
    pub reason: Reason,
    /// What the controller did: PascalCase.
    pub action: &'static str,
    /// Human-readable note, at most [`MAX_NOTE`] bytes.
    pub note: String,
}

impl EventSpec {
    /// A Normal event.
    pub fn normal(reason: Reason, action: &'static str, note: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason,
            action,
            note: cut(note.into(), MAX_NOTE),
        }
    }

    /// A Warning event.
    pub fn warning(reason: Reason, action: &'static str, note: impl Into<String>) -> Self {
        Self {
            warning: true,
            ..Self::normal(reason, action, note)
        }
    }
}
