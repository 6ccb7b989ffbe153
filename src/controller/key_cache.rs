//! The API keys in use, cached with the resourceVersion of the Secret they were read
//! from (see [`super::api_key`], which reads them), and the index of the Secrets' metadata
//! the watch holds. Below the context that holds them and the reads that fill them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::Store;
use parking_lot::Mutex;

use crate::crd::WorkerGroup;

/// The Secret metadata the watch holds.
pub type SecretIndex = Store<PartialObjectMeta<Secret>>;

pub(super) type CacheKey = (String, String, String);

/// A cached key is read again after this long even when the Secret looks unchanged (its
/// watch may be down).
const MAX_AGE: Duration = Duration::from_secs(600);

/// A cached key not used for this long is forgotten (a suspended WorkerGroup, one whose
/// polls stopped): keys are held only while they are in use.
pub const IDLE: Duration = Duration::from_secs(3600);

/// One cached key.
struct Held {
    /// The Secret's resourceVersion it was read at.
    version: String,
    value: String,
    read_at: Instant,
    used_at: Instant,
}

/// Keys in use, with the resourceVersion of the Secret they were read from.
#[derive(Default)]
pub struct KeyCache(Mutex<HashMap<CacheKey, Held>>);

impl KeyCache {
    pub(super) fn get(&self, key: &CacheKey, version: &str) -> Option<String> {
        let mut map = self.0.lock();
        let held = map
            .get_mut(key)
            .filter(|h| h.version == version && h.read_at.elapsed() < MAX_AGE)?;
        held.used_at = Instant::now();
        Some(held.value.clone())
    }

    pub(super) fn put(&self, key: CacheKey, version: String, value: String) {
        let mut map = self.0.lock();
        let now = Instant::now();
        map.insert(
            key,
            Held {
                version,
                value,
                read_at: now,
                used_at: now,
            },
        );
    }

    /// Forgets every key (a leadership term ended: a standby holds no tenant's key).
    pub fn clear(&self) {
        self.0.lock().clear();
    }

    /// Keeps the keys in `used` that were used at or after `cutoff` (None: any time).
    fn keep(&self, used: &std::collections::HashSet<CacheKey>, cutoff: Option<Instant>) {
        let mut map = self.0.lock();
        map.retain(|k, h| used.contains(k) && cutoff.is_none_or(|c| h.used_at >= c));
    }

    /// Whether the key of `wg` is held, read from the Secret at `version`.
    pub fn holds(&self, wg: &WorkerGroup, version: &str) -> bool {
        self.get(&cache_key(wg), version).is_some()
    }

    /// Forgets the key of `wg` (Vast refused it: read the Secret again next time).
    pub fn forget(&self, wg: &WorkerGroup) {
        let mut map = self.0.lock();
        map.remove(&cache_key(wg));
    }

    /// Forgets keys no WorkerGroup in `groups` references, and those not used for
    /// [`IDLE`].
    pub fn retain(&self, groups: &Store<WorkerGroup>) {
        let used: std::collections::HashSet<CacheKey> =
            groups.state().iter().map(|wg| cache_key(wg)).collect();
        self.keep(&used, Instant::now().checked_sub(IDLE));
    }

    /// Number of keys held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().len()
    }
}

pub(super) fn cache_key(wg: &WorkerGroup) -> CacheKey {
    let r = &wg.spec.api_key_secret_ref;
    (
        wg.namespace().unwrap_or_default(),
        r.name.clone(),
        r.key.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_when_unused_and_when_a_term_ends() {
        let cache = KeyCache::default();
        let k = |n: &str| ("ns".to_string(), n.to_string(), "api-key".to_string());
        cache.put(k("a"), "1".into(), "vk1-a".into());
        cache.put(k("b"), "1".into(), "vk1-b".into());
        cache.put(k("c"), "1".into(), "vk1-c".into());
        let before = Instant::now();
        assert_eq!(cache.get(&k("a"), "1").as_deref(), Some("vk1-a"));
        assert_eq!(cache.get(&k("c"), "1").as_deref(), Some("vk1-c"));
        assert_eq!(cache.get(&k("a"), "2"), None, "another resourceVersion");
        // Only `a` and `c` were used since `before`, and `c` is no longer referenced.
        let used = std::collections::HashSet::from([k("a"), k("b")]);
        cache.keep(&used, Some(before));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&k("a"), "1").as_deref(), Some("vk1-a"));
        assert_eq!(cache.get(&k("b"), "1"), None);
        cache.clear();
        assert_eq!(cache.len(), 0);
    }
}
