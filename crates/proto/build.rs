//! Generates tonic/prost code from the workspace's `proto/` folder.
//!
//! `protoc` comes from `$PROTOC` when set (for example Debian's
//! `protobuf-compiler`), otherwise from the `protoc-bin-vendored` crate, so a
//! plain `cargo build` works on a machine without protoc.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    // Read at run time: cargo sets it for every build-script run, so a
    // reused build-script binary still finds this checkout's protos.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let include = protoc_bin_vendored::include_path()?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let queue = root.join("onsale/queue/v1/queue.proto");
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("onsale_descriptor.bin"))
        .compile_with_config(config, &[queue], &[root, include])?;
    Ok(())
}
