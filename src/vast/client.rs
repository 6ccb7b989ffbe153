//! The HTTP side: one call, `POST /get_workergroup_workers/`, with a capped body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{VastError, Worker, classify_response};
use crate::runtime::metrics::Metrics;

/// The process-wide limit on calls to Vast.
type Limiter = governor::DefaultDirectRateLimiter;

/// Largest response body read before giving up.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// HTTP client for the Vast serverless API.
#[derive(Clone)]
pub struct VastClient {
    http: reqwest::Client,
    endpoint: String,
    timeout: Duration,
    metrics: Option<Arc<Metrics>>,
    limiter: Option<Arc<Limiter>>,
}

impl VastClient {
    /// A client for `base_url` (such as `https://run.vast.ai`).
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, crate::Error> {
        crate::install_crypto_provider();
        let base = base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(crate::Error::Config(format!(
                "Vast URL {base_url:?} must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("vast-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| crate::Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            endpoint: format!("{base}/get_workergroup_workers/"),
            timeout,
            metrics: None,
            limiter: None,
        })
    }

    /// Allows at most `per_second` calls per second (bursts of as many), queueing the
    /// others in order; none is dropped.
    pub fn with_rate_limit(mut self, per_second: std::num::NonZeroU32) -> Self {
        let quota = governor::Quota::per_second(per_second);
        self.limiter = Some(Arc::new(governor::RateLimiter::direct(quota)));
        self
    }

    /// Counts every call in `metrics` (`vast_operator_vast_requests_total` and
    /// `vast_operator_vast_request_duration_seconds`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Fetches the workers of one workergroup.
    pub async fn workergroup_workers(
        &self,
        workergroup_id: i64,
        api_key: &str,
    ) -> Result<Vec<Worker>, VastError> {
        if let Some(limiter) = &self.limiter {
            // A little jitter: many reconciles released together do not all call at the
            // same instant.
            limiter
                .until_ready_with_jitter(governor::Jitter::up_to(Duration::from_millis(20)))
                .await;
        }
        let started = Instant::now();
        let mut code = None;
        let result = self
            .call(workergroup_id, api_key, &mut code)
            .await
            .map_err(|e| e.redact(api_key));
        if let Some(m) = &self.metrics {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.metric_label(),
            };
            m.vast_request(outcome, code, started.elapsed().as_secs_f64());
        }
        result
    }

    async fn call(
        &self,
        workergroup_id: i64,
        api_key: &str,
        code: &mut Option<u16>,
    ) -> Result<Vec<Worker>, VastError> {
        let mut resp = self
            .http
            .post(&self.endpoint)
            .bearer_auth(api_key)
            .json(&serde_json::json!({ "id": workergroup_id }))
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = resp.status().as_u16();
        *code = Some(status);
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
                Ok(None) => break,
                Err(e) => return Err(self.transport_error(&e)),
            }
        }
        classify_response(status, &body)
    }

    fn transport_error(&self, e: &reqwest::Error) -> VastError {
        if e.is_timeout() {
            return VastError::Transport(format!(
                "no answer within {}s",
                self.timeout.as_secs_f64()
            ));
        }
        if e.is_connect() {
            return VastError::Transport(format!("cannot connect to {}", self.endpoint));
        }
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            msg = format!("{msg}: {s}");
            source = s.source();
        }
        VastError::Transport(msg)
    }
}
