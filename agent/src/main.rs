//! The `jr-agent` binary: parse flags, log to stderr, run, exit.

use clap::Parser;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "jr-agent",
    version,
    about = "Ships this node's systemd journal to a jr-server."
)]
struct Cli {
    #[command(flatten)]
    config: jr_agent::AgentConfig,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    if let Err(e) = cli.config.validate() {
        eprintln!("jr-agent: {e}");
        return ExitCode::from(2);
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));
    match jr_agent::run(cli.config, shutdown).await {
        Ok(summary) => {
            eprintln!(
                "jr-agent: shipped {} entries ({summary})",
                summary.metrics.acknowledged
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jr-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT or SIGTERM: stop reading, wait for acknowledgements, exit 0.
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down: waiting for outstanding acknowledgements");
    shutdown.cancel();
}
