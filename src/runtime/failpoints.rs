//! Failpoints for `make chaos`, compiled in only with the `failpoints` feature (the
//! release build and the image carry none: `tests/layout.rs` checks the dependency tree,
//! `hack/image.sh` the binary). With the feature, the file named by `VAST_OPERATOR_FAILPOINTS` is
//! read every 200 ms; each line `name=actions` configures one point in the `fail` crate's
//! syntax (`return`, `1*return`, `50%return`, `off`), and a point no longer listed is
//! switched off. Without the feature, `failpoint!` is `false` and no
//! point's name is in the binary.
//!
//! The points:
//! - `crash-after-service`, `crash-after-slices`, `crash-after-status`: the process
//!   aborts between two writes of one reconcile (after the Service was written and
//!   before its slices; after the slices and before the status; after the status and
//!   before the events): Sieve's intermediate states.
//! - `watch-hold`: the watches of WorkerGroups, Secrets, Services and EndpointSlices stop
//!   delivering while it is on, and deliver what queued once it is off: a stale view.
//! - `watch-relist`: each of those watches starts again from a fresh list whenever the
//!   point's value changes (`watch-relist=return(3)`, then `return(4)`, ...): a relist
//!   that shows the world as it is now, without the events of what happened meanwhile.
//! - `skip-stale-rule`: a planted bug for the oracle to catch: stale endpoints stay
//!   ready.

/// Whether the failpoint `$name` (a literal) is on; always `false` without the
/// `failpoints` feature, which then leaves the name out of the binary.
macro_rules! failpoint {
    ($name:literal) => {{
        #[cfg(feature = "failpoints")]
        let on = $crate::runtime::failpoints::on($name);
        #[cfg(not(feature = "failpoints"))]
        let on = false;
        on
    }};
}

/// Aborts the process, as a crash would, when the failpoint `$name` is on.
macro_rules! crash_point {
    ($name:literal) => {{
        if $crate::runtime::failpoints::failpoint!($name) {
            eprintln!(concat!("failpoint ", $name, ": aborting"));
            std::process::abort();
        }
    }};
}

pub(crate) use {crash_point, failpoint};

/// Waits while the failpoint `watch-hold` is on (a watch held back).
pub async fn hold_watch() {
    while failpoint!("watch-hold") {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Whether the point `name` is on (its action fired).
#[cfg(feature = "failpoints")]
pub fn on(name: &str) -> bool {
    fail::eval(name, |_| ()).is_some()
}

/// The value of `watch-relist` (`return(v)`), when it is on.
#[cfg(feature = "failpoints")]
pub fn relist_value() -> Option<String> {
    fail::eval("watch-relist", |v| v).flatten()
}

/// Follows the file `VAST_OPERATOR_FAILPOINTS` names, if any (see the module's text).
#[cfg(feature = "failpoints")]
pub fn follow_file() {
    let Some(path) = std::env::var_os("VAST_OPERATOR_FAILPOINTS") else {
        return;
    };
    tracing::warn!(file = %std::path::Path::new(&path).display(), "failpoints enabled (a test build)");
    apply(
        &std::fs::read_to_string(&path).unwrap_or_default(),
        &mut Vec::new(),
    );
    tokio::spawn(async move {
        let mut last = String::new();
        let mut names = Vec::new();
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text != last {
                apply(&text, &mut names);
                last = text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
}

#[cfg(feature = "failpoints")]
fn apply(text: &str, names: &mut Vec<String>) {
    let mut now = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((name, actions)) = line.split_once('=') else {
            tracing::warn!(line, "a failpoint line is not name=actions");
            continue;
        };
        match fail::cfg(name.trim(), actions.trim()) {
            Ok(()) => now.push(name.trim().to_string()),
            Err(e) => tracing::warn!(line, error = %e, "a failpoint was refused"),
        }
    }
    for gone in names.iter().filter(|n| !now.contains(n)) {
        fail::remove(gone);
    }
    *names = now;
}

/// Without the feature there is no file to follow.
#[cfg(not(feature = "failpoints"))]
pub fn follow_file() {}
