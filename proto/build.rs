//! Compiles `course/v1/*.proto` with the protoc shipped in `protoc-bin-vendored`, so a fresh
//! machine needs no system protoc. Also writes the descriptor set that server reflection serves.

use std::path::PathBuf;

const PROTOS: &[&str] =
    &["course/v1/events.proto", "course/v1/commands.proto", "course/v1/event_store.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let wkt_include = protoc_bin_vendored::include_path()?;
    let protos: Vec<PathBuf> = PROTOS.iter().map(PathBuf::from).collect();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("course_descriptor.bin"))
        .compile_with_config(config, &protos, &[PathBuf::from("."), wkt_include])?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
