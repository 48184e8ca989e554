//! Generates the gRPC service from `proto/` with the protoc that `protoc-bin-vendored` carries
//! (nothing to install, nothing downloaded).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let descriptors = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("eligibility_descriptor.bin");
    tonic_prost_build::configure()
        // A malformed message is the caller's mistake: INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::grpc::StrictCodec")
        // For server reflection.
        .file_descriptor_set_path(&descriptors)
        .compile_with_config(config, &["proto/arus/eligibility/v1/eligibility.proto"], &["proto"])?;
    Ok(())
}
