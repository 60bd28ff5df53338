//! SQLite storage: opening and migrating the database, the single writer
//! task, and the pieces it is built from (host rows, interning, entry
//! inserts). Everything that writes lives here; readers use the pool from
//! [`open::Database`].

pub mod checkpoint;
pub mod fts;
pub mod gaps;
pub mod heartbeats;
pub mod hosts;
pub mod insert;
pub mod intern;
pub mod open;
pub mod retention;
pub mod rows;
pub mod writer;
