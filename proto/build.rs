//! Generates the gRPC code. protoc comes from `protoc-bin-vendored`, so a
//! build needs nothing installed beyond Rust.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/journal_router/v1/ingest.proto",
        "proto/journal_router/v1/query.proto",
        "proto/journal_router/v1/routes.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("journal_router_descriptor.bin"))
        .bytes(".journal_router.v1.Field")
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
