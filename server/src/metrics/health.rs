//! `/healthz`: whether this server can take and store entries now.
//!
//! Healthy means: not shutting down, the writer task runs, its latest
//! group commit did not fail, and the database answers a read within
//! [`DB_TIMEOUT`]. Anything else is a 503 whose body says which.

use super::Counters;
use sqlx::SqlitePool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest the database may take to answer the health check's read.
pub const DB_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/healthz` looks at.
#[derive(Clone)]
pub struct Health {
    pub read: SqlitePool,
    pub counters: Counters,
    pub shutdown: CancellationToken,
}

impl Health {
    /// `Ok` when healthy, else the reason in one line.
    pub async fn check(&self) -> Result<(), String> {
        if self.shutdown.is_cancelled() {
            return Err("shutting down".into());
        }
        if !self.counters.writer_running() {
            return Err("the database writer has stopped (see the server log)".into());
        }
        if self.counters.last_commit_failed() {
            return Err(
                "the latest group commit failed and was rolled back (see the server log)".into(),
            );
        }
        let read =
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM (SELECT 1 FROM hosts LIMIT 1)")
                .fetch_one(&self.read);
        match tokio::time::timeout(DB_TIMEOUT, read).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("the database does not answer: {e}")),
            Err(_) => Err(format!(
                "the database did not answer within {}s",
                DB_TIMEOUT.as_secs()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;

    #[tokio::test]
    async fn each_reason_turns_health_into_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open::open(&dir.path().join("h.db"), Synchronous::Normal)
            .await
            .unwrap();
        let counters = Counters::default();
        let h = Health {
            read: db.read.clone(),
            counters: counters.clone(),
            shutdown: CancellationToken::new(),
        };
        let err = h.check().await.unwrap_err();
        assert!(err.contains("writer has stopped"), "{err}");
        let running = counters.writer();
        assert_eq!(h.check().await, Ok(()));
        counters.commit_failed();
        let err = h.check().await.unwrap_err();
        assert!(err.contains("commit failed"), "{err}");
        counters.committed(Duration::from_millis(1), 1, 1);
        assert_eq!(h.check().await, Ok(()));
        db.read.close().await;
        let err = h.check().await.unwrap_err();
        assert!(err.contains("database does not answer"), "{err}");
        h.shutdown.cancel();
        assert_eq!(h.check().await, Err("shutting down".to_owned()));
        drop(running);
    }
}
