//! Generates the `hac.v1` messages, client and server from `hac/v1/hac.proto` (needs
//! `protoc`: Debian's `protobuf-compiler`), plus the file descriptor set that
//! gRPC reflection serves.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=hac/v1/hac.proto");
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("hac_v1_descriptor.bin"))
        .compile_protos(&["hac/v1/hac.proto"], &["."])?;
    Ok(())
}
