//! `--metrics-secure`: `/metrics` over HTTPS, for callers whose bearer token may `get`
//! the non-resource URL `/metrics`, as kubebuilder's secure metrics
//! (controller-runtime's `WithAuthenticationAndAuthorization`) and kube-rbac-proxy do.
//!
//! A request without a bearer token is refused (401) without a call. Otherwise a
//! `TokenReview` names the caller (401 when the token is not valid), and a
//! `SubjectAccessReview` asks whether that user and groups may `get` `/metrics` (403
//! unless allowed). Verdicts are cached for a short while, keyed by the SHA-256 of the
//! token (the token itself is kept nowhere), in a cache of bounded size, so a scrape
//! every 15 s costs no apiserver call most of the time.
//!
//! The certificate is self-signed, made at start-up, unless `--metrics-cert-dir` holds
//! `tls.crt` and `tls.key` (the cert-manager / kubebuilder convention); those files are
//! read again when they change (a renewed Secret), checked at most every
//! [`CERT_RECHECK`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant, SystemTime};

use hyper::header::HeaderValue;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// The non-resource URL a caller must be allowed to `get`.
pub const PATH: &str = "/metrics";
/// How long an allowed verdict is kept (a revoked permission lasts that long at most).
pub const ALLOWED_TTL: Duration = Duration::from_secs(30);
/// How long a refusal (401, 403) is kept: shorter, so that a binding just made soon
/// counts.
pub const REFUSED_TTL: Duration = Duration::from_secs(10);
/// Most tokens whose verdict is kept.
pub const CACHE_CAPACITY: usize = 256;
/// How often the files of `--metrics-cert-dir` are checked for a change, at most.
pub const CERT_RECHECK: Duration = Duration::from_secs(10);

/// The bearer token of an `Authorization` header value (`Bearer <token>`, the scheme in
/// any case); None when there is none or it is not a bearer token.
pub fn bearer_token(authorization: Option<&HeaderValue>) -> Option<&str> {
    let value = authorization?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && !token.contains(char::is_whitespace))
    .then_some(token)
}

/// What a token may do with `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The token names no user (401).
    Unauthenticated,
    /// The user may not `get` `/metrics` (403).
    Forbidden,
    /// The user may (200).
    Allowed,
}

impl Verdict {
    fn ttl(self) -> Duration {
        match self {
            Verdict::Unauthenticated | Verdict::Forbidden => REFUSED_TTL,
            Verdict::Allowed => ALLOWED_TTL,
        }
    }
}

/// The cache key of a token: its SHA-256.
pub type TokenKey = [u8; 32];

/// The SHA-256 of `token`.
pub fn token_key(token: &str) -> TokenKey {
    let mut key = [0u8; 32];
    key.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
    key
}

/// Verdicts by token hash, each until it expires, at most `capacity` of them.
#[derive(Debug)]
pub struct VerdictCache {
    entries: HashMap<TokenKey, (Verdict, Instant)>,
    capacity: usize,
}

impl VerdictCache {
    /// An empty cache of at most `capacity` verdicts.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The verdict on `key` if it is still fresh at `now`.
    pub fn get(&mut self, key: &TokenKey, now: Instant) -> Option<Verdict> {
        match self.entries.get(key) {
            Some((verdict, until)) if now < *until => Some(*verdict),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `verdict` on `key` from `now` for its time; when full, drops the expired
    /// verdicts, then the one that expires first.
    pub fn put(&mut self, key: TokenKey, verdict: Verdict, now: Instant) {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, (_, until)| now < *until);
            if self.entries.len() >= self.capacity
                && let Some(first) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, until))| *until)
                    .map(|(k, _)| *k)
            {
                self.entries.remove(&first);
            }
        }
        self.entries.insert(key, (verdict, now + verdict.ttl()));
    }

    /// How many verdicts are kept (fresh or not yet dropped).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no verdict is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `text` with every occurrence of `token` replaced: what may be logged of an error met
/// while reviewing it.
pub fn redact(text: &str, token: &str) -> String {
    if token.is_empty() {
        text.to_string()
    } else {
        text.replace(token, "<redacted>")
    }
}

/// Asks the apiserver who a token is and whether it may read `/metrics`.
pub struct Authorizer {
    client: kube::Client,
    cache: Mutex<VerdictCache>,
}

impl Authorizer {
    /// An authorizer calling the apiserver with `client`'s own credentials (which need
    /// `create` on `tokenreviews` and `subjectaccessreviews`).
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            cache: Mutex::new(VerdictCache::new(CACHE_CAPACITY)),
        }
    }

    /// The verdict on a request with this `Authorization` header. The error is safe to
    /// log: it never holds the token.
    pub async fn authorize(&self, authorization: Option<&HeaderValue>) -> Result<Verdict, String> {
        let Some(token) = bearer_token(authorization) else {
            return Ok(Verdict::Unauthenticated);
        };
        let key = token_key(token);
        if let Some(v) = self.lock().get(&key, Instant::now()) {
            return Ok(v);
        }
        let verdict = self
            .review(token)
            .await
            .map_err(|e| redact(&e.to_string(), token))?;
        self.lock().put(key, verdict, Instant::now());
        Ok(verdict)
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, VerdictCache> {
        self.cache.lock()
    }

    async fn review(&self, token: &str) -> Result<Verdict, kube::Error> {
        let pp = PostParams::default();
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let status = Api::<TokenReview>::all(self.client.clone())
            .create(&pp, &review)
            .await?
            .status
            .unwrap_or_default();
        let user = match status.user {
            Some(user) if status.authenticated == Some(true) => user,
            _ => {
                tracing::debug!("metrics request with a token that is not valid");
                return Ok(Verdict::Unauthenticated);
            }
        };
        let sar = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(PATH.to_string()),
                    verb: Some("get".to_string()),
                }),
                resource_attributes: None,
            },
            ..Default::default()
        };
        let allowed = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&pp, &sar)
            .await?
            .status
            .is_some_and(|s| s.allowed);
        let user = user.username.unwrap_or_default();
        tracing::debug!(%user, allowed, "metrics request reviewed");
        Ok(if allowed {
            Verdict::Allowed
        } else {
            Verdict::Forbidden
        })
    }
}

/// What `--metrics-secure` adds to the metrics listener: TLS and the authorizer.
pub struct Guard {
    /// Accepts TLS connections with the metrics certificate.
    pub tls: TlsAcceptor,
    /// Decides who may read `/metrics`.
    pub authorizer: Authorizer,
}

impl Guard {
    /// TLS with `config` (see [`server_config`]) and an authorizer calling the apiserver
    /// with `client`.
    pub fn new(config: Arc<rustls::ServerConfig>, client: kube::Client) -> Self {
        Self {
            tls: TlsAcceptor::from(config),
            authorizer: Authorizer::new(client),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS server configuration: HTTP/1.1, the certificate of `cert_dir` (`tls.crt`,
/// `tls.key`) or a self-signed one for `localhost`.
pub fn server_config(
    cert_dir: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, crate::error::Error> {
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| crate::error::Error::StartUp(format!("TLS for /metrics: {e}")))?
        .with_no_client_auth();
    let mut config = match cert_dir {
        Some(dir) => {
            let files = CertFiles::new(dir, provider)?;
            builder.with_cert_resolver(Arc::new(files))
        }
        None => {
            let key = self_signed(&provider)?;
            builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)))
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn self_signed(provider: &CryptoProvider) -> Result<CertifiedKey, crate::error::Error> {
    let err = |e: &dyn std::fmt::Display| {
        crate::error::Error::StartUp(format!("self-signed certificate for /metrics: {e}"))
    };
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.push(host.to_string());
        }
    }
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| err(&e))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    CertifiedKey::from_der(vec![made.cert.der().clone()], key, provider).map_err(|e| err(&e))
}

/// `tls.crt` and `tls.key` of a directory, read again when either changes.
#[derive(Debug)]
struct CertFiles {
    dir: PathBuf,
    provider: Arc<CryptoProvider>,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    modified: Option<SystemTime>,
    checked: Instant,
}

impl CertFiles {
    fn new(dir: &Path, provider: Arc<CryptoProvider>) -> Result<Self, crate::error::Error> {
        let modified = modified(dir);
        let key = Arc::new(load(dir, &provider).map_err(crate::error::Error::Config)?);
        Ok(Self {
            dir: dir.to_path_buf(),
            provider,
            state: Mutex::new(Loaded {
                key,
                modified,
                checked: Instant::now(),
            }),
        })
    }
}

/// The latest modification time of `tls.crt` and `tls.key` (through symlinks, as a
/// mounted Secret has them).
fn modified(dir: &Path) -> Option<SystemTime> {
    ["tls.crt", "tls.key"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok()?.modified().ok())
        .max()
}

fn load(dir: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let certs = CertificateDer::pem_file_iter(&crt)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--metrics-cert-dir: {}: {e}", crt.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--metrics-cert-dir: {}: no certificate",
            crt.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| format!("--metrics-cert-dir: {}: {e}", key.display()))?;
    CertifiedKey::from_der(certs, private, provider)
        .map_err(|e| format!("--metrics-cert-dir: {}: {e}", dir.display()))
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut state = self.state.lock();
        if state.checked.elapsed() >= CERT_RECHECK {
            state.checked = Instant::now();
            let now = modified(&self.dir);
            if now != state.modified {
                match load(&self.dir, &self.provider) {
                    Ok(key) => {
                        state.key = Arc::new(key);
                        state.modified = now;
                        tracing::info!(dir = %self.dir.display(), "metrics certificate reloaded");
                    }
                    // Half-written files: keep the old pair and try again later.
                    Err(e) => tracing::warn!(error = %e, "metrics certificate not reloaded"),
                }
            }
        }
        Some(state.key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(v: &str) -> HeaderValue {
        HeaderValue::from_str(v).expect("header")
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        assert_eq!(
            bearer_token(Some(&header("Bearer abc.def"))),
            Some("abc.def")
        );
        assert_eq!(bearer_token(Some(&header("bearer abc"))), Some("abc"));
        assert_eq!(bearer_token(Some(&header("BEARER  abc  "))), Some("abc"));
        assert_eq!(bearer_token(None), None);
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            "abc",
            "Bearer a b",
        ] {
            assert_eq!(bearer_token(Some(&header(bad))), None, "{bad:?}");
        }
        // Not valid UTF-8 / visible ASCII: no token.
        let opaque = HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("opaque");
        assert_eq!(bearer_token(Some(&opaque)), None);
    }

    #[test]
    fn the_cache_key_is_a_hash_not_the_token() {
        let k = token_key("secret-token");
        assert_eq!(k, token_key("secret-token"));
        assert_ne!(k, token_key("secret-token2"));
        assert!(!k.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn verdicts_expire() {
        let mut c = VerdictCache::new(8);
        let t0 = Instant::now();
        let (a, b) = (token_key("a"), token_key("b"));
        c.put(a, Verdict::Allowed, t0);
        c.put(b, Verdict::Unauthenticated, t0);
        assert_eq!(
            c.get(&a, t0 + Duration::from_secs(1)),
            Some(Verdict::Allowed)
        );
        assert_eq!(
            c.get(&b, t0 + Duration::from_secs(1)),
            Some(Verdict::Unauthenticated)
        );
        // A refused token is forgotten sooner than an allowed one.
        assert_eq!(c.get(&b, t0 + REFUSED_TTL), None);
        assert_eq!(c.get(&a, t0 + REFUSED_TTL), Some(Verdict::Allowed));
        assert_eq!(c.get(&a, t0 + ALLOWED_TTL), None);
        assert!(c.is_empty(), "expired verdicts are dropped when met");
        assert_eq!(c.get(&token_key("c"), t0), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut c = VerdictCache::new(3);
        let t0 = Instant::now();
        for i in 0..3u64 {
            c.put(
                token_key(&i.to_string()),
                Verdict::Forbidden,
                t0 + Duration::from_secs(i),
            );
        }
        // Full: the verdict that expires first goes.
        c.put(
            token_key("new"),
            Verdict::Allowed,
            t0 + Duration::from_secs(3),
        );
        assert_eq!(c.len(), 3);
        let at = t0 + Duration::from_secs(4);
        assert_eq!(c.get(&token_key("0"), at), None);
        assert_eq!(c.get(&token_key("1"), at), Some(Verdict::Forbidden));
        assert_eq!(c.get(&token_key("new"), at), Some(Verdict::Allowed));
        // Expired verdicts make room first, all of them.
        let later = t0 + REFUSED_TTL + Duration::from_secs(5);
        c.put(token_key("x"), Verdict::Allowed, later);
        assert_eq!(c.len(), 2, "the expired went, 'new' stays");
        // Replacing a verdict needs no room.
        c.put(token_key("x"), Verdict::Forbidden, later);
        assert_eq!(c.get(&token_key("x"), later), Some(Verdict::Forbidden));
        for i in 0..1000 {
            c.put(
                token_key(&format!("flood-{i}")),
                Verdict::Unauthenticated,
                later,
            );
        }
        assert_eq!(c.len(), 3);
        // A flood of bad tokens evicts itself: refusals expire sooner than the allowed.
        assert_eq!(c.get(&token_key("new"), later), Some(Verdict::Allowed));
    }

    #[test]
    fn errors_are_redacted() {
        assert_eq!(
            redact("bad token abc.def in abc.def", "abc.def"),
            "bad token <redacted> in <redacted>"
        );
        assert_eq!(redact("nothing", ""), "nothing");
    }

    #[test]
    fn a_self_signed_certificate_and_a_cert_dir() {
        crate::shared::install_crypto_provider();
        assert!(server_config(None).is_ok());
        let dir = std::env::temp_dir().join(format!("vo-cert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let missing = server_config(Some(&dir)).err().map(|e| e.to_string());
        assert!(
            missing.as_deref().is_some_and(|m| m.contains("tls.crt")),
            "{missing:?}"
        );
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        // (rcgen's `pem` feature comes with the dev-dependency.)
        std::fs::write(dir.join("tls.crt"), made.cert.pem()).expect("crt");
        std::fs::write(dir.join("tls.key"), made.signing_key.serialize_pem()).expect("key");
        assert!(server_config(Some(&dir)).is_ok());
        // A key that does not match the certificate is refused.
        let other = rcgen::KeyPair::generate().expect("key");
        std::fs::write(dir.join("tls.key"), other.serialize_pem()).expect("key");
        assert!(server_config(Some(&dir)).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
