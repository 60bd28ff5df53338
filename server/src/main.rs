//! `jr-server`: parse the configuration, set up logging, serve until
//! SIGTERM or SIGINT.

use jr_server::config::{ConfigError, ServerConfig};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match ServerConfig::load() {
        Ok(c) => c,
        Err(ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("jr-server: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // A closed stderr must not turn a log line into a panic (which in
        // the signal task would make the server ignore SIGTERM).
        .log_internal_errors(false)
        .init();
    let shutdown = CancellationToken::new();
    if let Err(e) = jr_server::signal::spawn_handler(shutdown.clone()) {
        eprintln!("jr-server: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    match jr_server::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jr-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}
