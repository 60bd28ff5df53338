//! The journal entry model shared by every journal-router binary.
//!
//! An entry is the generated [`jr_proto::v1::Entry`]: its cursor, its two
//! timestamps and every field in journal order, values as raw bytes. This
//! crate knows how to read entries from journalctl's export format
//! ([`export`]), how to tell sd-journal cursors apart ([`cursor`]), how to
//! label an entry the way `journalctl -u` thinks of it ([`labels`]), how to
//! parse priorities ([`priority`]) and how entries are packed into the
//! database ([`stored`]). It does no I/O of its own.

pub mod cursor;
pub mod export;
pub mod fields;
pub mod labels;
pub mod priority;
pub mod stored;

pub use jr_proto::v1::{Entry, Field};
