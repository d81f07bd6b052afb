//! Link options of the cdylib:
//! - the SONAME glibc loads it by (`libnss_<service>.so.2`);
//! - `-z nodelete`, like systemd's modules: glibc never unloads NSS modules anyway;
//! - a GNU build ID (zig's LLD, the glibc floor build's linker, leaves it out unless asked), which
//!   core dumps, debuggers and the packages' debug tooling use to find the module's symbols;
//! - GCC's unwinder linked in statically (libgcc_eh.a) instead of a dependency on libgcc_s.so.1.
//!   Rust's std asks for `-lgcc_s`; a linker script of that name in a folder searched first turns
//!   it into libgcc_eh.a. The module then needs nothing but glibc (`libc.so.6` and the dynamic
//!   loader, which provides `__tls_get_addr` and `_dl_find_object`; the floor build below also
//!   `libpthread.so.0` and `libdl.so.2`, glibc's before 2.34), and a program that did not
//!   have libgcc_s loaded does not pay for loading it on its first `.ec2` lookup (about 100 µs on
//!   the development VM, see docs/benchmarks.md). The unwinder's symbols stay local to the module
//!   (cdylibs export only their `#[no_mangle]` functions), and a panic never leaves the module, so
//!   its copy never meets the program's. Where the compiler has no libgcc_eh.a the module links
//!   libgcc_s as usual.
//!
//!   The glibc floor build (cargo-zigbuild, docs/platforms.md, "The floor build") needs none of
//!   this: zig links its own unwinder (LLVM libunwind) statically for `-lgcc_s`, which finds
//!   frames with `dl_iterate_phdr` (glibc 2.2.5). The build machine's libgcc_eh.a would instead
//!   ask for the glibc it was built for (`_dl_find_object@GLIBC_2.35` on Debian 12).
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnss_ec2.so.2");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--build-id=sha1");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    println!("cargo:rerun-if-env-changed=NSS_EC2_DYNAMIC_LIBGCC");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if std::env::var_os("NSS_EC2_DYNAMIC_LIBGCC").is_some() || linked_by_zig() {
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

/// Whether cargo-zigbuild links this build (it names its linker wrapper `zigcc-TARGET...`).
fn linked_by_zig() -> bool {
    std::env::var_os("RUSTC_LINKER")
        .map(PathBuf::from)
        .and_then(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with("zigcc"))
        })
        .unwrap_or(false)
}
