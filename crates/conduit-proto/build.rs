//! Generates the gRPC client and server for `proto/conduit.proto` with tonic-prost-build.
//!
//! The `.proto` file is parsed by `protox` (pure Rust), so no `protoc` binary is needed: the crate
//! builds offline on a fresh machine.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = manifest.join("../../proto");
    let proto = proto_dir.join("conduit.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let fds = protox::compile([&proto], [&proto_dir])?;
    // The encoded descriptors, for the gateway's server reflection (`FILE_DESCRIPTOR_SET`).
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("conduit_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // The client and server take any `GrpcService` / are plain services: no dependency on
        // tonic's transport here (the SDK enables the channel, the gateway the server).
        .build_transport(false)
        // `bytes` fields as `bytes::Bytes`: frames are sliced out of the decode buffer, not copied.
        .bytes(".")
        // Small codec buffers: an idle stream keeps its read and write buffer (see `LeanCodec`).
        .codec_path("crate::LeanCodec")
        .compile_fds(fds)?;
    Ok(())
}
