//! Where lookups get their snapshot: one shared read-only mapping per process, opened on first
//! use, re-checked with one `lstat` at most every [`RECHECK_NS`], and replaced when the daemon has
//! published a new file. Readers hold an `Arc` to the mapping they started with, so every answer
//! comes whole from one generation and an old mapping is unmapped when its last reader is done.
//! An enumeration (`sethostent` … `endhostent`) holds its generation the same way, to its end.
//!
//! A failure to look at a new file that says nothing about the file (out of descriptors or
//! memory, an interrupted call: [`Unusable::Transient`]) keeps the mapping the process has; only
//! a file that is gone, untrusted or corrupt replaces it.
//!
//! Locking and fork safety: the state is guarded by a pthread mutex, taken through a guard that
//! unlocks when dropped (also when unwinding). Critical sections neither allocate, free, unmap
//! nor make system calls. Fork handlers, registered when the module is loaded (see
//! [`register_fork_handlers`]), take the mutex before `fork` and release it in the parent and
//! the child, so a child never inherits it held.

use nss_ec2_snapshot::Snapshot;
use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, CStr};
use std::sync::Arc;

/// Compiled-in snapshot path (the daemon's default).
pub const DEFAULT_PATH: &CStr = c"/var/lib/ec2cached/hosts.snap";
/// The daemon's state directory: its owner is the daemon's account, trusted like root.
const STATE_DIR: &CStr = c"/var/lib/ec2cached";
/// How often a process looks whether the daemon has published a new snapshot.
pub const RECHECK_NS: u64 = 100_000_000;
/// Largest snapshot the module maps (offsets are 32 bit).
const MAX_LEN: u64 = u32::MAX as u64;
/// Longest path the module opens (`PATH_MAX`).
const PATH_MAX: usize = 4096;

/// Why no snapshot can be used. Every variant answers UNAVAIL, each with its own errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// No file, or no directory, at the path: ENOENT.
    Missing,
    /// Not a regular file, a symlink, unreadable, wrong owner or mode, or in a directory that is
    /// not trusted: EACCES.
    Untrusted,
    /// Fails the format's checks (or is empty, or larger than 4 GiB): EIO.
    Corrupt,
    /// A failure that says nothing about the file (EMFILE, ENFILE, ENOMEM, EAGAIN, EINTR, ...):
    /// that errno. A mapping already held is kept.
    Transient(c_int),
}

impl Unusable {
    /// The errno an entry point reports for it.
    pub fn errno(self) -> c_int {
        match self {
            Unusable::Missing => libc::ENOENT,
            Unusable::Untrusted => libc::EACCES,
            Unusable::Corrupt => libc::EIO,
            Unusable::Transient(e) => e,
        }
    }

    /// Classifies the errno of a failed `open`/`openat`.
    fn of_open(e: c_int) -> Unusable {
        match e {
            libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG => Unusable::Missing,
            // A symlink (O_NOFOLLOW), a loop, no permission, a socket or device node.
            libc::ELOOP
            | libc::EACCES
            | libc::EPERM
            | libc::ENXIO
            | libc::ENODEV
            | libc::EISDIR => Unusable::Untrusted,
            e => Unusable::of_other(e),
        }
    }

    /// Any other failure: transient only when it says so (out of descriptors or memory, try
    /// again, interrupted), which keeps the mapping a process has; anything else (EIO, an NFS
    /// ESTALE, EOVERFLOW, ...) describes the file and is not served around.
    fn of_other(e: c_int) -> Unusable {
        match e {
            libc::EMFILE
            | libc::ENFILE
            | libc::ENOMEM
            | libc::EAGAIN
            | libc::EINTR
            | libc::ENOBUFS => Unusable::Transient(e),
            libc::EACCES | libc::EPERM | libc::ENODEV => Unusable::Untrusted,
            _ => Unusable::Corrupt,
        }
    }
}

fn last_errno() -> c_int {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
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

/// Where an enumeration is: entry `pos` (name index × 2 + family, 0 IPv4, 1 IPv6); the members
/// of the entries before `charged` have been counted into `spent` (see `next_entry` in lib.rs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The next entry to look at.
    pub pos: usize,
    /// Entries below this one have had their members counted.
    pub charged: usize,
    /// Members counted so far.
    pub spent: usize,
}

impl Cursor {
    const START: Cursor = Cursor {
        pos: 0,
        charged: 0,
        spent: 0,
    };
}

struct State {
    current: Option<Arc<Mapping>>,
    /// Coarse monotonic time of the last look at the file; 0 before the first.
    checked_at: u64,
    /// What the last look found when it found nothing usable.
    failure: Unusable,
    /// The generation the enumeration walks, from `sethostent` (or its first `gethostent_r`) to
    /// `endhostent`, and where it is.
    walk: Option<Arc<Mapping>>,
    cursor: Cursor,
}

struct Shared(UnsafeCell<State>);

// SAFETY: every access to the inner State goes through `with_state`, under LOCK.
unsafe impl Sync for Shared {}

static STATE: Shared = Shared(UnsafeCell::new(State {
    current: None,
    checked_at: 0,
    failure: Unusable::Missing,
    walk: None,
    cursor: Cursor::START,
}));

/// A process-wide pthread mutex, statically initialised.
struct Lock(UnsafeCell<libc::pthread_mutex_t>);

// SAFETY: a pthread mutex is made to be shared between threads; it is only used through the
// pthread functions.
unsafe impl Sync for Lock {}

static LOCK: Lock = Lock(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER));

/// Holds LOCK; unlocks it when dropped, also when a panic unwinds through the critical section.
struct Guard(());

fn lock() -> Guard {
    // SAFETY: LOCK is a valid, statically initialised default mutex; a default mutex's lock
    // only fails for a mutex that is not initialised, which this one always is (the fork child
    // handler re-initialises it while no other thread exists).
    unsafe { libc::pthread_mutex_lock(LOCK.0.get()) };
    Guard(())
}

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: this thread locked LOCK in `lock` and unlocks it once.
        unsafe { libc::pthread_mutex_unlock(LOCK.0.get()) };
    }
}

extern "C" fn atfork_prepare() {
    // Held across fork; released by the parent and child handlers below.
    std::mem::forget(lock());
}

extern "C" fn atfork_parent() {
    // SAFETY: the prepare handler locked LOCK on this thread and forgot its guard.
    unsafe { libc::pthread_mutex_unlock(LOCK.0.get()) };
}

extern "C" fn atfork_child() {
    // SAFETY: the child has one thread, this one, which locked LOCK in the prepare handler; a
    // fresh initialiser is the portable way to release a mutex in a fork child.
    unsafe { LOCK.0.get().write(libc::PTHREAD_MUTEX_INITIALIZER) };
}

/// Registers the fork handlers. Called once, by the module's load-time constructor, before any
/// entry point can run.
pub fn register_fork_handlers() {
    // SAFETY: the handlers are plain functions of this never-unloaded module (`-z nodelete`).
    unsafe {
        libc::pthread_atfork(
            Some(atfork_prepare),
            Some(atfork_parent),
            Some(atfork_child),
        );
    }
}

/// Runs `f` on the shared state under the lock. `f` must not allocate, free, unmap, or block:
/// values to drop are returned and dropped by the caller after the lock is released.
fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let _held = lock();
    // SAFETY: LOCK is held, so this is the only reference to the state.
    f(unsafe { &mut *STATE.0.get() })
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

fn lstat_path(p: &CStr) -> Option<libc::stat> {
    // SAFETY: zeroed is a valid bit pattern for the plain-data stat struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: p is NUL-terminated and st is a valid out-pointer.
    (unsafe { libc::lstat(p.as_ptr(), &mut st) } == 0).then_some(st)
}

fn fstat(fd: &Fd) -> Result<libc::stat, Unusable> {
    // SAFETY: zeroed is a valid bit pattern for the plain-data stat struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open and st is a valid out-pointer.
    if unsafe { libc::fstat(fd.0, &mut st) } != 0 {
        return Err(Unusable::of_other(last_errno()));
    }
    Ok(st)
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

/// Splits `p` into its directory (NUL-terminated, in `buf`) and its last component; `None` when
/// it has no last component (empty, or ending in `/`) or is longer than `PATH_MAX`.
fn split<'p, 'b>(p: &'p CStr, buf: &'b mut [u8; PATH_MAX]) -> Option<(&'b CStr, &'p CStr)> {
    let bytes = p.to_bytes_with_nul();
    let name_at = bytes.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let name = CStr::from_bytes_with_nul(bytes.get(name_at..)?).ok()?;
    if name.is_empty() {
        return None;
    }
    let dir: &[u8] = match name_at {
        0 => b".",
        1 => b"/",
        i => bytes.get(..i - 1)?,
    };
    let with_nul = buf.get_mut(..dir.len() + 1)?;
    with_nul[..dir.len()].copy_from_slice(dir);
    with_nul[dir.len()] = 0;
    let dir = CStr::from_bytes_with_nul(with_nul).ok()?;
    Some((dir, name))
}

struct Fd(c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor was opened by `open_retrying` and is closed once.
        unsafe { libc::close(self.0) };
    }
}

/// Calls `open` (a closure around open/openat) again when interrupted, a few times.
fn open_retrying(open: impl Fn() -> c_int) -> Result<Fd, Unusable> {
    let mut err = libc::EINTR;
    for _ in 0..3 {
        let fd = open();
        if fd >= 0 {
            return Ok(Fd(fd));
        }
        err = last_errno();
        if err != libc::EINTR {
            break;
        }
    }
    Err(Unusable::of_open(err))
}

/// Opens, checks and maps the snapshot at `p`, the way systemd opens files it must trust: the
/// directory is opened and checked through its descriptor (so the directory checked is the one
/// the file is then opened in, whatever symlinks led there), and the file is opened relative to
/// it without following a symlink, then checked through its own descriptor.
fn open(p: &CStr) -> Result<Mapping, Unusable> {
    // Only absolute paths: a relative NSS_EC2_SNAPSHOT would name a different file in every
    // working directory.
    if p.to_bytes().first() != Some(&b'/') {
        return Err(Unusable::Untrusted);
    }
    let mut buf = [0u8; PATH_MAX];
    let (dir, name) = split(p, &mut buf).ok_or(Unusable::Missing)?;
    // SAFETY: dir is NUL-terminated. O_PATH needs only search permission on the directory.
    let dfd = open_retrying(|| unsafe {
        libc::open(
            dir.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    let d = fstat(&dfd)?;
    if d.st_mode & libc::S_IFMT != libc::S_IFDIR
        || group_or_other_writable(&d)
        || !trusted(d.st_uid)
    {
        return Err(Unusable::Untrusted);
    }
    let flags =
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: dfd is an open directory and name a NUL-terminated single component. O_NONBLOCK
    // keeps a FIFO from blocking the open; O_NOFOLLOW refuses a symlink (ELOOP).
    let fd = open_retrying(|| unsafe { libc::openat(dfd.0, name.as_ptr(), flags) })?;
    drop(dfd);
    let st = fstat(&fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG
        || group_or_other_writable(&st)
        || !trusted(st.st_uid)
    {
        return Err(Unusable::Untrusted);
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
        return Err(Unusable::of_other(last_errno()));
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
    #[cfg(feature = "panic-probe")]
    let probe = std::env::var_os("NSS_EC2_PANIC_PROBE").is_some_and(|v| v == "lock");
    // Under the lock: take a reference and decide whether this thread re-checks the file.
    let (held, recheck, failure) = with_state(|st| {
        // Test builds only: a panic while the lock is held (the guard must release it).
        #[cfg(feature = "panic-probe")]
        if probe {
            panic!("panic probe, inside the lock");
        }
        let due = st.checked_at == 0 || now.wrapping_sub(st.checked_at) >= RECHECK_NS;
        // Until the first look at the file has ended (found it or not) every thread looks for
        // itself; after that, one thread per period re-checks while the others go on with what
        // the last look found.
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
        if lstat_path(p).is_some_and(|st| m.ident == Ident::of(&st)) {
            with_state(|s| s.checked_at = now);
            return Ok(Arc::clone(m));
        }
    }
    match (open(p), held) {
        (Ok(fresh), _) => Ok(install(Arc::new(fresh), now)),
        // Out of descriptors or memory: keep answering from what we have, look again at the
        // next re-check.
        (Err(Unusable::Transient(_)), Some(m)) => Ok(m),
        (Err(u), _) => {
            fail(u, now);
            Err(u)
        }
    }
}

/// Makes `fresh` the current mapping; the one it replaces is dropped outside the lock.
fn install(fresh: Arc<Mapping>, now: u64) -> Arc<Mapping> {
    let old = with_state(|s| {
        s.checked_at = now;
        s.current.replace(Arc::clone(&fresh))
    });
    drop(old);
    fresh
}

/// Records that the file is unusable and drops the current mapping (outside the lock).
fn fail(u: Unusable, now: u64) {
    let old = with_state(|s| {
        s.checked_at = now;
        s.failure = u;
        s.current.take()
    });
    drop(old);
}

/// `sethostent`/`endhostent`: forgets the enumeration's generation and position; with `pin`,
/// the next enumeration walks the current generation.
pub fn walk_reset(pin: bool) {
    let fresh = if pin { current().ok() } else { None };
    let old = with_state(|s| {
        s.cursor = Cursor::START;
        std::mem::replace(&mut s.walk, fresh)
    });
    drop(old);
}

/// The enumeration's generation and position: the one pinned by `sethostent` or an earlier
/// `gethostent_r`, else the current snapshot, which it then pins.
pub fn walk() -> Result<(Arc<Mapping>, Cursor), Unusable> {
    if let Some(w) = with_state(|s| s.walk.clone().map(|m| (m, s.cursor))) {
        return Ok(w);
    }
    let m = current()?;
    let (pinned, unused) = with_state(|s| match &s.walk {
        // Another caller pinned one meanwhile: walk that one.
        Some(w) => ((Arc::clone(w), s.cursor), Some(Arc::clone(&m))),
        None => {
            s.walk = Some(Arc::clone(&m));
            ((Arc::clone(&m), s.cursor), None)
        }
    });
    drop(unused);
    drop(m);
    Ok(pinned)
}

/// Saves the enumeration's position, if it still walks `m` (nothing reset it meanwhile).
pub fn walk_save(m: &Arc<Mapping>, cursor: Cursor) {
    with_state(|s| {
        if s.walk.as_ref().is_some_and(|w| Arc::ptr_eq(w, m)) {
            s.cursor = cursor;
        }
    });
}
