//! Compiles the node services of `proto/sealroom/v1/node.proto` with protox
//! (no `protoc`); the round messages it imports come from sealroom-protocol.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a build script compiled in another checkout (a shared
    // target directory) must not keep compiling that checkout's protos.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let descriptors = protox::compile([root.join("sealroom/v1/node.proto")], [&root])?;
    tonic_prost_build::configure()
        .extern_path(".sealroom.v1", "::sealroom_protocol::pb")
        .compile_fds(descriptors)?;
    Ok(())
}
