//! `fake-vast`: serves a fake Vast serverless API on 127.0.0.1, for the demo, the tests
//! and trying the operator without a Vast account.

use std::time::Duration;

use clap::Parser;
use fake_vast::FakeVast;

/// Serve a fake Vast API on 127.0.0.1 (the port is printed as `fake Vast listening on URL`).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Play the demo story on this workergroup id.
    #[arg(long)]
    demo_workergroup: Option<i64>,
    /// API key the demo workergroup accepts.
    #[arg(
        long,
        env = "VAST_API_KEY",
        hide_env_values = true,
        default_value = "vk1-demo-key-4242"
    )]
    demo_api_key: String,
    /// Time between steps of the demo story (`8s`, `500ms`, `1m`).
    #[arg(long, default_value = "8s", value_parser = parse_step)]
    demo_step: Duration,
}

fn parse_step(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: expected a value such as 8s, 500ms or 1m");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: u64 = s[..split].parse().map_err(|_| bad())?;
    match &s[split..] {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let server = match FakeVast::start(args.port).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("fake Vast listening on {}", server.url());
    if let Some(id) = args.demo_workergroup {
        tokio::spawn(fake_vast::demo_scenario(
            server.state.clone(),
            id,
            args.demo_api_key,
            args.demo_step,
        ));
    }
    let _ = tokio::signal::ctrl_c().await;
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        assert_eq!(parse_step("8s"), Ok(Duration::from_secs(8)));
        assert_eq!(parse_step("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_step("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_step("8").is_err());
        assert!(parse_step("s").is_err());
    }
}
