//! Where lookups get their snapshot: one shared read-only mapping per process, opened on first
//! use, re-checked with one `stat` at most every [`RECHECK_NS`], and replaced when the daemon has
//! published a new file. Readers hold an `Arc` to the mapping they started with, so every answer
//! comes whole from one generation and an old mapping is unmapped when its last reader is done.
//!
//! Fork safety: the state is guarded by a spin lock whose critical sections neither allocate nor
//! make system calls; a `pthread_atfork` handler takes it before `fork` and releases it in both
//! parent and child, so a child never inherits it held.

use nss_ec2_snapshot::Snapshot;
use std::cell::UnsafeCell;
use std::ffi::{c_char, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Compiled-in snapshot path (the daemon's default).
pub const DEFAULT_PATH: &CStr = c"/var/lib/ec2cached/hosts.snap";
/// The daemon's state directory: its owner is the daemon's account, trusted like root.
const STATE_DIR: &CStr = c"/var/lib/ec2cached";
/// How often a process looks whether the daemon has published a new snapshot.
pub const RECHECK_NS: u64 = 100_000_000;
/// Largest snapshot the module maps (offsets are 32 bit).
const MAX_LEN: u64 = u32::MAX as u64;

/// Why no snapshot can be used. Every variant answers UNAVAIL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// No file, or it cannot be opened.
    Missing,
    /// Not a regular file, wrong owner or mode, or in a directory others can write.
    Untrusted,
    /// Fails the format's checks.
    Corrupt,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Ident {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    mode: u32,
    uid: u32,
}

impl Ident {
    fn of(st: &libc::stat) -> Ident {
        Ident {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
            mode: st.st_mode,
            uid: st.st_uid,
        }
    }
}

/// A snapshot file mapped read-only, with its header already checked.
pub struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
    ident: Ident,
    snap: Snapshot<'static>,
}

// SAFETY: the mapping is read-only and immutable for its whole life; the raw pointer is only used
// to unmap it in Drop, which runs once, when the last Arc goes.
unsafe impl Send for Mapping {}
// SAFETY: as above; shared access is read-only.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// The snapshot, borrowed for as long as the mapping is held.
    pub fn snapshot(&self) -> Snapshot<'_> {
        self.snap
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from a successful mmap and are unmapped exactly once; `snap`
        // borrows them but is dropped with `self` and was never handed out beyond `&self`.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

struct State {
    current: Option<Arc<Mapping>>,
    /// Coarse monotonic time of the last look at the file; 0 before the first.
    checked_at: u64,
    /// What the last look found when it found nothing usable.
    failure: Unusable,
}

struct Shared(UnsafeCell<State>);

// SAFETY: every access to the inner State goes through `with_state`, under LOCK.
unsafe impl Sync for Shared {}

static LOCK: AtomicBool = AtomicBool::new(false);
static STATE: Shared = Shared(UnsafeCell::new(State {
    current: None,
    checked_at: 0,
    failure: Unusable::Missing,
}));
static ATFORK: AtomicBool = AtomicBool::new(false);

fn lock() {
    let mut spins = 0u32;
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins = spins.saturating_add(1);
        if spins < 100 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

fn unlock() {
    LOCK.store(false, Ordering::Release);
}

extern "C" fn atfork_prepare() {
    lock();
}

extern "C" fn atfork_release() {
    unlock();
}

/// Registers the fork handlers once per process.
pub fn init_once() {
    if !ATFORK.swap(true, Ordering::AcqRel) {
        // SAFETY: the handlers are plain functions of this never-unloaded module.
        unsafe {
            libc::pthread_atfork(
                Some(atfork_prepare),
                Some(atfork_release),
                Some(atfork_release),
            );
        }
    }
}

/// Runs `f` on the shared state under the lock. `f` must not allocate, free, or block.
fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    lock();
    // SAFETY: LOCK is held, so this is the only reference to the state.
    let r = f(unsafe { &mut *STATE.0.get() });
    unlock();
    r
}

fn coarse(clock: libc::clockid_t) -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; the coarse clocks are answered by the vDSO.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts
}

fn monotonic_ns() -> u64 {
    let ts = coarse(libc::CLOCK_MONOTONIC_COARSE);
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
        .max(1)
}

/// Seconds since the epoch (coarse).
pub fn now_unix() -> u64 {
    coarse(libc::CLOCK_REALTIME_COARSE).tv_sec.max(0) as u64
}

extern "C" {
    // Not declared by the libc crate for linux-gnu; exported by glibc since 2.17.
    fn secure_getenv(name: *const c_char) -> *mut c_char;
}

/// The snapshot path: `NSS_EC2_SNAPSHOT` unless the process is set-uid/set-gid/capable
/// (`secure_getenv` answers NULL there), else the compiled-in path.
fn path() -> &'static CStr {
    // SAFETY: a NUL-terminated literal; secure_getenv only reads the environment.
    let p = unsafe { secure_getenv(c"NSS_EC2_SNAPSHOT".as_ptr()) };
    if p.is_null() {
        return DEFAULT_PATH;
    }
    // SAFETY: non-NULL results of secure_getenv point at a NUL-terminated environment string,
    // which lives as long as the process does unless the program itself edits its environment.
    let s = unsafe { CStr::from_ptr(p) };
    if s.is_empty() {
        DEFAULT_PATH
    } else {
        s
    }
}

fn stat_path(p: &CStr) -> Option<libc::stat> {
    // SAFETY: zeroed is a valid bit pattern for the plain-data stat struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: p is NUL-terminated and st is a valid out-pointer.
    (unsafe { libc::stat(p.as_ptr(), &mut st) } == 0).then_some(st)
}

fn group_or_other_writable(st: &libc::stat) -> bool {
    st.st_mode & 0o022 != 0
}

/// Accounts whose files the module trusts: root, the account running this process (it can only
/// fool itself; set-uid programs have a root effective uid), and the owner of the daemon's state
/// directory. Found with `stat`, never through NSS.
fn trusted(uid: libc::uid_t) -> bool {
    // SAFETY: geteuid cannot fail.
    if uid == 0 || uid == unsafe { libc::geteuid() } {
        return true;
    }
    matches!(stat_path(STATE_DIR), Some(d) if d.st_uid == uid && !group_or_other_writable(&d))
}

/// The directory part of `p`, NUL-terminated, in `buf`.
fn parent<'b>(p: &CStr, buf: &'b mut [u8; 4096]) -> Option<&'b CStr> {
    let bytes = p.to_bytes();
    let cut = match bytes.iter().rposition(|&b| b == b'/') {
        Some(0) => 1,
        Some(i) => i,
        None => {
            buf[..2].copy_from_slice(b".\0");
            return CStr::from_bytes_with_nul(&buf[..2]).ok();
        }
    };
    if cut + 1 > buf.len() {
        return None;
    }
    buf[..cut].copy_from_slice(&bytes[..cut]);
    buf[cut] = 0;
    CStr::from_bytes_with_nul(&buf[..=cut]).ok()
}

struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor was opened by `open` below and is closed once.
        unsafe { libc::close(self.0) };
    }
}

fn open(p: &CStr) -> Result<Mapping, Unusable> {
    let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    let mut fd = -1;
    for _ in 0..3 {
        // SAFETY: p is NUL-terminated. O_NONBLOCK keeps a FIFO from blocking the open.
        fd = unsafe { libc::open(p.as_ptr(), flags) };
        if fd >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    if fd < 0 {
        return Err(Unusable::Missing);
    }
    let fd = Fd(fd);
    // SAFETY: zeroed is a valid stat; fd is open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open and st is a valid out-pointer.
    if unsafe { libc::fstat(fd.0, &mut st) } != 0 {
        return Err(Unusable::Missing);
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG
        || group_or_other_writable(&st)
        || !trusted(st.st_uid)
    {
        return Err(Unusable::Untrusted);
    }
    let mut buf = [0u8; 4096];
    match parent(p, &mut buf).and_then(stat_path) {
        Some(d) if !group_or_other_writable(&d) && trusted(d.st_uid) => {}
        _ => return Err(Unusable::Untrusted),
    }
    if st.st_size <= 0 || st.st_size as u64 > MAX_LEN {
        return Err(Unusable::Corrupt);
    }
    let len = st.st_size as usize;
    // SAFETY: a fresh private address range, read-only, backed by the open regular file.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd.0,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(Unusable::Missing);
    }
    // SAFETY: the mapping is `len` readable bytes and stays mapped until the Mapping that owns
    // it is dropped; the 'static slice never leaves the Mapping except reborrowed via &self.
    let bytes: &'static [u8] = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
    let mapping = |snap| Mapping {
        ptr,
        len,
        ident: Ident::of(&st),
        snap,
    };
    match Snapshot::parse(bytes) {
        Ok(snap) => Ok(mapping(snap)),
        Err(_) => {
            // SAFETY: ptr/len from the mmap above; nothing borrows it any more.
            unsafe { libc::munmap(ptr, len) };
            Err(Unusable::Corrupt)
        }
    }
}

/// The current snapshot, opened or refreshed as needed.
pub fn current() -> Result<Arc<Mapping>, Unusable> {
    let now = monotonic_ns();
    // Under the lock: take a reference and decide whether this thread re-checks the file.
    let (held, recheck, failure) = with_state(|st| {
        let due = st.checked_at == 0 || now.wrapping_sub(st.checked_at) >= RECHECK_NS;
        // Before the first successful look every thread looks for itself; after it, one thread
        // re-checks while the others keep answering from the mapping they have.
        if due && st.checked_at != 0 {
            st.checked_at = now;
        }
        (st.current.clone(), due, st.failure)
    });
    if !recheck {
        return held.ok_or(failure);
    }
    let p = path();
    if let Some(m) = &held {
        if stat_path(p).is_some_and(|st| m.ident == Ident::of(&st)) {
            with_state(|s| s.checked_at = now);
            return Ok(Arc::clone(m));
        }
    }
    let fresh = open(p).map(Arc::new);
    let installed = fresh.as_ref().ok().cloned();
    let failure = fresh.as_ref().err().copied().unwrap_or(Unusable::Missing);
    let old = with_state(|s| {
        s.checked_at = now;
        s.failure = failure;
        std::mem::replace(&mut s.current, installed)
    });
    // Dropping outside the lock: the last reference unmaps.
    drop(old);
    drop(held);
    fresh
}
