//! Generates the gRPC service from `proto/` with the protoc that `protoc-bin-vendored` carries
//! (nothing to install, nothing downloaded).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/arus/eligibility/v1/eligibility.proto"],
        &["proto"],
    )?;
    Ok(())
}
