//! The one place where what an operator logs is written, so that `make leak-check`
//! searches every log: a child operator's stderr, the output of a short-lived command a
//! test asserts on, and the in-process operators' tracing output.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::Result;

/// The directory of the logs under the repository at `root`: `target/test-logs`, which
/// `hack/leak-check.sh` copies into its search.
pub fn dir(root: &Path) -> PathBuf {
    root.join("target").join("test-logs")
}

/// Creates the log file `<name>.log` in `dir`; returns its path and the open file (a
/// child's stderr).
pub fn create(dir: &Path, name: &str) -> Result<(PathBuf, File)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.log"));
    let file = File::create(&path)?;
    Ok((path, file))
}

/// Writes what a finished command printed (stdout, then stderr) to `<name>.log` in
/// `dir`, and hands the output back.
pub fn record(dir: &Path, name: &str, output: Output) -> Result<Output> {
    use std::io::Write as _;
    let (_, mut file) = create(dir, name)?;
    file.write_all(&output.stdout)?;
    file.write_all(&output.stderr)?;
    Ok(output)
}

/// Sends the tracing output of this process (the in-process operators) to stderr at the
/// filter held by the environment variable `var`, when it is set. The first call wins;
/// later ones do nothing.
pub fn in_process(var: &str) {
    if std::env::var_os(var).is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env(var))
            .with_writer(std::io::stderr)
            .try_init();
    }
}
