//! Logging: `tracing` lines on stderr, plain or JSON, filtered by `RUST_LOG`.
//! Colours only on a terminal: a container's log (`kubectl logs`, a log shipper) gets
//! plain text, without escape codes.

/// Installs the global subscriber (level `info` unless `RUST_LOG` says otherwise).
pub fn init(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
