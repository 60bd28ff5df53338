//! The `hosts` table: one row per machine id, with its committed cursor.

use sqlx::{Row as _, SqliteConnection};
use std::collections::HashMap;

/// What the writer keeps in memory about a host.
#[derive(Debug, Clone)]
pub struct HostState {
    pub id: i64,
    /// Last committed cursor; empty when nothing was committed yet.
    pub cursor: String,
}

/// What an agent says about itself in Hello.
#[derive(Debug, Clone)]
pub struct HostHello {
    pub machine_id: String,
    pub hostname: String,
    pub boot_id: String,
    pub agent_version: String,
}

/// Microseconds since the epoch, for the `*_usec` columns.
pub fn now_usec() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Every host's id and committed cursor.
pub async fn load(conn: &mut SqliteConnection) -> Result<HashMap<String, HostState>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, machine_id, cursor FROM hosts")
        .fetch_all(&mut *conn)
        .await?;
    let mut hosts = HashMap::with_capacity(rows.len());
    for r in rows {
        hosts.insert(
            r.try_get::<String, _>("machine_id")?,
            HostState {
                id: r.try_get("id")?,
                cursor: r.try_get("cursor")?,
            },
        );
    }
    Ok(hosts)
}

/// Entries stored over all hosts (cheap: one row per host).
pub async fn total_entries(conn: &mut SqliteConnection) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(entries), 0) FROM hosts")
        .fetch_one(&mut *conn)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Creates or refreshes the host's row; returns its state as stored.
pub async fn upsert(conn: &mut SqliteConnection, h: &HostHello) -> Result<HostState, sqlx::Error> {
    let now = now_usec();
    let r = sqlx::query(
        "INSERT INTO hosts (machine_id, hostname, boot_id, agent_version, \
                            first_seen_usec, last_contact_usec) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
         ON CONFLICT (machine_id) DO UPDATE SET \
             hostname = excluded.hostname, boot_id = excluded.boot_id, \
             agent_version = excluded.agent_version, \
             last_contact_usec = excluded.last_contact_usec \
         RETURNING id, cursor",
    )
    .bind(&h.machine_id)
    .bind(&h.hostname)
    .bind(&h.boot_id)
    .bind(&h.agent_version)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(HostState {
        id: r.try_get("id")?,
        cursor: r.try_get("cursor")?,
    })
}

/// Advances a host after a batch, in the batch's transaction.
pub async fn advance(
    conn: &mut SqliteConnection,
    host_id: i64,
    cursor: &str,
    entries: u64,
    gap_entries: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE hosts SET cursor = ?2, entries = entries + ?3, \
             gap_entries = gap_entries + ?4, last_contact_usec = ?5 \
         WHERE id = ?1",
    )
    .bind(host_id)
    .bind(cursor)
    .bind(i64::try_from(entries).unwrap_or(i64::MAX))
    .bind(i64::try_from(gap_entries).unwrap_or(i64::MAX))
    .bind(now_usec())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
