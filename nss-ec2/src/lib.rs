//! `libnss_ec2.so.2`: the glibc NSS `hosts` module of nss-ec2.
//!
//! Every entry point is a thin `extern "C"` shim over a function that returns an [`Outcome`];
//! [`finish`] turns an outcome into the exact status / errno / h_errno triple glibc expects
//! (glibc's manual, "NSS Modules Interface"; docs/names.md, "Answers to the resolver"). Nothing
//! here prints, spawns a thread, blocks, or lets a panic cross the FFI boundary.
//!
//! Process-wide set-up (the silent panic hook, the fork handlers) is done by [`constructor`],
//! which the dynamic loader runs when it loads the module, before any entry point can be called.

mod layout;
mod source;
#[doc(hidden)]
pub mod testing;

use layout::{Bump, Erange, GaihAddrTuple};
use nss_ec2_snapshot::{Answer, Corrupt, Family, Find, InstanceRef, Snapshot};
use source::Cursor;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

const NSS_STATUS_TRYAGAIN: c_int = -2;
const NSS_STATUS_UNAVAIL: c_int = -1;
const NSS_STATUS_NOTFOUND: c_int = 0;
const NSS_STATUS_SUCCESS: c_int = 1;

const NETDB_INTERNAL: c_int = -1;
const NETDB_SUCCESS: c_int = 0;
const HOST_NOT_FOUND: c_int = 1;
const NO_RECOVERY: c_int = 3;
const NO_DATA: c_int = 4;

/// What a lookup came to; [`finish`] maps it to glibc's status, errno and h_errno.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The result was written.
    Success,
    /// Unknown name inside the domain: NOTFOUND / HOST_NOT_FOUND.
    NoName,
    /// The name exists but has no address of the asked family: NOTFOUND / NO_DATA.
    NoData,
    /// Not ours to answer, or no usable snapshot: UNAVAIL / NO_RECOVERY, the next source is asked.
    Unavail(c_int),
    /// The caller's buffer is too small: TRYAGAIN / ERANGE / NETDB_INTERNAL, glibc grows it.
    Erange,
}

impl From<Erange> for Outcome {
    fn from(_: Erange) -> Outcome {
        Outcome::Erange
    }
}

impl From<Corrupt> for Outcome {
    fn from(_: Corrupt) -> Outcome {
        Outcome::Unavail(libc::EIO)
    }
}

fn errno_location() -> *mut c_int {
    // SAFETY: always returns the calling thread's errno slot.
    unsafe { libc::__errno_location() }
}

/// The module's load-time constructor, in the shared object's `.init_array`: the dynamic loader
/// runs it inside `dlopen`, before glibc (or anything) can call an entry point, so no caller ever
/// sees the module half set up. It silences the panic messages of the module's own copy of std
/// (the host's output is not ours; panics are caught at every entry point) and registers the
/// fork handlers of the snapshot state. It exports no symbol.
#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = constructor;

extern "C" fn constructor() {
    // The crate's rlib (its tests, the fuzz target) carries the same entry into the programs it
    // is linked into: there the program's panics must keep their messages.
    if !in_shared_object() {
        return;
    }
    let _ = catch_unwind(|| {
        #[cfg(feature = "panic-probe")]
        probe_slow_init();
        std::panic::set_hook(Box::new(|_| {}));
        source::register_fork_handlers();
    });
}

/// False when this code was linked into the program itself (the crate's rlib), true in the
/// shared object (and whenever the loader cannot tell).
fn in_shared_object() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector.
    let program_headers = unsafe { libc::getauxval(libc::AT_PHDR) } as *const c_void;
    let base = |addr: *const c_void| {
        // SAFETY: zeroed is a valid Dl_info; dladdr only reads the loader's tables.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: addr is any address; info is a valid out-pointer.
        (unsafe { libc::dladdr(addr, &mut info) } != 0).then_some(info.dli_fbase)
    };
    match (base(constructor as *const c_void), base(program_headers)) {
        (Some(ours), Some(program)) => ours != program,
        _ => true,
    }
}

/// Runs `f` with errno saved, panics caught (and silent, see [`constructor`]), and the outcome
/// written last.
fn guard(errnop: *mut c_int, h_errnop: *mut c_int, f: impl FnOnce() -> Outcome) -> c_int {
    // SAFETY: reading this thread's errno.
    let saved = unsafe { *errno_location() };
    let outcome = catch_unwind(AssertUnwindSafe(f)).unwrap_or(Outcome::Unavail(libc::EIO));
    finish(outcome, saved, errnop, h_errnop)
}

fn finish(outcome: Outcome, saved: c_int, errnop: *mut c_int, h_errnop: *mut c_int) -> c_int {
    let (status, err, herr) = match outcome {
        Outcome::Success => (NSS_STATUS_SUCCESS, 0, NETDB_SUCCESS),
        Outcome::NoName => (NSS_STATUS_NOTFOUND, libc::ENOENT, HOST_NOT_FOUND),
        Outcome::NoData => (NSS_STATUS_NOTFOUND, libc::ENOENT, NO_DATA),
        Outcome::Unavail(e) => (NSS_STATUS_UNAVAIL, e, NO_RECOVERY),
        Outcome::Erange => (NSS_STATUS_TRYAGAIN, libc::ERANGE, NETDB_INTERNAL),
    };
    // SAFETY: restoring this thread's errno first: errnop may be &errno, and it is written last.
    unsafe { *errno_location() = saved };
    if !h_errnop.is_null() {
        // SAFETY: glibc passes a valid int pointer; NULL was excluded.
        unsafe { *h_errnop = herr };
    }
    if err != 0 && !errnop.is_null() {
        // SAFETY: as above.
        unsafe { *errnop = err };
    }
    status
}

/// Runs `f` on the current snapshot, or answers UNAVAIL when there is none to trust.
fn with_snapshot(f: impl FnOnce(&Snapshot<'_>) -> Result<Outcome, Outcome>) -> Outcome {
    #[cfg(feature = "panic-probe")]
    panic_probe();
    let mapping = match source::current() {
        Ok(m) => m,
        Err(u) => return Outcome::Unavail(u.errno()),
    };
    let snap = mapping.snapshot();
    if stale(&snap) {
        return Outcome::Unavail(libc::ESTALE);
    }
    f(&snap).unwrap_or_else(|e| e)
}

/// Older than the snapshot's `max_age` (0: never stale).
fn stale(snap: &Snapshot<'_>) -> bool {
    snap.header().expired_at(source::now_unix())
}

/// Test builds only (feature `panic-probe`, never in a release or package): with
/// `NSS_EC2_PANIC_PROBE` set, every lookup panics inside the module, so that the tests can show
/// what a program sees when the module has a bug: UNAVAIL / EIO, no output, no abort. With the
/// value `lock`, the panic comes later, inside the critical section of the snapshot state.
#[cfg(feature = "panic-probe")]
fn panic_probe() {
    if std::env::var_os("NSS_EC2_PANIC_PROBE").is_some_and(|v| v != "lock") {
        panic!("panic probe");
    }
}

/// Test builds only: with `NSS_EC2_PANIC_PROBE_SLOW_INIT` set, the constructor takes 300 ms, so
/// that a test can show no caller runs while the module is being set up.
#[cfg(feature = "panic-probe")]
fn probe_slow_init() {
    if std::env::var_os("NSS_EC2_PANIC_PROBE_SLOW_INIT").is_some() {
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

fn family(af: c_int) -> Option<(Family, usize)> {
    match af {
        libc::AF_INET => Some((Family::V4, 4)),
        libc::AF_INET6 => Some((Family::V6, 16)),
        _ => None,
    }
}

/// # Safety
/// `name` is NULL or NUL-terminated.
unsafe fn name_bytes<'a>(name: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: per the contract above.
    (!name.is_null()).then(|| unsafe { CStr::from_ptr(name) }.to_bytes())
}

/// A forward lookup of one family into a `hostent` (2_r, 3_r, _r).
///
/// # Safety
/// Pointers as glibc passes them: `result` writable, `buffer` writable for `buflen` bytes,
/// `canonp`/`ttlp` NULL or writable.
#[allow(clippy::too_many_arguments)]
unsafe fn by_name(
    snap: &Snapshot<'_>,
    name: *const c_char,
    af: c_int,
    result: *mut libc::hostent,
    buffer: *mut c_char,
    buflen: usize,
    ttlp: *mut i32,
    canonp: *mut *mut c_char,
) -> Result<Outcome, Outcome> {
    // SAFETY: glibc passes a NUL-terminated name.
    let Some(name) = (unsafe { name_bytes(name) }) else {
        return Err(Outcome::Unavail(libc::EINVAL));
    };
    let Some((fam, len)) = family(af) else {
        return Err(Outcome::Unavail(libc::EAFNOSUPPORT));
    };
    if result.is_null() {
        return Err(Outcome::Unavail(libc::EINVAL));
    }
    let answer = match snap.find(name)? {
        Find::OutOfZone => return Ok(Outcome::Unavail(libc::ENOENT)),
        Find::NotFound => return Ok(Outcome::NoName),
        Find::Found(a) => a,
    };
    let count = answer.count(fam)?;
    if count == 0 {
        return Ok(Outcome::NoData);
    }
    // SAFETY: as glibc passes them; result was checked non-NULL.
    unsafe { answer_hostent(&answer, fam, af, len, count, result, buffer, buflen)? };
    // SAFETY: result was just written; canonp/ttlp are NULL or writable.
    unsafe {
        if !canonp.is_null() {
            *canonp = (*result).h_name;
        }
        if !ttlp.is_null() {
            *ttlp = ttl(snap);
        }
    }
    Ok(Outcome::Success)
}

/// Writes the `count` addresses of family `fam` of `answer` as a `hostent` without aliases (the
/// forward lookups and enumeration).
///
/// # Safety
/// `result` non-NULL and writable, `buffer` writable for `buflen` bytes.
#[allow(clippy::too_many_arguments)]
unsafe fn answer_hostent(
    answer: &Answer<'_>,
    fam: Family,
    af: c_int,
    len: usize,
    count: usize,
    result: *mut libc::hostent,
    buffer: *mut c_char,
    buflen: usize,
) -> Result<(), Erange> {
    // SAFETY: per the contract above.
    let mut bump = unsafe { Bump::new(buffer, buflen) };
    // SAFETY: per the contract above.
    unsafe {
        layout::hostent(
            &mut bump,
            result,
            answer.name(),
            0,
            &mut |_| Ok(()),
            af,
            len,
            count,
            &mut |put| each_addr(answer.members(), fam, put),
        )
    }
}

fn ttl(snap: &Snapshot<'_>) -> i32 {
    i32::try_from(snap.header().interval_secs).unwrap_or(i32::MAX)
}

/// Feeds every address of `fam` of `members` to `put`, stopping at the first error.
fn each_addr<'a>(
    members: impl Iterator<Item = Result<InstanceRef<'a>, Corrupt>>,
    fam: Family,
    put: &mut layout::Put<'_>,
) -> Result<(), Erange> {
    let mut err = Ok(());
    // A member that fails its checks here was counted in the first pass, which read the same
    // immutable bytes; skipping it keeps the answer consistent (arrays are NULL-terminated).
    for m in members.flatten() {
        m.for_each_addr(fam, |a| {
            if err.is_ok() {
                err = put(a);
            }
        });
        err.as_ref().map_err(|_| Erange)?;
    }
    err
}

/// `gethostbyname4_r`: both families as a list of address tuples.
///
/// # Safety
/// As glibc passes them: `pat` valid, `*pat` NULL or a writable tuple, `buffer` writable for
/// `buflen` bytes, `ttlp` NULL or writable.
unsafe fn by_name4(
    snap: &Snapshot<'_>,
    name: *const c_char,
    pat: *mut *mut GaihAddrTuple,
    buffer: *mut c_char,
    buflen: usize,
    ttlp: *mut i32,
) -> Result<Outcome, Outcome> {
    // SAFETY: glibc passes a NUL-terminated name.
    let Some(name) = (unsafe { name_bytes(name) }) else {
        return Err(Outcome::Unavail(libc::EINVAL));
    };
    if pat.is_null() {
        return Err(Outcome::Unavail(libc::EINVAL));
    }
    let answer = match snap.find(name)? {
        Find::OutOfZone => return Ok(Outcome::Unavail(libc::ENOENT)),
        Find::NotFound => return Ok(Outcome::NoName),
        Find::Found(a) => a,
    };
    let total = answer.count(Family::V4)? + answer.count(Family::V6)?;
    if total == 0 {
        return Ok(Outcome::NoData);
    }
    // SAFETY: buffer/buflen as glibc passes them.
    let mut bump = unsafe { Bump::new(buffer, buflen) };
    let cname = bump.str(answer.name())?;
    let mut first: *mut GaihAddrTuple = std::ptr::null_mut();
    let mut last: *mut GaihAddrTuple = std::ptr::null_mut();
    let mut made = 0usize;
    for (fam, af) in [(Family::V4, libc::AF_INET), (Family::V6, libc::AF_INET6)] {
        each_addr(answer.members(), fam, &mut |a| {
            if made == total {
                return Ok(());
            }
            let t = bump.tuple()?;
            // SAFETY: t is an aligned, initialised tuple inside the buffer; `last` is the
            // previous one (or NULL).
            unsafe {
                (*t).name = cname;
                (*t).family = af;
                let dst = (*t).addr.as_mut_ptr().cast::<u8>();
                std::ptr::copy_nonoverlapping(a.as_ptr(), dst, a.len().min(16));
                if last.is_null() {
                    first = t;
                } else {
                    (*last).next = t;
                }
            }
            last = t;
            made += 1;
            Ok(())
        })?;
    }
    if first.is_null() {
        return Ok(Outcome::NoData);
    }
    // SAFETY: pat is valid; a non-NULL *pat is caller storage for the first tuple (nscd).
    unsafe {
        if (*pat).is_null() {
            *pat = first;
        } else {
            **pat = *first;
        }
        if !ttlp.is_null() {
            *ttlp = ttl(snap);
        }
    }
    Ok(Outcome::Success)
}

/// A reverse lookup: the instance with this address, `I.D` as name, numbered names as aliases.
/// Addresses that are not in the snapshot answer UNAVAIL, so DNS is still asked for them.
///
/// # Safety
/// As glibc passes them: `addr` readable for `len` bytes, `result` writable, `buffer` writable
/// for `buflen` bytes, `ttlp` NULL or writable.
#[allow(clippy::too_many_arguments)]
unsafe fn by_addr(
    snap: &Snapshot<'_>,
    addr: *const c_void,
    len: libc::socklen_t,
    af: c_int,
    result: *mut libc::hostent,
    buffer: *mut c_char,
    buflen: usize,
    ttlp: *mut i32,
) -> Result<Outcome, Outcome> {
    if addr.is_null() || result.is_null() {
        return Err(Outcome::Unavail(libc::EINVAL));
    }
    let want = match af {
        libc::AF_INET => 4,
        libc::AF_INET6 => 16,
        _ => return Err(Outcome::Unavail(libc::EAFNOSUPPORT)),
    };
    if len as usize != want {
        return Err(Outcome::Unavail(libc::EINVAL));
    }
    // SAFETY: addr is readable for len == want bytes.
    let bytes = unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), want) };
    {
        let inst = if want == 4 {
            snap.reverse_v4([bytes[0], bytes[1], bytes[2], bytes[3]])?
        } else if bytes[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] {
            // IPv4-mapped: look the IPv4 address up, answer in the asked family.
            snap.reverse_v4([bytes[12], bytes[13], bytes[14], bytes[15]])?
        } else {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            snap.reverse_v6(a)?
        };
        let Some(inst) = inst else {
            return Ok(Outcome::Unavail(libc::ENOENT));
        };
        let name = inst.name()?;
        let n_aliases = inst.alias_count()?;
        // SAFETY: buffer/buflen as glibc passes them.
        let mut bump = unsafe { Bump::new(buffer, buflen) };
        // SAFETY: result is non-NULL and writable.
        unsafe {
            layout::hostent(
                &mut bump,
                result,
                name,
                n_aliases,
                &mut |put| {
                    for a in inst.aliases().flatten() {
                        put(a)?;
                    }
                    Ok(())
                },
                af,
                want,
                1,
                &mut |put| put(bytes),
            )?;
            if !ttlp.is_null() {
                *ttlp = ttl(snap);
            }
        }
        Ok(Outcome::Success)
    }
}

/// The next entry of an enumeration: from `cursor.pos`, the first name (× family) with an
/// address of that family. Only a delivered entry moves the cursor past itself: an ERANGE retry
/// starts at the same entry (and does not walk again the empty ones before it).
///
/// Work is bounded by the file: every entry's members are counted into `cursor.spent` once, and
/// a legitimate file's names have disjoint member ranges, so a whole enumeration (both
/// families) counts at most twice the file's member records; a file whose names claim more
/// ends the enumeration as corrupt. One call therefore costs O(names + members + instances +
/// IPv6 addresses), and a whole enumeration about the same.
///
/// # Safety
/// As glibc passes them.
unsafe fn next_entry(
    snap: &Snapshot<'_>,
    cursor: &mut Cursor,
    result: *mut libc::hostent,
    buffer: *mut c_char,
    buflen: usize,
) -> Result<Outcome, Outcome> {
    if result.is_null() {
        return Err(Outcome::Unavail(libc::EINVAL));
    }
    let end = snap.len().saturating_mul(2);
    let budget = snap.member_records().saturating_mul(2);
    while cursor.pos < end {
        let pos = cursor.pos;
        let answer = snap.answer(pos / 2)?;
        if pos >= cursor.charged {
            cursor.charged = pos + 1;
            cursor.spent = cursor.spent.saturating_add(answer.member_count());
            if cursor.spent > budget {
                cursor.pos = end;
                return Err(Outcome::Unavail(libc::EIO));
            }
        }
        let (fam, af, len) = if pos.is_multiple_of(2) {
            (Family::V4, libc::AF_INET, 4)
        } else {
            (Family::V6, libc::AF_INET6, 16)
        };
        let count = answer.count(fam)?;
        if count > 0 {
            // SAFETY: as glibc passes them; result is non-NULL and writable.
            unsafe { answer_hostent(&answer, fam, af, len, count, result, buffer, buflen)? };
            cursor.pos = pos + 1;
            return Ok(Outcome::Success);
        }
        cursor.pos = pos + 1;
    }
    Ok(Outcome::NoName)
}

// ---------------------------------------------------------------------------------------------
// The exported entry points. Each is a guard around one of the functions above.

/// `gethostbyname4_r`: AF_UNSPEC lookups from `getaddrinfo` (and nscd).
///
/// # Safety
/// Called by glibc with the documented arguments.
#[no_mangle]
pub unsafe extern "C" fn _nss_ec2_gethostbyname4_r(
    name: *const c_char,
    pat: *mut *mut GaihAddrTuple,
    buffer: *mut c_char,
    buflen: usize,
    errnop: *mut c_int,
    h_errnop: *mut c_int,
    ttlp: *mut i32,
) -> c_int {
    guard(errnop, h_errnop, || {
        // SAFETY: arguments forwarded as glibc passed them.
        with_snapshot(|snap| unsafe { by_name4(snap, name, pat, buffer, buflen, ttlp) })
    })
}

/// `gethostbyname3_r`: one family, with canonical name and TTL.
///
/// # Safety
/// Called by glibc with the documented arguments.
#[no_mangle]
pub unsafe extern "C" fn _nss_ec2_gethostbyname3_r(
    name: *const c_char,
    af: c_int,
    result: *mut libc::hostent,
    buffer: *mut c_char,
    buflen: usize,
    errnop: *mut c_int,
    h_errnop: *mut c_int,
    ttlp: *mut i32,
    canonp: *mut *mut c_char,
) -> c_int {
    guard(errnop, h_errnop, || {
        // SAFETY: arguments forwarded as glibc passed them.
        with_snapshot(|snap| unsafe {
            by_name(snap, name, af, result, buffer, buflen, ttlp, canonp)
        })
    })
}

/// `gethostbyname2_r`: one family.
///
/// # Safety
/// Called by glibc with the documented arguments.
#[no_mangle]
pub unsafe extern "C" fn _nss_ec2_gethostbyname2_r(
    name: *const c_char,
    af: c_int,
    result: *mut libc::hostent,
    buffer: *mut c_char,
    buflen: usize,
    errnop: *mut c_int,
    h_errnop: *mut c_int,
) -> c_int {
    // SAFETY: arguments forwarded as glibc passed them; 2_r is 3_r without TTL and canonical name.
    unsafe {
        _nss_ec2_gethostbyname3_r(
            name,
            af,
            result,
            buffer,
            buflen,
            errnop,
            h_errnop,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
}

/// `gethostbyname_r`: IPv4 only, like glibc's own modules.
///
/// # Safety
/// Called by glibc with the documented arguments.
#[no_mangle]
pub unsafe extern "C" fn _nss_ec2_gethostbyname_r(
    name: *const c_char,
    result: *mut libc::hostent,
    buffer: *mut c_char,
    buflen: usize,
    errnop: *mut c_int,
    h_errnop: *mut c_int,
) -> c_int {
    // SAFETY: arguments forwarded as glibc passed them.
    unsafe {
        _nss_ec2_gethostbyname2_r(
            name,
            libc::AF_INET,
            result,
            buffer,
            buflen,
            errnop,
            h_errnop,
        )
    }
}

/// `gethostbyaddr2_r`: reverse lookup with TTL (nscd).
///
/// # Safety
/// Called by glibc with the documented arguments.
#[no_mangle]
pub unsafe extern "C" fn _nss_ec2_gethostbyaddr2_r(
    addr: *const c_void,
    len: libc::socklen_t,
    af: c_int,
    result: *mut libc::hostent,
    buffer: *mut c_char,
    buflen: usize,
    errnop: *mut c_int,
    h_errnop: *mut c_int,
    ttlp: *mut i32,
) -> c_int {
    guard(errnop, h_errnop, || {
        // SAFETY: arguments forwarded as glibc passed them.
        with_snapshot(|snap| unsafe { by_addr(snap, addr, len, af, result, buffer, buflen, ttlp) })
    })
}

/// `gethostbyaddr_r`: reverse lookup.
///
/// # Safety
/// Called by glibc with the documented arguments.
#[no_mangle]
pub unsafe extern "C" fn _nss_ec2_gethostbyaddr_r(
    addr: *const c_void,
    len: libc::socklen_t,
    af: c_int,
    result: *mut libc::hostent,
    buffer: *mut c_char,
    buflen: usize,
    errnop: *mut c_int,
    h_errnop: *mut c_int,
) -> c_int {
    // SAFETY: arguments forwarded as glibc passed them.
    unsafe {
        _nss_ec2_gethostbyaddr2_r(
            addr,
            len,
            af,
            result,
            buffer,
            buflen,
            errnop,
            h_errnop,
            std::ptr::null_mut(),
        )
    }
}

/// The newest snapshot format version this module reads; it reads every version from 1 up to it
/// (the compatibility rule in docs/snapshot-format.md). Not an NSS entry point: glibc never
/// looks it up. `ec2cached status` calls it, through the same `dlopen("libnss_ec2.so.2")` glibc
/// does, to warn when the installed module cannot read the snapshot the daemon wrote.
#[no_mangle]
pub extern "C" fn _nss_ec2_snapshot_version() -> u32 {
    nss_ec2_snapshot::format::VERSION
}

/// `sethostent`: restart enumeration, on the current generation of the snapshot, which it keeps
/// until `endhostent` (as nss_files keeps its open file): a publish meanwhile changes nothing
/// in the listing.
#[no_mangle]
pub extern "C" fn _nss_ec2_sethostent(_stayopen: c_int) -> c_int {
    let (mut e, mut he) = (0, 0);
    guard(&mut e, &mut he, || {
        source::walk_reset(true);
        Outcome::Success
    })
}

/// `endhostent`: end enumeration and let its generation go.
#[no_mangle]
pub extern "C" fn _nss_ec2_endhostent() -> c_int {
    let (mut e, mut he) = (0, 0);
    guard(&mut e, &mut he, || {
        source::walk_reset(false);
        Outcome::Success
    })
}

/// `gethostent_r`: the next name of the snapshot, one family at a time.
///
/// # Safety
/// Called by glibc with the documented arguments.
#[no_mangle]
pub unsafe extern "C" fn _nss_ec2_gethostent_r(
    result: *mut libc::hostent,
    buffer: *mut c_char,
    buflen: usize,
    errnop: *mut c_int,
    h_errnop: *mut c_int,
) -> c_int {
    guard(errnop, h_errnop, || {
        #[cfg(feature = "panic-probe")]
        panic_probe();
        let (mapping, mut cursor) = match source::walk() {
            Ok(w) => w,
            Err(u) => return Outcome::Unavail(u.errno()),
        };
        let snap = mapping.snapshot();
        if stale(&snap) {
            return Outcome::Unavail(libc::ESTALE);
        }
        // SAFETY: arguments forwarded as glibc passed them.
        let r = unsafe { next_entry(&snap, &mut cursor, result, buffer, buflen) };
        source::walk_save(&mapping, cursor);
        r.unwrap_or_else(|e| e)
    })
}
