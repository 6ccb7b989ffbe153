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

/// Creates a new log file in `dir`: `<name>.log`, or `<name>-2.log`, `<name>-3.log`,
/// ... when that exists (a process started again under its name: the log of the first
/// one is kept for the search). Returns its path and the open file (a child's stderr).
pub fn create(dir: &Path, name: &str) -> Result<(PathBuf, File)> {
    std::fs::create_dir_all(dir)?;
    for n in 1u32.. {
        let path = match n {
            1 => dir.join(format!("{name}.log")),
            n => dir.join(format!("{name}-{n}.log")),
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err("no free log file name".into())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_started_again_gets_a_log_of_its_own() {
        let dir = std::env::temp_dir().join(format!("testkit-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (first, _) = create(&dir, "ns-op").expect("first");
        let (second, _) = create(&dir, "ns-op").expect("second");
        assert_eq!(first, dir.join("ns-op.log"));
        assert_eq!(second, dir.join("ns-op-2.log"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
