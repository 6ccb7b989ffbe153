//! Watches whose initial list is streamed (Kubernetes' WatchList, `sendInitialEvents`:
//! the objects arrive one by one as watch events, so no list page of up to 500 objects
//! is decoded and held at once) where the apiserver serves it, and paged lists where it
//! refuses: WatchList is on by default from Kubernetes 1.34 (beta in 1.32, off again in
//! 1.33) and can be turned off with `--feature-gates=WatchList=false`.
//!
//! kube-runtime streams from resourceVersion "0", which the apiserver may serve from a
//! watch cache that is a little behind (with several apiservers, one may be further
//! behind than another). That suits the caches of our Services and EndpointSlices:
//! every write carries a uid or resourceVersion precondition, so a stale view costs a
//! refused write, caught up by the next poll; and an object the stale list still shows
//! after its deletion (which the watch then reports) is written again at the next poll
//! at the latest. The WorkerGroup and Secret watches keep their consistent lists (see
//! `controller::watches`): a stale WorkerGroup or key would act on old intent.

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::api::Api;
use kube::core::Status;
use kube::runtime::watcher::{self, watcher};
use serde::de::DeserializeOwned;
use std::time::Duration;
use tokio::time::Instant;

/// How long the first streamed list may take before the watch falls back to paged lists.
/// A streamed list comes from the apiserver's watch cache: some 200,000 slices take
/// seconds, not minutes.
pub const FIRST_STREAM_DEADLINE: Duration = Duration::from_secs(120);

/// The events of a watch of `api` with `config`, its initial list streamed when the
/// apiserver serves that, else paged (see [`streaming_or_else`]; logged once). Errors
/// come through as from [`watcher()`], for a backoff to follow.
pub fn streamed<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let start = move || {
        let streaming = watcher(api.clone(), config.clone().streaming_lists());
        let paged = watcher(api.clone(), config.clone());
        streaming_or_else(streaming, paged, FIRST_STREAM_DEADLINE, what)
    };
    // Held while the `watch-hold` failpoint is on (test builds only): a stale view.
    relisting(start).then(|ev| async move {
        super::failpoints::hold_watch().await;
        ev
    })
}

/// The watch `start` makes; in a test build, made again (a fresh list, from its `Init`)
/// whenever the `watch-relist` failpoint's value changes: see `runtime::failpoints`.
/// Without the `failpoints` feature this is `start()` itself.
pub fn relisting<S, F>(start: F) -> impl Stream<Item = S::Item> + Send
where
    F: Fn() -> S + Send + 'static,
    S: Stream + Send + 'static,
    S::Item: Send,
{
    #[cfg(not(feature = "failpoints"))]
    {
        start()
    }
    #[cfg(feature = "failpoints")]
    {
        // The value the watch last relisted for; checked before each event and every
        // 200 ms of a quiet watch.
        let last = super::failpoints::relist_value();
        futures::stream::unfold(
            (Box::pin(start()), start, last),
            |(mut stream, start, mut last)| async move {
                loop {
                    let now = super::failpoints::relist_value();
                    if now.is_some() && now != last {
                        tracing::warn!(
                            "failpoint watch-relist: the watch starts again from a list"
                        );
                        stream = Box::pin(start());
                        last = now;
                    }
                    tokio::select! {
                        item = stream.next() => return item.map(|i| (i, (stream, start, last))),
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            },
        )
    }
}

/// `streaming`, or `paged` instead, for good, once the apiserver refuses the protocol at a
/// watch start ([`refuses_streaming`]) or the first list has not finished within
/// `deadline` of its first start (restarts included: a proxy that drops
/// `sendInitialEvents` passes the objects on but never the end-of-list bookmark). The
/// events of an unfinished list are followed by `paged`'s `Init`, which starts the list
/// again from nothing.
pub fn streaming_or_else<K, S, P>(
    streaming: S,
    paged: P,
    deadline: Duration,
    what: &'static str,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: Send + 'static,
    S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
    P: Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
{
    struct First<S> {
        stream: std::pin::Pin<Box<S>>,
        /// When the first list must have finished by: set at its first `Init`.
        until: Option<Instant>,
        /// Whether the first list has finished (the deadline is over then).
        listed: bool,
    }
    let first = First {
        stream: Box::pin(streaming),
        until: None,
        listed: false,
    };
    let guarded = futures::stream::unfold(first, move |mut st| async move {
        let next = match st.until {
            Some(until) if !st.listed => {
                match tokio::time::timeout_at(until, st.stream.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        tracing::warn!(
                            "the streamed list of our {what} did not finish within {}s; paged lists instead",
                            deadline.as_secs()
                        );
                        return None;
                    }
                }
            }
            _ => st.stream.next().await,
        };
        let event = next?;
        match &event {
            // At any watch start, the first or one after a desync (an apiserver may
            // have been rolled back, or be one of several of different versions).
            Err(watcher::Error::WatchStartFailed(kube::Error::Api(s))) if refuses_streaming(s) => {
                tracing::info!(
                    "the apiserver does not serve streaming lists (WatchList) for our {what}; paged lists instead"
                );
                return None;
            }
            // The deadline runs from the first list's first start, through its restarts
            // (a reset connection starts it again; a proxy that drops the parameter ends
            // each try without the end-of-list bookmark).
            Ok(watcher::Event::Init) if st.until.is_none() => {
                st.until = Some(Instant::now() + deadline)
            }
            Ok(watcher::Event::InitDone) => st.listed = true,
            _ => {}
        }
        Some((event, st))
    });
    // Polled only once the guarded stream has ended, which it does only on a fallback.
    guarded.chain(paged)
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

    #[test]
    fn the_watch_backoff_doubles_to_five_seconds_and_starts_again_on_reset() {
        use kube::runtime::utils::Backoff;
        let mut b = WatchBackoff::default();
        let waits: Vec<u64> = (0..6)
            .filter_map(|_| b.next())
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(500)));
    }

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

    type Ev = watcher::Result<watcher::Event<String>>;

    fn name(ev: &Ev) -> String {
        match ev {
            Ok(watcher::Event::Init) => "Init".into(),
            Ok(watcher::Event::InitApply(o)) => o.clone(),
            Ok(watcher::Event::InitDone) => "InitDone".into(),
            Ok(watcher::Event::Apply(o)) => format!("Apply({o})"),
            Ok(watcher::Event::Delete(o)) => format!("Delete({o})"),
            Err(e) => format!("Err({e})"),
        }
    }

    fn events(names: &[&str]) -> Vec<Ev> {
        names
            .iter()
            .map(|n| match *n {
                "Init" => Ok(watcher::Event::Init),
                "InitDone" => Ok(watcher::Event::InitDone),
                n => Ok(watcher::Event::InitApply(n.to_string())),
            })
            .collect()
    }

    /// A stream of `first`, then nothing more and no end (a watch that stays open).
    fn open(first: Vec<Ev>) -> impl Stream<Item = Ev> + Send + 'static {
        futures::stream::iter(first).chain(futures::stream::pending())
    }

    /// What the guarded watch gives until it has been quiet for an hour (of paused time).
    async fn seen(s: impl Stream<Item = Ev>) -> Vec<String> {
        timed(s).await.into_iter().map(|(n, _)| n).collect()
    }

    /// `first` from the streaming watch (which then stays open), the paged one behind
    /// it, and a deadline of 120 s.
    fn with_paged(first: Vec<Ev>) -> impl Stream<Item = Ev> {
        streaming_or_else(
            open(first),
            open(events(&PAGED)),
            Duration::from_secs(120),
            "t",
        )
    }

    const PAGED: [&str; 3] = ["Init", "p", "InitDone"];

    #[tokio::test(start_paused = true)]
    async fn a_refusal_falls_back_without_passing_the_error_on() {
        let refused: Ev = Err(watcher::Error::WatchStartFailed(kube::Error::Api(
            Box::new(answer(
                422,
                "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
            )),
        )));
        let s = with_paged(vec![refused]);
        assert_eq!(seen(s).await, PAGED);
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_list_that_never_finishes_falls_back_at_the_deadline() {
        // A proxy that drops sendInitialEvents: objects come, the end-of-list bookmark not.
        let s = with_paged(events(&["Init", "a"]));
        assert_eq!(
            timed(s).await,
            [
                at("Init", 0),
                at("a", 0),
                at("Init", 120),
                at("p", 120),
                at("InitDone", 120)
            ]
        );
    }

    /// Each event of `s` with the second (of paused time) it came at, until an hour
    /// passes without one.
    async fn timed(s: impl Stream<Item = Ev>) -> Vec<(String, u64)> {
        let started = Instant::now();
        let mut s = std::pin::pin!(s);
        let mut got = Vec::new();
        while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(3600), s.next()).await {
            got.push((name(&ev), started.elapsed().as_secs()));
        }
        got
    }

    fn at(n: &str, t: u64) -> (String, u64) {
        (n.to_string(), t)
    }

    /// A test build's watch starts again from a list when `watch-relist`'s value changes,
    /// and only then (run by `make chaos-build`: `cargo test --features failpoints`).
    #[cfg(feature = "failpoints")]
    #[tokio::test(start_paused = true)]
    async fn a_failpoint_relist_starts_the_watch_again_when_its_value_changes() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};
        let starts = Arc::new(AtomicU32::new(0));
        let n = starts.clone();
        let start = move || {
            let i = n.fetch_add(1, Ordering::SeqCst) + 1;
            futures::stream::iter([format!("list {i}")]).chain(futures::stream::pending())
        };
        let mut s = Box::pin(relisting(start));
        assert_eq!(s.next().await.as_deref(), Some("list 1"));
        // Quiet: no event, and no new start, while the value stays.
        assert!(
            tokio::time::timeout(Duration::from_secs(2), s.next())
                .await
                .is_err()
        );
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        for (value, list) in [("return(1)", "list 2"), ("return(2)", "list 3")] {
            fail::cfg("watch-relist", value).expect("a failpoint config");
            let next = tokio::time::timeout(Duration::from_secs(1), s.next()).await;
            assert_eq!(next.ok().flatten().as_deref(), Some(list), "after {value}");
            assert!(
                tokio::time::timeout(Duration::from_secs(2), s.next())
                    .await
                    .is_err()
            );
        }
        fail::remove("watch-relist");
        assert!(
            tokio::time::timeout(Duration::from_secs(2), s.next())
                .await
                .is_err()
        );
        assert_eq!(starts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_list_that_starts_again_keeps_its_deadline() {
        // A reset connection starts the list again: no reason to give up on streaming,
        // nor to wait longer than the deadline from the first start.
        let s = with_paged(events(&["Init", "a", "Init", "b"]));
        assert_eq!(
            timed(s).await,
            [
                at("Init", 0),
                at("a", 0),
                at("Init", 0),
                at("b", 0),
                at("Init", 120),
                at("p", 120),
                at("InitDone", 120)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_after_the_first_list_falls_back_too() {
        // Listed, then a desync: the new watch start reaches an apiserver that refuses.
        let mut first = events(&["Init", "a", "InitDone"]);
        first.push(Err(watcher::Error::WatchStartFailed(kube::Error::Api(Box::new(answer(
            422,
            "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
        ))))));
        let s = with_paged(first);
        assert_eq!(
            seen(s).await,
            ["Init", "a", "InitDone", "Init", "p", "InitDone"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_list_keeps_streaming_through_relists_and_errors() {
        let mut first = events(&["Init", "a", "InitDone"]);
        first.push(Err(watcher::Error::NoResourceVersion));
        first.extend(events(&["Init", "b"]));
        let s = with_paged(first);
        // A relist that takes longer than the deadline is no reason to fall back either.
        let err = name(&Err(watcher::Error::NoResourceVersion));
        assert_eq!(
            seen(s).await,
            ["Init", "a", "InitDone", err.as_str(), "Init", "b"]
        );
    }
}

/// The backoff of the operator's watches after an error: from 0.5 s, doubling, at most
/// [`WATCH_BACKOFF_MAX`], back to the start at the first event that comes through.
/// kube-runtime's default goes up to 30 s: after an apiserver outage of a minute, every
/// watch (and with them discovery, which waits for its caches) then came back up to 30 s
/// after the apiserver did (found by `make chaos`). The operator has a handful of
/// watches, so retrying them every few seconds costs the apiserver nothing to speak of.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

/// The longest wait between two attempts of a watch.
pub const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(5);
const WATCH_BACKOFF_FIRST: Duration = Duration::from_millis(500);

impl Default for WatchBackoff {
    fn default() -> Self {
        Self {
            next: WATCH_BACKOFF_FIRST,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(WATCH_BACKOFF_MAX);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = WATCH_BACKOFF_FIRST;
    }
}
