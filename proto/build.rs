//! Compiles every `course/v1/*.proto` with the protoc shipped in `protoc-bin-vendored`, so a
//! fresh machine needs no system protoc. Also writes the descriptor set that server reflection
//! serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut protos: Vec<PathBuf> = std::fs::read_dir("course/v1")?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    protos.sort();
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let wkt_include = protoc_bin_vendored::include_path()?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("course_descriptor.bin"))
        .compile_with_config(config, &protos, &[PathBuf::from("."), wkt_include])?;
    println!("cargo:rerun-if-changed=course/v1");
    Ok(())
}
