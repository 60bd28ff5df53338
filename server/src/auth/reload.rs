//! Certificates and tokens reload without a restart: the files are
//! checked every `--reload-interval` (modification time, size and inode)
//! and re-read at once on SIGHUP. A file that fails to load changes
//! nothing: the error is logged and the previous version stays in force.
//! New connections get the new certificate; requests from then on are
//! checked against the new tokens.

use super::tls::{self, Reloadable, TlsFiles};
use super::tokens::Tokens;
use super::Auth;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What is watched.
pub struct Watched {
    pub tls: Option<(TlsFiles, Arc<Reloadable>)>,
    pub tokens: Option<(PathBuf, Auth)>,
}

type Signature = Vec<Option<(SystemTime, u64, u64)>>;

fn signature(paths: &[PathBuf]) -> Signature {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p).ok().map(|m| {
                (
                    m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    m.len(),
                    m.ino(),
                )
            })
        })
        .collect()
}

impl Watched {
    fn tls_paths(&self) -> Vec<PathBuf> {
        self.tls
            .as_ref()
            .map(|(f, _)| f.paths())
            .unwrap_or_default()
    }

    fn token_paths(&self) -> Vec<PathBuf> {
        self.tokens.iter().map(|(p, _)| p.clone()).collect()
    }

    fn reload_tls(&self) {
        if let Some((files, current)) = &self.tls {
            match tls::load(files) {
                Ok(config) => {
                    current.set(config);
                    tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS reload failed; the previous certificate stays in use")
                }
            }
        }
    }

    fn reload_tokens(&self) {
        if let Some((path, auth)) = &self.tokens {
            match Tokens::load(path) {
                Ok(t) => {
                    let n = t.len();
                    auth.set_tokens(t);
                    tracing::info!(path = %path.display(), tokens = n, "tokens reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "tokens reload failed; the previous tokens stay in force")
                }
            }
        }
    }
}

/// Watches the files until `shutdown`.
pub fn spawn(
    watched: Watched,
    interval: Duration,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> std::io::Result<()> {
    if watched.tls.is_none() && watched.tokens.is_none() {
        return Ok(());
    }
    let mut hup = signal(SignalKind::hangup())?;
    tasks.spawn(async move {
        let mut tls_sig = signature(&watched.tls_paths());
        let mut tokens_sig = signature(&watched.token_paths());
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => false,
                _ = hup.recv() => true,
            };
            let now = signature(&watched.tls_paths());
            if forced || now != tls_sig {
                tls_sig = now;
                watched.reload_tls();
            }
            let now = signature(&watched.token_paths());
            if forced || now != tokens_sig {
                tokens_sig = now;
                watched.reload_tokens();
            }
        }
    });
    Ok(())
}
