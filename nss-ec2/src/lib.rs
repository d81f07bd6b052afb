//! `libnss_ec2.so.2`: the glibc NSS `hosts` module of nss-ec2.
//!
//! Every entry point is a thin `extern "C"` shim over [`lookup`]-style functions that return an
//! [`Outcome`]; [`finish`] turns an outcome into the exact status / errno / h_errno triple glibc
//! expects (see `shared/reference/nss-hosts-abi.md` §2 and §8). Nothing here prints, spawns a
//! thread, blocks, or lets a panic cross the FFI boundary.

mod layout;
mod source;

use layout::{Bump, Erange, GaihAddrTuple};
use nss_ec2_snapshot::{Answer, Corrupt, Family, Find, InstanceRef, Snapshot};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

static INIT: AtomicBool = AtomicBool::new(false);

/// Runs `f` with errno saved, panics caught and silenced, and the outcome written last.
fn guard(errnop: *mut c_int, h_errnop: *mut c_int, f: impl FnOnce() -> Outcome) -> c_int {
    // SAFETY: reading this thread's errno.
    let saved = unsafe { *errno_location() };
    // A plain load first: after the first call this is a read of a shared, never-written line.
    if !INIT.load(Ordering::Acquire) && !INIT.swap(true, Ordering::AcqRel) {
        // The module's own copy of std: silence its panic message, the host's output is not ours.
        std::panic::set_hook(Box::new(|_| {}));
        source::init_once();
    }
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
        Err(_) => return Outcome::Unavail(libc::ENOENT),
    };
    let snap = mapping.snapshot();
    let h = snap.header();
    if h.max_age_secs != 0 && source::now_unix() > h.generated_unix + u64::from(h.max_age_secs) {
        return Outcome::Unavail(libc::ESTALE);
    }
    f(&snap).unwrap_or_else(|e| e)
}

/// Test builds only (feature `panic-probe`, never in a release or package): with
/// `NSS_EC2_PANIC_PROBE` set, every lookup panics inside the module, so that the tests can show
/// what a program sees when the module has a bug: UNAVAIL / EIO, no output, no abort.
#[cfg(feature = "panic-probe")]
fn panic_probe() {
    if std::env::var_os("NSS_EC2_PANIC_PROBE").is_some() {
        panic!("panic probe");
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
        let mut n_aliases = 0;
        for a in inst.aliases() {
            a?;
            n_aliases += 1;
        }
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

/// Enumeration cursor: name index × 2 + family (0: IPv4, 1: IPv6). glibc serialises
/// set/get/endhostent with its own lock; an atomic keeps the cursor fork-safe.
static CURSOR: AtomicUsize = AtomicUsize::new(0);

/// # Safety
/// As glibc passes them.
unsafe fn next_entry(
    snap: &Snapshot<'_>,
    cursor: &AtomicUsize,
    result: *mut libc::hostent,
    buffer: *mut c_char,
    buflen: usize,
) -> Result<Outcome, Outcome> {
    if result.is_null() {
        return Err(Outcome::Unavail(libc::EINVAL));
    }
    let mut pos = cursor.load(Ordering::Acquire);
    let end = snap.len().saturating_mul(2);
    while pos < end {
        let answer = snap.answer(pos / 2)?;
        let (fam, af, len) = if pos.is_multiple_of(2) {
            (Family::V4, libc::AF_INET, 4)
        } else {
            (Family::V6, libc::AF_INET6, 16)
        };
        let count = answer.count(fam)?;
        if count > 0 {
            // SAFETY: as glibc passes them; result is non-NULL and writable.
            unsafe { answer_hostent(&answer, fam, af, len, count, result, buffer, buflen)? };
            // Only a delivered entry moves the cursor: an ERANGE retry gets the same one.
            cursor.store(pos + 1, Ordering::Release);
            return Ok(Outcome::Success);
        }
        pos += 1;
    }
    cursor.store(end, Ordering::Release);
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

/// The newest snapshot format version this module reads.
#[no_mangle]
pub extern "C" fn _nss_ec2_snapshot_version() -> u32 {
    nss_ec2_snapshot::format::VERSION
}

/// `sethostent`: restart enumeration.
#[no_mangle]
pub extern "C" fn _nss_ec2_sethostent(_stayopen: c_int) -> c_int {
    CURSOR.store(0, Ordering::Release);
    NSS_STATUS_SUCCESS
}

/// `endhostent`: end enumeration.
#[no_mangle]
pub extern "C" fn _nss_ec2_endhostent() -> c_int {
    CURSOR.store(0, Ordering::Release);
    NSS_STATUS_SUCCESS
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
        // SAFETY: arguments forwarded as glibc passed them.
        with_snapshot(|snap| unsafe { next_entry(snap, &CURSOR, result, buffer, buflen) })
    })
}

/// Drives the module's whole lookup path over arbitrary snapshot bytes, without files or
/// `dlopen`: for the fuzz target and the corruption tests. Not part of the NSS interface.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// A zeroed `hostent`.
    fn hostent() -> libc::hostent {
        libc::hostent {
            h_name: std::ptr::null_mut(),
            h_aliases: std::ptr::null_mut(),
            h_addrtype: 0,
            h_length: 0,
            h_addr_list: std::ptr::null_mut(),
        }
    }

    /// Calls `f(buffer, len)` with buffers that grow like glibc's (from 0, doubling, at an odd
    /// offset) until it answers something else than ERANGE.
    fn grow(mut f: impl FnMut(*mut c_char, usize) -> Outcome) -> Outcome {
        let mut len = 0usize;
        loop {
            let mut store = vec![0u64; len / 8 + 2];
            // SAFETY: one byte into a buffer of len + 16 bytes leaves len writable bytes.
            let buf = unsafe { store.as_mut_ptr().cast::<c_char>().add(1) };
            let o = f(buf, len);
            if o != Outcome::Erange || len >= 1 << 22 {
                return o;
            }
            len = if len == 0 { 13 } else { len * 2 };
        }
    }

    /// Looks up the snapshot's own names (the first 64), `extra` names, their addresses in
    /// reverse, and enumerates (at most 10 000 entries); every family and entry point.
    /// Returns how many lookups succeeded. A corrupt snapshot must only ever make this smaller.
    pub fn exercise(bytes: &[u8], extra: &[&[u8]]) -> usize {
        let Ok(snap) = Snapshot::parse(bytes) else {
            return 0;
        };
        let mut names: Vec<Vec<u8>> = extra.iter().map(|n| n.to_vec()).collect();
        for i in 0..snap.len().min(64) {
            if let Ok(a) = snap.answer(i) {
                names.push(a.name().to_vec());
            }
        }
        let mut ok = 0;
        let mut addrs: Vec<(c_int, Vec<u8>)> = Vec::new();
        for n in &names {
            let mut c = n.clone();
            c.retain(|&b| b != 0);
            c.push(0);
            let name = c.as_ptr().cast::<c_char>();
            for af in [libc::AF_INET, libc::AF_INET6] {
                let mut h = hostent();
                let (mut ttl, mut canon) = (0i32, std::ptr::null_mut());
                let o = grow(|b, l| {
                    // SAFETY: valid name, hostent, buffer of l bytes, out-pointers.
                    let r = unsafe { by_name(&snap, name, af, &mut h, b, l, &mut ttl, &mut canon) };
                    let o = r.unwrap_or_else(|e| e);
                    if o == Outcome::Success {
                        // SAFETY: on success h points into b, which is alive here.
                        unsafe { collect(&h, af, &mut addrs) };
                    }
                    o
                });
                ok += usize::from(o == Outcome::Success);
            }
            for caller_storage in [false, true] {
                let mut first = layout::EMPTY_TUPLE;
                let o = grow(|b, l| {
                    let mut pat: *mut GaihAddrTuple = if caller_storage {
                        &mut first
                    } else {
                        std::ptr::null_mut()
                    };
                    // SAFETY: valid name, pat, buffer of l bytes; NULL ttlp is allowed.
                    let r = unsafe { by_name4(&snap, name, &mut pat, b, l, std::ptr::null_mut()) };
                    let o = r.unwrap_or_else(|e| e);
                    if o == Outcome::Success {
                        let mut t = pat;
                        let mut n = 0;
                        while !t.is_null() && n < 1 << 20 {
                            // SAFETY: the chain lives in b (or `first`), alive here.
                            t = unsafe { (*t).next };
                            n += 1;
                        }
                    }
                    o
                });
                ok += usize::from(o == Outcome::Success);
            }
        }
        addrs.truncate(256);
        addrs.push((libc::AF_INET, vec![10, 0, 0, 1]));
        addrs.push((libc::AF_INET6, vec![0; 16]));
        for (af, a) in &addrs {
            let mut h = hostent();
            let o = grow(|b, l| {
                // SAFETY: a is readable for its length; valid hostent and buffer.
                let r = unsafe {
                    by_addr(
                        &snap,
                        a.as_ptr().cast(),
                        a.len() as u32,
                        *af,
                        &mut h,
                        b,
                        l,
                        std::ptr::null_mut(),
                    )
                };
                r.unwrap_or_else(|e| e)
            });
            ok += usize::from(o == Outcome::Success);
        }
        let cursor = AtomicUsize::new(0);
        for _ in 0..10_000 {
            let mut h = hostent();
            let o = grow(|b, l| {
                // SAFETY: valid hostent and buffer.
                unsafe { next_entry(&snap, &cursor, &mut h, b, l) }.unwrap_or_else(|e| e)
            });
            if o != Outcome::Success {
                break;
            }
            ok += 1;
        }
        ok
    }

    /// The fuzz target's body, shared with the corpus replay test. The first byte picks the mode:
    /// odd, the rest is used as it is (the header checks must refuse it); even, the header's file
    /// length and checksum are fixed up first, so that the fuzzer explores what lies behind the
    /// header (offsets, counts, records, strings).
    pub fn fuzz_one(data: &[u8]) {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        let mut bytes = rest.to_vec();
        if mode % 2 == 0 && bytes.len() >= nss_ec2_snapshot::format::HEADER_LEN {
            let len = bytes.len() as u64;
            bytes[16..24].copy_from_slice(&len.to_le_bytes());
            nss_ec2_snapshot::format::seal_header(&mut bytes);
        }
        exercise(
            &bytes,
            &[
                b"tphon.ec2",
                b"1.redis.tphon.ec2",
                b"nosuch.ec2",
                b"x.example",
            ],
        );
    }

    /// Copies the addresses of a successful hostent.
    ///
    /// # Safety
    /// `h` must be a hostent filled by this module, its buffer still alive.
    unsafe fn collect(h: &libc::hostent, af: c_int, out: &mut Vec<(c_int, Vec<u8>)>) {
        let len = if af == libc::AF_INET { 4 } else { 16 };
        let mut i = 0;
        // SAFETY: h_addr_list is NULL-terminated, each entry `len` bytes (per the caller).
        unsafe {
            while !(*h.h_addr_list.add(i)).is_null() && out.len() < 1024 {
                let p = (*h.h_addr_list.add(i)).cast::<u8>();
                out.push((af, std::slice::from_raw_parts(p, len).to_vec()));
                i += 1;
            }
        }
    }
}
