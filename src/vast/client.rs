//! The HTTP side: `POST /get_workergroup_workers/` or `POST /get_endpoint_workers/`, with
//! a capped body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::{connect_timeout, outcome, read_body, transport_error, wait_turn};
use super::parse::classify_response_counted;
use super::{VastError, Worker};
use crate::crd::Scope;
use crate::runtime::fair::FairRate;
use crate::runtime::metrics::Metrics;

/// The process-wide limit on calls to Vast.
type Limiter = FairRate;

/// HTTP client for the Vast serverless API.
#[derive(Clone)]
pub struct VastClient {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    metrics: Option<Arc<Metrics>>,
    limiter: Option<Arc<Limiter>>,
    /// Per scope, how many entries of the last answer had no usable id (only non-zero
    /// counts are kept), so that it is said once per change, not every poll.
    unusable: Arc<parking_lot::Mutex<std::collections::HashMap<Scope, usize>>>,
}

/// How the client reaches Vast: which URLs it accepts and which CAs it trusts.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// Accept `http://` to a host that is not loopback (the key then travels in clear).
    pub allow_insecure: bool,
    /// A PEM file of CA certificates to trust besides the system's (a private CA, or a
    /// TLS-inspecting proxy).
    pub ca_file: Option<std::path::PathBuf>,
}

/// Refuses a URL that would send the key unencrypted: `https://` always works;
/// `http://` only to a loopback host (a local fake or tunnel) or when allowed.
pub fn check_url(base_url: &str, allow_insecure: bool) -> Result<(), crate::error::Error> {
    let url = url::Url::parse(base_url).map_err(|e| {
        crate::error::Error::Config(format!("the Vast URL {base_url:?} is not a URL: {e}"))
    })?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback || allow_insecure => Ok(()),
        "http" => Err(crate::error::Error::Config(format!(
            "the Vast URL {base_url:?} is plain http to a host that is not loopback: the API key would travel unencrypted; use https://, or pass --allow-insecure-vast-url to accept that"
        ))),
        _ => Err(crate::error::Error::Config(format!(
            "the Vast URL {base_url:?} must start with https://"
        ))),
    }
}

/// The HTTP client of every call to Vast: no redirect followed, timeouts, the CAs of
/// `transport`.
fn http_client(
    timeout: Duration,
    transport: &Transport,
) -> Result<reqwest::Client, crate::error::Error> {
    let mut builder = reqwest::Client::builder()
        // No redirect is followed: reqwest keeps `Authorization` for the same host and
        // port, so a `Location: http://<same host>:443/...` would send the key in
        // clear text. A 3xx is an HTTP error naming its code.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(connect_timeout(timeout))
        .user_agent(concat!("vast-operator/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &transport.ca_file {
        builder = builder.tls_certs_merge(read_ca_file(path)?);
    }
    builder
        .build()
        .map_err(|e| crate::error::Error::StartUp(format!("cannot build the HTTP client: {e}")))
}

/// The CA certificates of a PEM file, with a clear error when there are none.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, crate::error::Error> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| {
        crate::error::Error::Config(format!("cannot read --vast-ca-file {shown}: {e}"))
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        crate::error::Error::Config(format!(
            "--vast-ca-file {shown} is not PEM certificates: {e}"
        ))
    })?;
    if certs.is_empty() {
        return Err(crate::error::Error::Config(format!(
            "--vast-ca-file {shown} holds no certificate"
        )));
    }
    Ok(certs)
}

impl VastClient {
    /// A client for `base_url` (such as `https://run.vast.ai`), trusting the system's
    /// CAs; plain http only to a loopback host.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, crate::error::Error> {
        Self::with_transport(base_url, timeout, &Transport::default())
    }

    /// A client for `base_url` with the given [`Transport`].
    pub fn with_transport(
        base_url: &str,
        timeout: Duration,
        transport: &Transport,
    ) -> Result<Self, crate::error::Error> {
        crate::shared::install_crypto_provider();
        check_url(base_url, transport.allow_insecure)?;
        let base = base_url.trim_end_matches('/');
        let http = http_client(timeout, transport)?;
        Ok(Self {
            http,
            base: base.to_string(),
            timeout,
            metrics: None,
            limiter: None,
            unusable: Arc::default(),
        })
    }

    /// A client of Vast's console API at `base_url` (such as `https://console.vast.ai`):
    /// the same HTTP client (CAs, timeouts, no redirects), rate limit and metrics as this
    /// one; https only, as for `--vast-url`.
    pub fn console(
        &self,
        base_url: &str,
        allow_insecure: bool,
    ) -> Result<super::ConsoleClient, crate::error::Error> {
        check_url(base_url, allow_insecure)?;
        Ok(super::ConsoleClient {
            http: self.http.clone(),
            base: base_url.trim_end_matches('/').to_string(),
            timeout: self.timeout,
            metrics: self.metrics.clone(),
            limiter: self.limiter.clone(),
        })
    }

    /// Allows at most `per_second` calls per second (bursts of as many), queueing the
    /// others fairly by tenant (see [`crate::runtime::fair`]); none is dropped. Needs a
    /// Tokio runtime.
    pub fn with_rate_limit(mut self, per_second: std::num::NonZeroU32) -> Self {
        self.limiter = Some(Arc::new(FairRate::new(per_second)));
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
        self.workers_for(Scope::Workergroup(workergroup_id), api_key, "")
            .await
    }

    /// Where the workers of `scope` are asked for.
    pub fn url(&self, scope: Scope) -> String {
        match scope {
            Scope::Workergroup(_) => format!("{}/get_workergroup_workers/", self.base),
            Scope::Endpoint(_) => format!("{}/get_endpoint_workers/", self.base),
        }
    }

    /// Fetches the workers of `scope` for `tenant` (a namespace), which waits its turn
    /// under the rate limit.
    pub async fn workers_for(
        &self,
        scope: Scope,
        api_key: &str,
        tenant: &str,
    ) -> Result<Vec<Worker>, VastError> {
        wait_turn(self.limiter.as_deref(), self.metrics.as_deref(), tenant).await;
        let started = Instant::now();
        let mut code = None;
        let result = self
            .call(scope, api_key, &mut code)
            .await
            .map_err(|e| e.redact(api_key));
        if let Some(m) = &self.metrics {
            m.vast_request(outcome(&result), code, started.elapsed().as_secs_f64());
        }
        result
    }

    async fn call(
        &self,
        scope: Scope,
        api_key: &str,
        code: &mut Option<u16>,
    ) -> Result<Vec<Worker>, VastError> {
        let url = self.url(scope);
        let resp = self
            .http
            .post(&url)
            .bearer_auth(api_key)
            .json(&serde_json::json!({ "id": scope.id() }))
            .send()
            .await
            .map_err(|e| transport_error(&e, &url, self.timeout))?;
        let status = resp.status().as_u16();
        *code = Some(status);
        let body = read_body(resp, &url, self.timeout).await?;
        let parsed = classify_response_counted(status, &body)?;
        self.note_unusable(scope, parsed.unusable);
        Ok(parsed.workers)
    }

    /// Warns when the count of entries without a usable id changes (to non-zero);
    /// returns whether it did.
    fn note_unusable(&self, scope: Scope, n: usize) -> bool {
        let mut seen = self.unusable.lock();
        let before = if n == 0 {
            seen.remove(&scope)
        } else {
            seen.insert(scope, n)
        };
        if n > 0 && before != Some(n) {
            tracing::warn!(
                scope = %scope,
                left_out = n,
                "Vast sent workers without a usable id; they are left out (said again only when the count changes)"
            );
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::{VastClient, check_url};
    use crate::crd::Scope;

    #[test]
    fn unusable_entries_are_told_once_per_change() {
        let c = VastClient::new("http://127.0.0.1:1", std::time::Duration::from_secs(1))
            .expect("client");
        let told: Vec<bool> = [2, 2, 2, 3, 0, 0, 3, 3]
            .iter()
            .map(|&n| c.note_unusable(Scope::Workergroup(7), n))
            .collect();
        assert_eq!(told, [true, false, false, true, false, false, true, false]);
        assert!(c.note_unusable(Scope::Workergroup(8), 1), "per workergroup");
        assert!(c.note_unusable(Scope::Endpoint(7), 1), "per scope");
    }

    /// A 302 to another listener is an error naming the code, and the other listener
    /// sees no connection (a followed redirect would have reached it before the call
    /// returned).
    #[tokio::test]
    async fn redirects_are_not_followed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let target = elsewhere.local_addr().expect("addr");
        let first = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", first.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = first.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 302 Found\r\nLocation: http://{target}/get_workergroup_workers/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        let c = VastClient::new(&url, std::time::Duration::from_secs(5)).expect("client");
        let err = c
            .workergroup_workers(7, "vk1-redirect-key")
            .await
            .expect_err("a redirect is an error");
        assert!(
            matches!(err, crate::vast::VastError::Http { status: 302, .. }),
            "{err:?}"
        );
        let followed =
            tokio::time::timeout(std::time::Duration::from_millis(200), elsewhere.accept()).await;
        assert!(followed.is_err(), "the redirect was followed");
    }

    #[test]
    fn only_https_or_loopback_http_unless_allowed() {
        for ok in [
            "https://run.vast.ai",
            "https://10.0.0.5:8443/",
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
        ] {
            assert!(check_url(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://run.vast.ai",
            "http://10.0.0.5",
            "http://127.0.0.1.nip.io",
        ] {
            let err = check_url(bad, false).expect_err(bad).to_string();
            assert!(err.contains("--allow-insecure-vast-url"), "{err}");
            assert!(check_url(bad, true).is_ok(), "{bad} allowed");
        }
        for never in ["ftp://run.vast.ai", "run.vast.ai", ""] {
            assert!(check_url(never, true).is_err(), "{never}");
        }
    }
}
