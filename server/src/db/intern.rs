//! Interning of repeated strings (unit names in `units`, identifiers,
//! containers, boot ids and seqnum ids in `strings`) into integer ids.
//!
//! Owned by the writer: the caches sit in front of `INSERT OR IGNORE` +
//! `SELECT`, so the common case (a value seen before) costs a hash lookup
//! and no SQL. Ids inserted inside a transaction that is rolled back vanish
//! from the database, so the writer calls [`Interner::forget_uncommitted`]
//! after a rollback.

use sqlx::SqliteConnection;
use std::collections::HashMap;

/// A cache that grows past this many values is cleared rather than grown:
/// a flood of distinct identifiers must not eat the server's memory.
const MAX_CACHED: usize = 100_000;

#[derive(Clone, Copy)]
enum Table {
    Units,
    Strings,
}

impl Table {
    fn insert_sql(self) -> &'static str {
        match self {
            Table::Units => "INSERT OR IGNORE INTO units(name) VALUES (?1)",
            Table::Strings => "INSERT OR IGNORE INTO strings(value) VALUES (?1)",
        }
    }

    fn select_sql(self) -> &'static str {
        match self {
            Table::Units => "SELECT id FROM units WHERE name = ?1",
            Table::Strings => "SELECT id FROM strings WHERE value = ?1",
        }
    }
}

#[derive(Default)]
struct Cache {
    ids: HashMap<String, i64>,
    /// Values inserted by the open transaction.
    fresh: Vec<String>,
}

impl Cache {
    async fn id(
        &mut self,
        table: Table,
        conn: &mut SqliteConnection,
        value: &str,
    ) -> Result<i64, sqlx::Error> {
        if let Some(&id) = self.ids.get(value) {
            return Ok(id);
        }
        sqlx::query(table.insert_sql())
            .bind(value)
            .execute(&mut *conn)
            .await?;
        let id: i64 = sqlx::query_scalar(table.select_sql())
            .bind(value)
            .fetch_one(&mut *conn)
            .await?;
        if self.ids.len() >= MAX_CACHED {
            self.ids.clear();
        }
        self.ids.insert(value.to_owned(), id);
        self.fresh.push(value.to_owned());
        Ok(id)
    }

    fn committed(&mut self) {
        self.fresh.clear();
    }

    fn rolled_back(&mut self) {
        for v in self.fresh.drain(..) {
            self.ids.remove(&v);
        }
    }
}

/// The writer's interning caches.
#[derive(Default)]
pub struct Interner {
    units: Cache,
    strings: Cache,
}

impl Interner {
    /// Id of a unit name in `units`.
    pub async fn unit(
        &mut self,
        conn: &mut SqliteConnection,
        name: &str,
    ) -> Result<i64, sqlx::Error> {
        self.units.id(Table::Units, conn, name).await
    }

    /// Id of any other repeated string in `strings`.
    pub async fn string(
        &mut self,
        conn: &mut SqliteConnection,
        value: &str,
    ) -> Result<i64, sqlx::Error> {
        self.strings.id(Table::Strings, conn, value).await
    }

    /// `Some(id)` for a present value.
    pub async fn opt_unit(
        &mut self,
        conn: &mut SqliteConnection,
        name: Option<&str>,
    ) -> Result<Option<i64>, sqlx::Error> {
        match name {
            Some(n) => self.unit(conn, n).await.map(Some),
            None => Ok(None),
        }
    }

    /// `Some(id)` for a present value.
    pub async fn opt_string(
        &mut self,
        conn: &mut SqliteConnection,
        value: Option<&str>,
    ) -> Result<Option<i64>, sqlx::Error> {
        match value {
            Some(v) => self.string(conn, v).await.map(Some),
            None => Ok(None),
        }
    }

    /// The open transaction committed: its new ids are permanent.
    pub fn committed(&mut self) {
        self.units.committed();
        self.strings.committed();
    }

    /// The open transaction rolled back: drop the ids it created.
    pub fn forget_uncommitted(&mut self) {
        self.units.rolled_back();
        self.strings.rolled_back();
    }
}
