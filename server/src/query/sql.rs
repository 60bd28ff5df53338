//! The SQL side of a logs query: globs resolved to ids in the small
//! interned tables first (so the big `entries` table is reached through
//! its `(host_id|unit_id|about_unit_id, realtime_usec)` indexes with plain
//! `IN (…)` lists), the remaining conditions added as bound parameters, and
//! pages of rows read in (realtime, id) or id order by keyset pagination.
//!
//! No value from a request is ever spliced into SQL text: the text holds
//! only `?` placeholders, whose number depends on the request's shape.

use super::error::QueryError;
use super::request::{Boot, Direction, Key, LogQuery};
use crate::db::fts;
use crate::terms::Search;
use jr_journal::cursor::Cursor;
use jr_proto::v1::LogEntry;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

/// A glob that resolves to more ids than this is refused: the `IN` list
/// would exceed what SQLite binds in one statement.
const MAX_IDS: usize = 10_000;

#[derive(Debug, Clone)]
pub enum Param {
    Int(i64),
    Text(String),
}

/// A unit list longer than this is matched with one `IN` list per column
/// instead of one ordered branch per unit.
const MAX_UNIT_BRANCHES: usize = 8;

/// Conditions on `entries e`: `clauses` joined with AND, and when
/// `branches` is not empty, exactly one of them (they are disjoint).
///
/// Branches exist for `-u`: "own unit is X, or about unit is X" as one OR
/// makes SQLite collect and sort every row of the unit for each page. As
/// separate branches, each is an ordered walk of one
/// `(unit_id|about_unit_id, realtime_usec)` index that stops after a page,
/// and [`page_by_time`] merges them.
#[derive(Debug, Clone, Default)]
pub struct Where {
    clauses: Vec<String>,
    params: Vec<Param>,
    branches: Vec<(String, Vec<Param>)>,
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}

impl Where {
    fn push(&mut self, clause: String, params: impl IntoIterator<Item = Param>) {
        self.clauses.push(clause);
        self.params.extend(params);
    }

    fn ids(&mut self, column: &str, ids: &[i64]) {
        self.push(
            format!("{column} IN ({})", placeholders(ids.len())),
            ids.iter().map(|i| Param::Int(*i)),
        );
    }

    fn text(&self) -> String {
        if self.clauses.is_empty() {
            "1".to_owned()
        } else {
            self.clauses.join(" AND ")
        }
    }

    /// The conditions as one WHERE text with its parameters, each branch
    /// separately (or once, when there are none).
    fn per_branch(&self) -> Vec<(String, Vec<Param>)> {
        if self.branches.is_empty() {
            return vec![(self.text(), self.params.clone())];
        }
        self.branches
            .iter()
            .map(|(clause, params)| {
                let mut all = self.params.clone();
                all.extend(params.iter().cloned());
                (format!("{} AND {clause}", self.text()), all)
            })
            .collect()
    }

    /// The conditions as one WHERE text, branches ORed.
    fn combined(&self) -> (String, Vec<Param>) {
        if self.branches.is_empty() {
            return (self.text(), self.params.clone());
        }
        let ors: Vec<&str> = self.branches.iter().map(|(c, _)| c.as_str()).collect();
        let mut params = self.params.clone();
        params.extend(self.branches.iter().flat_map(|(_, p)| p.iter().cloned()));
        (
            format!("{} AND (({}))", self.text(), ors.join(") OR (")),
            params,
        )
    }
}

/// Disjoint branches for "own unit or about unit in `ids`".
fn unit_branches(ids: &[i64]) -> Vec<(String, Vec<Param>)> {
    let list = placeholders(ids.len());
    let all = || ids.iter().map(|i| Param::Int(*i));
    // About a unit, but not already counted as its own.
    let not_own = format!("(e.unit_id IS NULL OR e.unit_id NOT IN ({list}))");
    if ids.len() > MAX_UNIT_BRANCHES {
        return vec![
            (format!("e.unit_id IN ({list})"), all().collect()),
            (
                format!("e.about_unit_id IN ({list}) AND {not_own}"),
                all().chain(all()).collect(),
            ),
        ];
    }
    let own = ids
        .iter()
        .map(|i| ("e.unit_id = ?".to_owned(), vec![Param::Int(*i)]));
    let about = ids.iter().map(|i| {
        (
            format!("e.about_unit_id = ? AND {not_own}"),
            std::iter::once(Param::Int(*i)).chain(all()).collect(),
        )
    });
    own.chain(about).collect()
}

fn glob_clause(columns: &[&str], n: usize) -> String {
    let one: Vec<String> = columns.iter().map(|c| format!("{c} GLOB ?")).collect();
    vec![format!("({})", one.join(" OR ")); n].join(" OR ")
}

async fn ids_by_glob(
    pool: &SqlitePool,
    kind: &str,
    table: &str,
    columns: &[&str],
    patterns: &[String],
) -> Result<Vec<i64>, QueryError> {
    let sql = format!(
        "SELECT id FROM {table} WHERE {} ORDER BY id",
        glob_clause(columns, patterns.len())
    );
    let mut q = sqlx::query_scalar::<_, i64>(&sql);
    for p in patterns {
        for _ in columns {
            q = q.bind(p.as_str());
        }
    }
    let ids = q.fetch_all(pool).await?;
    if ids.len() > MAX_IDS {
        return Err(QueryError::invalid(format!(
            "{kind} patterns match {} names; narrow them (at most {MAX_IDS})",
            ids.len()
        )));
    }
    Ok(ids)
}

fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// `journalctl -u foo` means `foo.service`; keep the name as given too,
/// because journal-router files syslog-only entries under their identifier.
fn unit_patterns(units: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(units.len() * 2);
    for u in units {
        out.push(u.clone());
        if !u.contains('.') && !has_glob(u) {
            out.push(format!("{u}.service"));
        }
    }
    out
}

/// The hosts a request is about (all when it names none).
pub async fn host_ids(pool: &SqlitePool, patterns: &[String]) -> Result<Vec<i64>, QueryError> {
    if patterns.is_empty() {
        return Ok(sqlx::query_scalar("SELECT id FROM hosts ORDER BY id")
            .fetch_all(pool)
            .await?);
    }
    ids_by_glob(pool, "host", "hosts", &["hostname", "machine_id"], patterns).await
}

/// Interned ids of the boots selected for each of `hosts`.
async fn boot_ids(pool: &SqlitePool, boot: &Boot, hosts: &[i64]) -> Result<Vec<i64>, QueryError> {
    match boot {
        Boot::Id(id) => Ok(
            sqlx::query_scalar("SELECT id FROM strings WHERE value = ?1")
                .bind(id)
                .fetch_optional(pool)
                .await?
                .into_iter()
                .collect(),
        ),
        Boot::Offset(offset) => {
            let mut out = Vec::new();
            for host in hosts {
                // Boots in the order they started on this host.
                let boots: Vec<i64> = sqlx::query_scalar(
                    "SELECT boot_id FROM entries WHERE host_id = ?1 AND boot_id IS NOT NULL \
                     GROUP BY boot_id ORDER BY MIN(realtime_usec), MIN(id)",
                )
                .bind(host)
                .fetch_all(pool)
                .await?;
                let n = boots.len() as i64;
                let index = if *offset > 0 {
                    i64::from(*offset) - 1
                } else {
                    n - 1 + i64::from(*offset)
                };
                if let Some(b) = usize::try_from(index).ok().and_then(|i| boots.get(i)) {
                    out.push(*b);
                }
            }
            Ok(out)
        }
    }
}

/// The SQL conditions of `q` for entries with ids above `after`, or
/// `None` when nothing stored can match (a glob that names nothing, a
/// boot that does not exist). `after` only narrows what a search reads
/// from the full-text index: a follower passes the last id it read.
pub async fn conditions(
    pool: &SqlitePool,
    q: &LogQuery,
    after: i64,
) -> Result<Option<Where>, QueryError> {
    let mut w = Where::default();
    let hosts = host_ids(pool, &q.hosts).await?;
    if hosts.is_empty() {
        return Ok(None);
    }
    if !q.hosts.is_empty() {
        w.ids("e.host_id", &hosts);
    }
    if !q.units.is_empty() {
        let ids = ids_by_glob(pool, "unit", "units", &["name"], &unit_patterns(&q.units)).await?;
        if ids.is_empty() {
            return Ok(None);
        }
        w.branches = unit_branches(&ids);
    }
    for (column, kind, patterns) in [
        ("e.container_id", "container", &q.containers),
        ("e.identifier_id", "identifier", &q.identifiers),
    ] {
        if patterns.is_empty() {
            continue;
        }
        let ids = ids_by_glob(pool, kind, "strings", &["value"], patterns).await?;
        if ids.is_empty() {
            return Ok(None);
        }
        w.ids(column, &ids);
    }
    if let Some(boot) = &q.boot {
        let ids = boot_ids(pool, boot, &hosts).await?;
        if ids.is_empty() {
            return Ok(None);
        }
        w.ids("e.boot_id", &ids);
    }
    if let Some((lo, hi)) = q.priority {
        w.push(
            "e.priority BETWEEN ? AND ?".into(),
            [Param::Int(lo), Param::Int(hi)],
        );
    }
    if let Some(s) = q.since {
        w.push("e.realtime_usec >= ?".into(), [Param::Int(s)]);
    }
    if let Some(u) = q.until {
        w.push("e.realtime_usec <= ?".into(), [Param::Int(u)]);
    }
    if let Some(search) = &q.search {
        let (text, params) = search_condition(pool, search, after).await?;
        w.push(text, params);
    }
    Ok(Some(w))
}

/// A search whose terms are in at most this many blocks of the full-text
/// index, and in at most half of them, has its matching ids listed first
/// ([`search_condition`]). One in more blocks keeps the query's own index
/// order and tests each row's block, so that `-n N` stops after N matches
/// instead of first checking every candidate. Measured on 10 million
/// entries: listing costs about 1.5 µs per candidate id, 400 ms for this
/// many blocks.
const EXPAND_BLOCKS: i64 = 4096;

/// The condition for `--search`: the ids of the index's blocks that hold
/// every term, and every id past the index's position (committed but
/// not yet indexed). Both give candidates; accept() checks the message.
async fn search_condition(
    pool: &SqlitePool,
    search: &Search,
    after: i64,
) -> Result<(String, [Param; 3]), QueryError> {
    // Read before the blocks: the index only grows, so an id indexed
    // meanwhile is in the second branch anyway.
    let indexed = fts::indexed(pool).await?;
    let query = search.fts_query();
    let bits = fts::BLOCK_BITS;
    let first = fts::block_of(after.max(0) + 1);
    let in_range = (indexed >> bits) - first + 1;
    let list_at_most = EXPAND_BLOCKS.min(in_range.max(0) / 2);
    let blocks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM fts.entries_fts \
         WHERE entries_fts MATCH ?1 AND rowid >= ?2 LIMIT ?3)",
    )
    .bind(&query)
    .bind(first)
    .bind(list_at_most + 1)
    .fetch_one(pool)
    .await?;
    if blocks <= list_at_most {
        // Few blocks: their matching ids found once here, so that the
        // query's pages read matches only, by primary key.
        // One row per block, its entries as `<id> <length> <message>`:
        // a row per entry costs more to hand over than to check.
        let blocks: Vec<Vec<u8>> = sqlx::query_scalar(&format!(
            "SELECT CAST(group_concat(e.id || ' ' || length(CAST(e.message AS BLOB)) || ' ' \
             || e.message, '') AS BLOB) \
             FROM fts.entries_fts f \
             JOIN entries e ON e.id {in_block} \
             WHERE f.entries_fts MATCH ?1 AND f.rowid >= ?2 AND e.id > ?3 AND e.id <= ?4 \
             AND e.message IS NOT NULL \
             GROUP BY f.rowid",
            in_block = fts::in_block_sql("f.rowid"),
        ))
        .bind(&query)
        .bind(first)
        .bind(after)
        .bind(indexed)
        .fetch_all(pool)
        .await?;
        let mut ids = Vec::new();
        let mut whole = true;
        for block in &blocks {
            let mut messages = Messages(block);
            for (id, message) in messages.by_ref() {
                if search.matches(message) {
                    ids.push(id.to_string());
                }
            }
            whole &= messages.0.is_empty();
        }
        if !whole {
            // Never expected; the plan below needs no such reading.
            tracing::warn!(
                "search: a block's messages could not be read back; testing every row instead"
            );
        } else {
            return Ok((
                "e.id IN (SELECT value FROM json_each(?) \
                 UNION ALL SELECT id FROM entries WHERE id > MAX(?, ?))"
                    .into(),
                [
                    Param::Text(format!("[{}]", ids.join(","))),
                    Param::Int(indexed),
                    Param::Int(after),
                ],
            ));
        }
    }
    let text = format!(
        "((e.id >> {bits}) IN (SELECT rowid FROM fts.entries_fts \
         WHERE entries_fts MATCH ? AND rowid >= ?) OR e.id > ?)"
    );
    Ok((
        text,
        [Param::Text(query), Param::Int(first), Param::Int(indexed)],
    ))
}

/// The entries of one block as the few-blocks search reads them:
/// `<id> <length> <message>` after one another.
struct Messages<'a>(&'a [u8]);

impl<'a> Iterator for Messages<'a> {
    type Item = (i64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let mut number = || -> Option<u64> {
            let end = self.0.iter().position(|&b| b == b' ')?;
            let n = std::str::from_utf8(&self.0[..end]).ok()?.parse().ok()?;
            self.0 = &self.0[end + 1..];
            Some(n)
        };
        let id = i64::try_from(number()?).ok()?;
        let len = usize::try_from(number()?).ok()?;
        let message = self.0.get(..len)?;
        self.0 = &self.0[len..];
        Some((id, message))
    }
}

const SELECT: &str = "SELECT e.id, e.realtime_usec, e.monotonic_usec, e.priority, e.message, \
     e.fields, h.hostname, h.machine_id, u.name, b.value, s.value, e.seqnum, e.xor_hash, \
     e.cursor_raw \
     FROM entries e \
     JOIN hosts h ON h.id = e.host_id \
     LEFT JOIN units u ON u.id = e.unit_id \
     LEFT JOIN strings b ON b.id = e.boot_id \
     LEFT JOIN strings s ON s.id = e.seqnum_id";

/// One stored row before its fields are decoded.
pub struct StoredRow {
    pub entry: LogEntry,
    pub message: Option<Vec<u8>>,
    pub blob: Vec<u8>,
}

impl StoredRow {
    pub fn key(&self) -> Key {
        Key {
            realtime: self.entry.realtime_usec as i64,
            id: self.entry.id,
        }
    }
}

fn cursor_text(
    row: &SqliteRow,
    boot: &str,
    monotonic: i64,
    realtime: i64,
) -> Result<String, sqlx::Error> {
    if let Some(raw) = row.try_get::<Option<String>, _>(13)? {
        return Ok(raw);
    }
    let seqnum_id: Option<String> = row.try_get(10)?;
    let seqnum: Option<i64> = row.try_get(11)?;
    let xor: Option<i64> = row.try_get(12)?;
    Ok(Cursor {
        seqnum_id: seqnum_id.unwrap_or_default(),
        seqnum: seqnum.unwrap_or_default() as u64,
        boot_id: boot.to_owned(),
        monotonic_usec: monotonic as u64,
        realtime_usec: realtime as u64,
        // Stored as the two's-complement bit pattern of the u64.
        xor_hash: xor.unwrap_or_default() as u64,
    }
    .to_string())
}

fn stored_row(row: &SqliteRow) -> Result<StoredRow, sqlx::Error> {
    let realtime: i64 = row.try_get(1)?;
    let monotonic: i64 = row.try_get(2)?;
    let boot: Option<String> = row.try_get(9)?;
    let boot = boot.unwrap_or_default();
    let cursor = cursor_text(row, &boot, monotonic, realtime)?;
    let priority: Option<i64> = row.try_get(3)?;
    Ok(StoredRow {
        entry: LogEntry {
            id: row.try_get(0)?,
            host: row.try_get(6)?,
            machine_id: row.try_get(7)?,
            unit: row.try_get::<Option<String>, _>(8)?.unwrap_or_default(),
            realtime_usec: realtime as u64,
            monotonic_usec: monotonic as u64,
            cursor,
            boot_id: boot,
            priority: priority.map_or(-1, |p| p as i32),
            fields: Vec::new(),
        },
        message: row.try_get(4)?,
        blob: row.try_get(5)?,
    })
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    params: &'q [Param],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    for p in params {
        q = match p {
            Param::Int(v) => q.bind(*v),
            Param::Text(s) => q.bind(s.as_str()),
        };
    }
    q
}

/// A page of rows in (realtime, id) order, strictly after `after` in
/// `direction`, with ids at most `max_id`.
pub async fn page_by_time(
    pool: &SqlitePool,
    w: &Where,
    direction: Direction,
    after: Option<Key>,
    max_id: i64,
    limit: i64,
) -> Result<Vec<StoredRow>, QueryError> {
    let (cmp, order) = match direction {
        Direction::Forward => (">", "ASC"),
        Direction::Backward => ("<", "DESC"),
    };
    let mut rows = Vec::new();
    for (clause, mut params) in w.per_branch() {
        // `+e.id`: the snapshot bound must not be used as an index range, or
        // SQLite would scan by id and sort instead of walking a time index.
        let mut sql = format!("{SELECT} WHERE {clause} AND +e.id <= ?");
        params.push(Param::Int(max_id));
        if let Some(k) = after {
            sql.push_str(&format!(" AND (e.realtime_usec, e.id) {cmp} (?, ?)"));
            params.extend([Param::Int(k.realtime), Param::Int(k.id)]);
        }
        sql.push_str(&format!(
            " ORDER BY e.realtime_usec {order}, e.id {order} LIMIT ?"
        ));
        params.push(Param::Int(limit));
        let page = bind_all(sqlx::query(&sql), &params).fetch_all(pool).await?;
        for r in &page {
            rows.push(stored_row(r)?);
        }
    }
    if !w.branches.is_empty() {
        // Each branch is ordered and limited; the page is the first
        // `limit` of their union.
        rows.sort_by_key(|r| (r.key().realtime, r.key().id));
        if direction == Direction::Backward {
            rows.reverse();
        }
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    Ok(rows)
}

/// A page of rows in commit order with `after < id <= max_id`.
pub async fn page_by_id(
    pool: &SqlitePool,
    w: &Where,
    after: i64,
    max_id: i64,
    limit: i64,
) -> Result<Vec<StoredRow>, QueryError> {
    let (clause, mut params) = w.combined();
    let sql = format!("{SELECT} WHERE {clause} AND e.id > ? AND e.id <= ? ORDER BY e.id LIMIT ?");
    params.extend([Param::Int(after), Param::Int(max_id), Param::Int(limit)]);
    let rows = bind_all(sqlx::query(&sql), &params).fetch_all(pool).await?;
    Ok(rows.iter().map(stored_row).collect::<Result<_, _>>()?)
}

/// Highest committed entry id (0 for an empty store).
pub async fn last_id(pool: &SqlitePool) -> Result<i64, QueryError> {
    Ok(
        sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM entries")
            .fetch_one(pool)
            .await?
            .unwrap_or(0),
    )
}

/// The query plans SQLite picks for a newest-first page of `q` (one per
/// branch), for tests and benchmarks that check index use.
pub async fn explain(pool: &SqlitePool, q: &LogQuery) -> Result<Vec<String>, QueryError> {
    let Some(w) = conditions(pool, q, 0).await? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (clause, mut params) in w.per_branch() {
        let sql = format!(
            "EXPLAIN QUERY PLAN {SELECT} WHERE {clause} AND +e.id <= ? \
             ORDER BY e.realtime_usec DESC, e.id DESC LIMIT ?"
        );
        params.extend([Param::Int(i64::MAX), Param::Int(100)]);
        let rows = bind_all(sqlx::query(&sql), &params).fetch_all(pool).await?;
        for r in &rows {
            out.push(r.try_get::<String, _>(3)?);
        }
    }
    Ok(out)
}
