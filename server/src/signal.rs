//! SIGTERM and SIGINT: the first asks for a graceful shutdown (stop
//! accepting, commit what is queued, exit); a second one exits at once.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

async fn either(term: &mut Signal, int: &mut Signal) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT and exits the
/// process with status 130 on the second.
pub fn spawn_handler(shutdown: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        either(&mut term, &mut int).await;
        shutdown.cancel();
        tracing::info!("shutting down: committing what is queued (signal again to exit at once)");
        either(&mut term, &mut int).await;
        std::process::exit(130);
    });
    Ok(())
}
