//! The journal-router wire protocol, package `journal_router.v1`.
//!
//! Generated from the `.proto` files under `proto/`; this crate adds only
//! the encoded file descriptor set (for server reflection) and small
//! helpers that belong beside the generated types.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("journal_router.v1");

    /// Encoded file descriptor set of every service, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("journal_router_descriptor");
}

/// `Batch.packed_entries`: how a batch's entries are compressed.
pub mod packed {
    /// Zstd level of packed batches: on journal entries (repeated field
    /// names and values are most of what it finds) level 1 comes within 7%
    /// of gRPC's level 3 (149 against 139 bytes per entry in the ingest
    /// benchmark) for much less CPU.
    pub const LEVEL: i32 = 1;

    /// A compression context for packed batches, to be reused for every
    /// batch of a session; its frames carry their content size, from which
    /// the server sizes (and bounds) its output.
    pub fn compressor() -> std::io::Result<zstd::bulk::Compressor<'static>> {
        let mut c = zstd::bulk::Compressor::new(LEVEL)?;
        c.include_contentsize(true)?;
        Ok(c)
    }
}

impl v1::Field {
    /// A field from its name and value.
    pub fn new(name: impl Into<bytes::Bytes>, value: impl Into<bytes::Bytes>) -> v1::Field {
        v1::Field {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The name as text. Names are checked to be UTF-8 wherever fields
    /// enter (the readers, ingest, stored rows); one that is not reads as
    /// empty rather than failing here.
    pub fn name_str(&self) -> &str {
        std::str::from_utf8(&self.name).unwrap_or_default()
    }
}
