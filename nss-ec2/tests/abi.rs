//! The module as glibc sees it: `dlopen` the built `.so`, call every `_nss_ec2_*` entry point with
//! tiny, odd-aligned and exact buffers, and check status, errno, h_errno, layout and that nothing
//! is written past `buflen`. The snapshot comes from the format crate's encoder.

use nss_ec2_snapshot::{Instance, Kind, Meta, Name, Table};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::OnceLock;

const SUCCESS: c_int = 1;
const NOTFOUND: c_int = 0;
const UNAVAIL: c_int = -1;
const TRYAGAIN: c_int = -2;
const NETDB_INTERNAL: c_int = -1;
const HOST_NOT_FOUND: c_int = 1;
const NO_RECOVERY: c_int = 3;
const NO_DATA: c_int = 4;
const BIG: usize = 1100;

#[repr(C)]
#[derive(Clone, Copy)]
struct Tuple {
    next: *mut Tuple,
    name: *mut c_char,
    family: c_int,
    addr: [u32; 4],
    scopeid: u32,
}

type ByName2 = unsafe extern "C" fn(
    *const c_char,
    c_int,
    *mut libc::hostent,
    *mut c_char,
    usize,
    *mut c_int,
    *mut c_int,
) -> c_int;
type ByName3 = unsafe extern "C" fn(
    *const c_char,
    c_int,
    *mut libc::hostent,
    *mut c_char,
    usize,
    *mut c_int,
    *mut c_int,
    *mut i32,
    *mut *mut c_char,
) -> c_int;
type ByName = unsafe extern "C" fn(
    *const c_char,
    *mut libc::hostent,
    *mut c_char,
    usize,
    *mut c_int,
    *mut c_int,
) -> c_int;
type ByName4 = unsafe extern "C" fn(
    *const c_char,
    *mut *mut Tuple,
    *mut c_char,
    usize,
    *mut c_int,
    *mut c_int,
    *mut i32,
) -> c_int;
type ByAddr2 = unsafe extern "C" fn(
    *const c_void,
    libc::socklen_t,
    c_int,
    *mut libc::hostent,
    *mut c_char,
    usize,
    *mut c_int,
    *mut c_int,
    *mut i32,
) -> c_int;
type ByAddr = unsafe extern "C" fn(
    *const c_void,
    libc::socklen_t,
    c_int,
    *mut libc::hostent,
    *mut c_char,
    usize,
    *mut c_int,
    *mut c_int,
) -> c_int;
type SetEnt = unsafe extern "C" fn(c_int) -> c_int;
type EndEnt = unsafe extern "C" fn() -> c_int;
type GetEnt =
    unsafe extern "C" fn(*mut libc::hostent, *mut c_char, usize, *mut c_int, *mut c_int) -> c_int;

struct Module {
    name4: ByName4,
    name3: ByName3,
    name2: ByName2,
    name1: ByName,
    addr2: ByAddr2,
    addr1: ByAddr,
    setent: SetEnt,
    getent: GetEnt,
    endent: EndEnt,
}

fn v4(i: usize) -> [u8; 4] {
    [10, 1, (i >> 8) as u8, i as u8]
}

fn v6(i: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a[14] = (i >> 8) as u8;
    a[15] = i as u8;
    a
}

/// A fleet: group `big` of BIG instances (every 10th with IPv6), `v4only.big.ec2` (one instance,
/// no IPv6), `v6only.ec2` (one instance without IPv4), `noaddr.ec2` (one instance with no
/// address at all: a public-address fleet's instance without a public IPv4 and without IPv6).
fn table() -> Table {
    let mut t = Table::default();
    let name = |t: &mut Table, n: &str, kind, members: Vec<u32>| {
        t.names.push(Name {
            name: n.into(),
            kind,
            members,
        });
        t.names.len() as u32 - 1
    };
    let all: Vec<u32> = (0..BIG as u32).collect();
    name(&mut t, "big.ec2", Kind::Group, all);
    let first = name(&mut t, "1.big.ec2", Kind::GroupNth, vec![0]);
    name(&mut t, "v4only.big.ec2", Kind::Service, vec![1]);
    name(&mut t, "v6only.ec2", Kind::Group, vec![BIG as u32]);
    for i in 0..=BIG {
        let n = name(
            &mut t,
            &format!("i-{i:05}.ec2"),
            Kind::Instance,
            vec![i as u32],
        );
        t.instances.push(Instance {
            name: n,
            v4: (i < BIG).then(|| v4(i)),
            v6: if i % 10 == 0 || i == BIG {
                vec![v6(i)]
            } else {
                vec![]
            },
            aliases: if i == 0 { vec![first] } else { vec![] },
        });
    }
    let none = t.instances.len() as u32;
    let n = name(&mut t, "i-noaddr.ec2", Kind::Instance, vec![none]);
    name(&mut t, "noaddr.ec2", Kind::Group, vec![none]);
    t.instances.push(Instance {
        name: n,
        v4: None,
        v6: vec![],
        aliases: vec![],
    });
    t
}

fn module() -> &'static Module {
    static M: OnceLock<Module> = OnceLock::new();
    M.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("nss-ec2-abi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let snap = dir.join("hosts.snap");
        let meta = Meta {
            domain: "ec2".into(),
            generated_unix: 1_700_000_000,
            interval_secs: 42,
            max_age_secs: 0,
        };
        std::fs::write(&snap, table().encode(&meta).unwrap()).unwrap();
        // SAFETY: set before the module (or any other thread of this test) reads it.
        unsafe { std::env::set_var("NSS_EC2_SNAPSHOT", &snap) };
        // target/<profile>/deps/abi-HASH -> target/<profile>/deps/libnss_ec2.so: the copy cargo
        // has just rebuilt for this test run (the lib is also an rlib for that reason).
        let exe = std::env::current_exe().unwrap();
        let so: PathBuf = exe.parent().unwrap().join("libnss_ec2.so");
        let so = CString::new(so.to_str().unwrap()).unwrap();
        // SAFETY: loading our own module; dlsym results are cast to their C prototypes.
        unsafe {
            let h = libc::dlopen(so.as_ptr(), libc::RTLD_NOW);
            assert!(!h.is_null(), "dlopen {so:?}");
            let sym = |n: &str| {
                let c = CString::new(n).unwrap();
                let p = libc::dlsym(h, c.as_ptr());
                assert!(!p.is_null(), "missing {n}");
                p
            };
            Module {
                name4: std::mem::transmute::<*mut c_void, ByName4>(sym(
                    "_nss_ec2_gethostbyname4_r",
                )),
                name3: std::mem::transmute::<*mut c_void, ByName3>(sym(
                    "_nss_ec2_gethostbyname3_r",
                )),
                name2: std::mem::transmute::<*mut c_void, ByName2>(sym(
                    "_nss_ec2_gethostbyname2_r",
                )),
                name1: std::mem::transmute::<*mut c_void, ByName>(sym("_nss_ec2_gethostbyname_r")),
                addr2: std::mem::transmute::<*mut c_void, ByAddr2>(sym(
                    "_nss_ec2_gethostbyaddr2_r",
                )),
                addr1: std::mem::transmute::<*mut c_void, ByAddr>(sym("_nss_ec2_gethostbyaddr_r")),
                setent: std::mem::transmute::<*mut c_void, SetEnt>(sym("_nss_ec2_sethostent")),
                getent: std::mem::transmute::<*mut c_void, GetEnt>(sym("_nss_ec2_gethostent_r")),
                endent: std::mem::transmute::<*mut c_void, EndEnt>(sym("_nss_ec2_endhostent")),
            }
        }
    })
}

const CANARY: u8 = 0xa5;

/// A buffer of `len` bytes starting `offset` bytes past an 8-aligned address, followed by
/// canary bytes.
struct Buf {
    store: Vec<u64>,
    offset: usize,
    len: usize,
}

impl Buf {
    fn new(offset: usize, len: usize) -> Buf {
        let mut store = vec![0u64; (offset + len + 64) / 8 + 1];
        // SAFETY: filling the whole allocation as bytes.
        unsafe {
            std::ptr::write_bytes(store.as_mut_ptr().cast::<u8>(), CANARY, store.len() * 8);
        }
        Buf { store, offset, len }
    }
    fn ptr(&mut self) -> *mut c_char {
        // SAFETY: offset < allocation size.
        unsafe { self.store.as_mut_ptr().cast::<u8>().add(self.offset).cast() }
    }
    fn range(&self) -> std::ops::Range<usize> {
        let start = self.store.as_ptr() as usize + self.offset;
        start..start + self.len
    }
    fn canaries_intact(&self) -> bool {
        // SAFETY: reading inside the allocation.
        let bytes = unsafe {
            std::slice::from_raw_parts(self.store.as_ptr().cast::<u8>(), self.store.len() * 8)
        };
        bytes[..self.offset].iter().all(|&b| b == CANARY)
            && bytes[self.offset + self.len..].iter().all(|&b| b == CANARY)
    }
}

fn errno() -> c_int {
    // SAFETY: this thread's errno.
    unsafe { *libc::__errno_location() }
}

fn set_errno(v: c_int) {
    // SAFETY: this thread's errno.
    unsafe { *libc::__errno_location() = v }
}

/// Reads a hostent back, checking every pointer lies in the buffer and is aligned.
fn read_hostent(
    h: &libc::hostent,
    range: &std::ops::Range<usize>,
) -> (String, Vec<String>, Vec<Vec<u8>>) {
    let inside = |p: usize| range.contains(&p);
    assert!(inside(h.h_name as usize));
    assert!(inside(h.h_aliases as usize) && (h.h_aliases as usize).is_multiple_of(8));
    assert!(inside(h.h_addr_list as usize) && (h.h_addr_list as usize).is_multiple_of(8));
    // SAFETY: pointers checked to be inside the buffer; arrays are NULL-terminated.
    unsafe {
        let name = CStr::from_ptr(h.h_name).to_str().unwrap().to_string();
        let mut aliases = Vec::new();
        let mut i = 0;
        while !(*h.h_aliases.add(i)).is_null() {
            aliases.push(
                CStr::from_ptr(*h.h_aliases.add(i))
                    .to_str()
                    .unwrap()
                    .to_string(),
            );
            i += 1;
        }
        let mut addrs = Vec::new();
        let mut i = 0;
        while !(*h.h_addr_list.add(i)).is_null() {
            let p = *h.h_addr_list.add(i);
            assert!(inside(p as usize));
            addrs.push(std::slice::from_raw_parts(p.cast::<u8>(), h.h_length as usize).to_vec());
            i += 1;
        }
        (name, aliases, addrs)
    }
}

/// Calls a hostent-returning entry point with growing buffers at every alignment; checks the
/// ERANGE triple below the needed size, success at it, and the canaries always.
fn sweep_hostent(
    call: &dyn Fn(*mut libc::hostent, *mut c_char, usize, &mut c_int, &mut c_int) -> c_int,
    check: &dyn Fn(&libc::hostent, &std::ops::Range<usize>),
    step: usize,
) -> usize {
    let mut needed = usize::MAX;
    for offset in 0..8 {
        let mut len = 0;
        loop {
            let mut buf = Buf::new(offset, len);
            // SAFETY: zeroed hostent is a valid value to overwrite.
            let mut h: libc::hostent = unsafe { std::mem::zeroed() };
            let (mut e, mut he) = (0, 0);
            set_errno(12345);
            let status = call(&mut h, buf.ptr(), len, &mut e, &mut he);
            assert!(
                buf.canaries_intact(),
                "wrote past buflen {len} at offset {offset}"
            );
            if status == SUCCESS {
                assert_eq!(errno(), 12345, "errno untouched on success");
                check(&h, &buf.range());
                needed = needed.min(len);
                break;
            }
            assert_eq!(
                (status, e, he),
                (TRYAGAIN, libc::ERANGE, NETDB_INTERNAL),
                "len {len}"
            );
            len += step;
            assert!(len < 1 << 20, "never succeeded");
        }
    }
    needed
}

fn cname(s: &str) -> CString {
    CString::new(s).unwrap()
}

#[test]
fn gethostbyname2_r_big_group_all_alignments() {
    let m = module();
    let name = cname("BIG.ec2.");
    let needed = sweep_hostent(
        // SAFETY: arguments as glibc passes them.
        &|h, b, l, e, he| unsafe { (m.name2)(name.as_ptr(), libc::AF_INET, h, b, l, e, he) },
        &|h, r| {
            let (n, aliases, addrs) = read_hostent(h, r);
            assert_eq!(n, "big.ec2");
            assert!(aliases.is_empty());
            assert_eq!((h.h_addrtype, h.h_length), (libc::AF_INET, 4));
            assert_eq!(addrs.len(), BIG);
            for (i, a) in addrs.iter().enumerate() {
                assert_eq!(a[..], v4(i));
            }
        },
        61,
    );
    assert!(needed > 1024, "a group of {BIG} needs the buffer to grow");
}

#[test]
fn gethostbyname2_r_every_small_size() {
    let m = module();
    let name = cname("1.big.ec2");
    for af in [libc::AF_INET, libc::AF_INET6] {
        sweep_hostent(
            // SAFETY: arguments as glibc passes them.
            &|h, b, l, e, he| unsafe { (m.name2)(name.as_ptr(), af, h, b, l, e, he) },
            &|h, r| {
                let (n, _, addrs) = read_hostent(h, r);
                assert_eq!(n, "1.big.ec2");
                assert_eq!(h.h_addrtype, af);
                let want = if af == libc::AF_INET {
                    v4(0).to_vec()
                } else {
                    v6(0).to_vec()
                };
                assert_eq!(addrs, vec![want]);
            },
            1,
        );
    }
}

#[test]
fn gethostbyname3_r_canonical_name_and_ttl() {
    let m = module();
    let name = cname("1.Big.ec2");
    let mut buf = Buf::new(3, 4096);
    // SAFETY: zeroed hostent is a valid value to overwrite.
    let mut h: libc::hostent = unsafe { std::mem::zeroed() };
    let (mut e, mut he, mut ttl) = (0, 0, i32::MAX);
    let mut canon: *mut c_char = std::ptr::null_mut();
    // SAFETY: arguments as glibc passes them.
    let s = unsafe {
        (m.name3)(
            name.as_ptr(),
            libc::AF_INET,
            &mut h,
            buf.ptr(),
            4096,
            &mut e,
            &mut he,
            &mut ttl,
            &mut canon,
        )
    };
    assert_eq!(s, SUCCESS);
    assert_eq!(ttl, 42);
    assert_eq!(canon, h.h_name);
    // SAFETY: canon points into buf, a NUL-terminated name.
    let canon_name = unsafe { CStr::from_ptr(canon) };
    assert_eq!(canon_name.to_str().unwrap(), "1.big.ec2");
    // NULL ttlp / canonp are fine.
    // SAFETY: as above.
    let s = unsafe {
        (m.name3)(
            name.as_ptr(),
            libc::AF_INET,
            &mut h,
            buf.ptr(),
            4096,
            &mut e,
            &mut he,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(s, SUCCESS);
}

#[test]
fn gethostbyname_r_is_ipv4_only() {
    let m = module();
    let mut buf = Buf::new(1, 4096);
    // SAFETY: zeroed hostent is a valid value to overwrite.
    let mut h: libc::hostent = unsafe { std::mem::zeroed() };
    let (mut e, mut he) = (0, 0);
    let v6only = cname("v6only.ec2");
    // SAFETY: arguments as glibc passes them.
    let s = unsafe { (m.name1)(v6only.as_ptr(), &mut h, buf.ptr(), 4096, &mut e, &mut he) };
    assert_eq!((s, e, he), (NOTFOUND, libc::ENOENT, NO_DATA));
    let one = cname("1.big.ec2");
    // SAFETY: as above.
    let s = unsafe { (m.name1)(one.as_ptr(), &mut h, buf.ptr(), 4096, &mut e, &mut he) };
    assert_eq!((s, h.h_addrtype, h.h_length), (SUCCESS, libc::AF_INET, 4));
}

#[test]
fn statuses_and_error_codes() {
    let m = module();
    let mut buf = Buf::new(0, 4096);
    // SAFETY: zeroed hostent is a valid value to overwrite.
    let mut h: libc::hostent = unsafe { std::mem::zeroed() };
    let cases: &[(&str, c_int, (c_int, c_int, c_int))] = &[
        (
            "example.com",
            libc::AF_INET,
            (UNAVAIL, libc::ENOENT, NO_RECOVERY),
        ),
        ("ec2", libc::AF_INET, (UNAVAIL, libc::ENOENT, NO_RECOVERY)),
        (
            "nosuch.ec2",
            libc::AF_INET,
            (NOTFOUND, libc::ENOENT, HOST_NOT_FOUND),
        ),
        (
            "v4only.big.ec2",
            libc::AF_INET6,
            (NOTFOUND, libc::ENOENT, NO_DATA),
        ),
        (
            "big.ec2",
            libc::AF_UNIX,
            (UNAVAIL, libc::EAFNOSUPPORT, NO_RECOVERY),
        ),
    ];
    for &(name, af, want) in cases {
        let n = cname(name);
        let (mut e, mut he) = (0, 0);
        set_errno(777);
        // SAFETY: arguments as glibc passes them.
        let s = unsafe { (m.name2)(n.as_ptr(), af, &mut h, buf.ptr(), 4096, &mut e, &mut he) };
        assert_eq!((s, e, he), want, "{name}");
        assert_eq!(errno(), 777, "{name}: errno restored");
    }
    let (mut e, mut he) = (0, 0);
    // SAFETY: NULL name is hostile input, handled.
    let s = unsafe {
        (m.name2)(
            std::ptr::null(),
            libc::AF_INET,
            &mut h,
            buf.ptr(),
            4096,
            &mut e,
            &mut he,
        )
    };
    assert_eq!(s, UNAVAIL);
    // A name longer than any in the snapshot, inside the domain.
    let long = cname(&format!("{}.ec2", "a".repeat(5000)));
    // SAFETY: arguments as glibc passes them.
    let s = unsafe {
        (m.name2)(
            long.as_ptr(),
            libc::AF_INET,
            &mut h,
            buf.ptr(),
            4096,
            &mut e,
            &mut he,
        )
    };
    assert_eq!((s, he), (NOTFOUND, HOST_NOT_FOUND));
    // NULL buffer with zero length: the ERANGE triple, not a crash.
    let one = cname("1.big.ec2");
    // SAFETY: as above.
    let s = unsafe {
        (m.name2)(
            one.as_ptr(),
            libc::AF_INET,
            &mut h,
            std::ptr::null_mut(),
            0,
            &mut e,
            &mut he,
        )
    };
    assert_eq!((s, e, he), (TRYAGAIN, libc::ERANGE, NETDB_INTERNAL));
}

fn walk_tuples(first: *mut Tuple, range: &std::ops::Range<usize>) -> Vec<(c_int, Vec<u8>)> {
    let mut out = Vec::new();
    let mut t = first;
    let mut guard = 0;
    while !t.is_null() {
        guard += 1;
        assert!(guard <= 2 * BIG + 2, "tuple chain does not end");
        // SAFETY: t is the caller's first tuple or inside the buffer (checked below).
        let tv = unsafe { *t };
        assert!(!tv.name.is_null(), "every tuple has a name");
        assert!(range.contains(&(tv.name as usize)));
        if !tv.next.is_null() {
            assert!(range.contains(&(tv.next as usize)) && (tv.next as usize).is_multiple_of(8));
        }
        assert_eq!(tv.scopeid, 0);
        // SAFETY: reading the tuple's address bytes.
        let bytes = unsafe { std::slice::from_raw_parts(tv.addr.as_ptr().cast::<u8>(), 16) };
        let len = if tv.family == libc::AF_INET { 4 } else { 16 };
        out.push((tv.family, bytes[..len].to_vec()));
        t = tv.next;
    }
    out
}

#[test]
fn gethostbyname4_r_both_families_null_and_caller_pat() {
    let m = module();
    let name = cname("big.ec2");
    let want_v6 = (0..BIG).filter(|i| i % 10 == 0).count();
    for caller_storage in [false, true] {
        for offset in [0usize, 1, 5] {
            let mut len = 0usize;
            loop {
                let mut buf = Buf::new(offset, len);
                let mut mine = Tuple {
                    next: std::ptr::null_mut(),
                    name: std::ptr::null_mut(),
                    family: 0,
                    addr: [0; 4],
                    scopeid: 0,
                };
                let mut pat: *mut Tuple = if caller_storage {
                    &mut mine
                } else {
                    std::ptr::null_mut()
                };
                let (mut e, mut he, mut ttl) = (0, 0, i32::MAX);
                // SAFETY: arguments as glibc (or nscd, with caller storage) passes them.
                let s = unsafe {
                    (m.name4)(
                        name.as_ptr(),
                        &mut pat,
                        buf.ptr(),
                        len,
                        &mut e,
                        &mut he,
                        &mut ttl,
                    )
                };
                assert!(buf.canaries_intact());
                if s == SUCCESS {
                    if caller_storage {
                        assert_eq!(pat, &mut mine as *mut Tuple, "first tuple stored in **pat");
                    } else {
                        assert!(
                            buf.range().contains(&(pat as usize))
                                && (pat as usize).is_multiple_of(8)
                        );
                    }
                    let got = walk_tuples(pat, &buf.range());
                    assert_eq!(got.len(), BIG + want_v6);
                    assert!(got[..BIG]
                        .iter()
                        .enumerate()
                        .all(|(i, (f, a))| *f == libc::AF_INET && a[..] == v4(i)));
                    assert!(got[BIG..].iter().all(|(f, _)| *f == libc::AF_INET6));
                    assert_eq!(ttl, 42);
                    break;
                }
                assert_eq!((s, e, he), (TRYAGAIN, libc::ERANGE, NETDB_INTERNAL));
                len = if len == 0 { 1 } else { len * 2 };
            }
        }
    }
    // A name with no address of either family is "no data" (getaddrinfo: EAI_NODATA), never
    // SUCCESS with no tuple; unknown and foreign names as for the other entry points.
    let mut buf = Buf::new(0, 1024);
    for (n, want) in [
        ("noaddr.ec2", (NOTFOUND, libc::ENOENT, NO_DATA)),
        ("nosuch.ec2", (NOTFOUND, libc::ENOENT, HOST_NOT_FOUND)),
        ("x.example", (UNAVAIL, libc::ENOENT, NO_RECOVERY)),
    ] {
        let n = cname(n);
        let mut pat: *mut Tuple = std::ptr::null_mut();
        let (mut e, mut he) = (0, 0);
        // SAFETY: as above, NULL ttlp as getaddrinfo passes it.
        let s = unsafe {
            (m.name4)(
                n.as_ptr(),
                &mut pat,
                buf.ptr(),
                1024,
                &mut e,
                &mut he,
                std::ptr::null_mut(),
            )
        };
        assert_eq!((s, e, he), want, "{n:?}");
        assert!(pat.is_null(), "{n:?}: no tuple written");
    }
}

#[test]
fn gethostbyaddr_r_and_2_r() {
    let m = module();
    let a = v4(0);
    let needed = sweep_hostent(
        // SAFETY: arguments as glibc passes them.
        &|h, b, l, e, he| unsafe { (m.addr1)(a.as_ptr().cast(), 4, libc::AF_INET, h, b, l, e, he) },
        &|h, r| {
            let (n, aliases, addrs) = read_hostent(h, r);
            assert_eq!(n, "i-00000.ec2");
            assert_eq!(aliases, vec!["1.big.ec2"]);
            assert_eq!(addrs, vec![v4(0).to_vec()]);
        },
        1,
    );
    assert!(needed > 0);
    // IPv6, IPv4-mapped IPv6, with TTL.
    let mut mapped = [0u8; 16];
    mapped[10] = 0xff;
    mapped[11] = 0xff;
    mapped[12..].copy_from_slice(&v4(7));
    for (addr, want) in [
        (v6(BIG), format!("i-{BIG:05}.ec2")),
        (mapped, "i-00007.ec2".to_string()),
    ] {
        let mut buf = Buf::new(0, 1024);
        // SAFETY: zeroed hostent is a valid value to overwrite.
        let mut h: libc::hostent = unsafe { std::mem::zeroed() };
        let (mut e, mut he, mut ttl) = (0, 0, 0);
        // SAFETY: arguments as nscd passes them.
        let s = unsafe {
            (m.addr2)(
                addr.as_ptr().cast(),
                16,
                libc::AF_INET6,
                &mut h,
                buf.ptr(),
                1024,
                &mut e,
                &mut he,
                &mut ttl,
            )
        };
        assert_eq!(s, SUCCESS);
        let (n, _, addrs) = read_hostent(&h, &buf.range());
        assert_eq!(n, want);
        assert_eq!(addrs, vec![addr.to_vec()]);
        assert_eq!((h.h_addrtype, h.h_length, ttl), (libc::AF_INET6, 16, 42));
    }
    // Unknown address: UNAVAIL, so DNS is asked. Bad length or family: UNAVAIL.
    let mut buf = Buf::new(0, 1024);
    // SAFETY: zeroed hostent is a valid value to overwrite.
    let mut h: libc::hostent = unsafe { std::mem::zeroed() };
    for (addr, len, af) in [
        (&[192u8, 0, 2, 1][..], 4, libc::AF_INET),
        (&v4(0)[..], 3, libc::AF_INET),
        (&v4(0)[..], 4, libc::AF_INET6),
        (&v4(0)[..], 4, 99),
    ] {
        let (mut e, mut he) = (0, 0);
        // SAFETY: addr is readable for len bytes (len <= addr.len()).
        let s = unsafe {
            (m.addr1)(
                addr.as_ptr().cast(),
                len,
                af,
                &mut h,
                buf.ptr(),
                1024,
                &mut e,
                &mut he,
            )
        };
        assert_eq!((s, he), (UNAVAIL, NO_RECOVERY), "{addr:?}/{len}/{af}");
        assert_ne!(e, 0);
    }
}

#[test]
fn enumeration_with_erange_retries_skips_nothing() {
    let m = module();
    let mut seen = Vec::new();
    // SAFETY: enumeration calls as glibc makes them (it serialises them; this test is the only
    // enumerating one in the binary).
    unsafe {
        assert_eq!((m.setent)(0), SUCCESS);
        let mut len = 8usize;
        loop {
            let mut buf = Buf::new(3, len);
            let mut h: libc::hostent = std::mem::zeroed();
            let (mut e, mut he) = (0, 0);
            let s = (m.getent)(&mut h, buf.ptr(), len, &mut e, &mut he);
            assert!(buf.canaries_intact());
            match s {
                SUCCESS => {
                    let (n, _, addrs) = read_hostent(&h, &buf.range());
                    seen.push((n, h.h_addrtype, addrs.len()));
                    len = 8; // start small again: every entry goes through ERANGE first
                }
                TRYAGAIN => {
                    assert_eq!((e, he), (libc::ERANGE, NETDB_INTERNAL));
                    len *= 2;
                }
                _ => {
                    assert_eq!((s, he), (NOTFOUND, HOST_NOT_FOUND));
                    break;
                }
            }
        }
        assert_eq!((m.endent)(), SUCCESS);
    }
    let want_v6 = (0..BIG).filter(|i| i % 10 == 0).count();
    assert_eq!(seen[0], ("big.ec2".to_string(), libc::AF_INET, BIG));
    assert_eq!(seen[1], ("big.ec2".to_string(), libc::AF_INET6, want_v6));
    assert_eq!(seen[2], ("1.big.ec2".to_string(), libc::AF_INET, 1));
    // 4 names + BIG + 1 instances; families with no address are skipped.
    let total: usize = seen.iter().map(|s| s.2).sum();
    let instances_v4 = BIG;
    let instances_v6 = want_v6 + 1;
    assert_eq!(
        total,
        BIG + want_v6 + 2 + 1 + 1 + instances_v4 + instances_v6
    );
}

#[test]
fn concurrent_lookups_agree() {
    let m = module();
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                let name = cname(&format!("i-{:05}.ec2", t * 7));
                for _ in 0..2000 {
                    let mut buf = Buf::new(t, 512);
                    // SAFETY: zeroed hostent is a valid value to overwrite.
                    let mut h: libc::hostent = unsafe { std::mem::zeroed() };
                    let (mut e, mut he) = (0, 0);
                    // SAFETY: arguments as glibc passes them.
                    let st = unsafe {
                        (m.name2)(
                            name.as_ptr(),
                            libc::AF_INET,
                            &mut h,
                            buf.ptr(),
                            512,
                            &mut e,
                            &mut he,
                        )
                    };
                    assert_eq!(st, SUCCESS);
                    let (_, _, addrs) = read_hostent(&h, &buf.range());
                    assert_eq!(addrs, vec![v4(t * 7).to_vec()]);
                }
            });
        }
    });
}
