//! Link options of the cdylib:
//! - the SONAME glibc loads it by (`libnss_<service>.so.2`);
//! - `-z nodelete`, like systemd's modules: glibc never unloads NSS modules anyway;
//! - GCC's unwinder linked in statically (libgcc_eh.a) instead of a dependency on libgcc_s.so.1.
//!   Rust's std asks for `-lgcc_s`; a linker script of that name in a folder searched first turns
//!   it into libgcc_eh.a. The module then needs nothing but glibc (`libc.so.6` and the dynamic
//!   loader, which provides `__tls_get_addr` and `_dl_find_object`), and a program that did not
//!   have libgcc_s loaded does not pay for loading it on its first `.ec2` lookup (about 100 µs on
//!   the development VM, see docs/benchmarks.md). The unwinder's symbols stay local to the module
//!   (cdylibs export only their `#[no_mangle]` functions), and a panic never leaves the module, so
//!   its copy never meets the program's. Where the compiler has no libgcc_eh.a the module links
//!   libgcc_s as usual.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnss_ec2.so.2");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    println!("cargo:rerun-if-env-changed=NSS_EC2_DYNAMIC_LIBGCC");
    if std::env::var_os("NSS_EC2_DYNAMIC_LIBGCC").is_some() {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let eh = Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_absolute() && p.is_file());
    let Some(eh) = eh else {
        println!(
            "cargo:warning=no libgcc_eh.a from `{cc} -print-file-name`: libnss_ec2 links libgcc_s"
        );
        return;
    };
    let dir =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("unwind");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/unwind");
    std::fs::write(
        dir.join("libgcc_s.so"),
        format!(
            "/* libnss_ec2: GCC's unwinder, statically */\nINPUT ( {} )\n",
            eh.display()
        ),
    )
    .expect("write OUT_DIR/unwind/libgcc_s.so");
    println!("cargo:rustc-cdylib-link-arg=-L{}", dir.display());
}
