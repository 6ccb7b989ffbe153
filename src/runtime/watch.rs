//! Watches whose initial list is streamed (Kubernetes' WatchList, `sendInitialEvents`:
//! the objects arrive one by one as watch events, so no list page of up to 500 objects
//! is decoded and held at once) where the apiserver serves it, and paged lists where it
//! refuses: WatchList is on by default from Kubernetes 1.34 (beta in 1.32, off again in
//! 1.33) and can be turned off with `--feature-gates=WatchList=false`.
//!
//! kube-runtime streams from resourceVersion "0", which the apiserver may serve from a
//! watch cache that is a little behind. That suits the caches of our Services and
//! EndpointSlices, whose every write carries a uid or resourceVersion precondition (a
//! stale view costs one refused write and is caught up by the next poll); the
//! WorkerGroup and Secret watches keep their consistent lists (see `controller::watches`).

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::api::Api;
use kube::core::Status;
use kube::runtime::watcher::{self, watcher};
use serde::de::DeserializeOwned;

/// The events of a watch of `api` with `config`, its initial list streamed when the
/// apiserver accepts that, else paged (decided at the first answer, logged once).
/// Errors come through as from [`watcher()`], for a backoff to follow.
pub fn streamed<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let streaming = watcher(api.clone(), config.clone().streaming_lists()).take_while(move |ev| {
        let refused = matches!(ev, Err(watcher::Error::WatchStartFailed(kube::Error::Api(s))) if refuses_streaming(s));
        if refused {
            tracing::info!(
                "the apiserver does not serve streaming lists (WatchList) for our {what}; paged lists instead"
            );
        }
        futures::future::ready(!refused)
    });
    // Polled only once the streaming watch has ended, which it does only when refused.
    streaming.chain(watcher(api, config))
}

/// Whether a failed watch start says the apiserver does not take `sendInitialEvents`: it
/// answers 422 Invalid, naming the parameter (WatchList off) or `resourceVersionMatch`
/// (a server older than 1.27, which does not know the protocol).
pub fn refuses_streaming(s: &Status) -> bool {
    (s.code == 422 || s.code == 400)
        && (s.message.contains("sendInitialEvents") || s.message.contains("resourceVersionMatch"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: u16, message: &str) -> Status {
        Status::failure(message, "Invalid").with_code(code)
    }

    #[test]
    fn only_a_refusal_of_the_protocol_falls_back() {
        // kube-apiserver 1.34 with --feature-gates=WatchList=false:
        assert!(refuses_streaming(&answer(
            422,
            "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"
        )));
        // Before 1.27:
        assert!(refuses_streaming(&answer(
            422,
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch"
        )));
        // Not allowed, overloaded or anything else: the watch retries as it is.
        assert!(!refuses_streaming(&answer(
            403,
            "endpointslices.discovery.k8s.io is forbidden: sendInitialEvents"
        )));
        assert!(!refuses_streaming(&answer(429, "too many requests")));
        assert!(!refuses_streaming(&answer(
            422,
            "something else is invalid"
        )));
    }
}
