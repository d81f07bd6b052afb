//! Drives the module's whole lookup path over arbitrary snapshot bytes, without files or
//! `dlopen`: for the fuzz target and the corruption tests. Not part of the NSS interface (the
//! cdylib exports none of it; only the crate's rlib, which its tests and the fuzz target link,
//! offers it).
//!
//! Every call is metered ([`Snapshot::metered`]: one step per record read, hash probe,
//! binary-search round and address handed out) and must stay within a bound computed from the
//! snapshot's counts — what a legitimate file of that size can ask for — and so must a whole
//! enumeration. A file whose bytes make the module work more (overlapping member or address
//! ranges, counts beyond the file) makes [`exercise`] panic: a finding for the fuzzer, a failure
//! for the tests.

use crate::layout::{self, GaihAddrTuple};
use crate::source::Cursor;
use crate::{by_addr, by_name, by_name4, next_entry, Outcome};
use nss_ec2_snapshot::format::{seal_header, HEADER_LEN, MAX_V6_PER_INSTANCE};
use nss_ec2_snapshot::Snapshot;
use std::ffi::{c_char, c_int};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Calls `f(buffer, len)` with buffers that grow like glibc's (from `*len`, doubling, at an odd
/// offset) until it answers something else than ERANGE; leaves in `*len` the size that did.
/// `store` is reused from call to call, as glibc's enumeration reuses its buffer.
fn grow(
    store: &mut Vec<u64>,
    len: &mut usize,
    mut f: impl FnMut(*mut c_char, usize) -> Outcome,
) -> Outcome {
    loop {
        if store.len() < *len / 8 + 2 {
            store.resize(*len / 8 + 2, 0);
        }
        // SAFETY: one byte into a buffer of at least len + 16 bytes leaves len writable bytes.
        let buf = unsafe { store.as_mut_ptr().cast::<c_char>().add(1) };
        let o = f(buf, *len);
        if o != Outcome::Erange || *len >= 1 << 22 {
            return o;
        }
        *len = if *len == 0 { 13 } else { *len * 2 };
    }
}

/// Record counts of a snapshot's sections, read from its header (see snapshot/src/format.rs).
#[derive(Clone, Copy, Debug)]
struct Counts {
    names: u64,
    members: u64,
    instances: u64,
    v6: u64,
    aliases: u64,
}

impl Counts {
    fn of(bytes: &[u8]) -> Counts {
        let len = |k: usize, size: u64| {
            let at = 64 + 8 * k + 4;
            let v = bytes
                .get(at..at + 4)
                .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap_or_default()));
            u64::from(v) / size
        };
        Counts {
            names: len(1, 16),
            members: len(2, 4),
            instances: len(3, 32),
            v6: len(4, 16),
            aliases: len(5, 4),
        }
    }

    /// Most members one name can legitimately have.
    fn one_name(&self) -> u64 {
        self.instances.min(self.members)
    }

    /// Most steps of one forward lookup: 64 probes (slot and name record), the members counted
    /// and walked once per family, their addresses.
    fn by_name(&self) -> u64 {
        128 + 5 * self.one_name() + self.v6
    }

    /// Most steps of one reverse lookup: the binary search, the instance, its name, its aliases
    /// counted and copied.
    fn by_addr(&self) -> u64 {
        40 + 2 * self.aliases.min(self.names)
    }

    /// Most steps of one `gethostent_r`: every name of both families looked at, every member
    /// counted once (the budget), one entry re-counted (an ERANGE retry), and the entry's
    /// members and addresses.
    fn next_entry(&self) -> u64 {
        16 + 2 * self.names + 2 * self.members + 3 * self.one_name() + self.v6
    }

    /// Most steps of a whole enumeration, ERANGE retries left out: every name of both families
    /// looked at; members counted (once, and again for an entry retried after ERANGE) and walked
    /// for the entries delivered; their addresses (an IPv4 address per member, and IPv6
    /// addresses bounded by the per-instance cap and by the file's IPv6 records per name).
    fn enumeration(&self) -> u64 {
        let v6 = (MAX_V6_PER_INSTANCE as u64 * self.members).min(self.names * self.v6);
        16 + 2 * self.names + 7 * self.members + v6
    }
}

/// Asserts the steps counted since the last check stay within `bound`; returns them.
fn check(meter: &AtomicU64, bound: u64, what: &str) -> u64 {
    let steps = meter.swap(0, Ordering::Relaxed);
    assert!(
        steps <= bound,
        "{what}: {steps} steps, more than the {bound} the file's counts allow"
    );
    steps
}

/// Looks up the snapshot's own names (the first 64), `extra` names, their addresses in
/// reverse, and enumerates; every family and entry point. Returns how many lookups succeeded.
/// A corrupt snapshot must only ever make this smaller.
///
/// # Panics
/// When one call, or the whole enumeration, works more than the snapshot's counts allow.
pub fn exercise(bytes: &[u8], extra: &[&[u8]]) -> usize {
    let meter = AtomicU64::new(0);
    let Ok(snap) = Snapshot::parse(bytes) else {
        return 0;
    };
    let snap = snap.metered(&meter);
    let counts = Counts::of(bytes);
    let mut names: Vec<Vec<u8>> = extra.iter().map(|n| n.to_vec()).collect();
    for i in 0..snap.len().min(64) {
        if let Ok(a) = snap.answer(i) {
            names.push(a.name().to_vec());
        }
    }
    meter.store(0, Ordering::Relaxed);
    let mut store = Vec::new();
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
            let o = grow(&mut store, &mut 0, |b, l| {
                // SAFETY: valid name, hostent, buffer of l bytes, out-pointers.
                let r = unsafe { by_name(&snap, name, af, &mut h, b, l, &mut ttl, &mut canon) };
                check(&meter, counts.by_name(), "gethostbyname3_r");
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
            let o = grow(&mut store, &mut 0, |b, l| {
                let mut pat: *mut GaihAddrTuple = if caller_storage {
                    &mut first
                } else {
                    std::ptr::null_mut()
                };
                // SAFETY: valid name, pat, buffer of l bytes; NULL ttlp is allowed.
                let r = unsafe { by_name4(&snap, name, &mut pat, b, l, std::ptr::null_mut()) };
                check(&meter, counts.by_name(), "gethostbyname4_r");
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
        let o = grow(&mut store, &mut 0, |b, l| {
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
            check(&meter, counts.by_addr(), "gethostbyaddr_r");
            r.unwrap_or_else(|e| e)
        });
        ok += usize::from(o == Outcome::Success);
    }
    // A whole enumeration: each call within its bound, and all of them (ERANGE retries left out,
    // bounded by the buffer's growth) within the enumeration's. Like glibc, the buffer only
    // grows from entry to entry.
    let mut cursor = Cursor::default();
    let mut total = 0u64;
    let mut len = 0;
    for _ in 0..(2 * counts.names + 2) {
        let mut h = hostent();
        let o = grow(&mut store, &mut len, |b, l| {
            // SAFETY: valid hostent and buffer.
            let r = unsafe { next_entry(&snap, &mut cursor, &mut h, b, l) };
            let steps = check(&meter, counts.next_entry(), "gethostent_r");
            let o = r.unwrap_or_else(|e| e);
            if o != Outcome::Erange {
                total += steps;
            }
            o
        });
        if o != Outcome::Success {
            break;
        }
        ok += 1;
    }
    assert!(
        total <= counts.enumeration(),
        "a whole enumeration: {total} steps, more than the {} the file's counts allow",
        counts.enumeration()
    );
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
    if mode % 2 == 0 && bytes.len() >= HEADER_LEN {
        let len = bytes.len() as u64;
        bytes[16..24].copy_from_slice(&len.to_le_bytes());
        seal_header(&mut bytes);
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

/// A small deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// The structured mutation of the fuzz target and the corruption tests: rewrites the ranges a
/// snapshot's records point into — names' member ranges, instances' IPv6 and alias ranges,
/// member entries — so that they overlap, run to the end of their section or beyond, or repeat
/// one instance, then re-seals the header checksum. Random bytes almost never make such shapes;
/// they are what makes a reader do quadratic work or give huge answers. Does nothing to bytes
/// that have no header. The same `seed` makes the same mutation.
pub fn mutate_ranges(bytes: &mut [u8], seed: u64) {
    if bytes.len() < HEADER_LEN {
        return;
    }
    let mut rng = Rng(seed | 1);
    let sec = |b: &[u8], k: usize| {
        let at = 64 + 8 * k;
        let r = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default()) as usize;
        (r(at), r(at + 4))
    };
    let (names_off, names_len) = sec(bytes, 1);
    let (inst_off, inst_len) = sec(bytes, 3);
    let (mem_off, mem_len) = sec(bytes, 2);
    let c = Counts::of(bytes);
    let put = |b: &mut [u8], at: usize, v: u64| {
        if let Some(d) = b.get_mut(at..at + 4) {
            d.copy_from_slice(&(v.min(u64::from(u32::MAX)) as u32).to_le_bytes());
        }
    };
    // Records that lie inside the buffer (the header may claim more).
    let fit = |off: usize, len: usize, size: usize| len.min(bytes.len().saturating_sub(off)) / size;
    let n_names = fit(names_off, names_len, 16);
    let n_inst = fit(inst_off, inst_len, 32);
    let n_mem = fit(mem_off, mem_len, 4);
    // Which records: one at random, or all of them.
    let every = rng.below(3) == 0;
    let pick = |rng: &mut Rng, n: usize| -> std::ops::Range<usize> {
        if every || n == 0 {
            0..n
        } else {
            let i = rng.below(n as u64) as usize;
            i..i + 1
        }
    };
    // A range [first, first + count) into a section of `n` records.
    let range = |rng: &mut Rng, n: u64, cap: u64| -> (u64, u64) {
        match rng.below(6) {
            0 => (0, n),          // the whole section
            1 => (0, n.min(cap)), // as much as a legitimate record may
            2 => {
                let f = rng.below(n + 1);
                (f, n - f) // from anywhere to the end
            }
            3 => (rng.below(n + 1), rng.below(n + 2)), // anywhere, maybe past the end
            4 => (rng.below(n + 1), u64::from(u32::MAX) - rng.below(4)),
            _ => (0, n + 1), // one past the end
        }
    };
    match rng.below(5) {
        0 => {
            for i in pick(&mut rng, n_names) {
                let (f, n) = range(&mut rng, c.members, c.instances);
                put(bytes, names_off + i * 16 + 8, f);
                put(bytes, names_off + i * 16 + 12, n);
            }
        }
        1 => {
            for i in pick(&mut rng, n_inst) {
                let (f, n) = range(&mut rng, c.v6, MAX_V6_PER_INSTANCE as u64);
                put(bytes, inst_off + i * 32 + 12, f);
                put(bytes, inst_off + i * 32 + 16, n);
            }
        }
        2 => {
            for i in pick(&mut rng, n_inst) {
                let (f, n) = range(&mut rng, c.aliases, c.names);
                put(bytes, inst_off + i * 32 + 20, f);
                put(bytes, inst_off + i * 32 + 24, n);
            }
        }
        3 => {
            // Member entries that all name one instance (or one out of range).
            let target = rng.below(c.instances + 1);
            for i in pick(&mut rng, n_mem) {
                put(bytes, mem_off + i * 4, target);
            }
        }
        _ => {
            // Names and instances at once: the worst of both.
            for i in 0..n_names {
                put(bytes, names_off + i * 16 + 8, 0);
                put(bytes, names_off + i * 16 + 12, c.one_name());
            }
            for i in 0..n_inst {
                put(bytes, inst_off + i * 32 + 12, 0);
                put(
                    bytes,
                    inst_off + i * 32 + 16,
                    c.v6.min(MAX_V6_PER_INSTANCE as u64),
                );
            }
        }
    }
    seal_header(bytes);
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
