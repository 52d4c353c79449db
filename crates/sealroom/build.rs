//! Compiles the benchmark's plaintext-baseline service
//! (`proto/baseline.proto`) with protox (no `protoc`), as sealroom-node's
//! build script does for the node services.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a build script compiled in another checkout (a shared
    // target directory) must not keep compiling that checkout's protos.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let descriptors = protox::compile([root.join("baseline.proto")], [&root])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
