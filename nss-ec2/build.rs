//! Gives the cdylib the SONAME glibc loads it by (`libnss_<service>.so.2`).
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnss_ec2.so.2");
    // Defensive, like systemd's modules: glibc never unloads NSS modules anyway.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
