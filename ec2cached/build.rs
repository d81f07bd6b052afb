//! Link options of the daemon: a GNU build ID, which the glibc floor build's linker (zig's LLD,
//! docs/platforms.md, "The floor build") leaves out unless asked, and which core dumps,
//! debuggers and the packages' debug tooling (dh_strip, rpmbuild) use to find the binary's
//! symbols.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,--build-id=sha1");
    println!("cargo:rerun-if-changed=build.rs");
}
