//! The operator as a child process (its log in `target/test-logs`, which `make
//! leak-check` searches), short-lived commands whose output is logged the same way, and
//! HTTP reads of the operator's ports.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use super::{kubeconfig, repo_root};

/// A free port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    vast_testkit::free_port().expect("free port")
}

/// `vast-operator run` as a child process, with its own metrics and health ports and its
/// log in `target/test-logs/<namespace>-<name>.log`; killed on drop. Its fields
/// (`child`, `metrics`, `health`, `log`) are those of [`vast_testkit::operator::OperatorProcess`].
pub struct OperatorProcess(vast_testkit::operator::OperatorProcess);

impl std::ops::Deref for OperatorProcess {
    type Target = vast_testkit::operator::OperatorProcess;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for OperatorProcess {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl OperatorProcess {
    /// Starts `vast-operator run` with `args` (after `run`), scoped to `ns`.
    pub fn start(name: &str, ns: &str, vast_url: &str, args: &[&str]) -> Self {
        Self::start_with(name, ns, vast_url, args, kubeconfig())
    }

    /// Like [`OperatorProcess::start`], against the cluster of `kubeconfig`.
    pub fn start_with(
        name: &str,
        ns: &str,
        vast_url: &str,
        args: &[&str],
        kubeconfig: &Path,
    ) -> Self {
        let mut all = vec!["--namespace", ns];
        all.extend_from_slice(args);
        Self::spawn(name, ns, vast_url, &all, kubeconfig)
    }

    /// `vast-operator run` for every namespace (its log named after `log_ns`).
    pub fn start_all_namespaces(
        log_ns: &str,
        name: &str,
        vast_url: &str,
        args: &[&str],
        kubeconfig: &Path,
    ) -> Self {
        Self::spawn(name, log_ns, vast_url, args, kubeconfig)
    }

    fn spawn(name: &str, ns: &str, vast_url: &str, args: &[&str], kubeconfig: &Path) -> Self {
        let level = std::env::var("VAST_OPERATOR_LOG")
            .unwrap_or_else(|_| "info,vast_operator=debug".into());
        let process = vast_testkit::operator::Launch::new(
            Path::new(env!("CARGO_BIN_EXE_vast-operator")),
            kubeconfig,
            vast_url,
            &vast_testkit::logs::dir(&repo_root()),
            &format!("{ns}-{name}"),
        )
        .args(args)
        .env("POD_NAME", name)
        .env("RUST_LOG", &level)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
        Self(process)
    }
}

/// Runs `cmd` to its end, writes what it printed to
/// `target/test-logs/<name>-<pid>-<n>.log` (for `make leak-check`) and returns its
/// output: for the operator's short-lived commands (`workers`, `crd`, a `run` that must
/// refuse its flags) and the tools whose output a test reads.
pub fn run_logged(name: &str, cmd: &mut Command) -> Output {
    let output = cmd.output().unwrap_or_else(|e| panic!("run {name}: {e}"));
    record(name, output)
}

/// Writes what a finished command printed to `target/test-logs/<name>-<pid>-<n>.log`
/// and hands it back (for a command a test ran itself, [`run_logged`] otherwise).
pub fn record(name: &str, output: Output) -> Output {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = format!("{name}-{}-{n}", std::process::id());
    vast_testkit::logs::record(&vast_testkit::logs::dir(&repo_root()), &file, output)
        .unwrap_or_else(|e| panic!("log of {name}: {e}"))
}

/// `kubectl` (of `hack/bin`) with `args` against the test control plane, its output
/// logged like any other command's.
pub fn kubectl(args: &[&str]) -> Output {
    run_logged(
        "kubectl",
        Command::new(repo_root().join("hack/bin/kubectl"))
            .args(args)
            .env("KUBECONFIG", kubeconfig()),
    )
}

/// GET `url`: (status code, body); None when nothing answers.
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    let resp = reqwest_client().get(url).send().await.ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.text().await.ok()?))
}

fn reqwest_client() -> &'static reqwest::Client {
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    C.get_or_init(|| {
        vast_operator::install_crypto_provider();
        reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .expect("http client")
    })
}

/// The value of the sample `series` (full name with labels, as printed) in a metrics
/// text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    vast_testkit::metrics::sample(text, series)
}

/// GET `url` over HTTPS with a bearer token, accepting any certificate (the operator's
/// self-signed one): (status code, body); None when nothing answers.
pub async fn https_get_insecure(url: &str, token: &str) -> Option<(u16, String)> {
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    let client = C.get_or_init(|| {
        vast_operator::install_crypto_provider();
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .danger_accept_invalid_certs(true)
            .build()
            .expect("https client")
    });
    let resp = client.get(url).bearer_auth(token).send().await.ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.text().await.ok()?))
}

/// `helm` (of `hack/bin`) with `args` against the test control plane, its caches in
/// `target/helm`.
pub fn helm(args: &[&str]) -> Output {
    let helm = repo_root().join("hack/bin/helm");
    Command::new(&helm)
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .env("HELM_CACHE_HOME", repo_root().join("target/helm/cache"))
        .env("HELM_CONFIG_HOME", repo_root().join("target/helm/config"))
        .env("HELM_DATA_HOME", repo_root().join("target/helm/data"))
        .output()
        .unwrap_or_else(|e| panic!("run {} (hack/tools.sh helm builds it): {e}", helm.display()))
}

/// [`helm`] off the async runtime.
pub async fn helm_off_runtime(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        helm(&a)
    })
    .await
    .expect("join")
}

/// What a command printed, stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
