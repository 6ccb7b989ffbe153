//! What changed between two worker lists, and the note that says it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::crd::WorkerStatus;
use crate::text::cut;

/// Largest event note, in bytes.
pub const MAX_NOTE: usize = 1024;

/// What changed in the worker set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// Workers that appeared.
    pub added: Vec<i64>,
    /// Workers that went away.
    pub removed: Vec<i64>,
    /// Workers whose state changed: (id, old, new).
    pub changed: Vec<(i64, String, String)>,
}

impl ChangeSet {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// `+2 (ids 1, 2) -1 (ids 3) ~1 (4: loading->idle)`, cut to [`MAX_NOTE`] bytes.
    pub fn note(&self) -> String {
        let mut s = String::new();
        let ids = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        if !self.added.is_empty() {
            let _ = write!(s, "+{} (ids {}) ", self.added.len(), ids(&self.added));
        }
        if !self.removed.is_empty() {
            let _ = write!(s, "-{} (ids {}) ", self.removed.len(), ids(&self.removed));
        }
        if !self.changed.is_empty() {
            let parts: Vec<String> = self
                .changed
                .iter()
                .map(|(id, a, b)| format!("{id}: {a}->{b}"))
                .collect();
            let _ = write!(s, "~{} ({})", self.changed.len(), parts.join(", "));
        }
        cut(s.trim_end().to_string(), MAX_NOTE)
    }
}

/// Compares two worker lists by id and state.
pub fn diff(old: &[WorkerStatus], new: &[WorkerStatus]) -> ChangeSet {
    let old_map: BTreeMap<i64, &str> = old.iter().map(|w| (w.id, w.status.as_str())).collect();
    let new_map: BTreeMap<i64, &str> = new.iter().map(|w| (w.id, w.status.as_str())).collect();
    let mut cs = ChangeSet::default();
    for (id, state) in &new_map {
        match old_map.get(id) {
            None => cs.added.push(*id),
            Some(old_state) if old_state != state => {
                cs.changed
                    .push((*id, (*old_state).to_string(), (*state).to_string()))
            }
            Some(_) => {}
        }
    }
    cs.removed = old_map
        .keys()
        .filter(|id| !new_map.contains_key(id))
        .copied()
        .collect();
    cs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_is_cut_to_one_kib() {
        let cs = ChangeSet {
            added: (1_000_000..1_000_400).collect(),
            ..Default::default()
        };
        let note = cs.note();
        assert!(note.len() <= MAX_NOTE);
        assert!(note.starts_with("+400 (ids 1000000, "));
        assert!(note.ends_with('…'));
    }
}
