//! The local control plane of `hack/cluster.sh` (etcd, kube-apiserver,
//! kube-controller-manager and, unless left out, CoreDNS), built from their Go modules.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kube::{Client, Config};

use crate::Result;

/// How to start a control plane.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Extra kube-apiserver flags, each one argument (`--name=value`; passed one per
    /// line in `VAST_APISERVER_FLAGS`, so a value may hold spaces).
    pub apiserver_flags: Vec<String>,
    /// Leave CoreDNS out (`VAST_CLUSTER_NO_DNS`): its watches count in the apiserver's
    /// requests.
    pub no_dns: bool,
    /// Leave the garbage collector out (`VAST_CLUSTER_NO_GC`): what the operator does
    /// while the collector is behind.
    pub no_gc: bool,
}

/// A control plane in a directory of its own. Stopped on drop unless
/// [`Cluster::stop_when_process_exits`] handed that to a watchdog.
pub struct Cluster {
    dir: PathBuf,
    script: PathBuf,
    stop_on_drop: bool,
}

impl Cluster {
    /// Starts the control plane of the repository at `root` in `dir`.
    pub fn up(root: &Path, dir: &Path, options: &Options) -> Result<Self> {
        let script = root.join("hack/cluster.sh");
        let mut cmd = Command::new(&script);
        cmd.arg("up")
            .env("VAST_CLUSTER_DIR", dir)
            .env("VAST_APISERVER_FLAGS", options.apiserver_flags.join("\n"));
        // Only what the options say: nothing inherited from the caller's shell.
        cmd.env_remove("VAST_CLUSTER_NO_DNS")
            .env_remove("VAST_CLUSTER_NO_GC");
        if options.no_dns {
            cmd.env("VAST_CLUSTER_NO_DNS", "1");
        }
        if options.no_gc {
            cmd.env("VAST_CLUSTER_NO_GC", "1");
        }
        let out = cmd.stdin(Stdio::null()).output()?;
        if !out.status.success() {
            return Err(format!(
                "hack/cluster.sh up failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            script,
            stop_on_drop: true,
        })
    }

    /// Hands the teardown to a watchdog that stops the control plane when this process
    /// exits, however it exits (a test binary's statics are never dropped).
    // The watchdog must outlive this process, so it is deliberately never waited for.
    #[allow(clippy::zombie_processes)]
    pub fn stop_when_process_exits(mut self) -> Result<PathBuf> {
        let watchdog = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; VAST_CLUSTER_DIR='{dir}' '{script}' down",
            pid = std::process::id(),
            dir = self.dir.display(),
            script = self.script.display()
        );
        Command::new("bash")
            .arg("-c")
            .arg(watchdog)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.stop_on_drop = false;
        Ok(self.kubeconfig())
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.stop_on_drop {
            let _ = Command::new(&self.script)
                .arg("down")
                .env("VAST_CLUSTER_DIR", &self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs a fault command of `hack/cluster.sh` (`apiserver-stop`, `apiserver-start`,
/// `etcd-restart`) on the control plane in `dir`.
pub fn fault(root: &Path, dir: &Path, cmd: &str) -> Result<()> {
    let out = Command::new(root.join("hack/cluster.sh"))
        .arg(cmd)
        .env("VAST_CLUSTER_DIR", dir)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "hack/cluster.sh {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// A kube Config from a kubeconfig file.
pub async fn config_for(kubeconfig: &Path) -> Result<Config> {
    crate::install_crypto_provider();
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    Ok(Config::from_custom_kubeconfig(kc, &Default::default()).await?)
}

/// A client from a kubeconfig file, with a read timeout of `read_timeout` when given
/// (the bench lists thousands of objects).
pub async fn client_for(kubeconfig: &Path, read_timeout: Option<Duration>) -> Result<Client> {
    let mut config = config_for(kubeconfig).await?;
    if read_timeout.is_some() {
        config.read_timeout = read_timeout;
    }
    Ok(Client::try_from(config)?)
}
