//! What every HTTP call to Vast shares: the timeouts, the capped body read and the
//! transport errors (which name the URL, never the headers that hold the key).

use std::time::Duration;

use super::VastError;
use crate::runtime::fair::FairRate;
use crate::runtime::metrics::Metrics;

/// Largest response body read before giving up.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How long a connection may take: half the call's timeout, at most 10 s (so that a
/// black-holed address is told apart from a slow answer).
pub(crate) fn connect_timeout(timeout: Duration) -> Duration {
    (timeout / 2).min(Duration::from_secs(10))
}

/// Waits for `tenant`'s turn under the rate limit, if there is one, and records the
/// wait.
pub(crate) async fn wait_turn(limiter: Option<&FairRate>, metrics: Option<&Metrics>, tenant: &str) {
    if let Some(limiter) = limiter {
        let waited = limiter.acquire(tenant).await;
        if let Some(m) = metrics {
            m.queue_waited("vast", tenant, waited.as_secs_f64());
        }
    }
}

/// The `outcome` label of a call's result (`ok`, or the error's).
pub(crate) fn outcome<T>(result: &Result<T, VastError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.metric_label(),
    }
}

/// The body of `resp`, at most [`MAX_BODY_BYTES`].
pub(crate) async fn read_body(
    mut resp: reqwest::Response,
    url: &str,
    timeout: Duration,
) -> Result<Vec<u8>, VastError> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(VastError::Malformed(format!(
                        "response body larger than {} MiB",
                        MAX_BODY_BYTES / (1024 * 1024)
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(transport_error(&e, url, timeout)),
        }
    }
}

/// A transport failure of a call to `url`, saying why without the key (reqwest's errors
/// name the URL, never the headers).
pub(crate) fn transport_error(e: &reqwest::Error, url: &str, timeout: Duration) -> VastError {
    if e.is_timeout() && e.is_connect() {
        return VastError::Transport(format!(
            "cannot connect to {} within {}s",
            url,
            connect_timeout(timeout).as_secs_f64()
        ));
    }
    if e.is_timeout() {
        return VastError::Transport(format!("no answer within {}s", timeout.as_secs_f64()));
    }
    if e.is_connect() {
        // The innermost cause says why: refused, unreachable, or a TLS failure such
        // as a certificate no trusted CA signed.
        let mut cause = std::error::Error::source(e);
        let mut last = None;
        while let Some(s) = cause {
            last = Some(s.to_string());
            cause = s.source();
        }
        return VastError::Transport(match last {
            Some(why) => format!("cannot connect to {}: {why}", url),
            None => format!("cannot connect to {}", url),
        });
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    VastError::Transport(msg)
}
