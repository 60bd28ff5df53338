//! The agent's outer loop: sessions, one after another, with backoff.
//!
//! [`run`] validates the configuration, learns the journal's identity,
//! then runs sessions until `--no-follow` is done or shutdown is asked.
//! A failed session is followed by a jittered exponential delay; the delay
//! starts over once a session got a batch acknowledged. A server that
//! stays down is reported at WARN on the first failure and then at most
//! once a minute, so a long outage does not flood the log ([`crate::outage`]).
//! The counters are served on `--metrics-listen` ([`crate::metrics_http`]).

use crate::config::AgentConfig;
use crate::identity;
use crate::metrics::{Metrics, Snapshot};
use crate::metrics_http;
use crate::outage::OutageLog;
use crate::reader::ReaderError;
use crate::session::{self, Context, Origin, Outcome, SessionEnd, SessionError};
use jr_backoff::Backoff;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

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

/// Ships the journal until `--no-follow` is done or `shutdown` fires.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<RunSummary> {
    let validated = config.validate()?;
    let metrics_spec = metrics_http::parse_listen(
        config.metrics_listen.as_deref(),
        metrics_http::DEFAULT_METRICS_LISTEN,
    )
    .map_err(crate::config::ConfigError::MetricsListen)?;
    let metrics_listener = metrics_http::bind(metrics_spec).await?;
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
    let head = Arc::new(crate::head::HeadGauge::default());
    // The endpoint lives as long as this function: `--no-follow` ends it.
    let endpoint_stop = shutdown.child_token();
    let _endpoint_stop = endpoint_stop.clone().drop_guard();
    if let Some(listener) = metrics_listener {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("metrics on http://{addr}/metrics, health on http://{addr}/healthz");
        }
        tokio::spawn(metrics_http::serve(
            listener,
            metrics.clone(),
            head.clone(),
            config.server.clone(),
            endpoint_stop,
        ));
    }
    let ctx = Context {
        config,
        validated,
        identity,
        metrics: metrics.clone(),
        head,
        started_at: SystemTime::now(),
        server_unpacked: AtomicBool::new(false),
    };
    let backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX)?;
    let mut failures = 0u32;
    let mut outage = OutageLog::default();
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
            prior_failures: outage.failures(),
            announce_connect: outage.announce_connect(),
            ..Outcome::default()
        };
        let result = session::run(&ctx, &shutdown, use_state_file, &mut outcome).await;
        if outcome.reader_started {
            if readers > 0 {
                Metrics::add(&metrics.reader_restarts, 1);
            }
            readers += 1;
        }
        if outcome.connected {
            outage.connected();
        }
        if outcome.progressed {
            failures = 0;
            outage.progressed();
            metrics.set_error("");
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
        let delay = backoff.delay(failures);
        failures = failures.saturating_add(1);
        metrics.set_error(&err);
        outage.failed(&ctx.config.server, &err, delay);
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
