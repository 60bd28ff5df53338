//! The agent's outer loop: sessions, one after another, with backoff.
//!
//! [`run`] validates the configuration, learns the journal's identity,
//! then runs sessions until `--no-follow` is done or shutdown is asked.
//! A failed session is followed by a jittered exponential delay; the delay
//! starts over once a session got a batch acknowledged. A server that
//! stays down is reported at WARN on the first failure and then at most
//! once a minute, so a long outage does not flood the log.

use crate::backoff::Backoff;
use crate::config::AgentConfig;
use crate::identity;
use crate::metrics::{Metrics, Snapshot};
use crate::reader::ReaderError;
use crate::session::{self, Context, Origin, Outcome, SessionEnd, SessionError};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Repeated failures are logged at WARN at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What the agent did, for the exit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    pub metrics: Snapshot,
    pub sessions: u64,
    /// True when `--no-follow` shipped everything.
    pub finished: bool,
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {} session(s)", self.metrics, self.sessions)
    }
}

/// Rate limit for the "server unreachable" warning.
#[derive(Debug, Default)]
struct FailureLog {
    failures: u64,
    last_warn: Option<Instant>,
}

impl FailureLog {
    fn failed(&mut self, err: &SessionError, delay: Duration) {
        self.failures += 1;
        let now = Instant::now();
        let due = self
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY);
        if due {
            self.last_warn = Some(now);
            tracing::warn!(
                error = %err,
                failures = self.failures,
                retry_in = ?delay,
                "session failed; reconnecting (repeats are logged at most once a minute)"
            );
        } else {
            tracing::debug!(error = %err, failures = self.failures, retry_in = ?delay, "session failed");
        }
    }

    fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                failures = self.failures,
                "shipping again after failed sessions"
            );
        }
        *self = FailureLog::default();
    }
}

/// Ships the journal until `--no-follow` is done or `shutdown` fires.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<RunSummary> {
    let validated = config.validate()?;
    let identity = identity::discover(
        &validated.source,
        config.reader,
        validated.machine_id.as_deref(),
        config.hostname.as_deref(),
    )
    .await?;
    tracing::info!(
        machine_id = %identity.machine_id,
        hostname = %identity.hostname,
        boot_id = %identity.boot_id,
        server = %config.server,
        "jr-agent shipping"
    );
    let metrics = Arc::new(Metrics::default());
    let ctx = Context {
        config,
        validated,
        identity,
        metrics: metrics.clone(),
        started_at: SystemTime::now(),
    };
    let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX)?;
    let mut failures = FailureLog::default();
    let mut use_state_file = true;
    let mut sessions = 0u64;
    let mut readers = 0u64;
    let mut finished = false;
    while !shutdown.is_cancelled() {
        if sessions > 0 {
            Metrics::add(&metrics.reconnects, 1);
        }
        sessions += 1;
        let mut outcome = Outcome {
            prior_failures: failures.failures,
            ..Outcome::default()
        };
        let result = session::run(&ctx, &shutdown, use_state_file, &mut outcome).await;
        if outcome.reader_started {
            if readers > 0 {
                Metrics::add(&metrics.reader_restarts, 1);
            }
            readers += 1;
        }
        if outcome.progressed {
            backoff.reset();
            failures.recovered();
        }
        let err = match result {
            Ok(SessionEnd::Finished) => {
                finished = true;
                break;
            }
            Ok(SessionEnd::Shutdown) => break,
            Err(e) => e,
        };
        match &err {
            SessionError::Reader(ReaderError::Spawn { .. }) => return Err(err.into()),
            SessionError::Reader(ReaderError::Cursor { .. })
                if outcome.origin == Some(Origin::StateFile) =>
            {
                tracing::error!(error = %err, "the state file's cursor is unusable; ignoring the state file");
                use_state_file = false;
            }
            SessionError::Reader(ReaderError::Cursor { .. })
            | SessionError::BadServerCursor { .. } => {
                tracing::error!(error = %err, "cannot resume at the server's cursor; an operator must fix the stored position");
            }
            _ => {}
        }
        let delay = backoff.next_delay();
        failures.failed(&err, delay);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    let summary = RunSummary {
        metrics: metrics.snapshot(),
        sessions,
        finished,
    };
    tracing::info!(%summary, "jr-agent stopped");
    Ok(summary)
}
