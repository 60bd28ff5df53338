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
