//! With the `eventstore` feature only: compiles the `.proto` files of the `kurrentdb`
//! crate (copied to `tests/kurrent/protos/`) into the gRPC server stubs of the tests'
//! fake KurrentDB server. `protox` parses them in Rust, so no `protoc` binary is needed.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=tests/kurrent/protos");
    #[cfg(feature = "eventstore")]
    kurrent_stubs();
}

#[cfg(feature = "eventstore")]
fn kurrent_stubs() {
    let dir = "tests/kurrent/protos";
    let files = ["streams.proto", "serverfeatures.proto"].map(|f| format!("{dir}/{f}"));
    let fds = protox::compile(&files, [dir]).expect("parse the KurrentDB protos");
    tonic_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(fds)
        .expect("generate the fake KurrentDB server's stubs");
}
