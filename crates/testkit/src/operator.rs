//! `vast-operator run` as a child process: its own metrics and probe ports on
//! 127.0.0.1, its stderr in a log file of [`crate::logs`], killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::Result;

/// How to start the operator.
#[derive(Clone, Debug)]
pub struct Launch {
    bin: PathBuf,
    kubeconfig: PathBuf,
    vast_url: String,
    log_dir: PathBuf,
    log_name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Launch {
    /// `bin run --vast-url <vast_url>` against the cluster of `kubeconfig`, its stderr in
    /// `<log_dir>/<log_name>.log`. The console API is the same fake unless the arguments
    /// name another `--vast-console-url` (never the real console).
    pub fn new(
        bin: &Path,
        kubeconfig: &Path,
        vast_url: &str,
        log_dir: &Path,
        log_name: &str,
    ) -> Self {
        Self {
            bin: bin.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            vast_url: vast_url.to_string(),
            log_dir: log_dir.to_path_buf(),
            log_name: log_name.to_string(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// More arguments after `run`.
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// An environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Starts it, with `--metrics-addr` and `--health-addr` on free ports.
    pub fn spawn(self) -> Result<OperatorProcess> {
        let (m, h) = (crate::free_port()?, crate::free_port()?);
        let (log, file) = crate::logs::create(&self.log_dir, &self.log_name)?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("run")
            .args(["--vast-url", &self.vast_url])
            .args(
                (!self
                    .args
                    .iter()
                    .any(|a| a.starts_with("--vast-console-url")))
                .then_some(["--vast-console-url", self.vast_url.as_str()])
                .into_iter()
                .flatten(),
            )
            .args(["--metrics-addr", &format!("127.0.0.1:{m}")])
            .args(["--health-addr", &format!("127.0.0.1:{h}")])
            .args(&self.args)
            // The tests' and the bench's own settings, never the caller's environment's
            // (a WATCH_NAMESPACE or SECRET_SELECTOR there would change what runs).
            .env_clear()
            .envs(
                ["PATH", "HOME", "RUST_BACKTRACE"]
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k.to_string(), v))),
            )
            .env("KUBECONFIG", &self.kubeconfig);
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| format!("start {}: {e}", self.bin.display()))?;
        Ok(OperatorProcess {
            child,
            metrics: format!("http://127.0.0.1:{m}"),
            health: format!("http://127.0.0.1:{h}"),
            log,
        })
    }
}

/// A running `vast-operator run`, killed on drop.
pub struct OperatorProcess {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:<port>`, where it serves `/metrics`.
    pub metrics: String,
    /// `http://127.0.0.1:<port>`, where it serves `/healthz` and `/readyz`.
    pub health: String,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (`-9`, `-TERM`).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// Waits until `/readyz` answers 200 (its WorkerGroups are listed), `timeout` at most.
    pub async fn wait_ready(&self, http: &reqwest::Client, timeout: Duration) -> Result<()> {
        let url = format!("{}/readyz", self.health);
        crate::poll_until(timeout, || async {
            http.get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
                .then_some(())
        })
        .await
        .ok_or_else(|| {
            format!(
                "the operator was not ready within {timeout:?}; its log: {}",
                self.log.display()
            )
            .into()
        })
    }

    /// CPU seconds (user and system) so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }

    /// Peak resident set size (`VmHWM`), KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        peak_rss_kib(self.child.id())
    }

    /// Resident set size now (`VmRSS`), KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user and system) of process `pid` so far (0 when it is gone).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name in parentheses: utime is the 14th, stime the
    // 15th of the whole line.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set size (`VmHWM`) of process `pid`, KiB (0 when it is gone).
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// Resident set size now (`VmRSS`) of process `pid`, KiB (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
