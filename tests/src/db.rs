//! The server's SQLite file, read the way an operator would: through the
//! documented `journal` view (and the `hosts` table for counters), on a
//! read-only connection so the tests never change what they inspect.
//!
//! [`eventually`] is how every test waits: a bounded number of polls, never
//! a sleep, and a panic that says what was last seen.

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// One row of the `journal` view.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct JournalRow {
    pub id: i64,
    pub host: String,
    pub machine_id: String,
    pub unit: Option<String>,
    pub about_unit: Option<String>,
    pub container: Option<String>,
    pub priority: Option<i64>,
    pub realtime_usec: i64,
    pub boot_id: Option<String>,
    pub cursor: String,
    pub identifier: Option<String>,
    pub pid: Option<i64>,
    pub message: Option<Vec<u8>>,
}

/// One row of the `hosts` table.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct HostRow {
    pub machine_id: String,
    pub hostname: String,
    pub cursor: String,
    pub entries: i64,
    pub gap_entries: i64,
}

/// A read-only handle on the server's database.
pub struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Opens the database once the server has created it.
    pub async fn open(path: &Path) -> Db {
        eventually(
            "the database file exists",
            200,
            Duration::from_millis(50),
            || async {
                if path.exists() {
                    Ok(())
                } else {
                    Err(format!("{} does not exist", path.display()))
                }
            },
        )
        .await;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap_or_else(|e| panic!("open {} read-only: {e}", path.display()));
        Db { pool }
    }

    /// Every row of the `journal` view in commit order.
    pub async fn rows(&self) -> Vec<JournalRow> {
        sqlx::query_as::<_, JournalRow>(
            "SELECT id, host, machine_id, unit, about_unit, container, priority, \
             realtime_usec, boot_id, cursor, identifier, pid, message \
             FROM journal ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .expect("read the journal view")
    }

    /// The rows whose message is exactly `message`.
    pub async fn rows_with_message(&self, message: &[u8]) -> Vec<JournalRow> {
        sqlx::query_as::<_, JournalRow>(
            "SELECT id, host, machine_id, unit, about_unit, container, priority, \
             realtime_usec, boot_id, cursor, identifier, pid, message \
             FROM journal WHERE message = ? ORDER BY id",
        )
        .bind(message)
        .fetch_all(&self.pool)
        .await
        .expect("read the journal view")
    }

    /// The cursor of every stored entry, in commit order.
    pub async fn cursors(&self) -> Vec<String> {
        sqlx::query_scalar::<_, String>("SELECT cursor FROM journal ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .expect("read cursors from the journal view")
    }

    pub async fn count(&self) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM entries")
            .fetch_one(&self.pool)
            .await
            .expect("count entries")
    }

    pub async fn hosts(&self) -> Vec<HostRow> {
        sqlx::query_as::<_, HostRow>(
            "SELECT machine_id, hostname, cursor, entries, gap_entries FROM hosts ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .expect("read hosts")
    }

    pub async fn host(&self, machine_id: &str) -> Option<HostRow> {
        self.hosts()
            .await
            .into_iter()
            .find(|h| h.machine_id == machine_id)
    }

    /// Whether the database holds exactly the entries named by `expected`,
    /// each once; the error says what is missing, repeated or unexpected.
    pub async fn holds_exactly(&self, expected: &[String]) -> Result<(), String> {
        let stored = self.cursors().await;
        compare_cursors(expected, &stored)
    }

    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// Compares stored cursors with expected ones: every expected cursor once,
/// nothing else.
pub fn compare_cursors(expected: &[String], stored: &[String]) -> Result<(), String> {
    let mut stored_counts: HashMap<&str, usize> = HashMap::with_capacity(stored.len());
    for cursor in stored {
        *stored_counts.entry(cursor.as_str()).or_default() += 1;
    }
    let expected_set: HashSet<&str> = expected.iter().map(String::as_str).collect();
    let missing: Vec<&str> = expected
        .iter()
        .map(String::as_str)
        .filter(|c| !stored_counts.contains_key(c))
        .collect();
    let repeated: BTreeMap<&str, usize> = stored_counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(c, n)| (*c, *n))
        .collect();
    let unexpected: Vec<&str> = stored_counts
        .keys()
        .filter(|c| !expected_set.contains(*c))
        .copied()
        .collect();
    if missing.is_empty() && repeated.is_empty() && unexpected.is_empty() {
        return Ok(());
    }
    Err(format!(
        "expected {} entries, stored {}: {} missing (first {:?}), {} stored more than once \
         (first {:?}), {} not in the journal (first {:?})",
        expected.len(),
        stored.len(),
        missing.len(),
        missing.first(),
        repeated.len(),
        repeated.iter().next(),
        unexpected.len(),
        unexpected.first(),
    ))
}

/// Polls `check` up to `tries` times, `interval` apart, until it returns
/// `Ok`; panics with `what` and the last error otherwise.
pub async fn eventually<T, F, Fut>(what: &str, tries: u32, interval: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut last = String::new();
    for attempt in 0..tries {
        match check().await {
            Ok(value) => return value,
            Err(e) => last = e,
        }
        if attempt + 1 < tries {
            tokio::time::sleep(interval).await;
        }
    }
    panic!("{what}: still not true after {tries} tries {interval:?} apart; last seen: {last}");
}

#[cfg(test)]
mod tests {
    use super::compare_cursors;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_match_is_ok_and_every_difference_is_reported() {
        assert!(compare_cursors(&v(&["a", "b"]), &v(&["b", "a"])).is_ok());
        let missing = compare_cursors(&v(&["a", "b"]), &v(&["a"])).unwrap_err();
        assert!(missing.contains("1 missing"), "{missing}");
        let repeated = compare_cursors(&v(&["a"]), &v(&["a", "a"])).unwrap_err();
        assert!(repeated.contains("1 stored more than once"), "{repeated}");
        let extra = compare_cursors(&v(&["a"]), &v(&["a", "z"])).unwrap_err();
        assert!(extra.contains("1 not in the journal"), "{extra}");
    }
}
