//! The NSS module installed on this host, loaded the way glibc loads it, to tell whether it can
//! read the snapshot this daemon writes (`ec2cached status`).

use std::ffi::{c_char, c_void, CStr};

/// The file name glibc's NSS loader opens for the `ec2` service.
pub const SONAME: &CStr = c"libnss_ec2.so.2";

/// What the installed module is.
#[derive(Debug, PartialEq, Eq)]
pub enum Module {
    /// No module by that name on the loader's path: this host does not resolve `.ec2` names
    /// through NSS (a poller, or a host that uses the DNS stub only).
    Missing(String),
    /// A file by that name that the loader cannot load (truncated, another architecture, a
    /// missing dependency): glibc cannot load it either, so every `.ec2` name is UNAVAIL.
    Broken(String),
    /// The module at `path` reads snapshot formats 1 to `reads`; `None`: it does not say (no
    /// `_nss_ec2_snapshot_version`), so it is not a module of this nss-ec2 (an unrelated project
    /// ships a `libnss_ec2.so.2` too) and cannot be trusted to read our snapshot.
    Found {
        /// Where the loader found it.
        path: String,
        /// The newest format version it reads.
        reads: Option<u32>,
    },
}

/// Loads `libnss_ec2.so.2` by name with `dlopen`, as glibc does for `hosts: ... ec2` (so the same
/// search path: `LD_LIBRARY_PATH`, the ldconfig cache, the system directories), and asks it which
/// snapshot format it reads. The module stays loaded until the process exits, as in every NSS
/// client.
pub fn probe() -> Module {
    // SAFETY: a NUL-terminated name. Loading runs the object's initialisers: ours are Rust
    // std's only, and whatever file this is, it is the one glibc loads into every process on
    // this host that resolves a name (`status` runs nothing that `getent hosts` would not).
    let handle = unsafe { libc::dlopen(SONAME.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
    if handle.is_null() {
        let why = dlerror();
        return if why.ends_with("No such file or directory") {
            Module::Missing(why)
        } else {
            Module::Broken(why)
        };
    }
    // SAFETY: a valid handle from dlopen and NUL-terminated symbol names.
    let (version, entry) = unsafe {
        (
            libc::dlsym(handle, c"_nss_ec2_snapshot_version".as_ptr()),
            libc::dlsym(handle, c"_nss_ec2_gethostbyname2_r".as_ptr()),
        )
    };
    let anchor = if version.is_null() { entry } else { version };
    let path = path_of(anchor.cast_const());
    let reads = (!version.is_null()).then(|| {
        // SAFETY: the module defines this symbol as `extern "C" fn() -> u32`
        // (nss-ec2/src/lib.rs); it returns a constant.
        let f: extern "C" fn() -> u32 = unsafe { std::mem::transmute(version) };
        f()
    });
    Module::Found { path, reads }
}

fn dlerror() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next dl* call
    // on this thread; it is copied at once.
    let e: *const c_char = unsafe { libc::dlerror() };
    if e.is_null() {
        "not found".into()
    } else {
        // SAFETY: non-null, NUL-terminated (above).
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

/// The file the loader mapped `addr` from (a symbol of the module), or the soname.
fn path_of(addr: *const c_void) -> String {
    if addr.is_null() {
        return SONAME.to_string_lossy().into_owned();
    }
    let mut info: libc::Dl_info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: dladdr only reads the loader's tables and fills `info`; dli_fname, when set, is a
    // NUL-terminated string owned by the loader for as long as the object stays loaded (forever).
    let ok = unsafe { libc::dladdr(addr, &mut info) } != 0;
    if ok && !info.dli_fname.is_null() {
        // SAFETY: as above.
        unsafe { CStr::from_ptr(info.dli_fname) }
            .to_string_lossy()
            .into_owned()
    } else {
        SONAME.to_string_lossy().into_owned()
    }
}
