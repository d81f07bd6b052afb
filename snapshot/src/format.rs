//! Snapshot file format, version 1: encoder ([`Table::encode`]) and in-place reader
//! ([`Snapshot::parse`]).
//!
//! Layout (all integers little-endian, all offsets absolute from the start of the file):
//!
//! ```text
//! 0    magic "\x89EC2SNAP"         8    version u32            12  header length u32 (=160)
//! 16   file length u64             24   generated (unix s) u64 32  interval (s) u32
//! 36   max_age (s, 0 = none) u32   40   domain offset u32      44  domain length u32
//! 48   names u32                   52   instances u32          56  hash slots u32 (2^k)
//! 60   longest probe u32           64   9 sections × (offset u32, length u32)
//! 136  signature trailer offset u32, length u32 (0, 0: unsigned; see [`crate::signed`])
//! 144  reserved (zero)             152  FNV-1a 64 of bytes 0..152
//! ```
//!
//! Sections, each an array of fixed-size records (length = count × record size):
//!
//! | section   | record                                                                  |
//! |-----------|-------------------------------------------------------------------------|
//! | strings   | raw bytes of every name and the domain                                  |
//! | names     | 16 B: string offset u32, string length u16, kind u8, 0 u8, first member u32, members u32 |
//! | members   | 4 B: instance index                                                     |
//! | instances | 32 B: name index u32 (`I.D`), flags u32 (bit 0: has IPv4), IPv4 [4], first IPv6 u32, IPv6 count u32, first alias u32, alias count u32, 0 u32 |
//! | ipv6      | 16 B: address                                                           |
//! | aliases   | 4 B: name index (numbered names that single out an instance)            |
//! | hash      | 4 B: name index + 1, 0 = empty; open addressing, linear probing         |
//! | rev4      | 8 B: IPv4 [4], instance index u32; sorted by address                    |
//! | rev6      | 20 B: IPv6 [16], instance index u32; sorted by address                  |
//!
//! What a file may hold, so that the work of any lookup is bounded by the file whatever its bytes
//! (the writer never makes anything else, the reader treats anything else as [`Corrupt`]):
//!
//! * a name's members are distinct instances: at most `instances` of them;
//! * an instance has at most [`MAX_V6_PER_INSTANCE`] IPv6 addresses, and the instances behind one
//!   name have at most as many IPv6 addresses together as the `ipv6` section holds (their ranges
//!   are disjoint);
//! * an instance has at most `names` aliases, and their strings together are no longer than the
//!   `strings` section;
//! * a name is at most 253 bytes long.
//!
//! So one answer has at most `instances` + `ipv6` addresses and one lookup reads O(`instances` +
//! `ipv6` + `aliases`) records; a whole enumeration reads each member record at most once per
//! family (see [`Snapshot::member_records`]).

use crate::hash::{fnv1a, normalize_query, slot, MAX_NAME};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// File magic: a high byte first so text tools and mangled transfers are caught.
pub const MAGIC: [u8; 8] = *b"\x89EC2SNAP";
/// The only version this code reads and writes.
pub const VERSION: u32 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 160;
const CHECKSUM_AT: usize = 152;
const SECTIONS_AT: usize = 64;

const S_STRINGS: usize = 0;
const S_NAMES: usize = 1;
const S_MEMBERS: usize = 2;
const S_INSTANCES: usize = 3;
const S_V6: usize = 4;
const S_ALIASES: usize = 5;
const S_HASH: usize = 6;
const S_REV4: usize = 7;
const S_REV6: usize = 8;
const N_SECTIONS: usize = 9;
/// Record size of each section (1 for the string blob).
const RECORD: [usize; N_SECTIONS] = [1, 16, 4, 32, 16, 4, 4, 8, 20];

/// Hash probes a reader will make before it gives up, whatever the header says.
const PROBE_CAP: u32 = 64;

/// The most IPv6 addresses an instance keeps in a snapshot. EC2 allows at most 50 on a network
/// interface; the writer keeps the first 64 of an instance's list, the reader refuses more.
pub const MAX_V6_PER_INSTANCE: usize = 64;

/// What a name stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    /// `G.D`: the ready instances of a security group.
    Group = 1,
    /// `S.G.D`: the ready instances of a group that list service `S`.
    Service = 2,
    /// `N.G.D`: the N-th of a group.
    GroupNth = 3,
    /// `N.S.G.D`: the N-th of a service.
    ServiceNth = 4,
    /// `I.D`: one live instance by id.
    Instance = 5,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Group,
            2 => Kind::Service,
            3 => Kind::GroupNth,
            4 => Kind::ServiceNth,
            5 => Kind::Instance,
            _ => return None,
        })
    }
}

/// Address family of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4 (`A`).
    V4,
    /// IPv6 (`AAAA`).
    V6,
}

/// The file is not a snapshot this code can use; the module answers UNAVAIL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt snapshot: {}", self.0)
    }
}

impl std::error::Error for Corrupt {}

/// Header fields that describe a snapshot as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Domain the names live under, lower case, no dots at either end (`ec2`).
    pub domain: String,
    /// When the fleet was read from the API (unix seconds).
    pub generated_unix: u64,
    /// Seconds between polls; handed to callers as the TTL.
    pub interval_secs: u32,
    /// Age in seconds after which readers answer UNAVAIL; 0 for never.
    pub max_age_secs: u32,
}

/// One live instance as the snapshot stores it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Instance {
    /// Index of this instance's `I.D` name in [`Table::names`].
    pub name: u32,
    /// The `A` address (private or public, as configured), if any.
    pub v4: Option<[u8; 4]>,
    /// IPv6 addresses of the primary network interface.
    pub v6: Vec<[u8; 16]>,
    /// Indices of the numbered names that single out this instance (reverse-lookup aliases).
    pub aliases: Vec<u32>,
}

/// One published name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    /// Full name, lower case, including the domain (`postgres.tphon.ec2`).
    pub name: String,
    /// What it stands for.
    pub kind: Kind,
    /// Indices into [`Table::instances`], in answer order.
    pub members: Vec<u32>,
}

/// Everything a snapshot holds, ready to encode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Names, in enumeration order.
    pub names: Vec<Name>,
    /// Live instances, in launch order.
    pub instances: Vec<Instance>,
}

/// Why a table could not be encoded (a bug in the caller, or a fleet beyond u32 limits).
#[derive(Debug, PartialEq, Eq)]
pub struct EncodeError(pub String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot encode snapshot: {}", self.0)
    }
}

impl std::error::Error for EncodeError {}

fn u32_of(n: usize, what: &str) -> Result<u32, EncodeError> {
    u32::try_from(n).map_err(|_| EncodeError(format!("{what} exceeds 2^32")))
}

impl Table {
    /// Encodes the table into snapshot bytes.
    pub fn encode(&self, meta: &Meta) -> Result<Vec<u8>, EncodeError> {
        let n_names = self.names.len();
        let n_inst = self.instances.len();
        let domain = meta.domain.as_bytes();
        if domain.is_empty() || domain.len() > MAX_NAME {
            return Err(EncodeError("domain must be 1 to 253 bytes".into()));
        }
        let mut seen = std::collections::HashSet::with_capacity(n_names);
        // `member_of[i]` = 1 + the index of the last name that listed instance i.
        let mut member_of = vec![0usize; n_inst];
        for (idx, n) in self.names.iter().enumerate() {
            if n.name.is_empty() || n.name.len() > MAX_NAME {
                return Err(EncodeError(format!("name {:?} has a bad length", n.name)));
            }
            if n.name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(EncodeError(format!("name {:?} is not lower case", n.name)));
            }
            if !seen.insert(n.name.as_str()) {
                return Err(EncodeError(format!("name {:?} appears twice", n.name)));
            }
            if let Some(&m) = n.members.iter().find(|&&m| m as usize >= n_inst) {
                return Err(EncodeError(format!("{:?} names instance {m}", n.name)));
            }
            for &m in &n.members {
                if std::mem::replace(&mut member_of[m as usize], idx + 1) == idx + 1 {
                    return Err(EncodeError(format!(
                        "{:?} lists instance {m} twice",
                        n.name
                    )));
                }
            }
        }
        // `alias_of[n]` = 1 + the index of the last instance that had name n as an alias.
        let mut alias_of = vec![0usize; n_names];
        for (idx, i) in self.instances.iter().enumerate() {
            if i.name as usize >= n_names || i.aliases.iter().any(|&a| a as usize >= n_names) {
                return Err(EncodeError("instance refers to a missing name".into()));
            }
            for &a in &i.aliases {
                if std::mem::replace(&mut alias_of[a as usize], idx + 1) == idx + 1 {
                    return Err(EncodeError(format!("instance {idx} lists alias {a} twice")));
                }
            }
        }

        // Sections are built in memory, then laid out 8-byte aligned after the header.
        let mut sec: [Vec<u8>; N_SECTIONS] = Default::default();
        let mut string_offsets = Vec::with_capacity(n_names);
        // String offsets are absolute, so the strings section goes first, right after the header.
        let strings_base = HEADER_LEN;
        let domain_off = strings_base;
        sec[S_STRINGS].extend_from_slice(domain);
        for n in &self.names {
            string_offsets.push(strings_base + sec[S_STRINGS].len());
            sec[S_STRINGS].extend_from_slice(n.name.as_bytes());
        }
        let mut member_at = 0usize;
        for (n, &off) in self.names.iter().zip(&string_offsets) {
            let rec = &mut sec[S_NAMES];
            rec.extend_from_slice(&u32_of(off, "strings")?.to_le_bytes());
            rec.extend_from_slice(&(n.name.len() as u16).to_le_bytes());
            rec.push(n.kind as u8);
            rec.push(0);
            rec.extend_from_slice(&u32_of(member_at, "members")?.to_le_bytes());
            rec.extend_from_slice(&u32_of(n.members.len(), "members")?.to_le_bytes());
            member_at += n.members.len();
            for &m in &n.members {
                sec[S_MEMBERS].extend_from_slice(&m.to_le_bytes());
            }
        }
        let (mut v6_at, mut alias_at) = (0usize, 0usize);
        let mut rev4 = Vec::new();
        let mut rev6 = Vec::new();
        for (idx, i) in self.instances.iter().enumerate() {
            let v6 = &i.v6[..i.v6.len().min(MAX_V6_PER_INSTANCE)];
            let rec = &mut sec[S_INSTANCES];
            rec.extend_from_slice(&i.name.to_le_bytes());
            rec.extend_from_slice(&u32::from(i.v4.is_some()).to_le_bytes());
            rec.extend_from_slice(&i.v4.unwrap_or_default());
            rec.extend_from_slice(&u32_of(v6_at, "ipv6")?.to_le_bytes());
            rec.extend_from_slice(&u32_of(v6.len(), "ipv6")?.to_le_bytes());
            rec.extend_from_slice(&u32_of(alias_at, "aliases")?.to_le_bytes());
            rec.extend_from_slice(&u32_of(i.aliases.len(), "aliases")?.to_le_bytes());
            rec.extend_from_slice(&0u32.to_le_bytes());
            v6_at += v6.len();
            alias_at += i.aliases.len();
            for a in v6 {
                sec[S_V6].extend_from_slice(a);
                rev6.push((*a, idx as u32));
            }
            for a in &i.aliases {
                sec[S_ALIASES].extend_from_slice(&a.to_le_bytes());
            }
            if let Some(a) = i.v4 {
                rev4.push((a, idx as u32));
            }
        }
        // Sorting by (address, index) keeps the first-launched instance first among duplicates.
        rev4.sort_unstable();
        rev6.sort_unstable();
        for (a, i) in rev4 {
            sec[S_REV4].extend_from_slice(&a);
            sec[S_REV4].extend_from_slice(&i.to_le_bytes());
        }
        for (a, i) in rev6 {
            sec[S_REV6].extend_from_slice(&a);
            sec[S_REV6].extend_from_slice(&i.to_le_bytes());
        }

        let bits = (n_names.max(4) * 2).next_power_of_two().trailing_zeros();
        let slots = 1usize << bits;
        let mut table = vec![0u32; slots];
        let mut longest = 0u32;
        for (idx, n) in self.names.iter().enumerate() {
            let mut s = slot(fnv1a(n.name.as_bytes()), bits);
            let mut probes = 1u32;
            while table[s] != 0 {
                s = (s + 1) & (slots - 1);
                probes += 1;
            }
            table[s] = idx as u32 + 1;
            longest = longest.max(probes);
        }
        if longest > PROBE_CAP {
            // With a load factor of at most 1/2 this does not happen for distinct names.
            return Err(EncodeError(format!("hash chain of {longest} probes")));
        }
        for t in table {
            sec[S_HASH].extend_from_slice(&t.to_le_bytes());
        }

        let mut out = vec![0u8; HEADER_LEN];
        let mut places = [(0u32, 0u32); N_SECTIONS];
        for (k, s) in sec.iter().enumerate() {
            while !out.len().is_multiple_of(8) {
                out.push(0);
            }
            places[k] = (u32_of(out.len(), "file")?, u32_of(s.len(), "section")?);
            out.extend_from_slice(s);
        }
        debug_assert_eq!(places[S_STRINGS].0 as usize, strings_base);
        let file_len = out.len() as u64;
        let h = &mut out[..HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        h[16..24].copy_from_slice(&file_len.to_le_bytes());
        h[24..32].copy_from_slice(&meta.generated_unix.to_le_bytes());
        h[32..36].copy_from_slice(&meta.interval_secs.to_le_bytes());
        h[36..40].copy_from_slice(&meta.max_age_secs.to_le_bytes());
        h[40..44].copy_from_slice(&u32_of(domain_off, "domain")?.to_le_bytes());
        h[44..48].copy_from_slice(&(domain.len() as u32).to_le_bytes());
        h[48..52].copy_from_slice(&u32_of(n_names, "names")?.to_le_bytes());
        h[52..56].copy_from_slice(&u32_of(n_inst, "instances")?.to_le_bytes());
        h[56..60].copy_from_slice(&u32_of(slots, "slots")?.to_le_bytes());
        h[60..64].copy_from_slice(&longest.to_le_bytes());
        for (k, (off, len)) in places.iter().enumerate() {
            let at = SECTIONS_AT + k * 8;
            h[at..at + 4].copy_from_slice(&off.to_le_bytes());
            h[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
        }
        let sum = fnv1a(&h[..CHECKSUM_AT]);
        h[CHECKSUM_AT..HEADER_LEN].copy_from_slice(&sum.to_le_bytes());
        Ok(out)
    }
}

/// Recomputes the header checksum of `bytes` in place (after [`crate::signed::prepare`] changes
/// the header, and for tests that damage a snapshot past the header check on purpose). Does
/// nothing to a buffer shorter than the header.
pub fn seal_header(bytes: &mut [u8]) {
    if bytes.len() >= HEADER_LEN {
        let sum = fnv1a(&bytes[..CHECKSUM_AT]);
        bytes[CHECKSUM_AT..HEADER_LEN].copy_from_slice(&sum.to_le_bytes());
    }
}

/// A snapshot of one instance, `i-1.DOMAIN` at 10.0.0.`last`, generated at `generated`: for
/// tests of code that handles whole files (signing, installing).
#[doc(hidden)]
pub fn tiny(domain: &str, generated: u64, last: u8) -> Vec<u8> {
    Table {
        names: vec![Name {
            name: format!("i-1.{domain}"),
            kind: Kind::Instance,
            members: vec![0],
        }],
        instances: vec![Instance {
            name: 0,
            v4: Some([10, 0, 0, last]),
            ..Instance::default()
        }],
    }
    .encode(&Meta {
        domain: domain.into(),
        generated_unix: generated,
        interval_secs: 30,
        max_age_secs: 0,
    })
    .expect("a one-instance table encodes")
}

/// The decoded fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// When the fleet was read (unix seconds).
    pub generated_unix: u64,
    /// Poll interval, handed out as TTL.
    pub interval_secs: u32,
    /// Maximum age before readers answer UNAVAIL (0: none).
    pub max_age_secs: u32,
    /// Number of names.
    pub names: u32,
    /// Number of live instances.
    pub instances: u32,
    /// Total file length.
    pub file_len: u64,
}

impl Header {
    /// True when, at `now` (unix seconds), the snapshot is older than its `max_age` (0: never):
    /// readers then answer as if there were none.
    pub fn expired_at(&self, now: u64) -> bool {
        self.max_age_secs != 0
            && now
                > self
                    .generated_unix
                    .saturating_add(u64::from(self.max_age_secs))
    }
}

#[derive(Clone, Copy, Debug)]
struct Section {
    off: usize,
    len: usize,
}

/// A snapshot read in place from bytes (usually a shared read-only mapping).
///
/// [`Snapshot::parse`] checks the header and that every section lies inside the file: O(1).
/// Everything after that is checked at the moment it is read.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot<'a> {
    bytes: &'a [u8],
    header: Header,
    domain: &'a [u8],
    sections: [Section; N_SECTIONS],
    hash_bits: u32,
    max_probe: u32,
    /// Test instrumentation ([`Snapshot::metered`]); `None` in the module.
    meter: Option<&'a AtomicU64>,
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The result of looking a name up.
#[derive(Clone, Copy, Debug)]
pub enum Find<'a> {
    /// Not under the snapshot's domain: not ours to answer (UNAVAIL).
    OutOfZone,
    /// Under the domain, but no such name (NOTFOUND / HOST_NOT_FOUND).
    NotFound,
    /// The name and its members.
    Found(Answer<'a>),
}

/// A name found in the snapshot.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'a> {
    snap: &'a Snapshot<'a>,
    idx: usize,
    name: &'a [u8],
    kind: Kind,
    members: &'a [u8],
}

/// An instance record, checked against the sections it points into.
#[derive(Clone, Copy, Debug)]
pub struct InstanceRef<'a> {
    snap: &'a Snapshot<'a>,
    name: u32,
    v4: Option<[u8; 4]>,
    v6: &'a [u8],
    aliases: &'a [u8],
}

impl<'a> Snapshot<'a> {
    /// Checks the header and section bounds. Does not read the sections.
    pub fn parse(bytes: &'a [u8]) -> Result<Snapshot<'a>, Corrupt> {
        let h = bytes
            .get(..HEADER_LEN)
            .ok_or(Corrupt("shorter than the header"))?;
        if h[0..8] != MAGIC {
            return Err(Corrupt("bad magic"));
        }
        let r32 = |at| le32(h, at).unwrap_or(0);
        if r32(8) != VERSION {
            return Err(Corrupt("unsupported version"));
        }
        if r32(12) as usize != HEADER_LEN {
            return Err(Corrupt("bad header length"));
        }
        if le64(h, CHECKSUM_AT) != Some(fnv1a(&h[..CHECKSUM_AT])) {
            return Err(Corrupt("header checksum mismatch"));
        }
        let file_len = le64(h, 16).unwrap_or(0);
        if file_len != bytes.len() as u64 {
            return Err(Corrupt(
                "file length differs from the header (truncated or growing)",
            ));
        }
        // The signed bytes end where a signature trailer begins (signed.rs: its place is in
        // header bytes 136..144, zero when unsigned): no section or domain may run into it, or
        // bytes no signature covers would be read as names.
        let data_end = match (r32(136) as usize, r32(140) as usize) {
            (0, 0) => bytes.len(),
            (off, len) if off >= HEADER_LEN && off.checked_add(len) == Some(bytes.len()) => off,
            _ => return Err(Corrupt("signature trailer is not at the end of the file")),
        };
        let mut sections = [Section { off: 0, len: 0 }; N_SECTIONS];
        for (k, s) in sections.iter_mut().enumerate() {
            let off = r32(SECTIONS_AT + k * 8) as usize;
            let len = r32(SECTIONS_AT + k * 8 + 4) as usize;
            let end = off.checked_add(len).ok_or(Corrupt("section overflows"))?;
            if off < HEADER_LEN || end > data_end || !len.is_multiple_of(RECORD[k]) {
                return Err(Corrupt("section out of bounds"));
            }
            *s = Section { off, len };
        }
        let header = Header {
            generated_unix: le64(h, 24).unwrap_or(0),
            interval_secs: r32(32),
            max_age_secs: r32(36),
            names: r32(48),
            instances: r32(52),
            file_len,
        };
        if sections[S_NAMES].len / RECORD[S_NAMES] != header.names as usize
            || sections[S_INSTANCES].len / RECORD[S_INSTANCES] != header.instances as usize
        {
            return Err(Corrupt("counts differ from section sizes"));
        }
        let slots = r32(56) as usize;
        if !slots.is_power_of_two() || sections[S_HASH].len != slots * 4 {
            return Err(Corrupt("bad hash table"));
        }
        let (doff, dlen) = (r32(40) as usize, r32(44) as usize);
        let domain = doff
            .checked_add(dlen)
            .filter(|&end| end <= data_end)
            .and_then(|end| bytes.get(doff..end))
            .ok_or(Corrupt("domain out of bounds"))?;
        if domain.is_empty() || domain.len() > MAX_NAME {
            return Err(Corrupt("bad domain"));
        }
        Ok(Snapshot {
            bytes,
            header,
            domain,
            sections,
            hash_bits: slots.trailing_zeros(),
            max_probe: r32(60).clamp(1, PROBE_CAP),
            meter: None,
        })
    }

    /// Test instrumentation: the same snapshot, adding to `meter` one step per record read, hash
    /// probe, binary-search round and address handed out, so that tests can assert the work of
    /// every call is bounded by the file's counts. The module never meters.
    #[doc(hidden)]
    pub fn metered(self, meter: &'a AtomicU64) -> Snapshot<'a> {
        Snapshot {
            meter: Some(meter),
            ..self
        }
    }

    #[inline(always)]
    fn step(&self, n: usize) {
        if let Some(m) = self.meter {
            m.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Number of records of section `k`.
    fn records(&self, k: usize) -> usize {
        self.sections[k].len / RECORD[k]
    }

    /// Number of member records: a legitimate file's names have disjoint member ranges, so a
    /// whole enumeration (both families) reads at most twice this many members.
    pub fn member_records(&self) -> usize {
        self.records(S_MEMBERS)
    }

    /// The decoded header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The domain, as stored (lower case).
    pub fn domain(&self) -> &'a [u8] {
        self.domain
    }

    fn section(&self, k: usize) -> &'a [u8] {
        let s = self.sections[k];
        // Checked in parse(); an empty slice is the safe fallback.
        self.bytes.get(s.off..s.off + s.len).unwrap_or(&[])
    }

    fn record(&self, k: usize, idx: usize) -> Result<&'a [u8], Corrupt> {
        self.step(1);
        let size = RECORD[k];
        let start = idx.checked_mul(size).ok_or(Corrupt("index overflows"))?;
        self.section(k)
            .get(start..start + size)
            .ok_or(Corrupt("index out of range"))
    }

    /// Looks a queried name up (any case, one trailing dot allowed).
    pub fn find(&'a self, query: &[u8]) -> Result<Find<'a>, Corrupt> {
        let mut buf = [0u8; MAX_NAME];
        let Some(len) = normalize_query(query, &mut buf) else {
            return Ok(self.zone_of(query));
        };
        let name = &buf[..len];
        let d = self.domain;
        let in_zone =
            name.len() > d.len() + 1 && name.ends_with(d) && name[name.len() - d.len() - 1] == b'.';
        if !in_zone {
            return Ok(Find::OutOfZone);
        }
        let slots = 1usize << self.hash_bits;
        let mut s = slot(fnv1a(name), self.hash_bits);
        for _ in 0..self.max_probe {
            self.step(1);
            let v = le32(self.section(S_HASH), s * 4).ok_or(Corrupt("hash slot"))?;
            if v == 0 {
                return Ok(Find::NotFound);
            }
            let a = self.answer(v as usize - 1)?;
            if a.name == name {
                return Ok(Find::Found(a));
            }
            s = (s + 1) & (slots - 1);
        }
        Ok(Find::NotFound)
    }

    /// Zone of a name too long or too short to normalise: still ours if it ends in `.D`.
    fn zone_of(&'a self, query: &[u8]) -> Find<'a> {
        let q = query.strip_suffix(b".").unwrap_or(query);
        let d = self.domain;
        if q.len() > d.len() + 1
            && q[q.len() - d.len()..].eq_ignore_ascii_case(d)
            && q[q.len() - d.len() - 1] == b'.'
        {
            Find::NotFound
        } else {
            Find::OutOfZone
        }
    }

    /// The name at `idx` (enumeration order).
    pub fn answer(&'a self, idx: usize) -> Result<Answer<'a>, Corrupt> {
        let r = self.record(S_NAMES, idx)?;
        let off = le32(r, 0).unwrap_or(0) as usize;
        let len = u16::from_le_bytes([r[4], r[5]]) as usize;
        let kind = Kind::from_u8(r[6]).ok_or(Corrupt("bad name kind"))?;
        let first = le32(r, 8).unwrap_or(0) as usize;
        let count = le32(r, 12).unwrap_or(0) as usize;
        // Names are at most 253 bytes (the writer refuses longer ones).
        if len > MAX_NAME {
            return Err(Corrupt("name too long"));
        }
        let name = off
            .checked_add(len)
            .and_then(|end| self.bytes.get(off..end))
            .ok_or(Corrupt("name out of bounds"))?;
        // Members are distinct instances: more than there are instances is not a snapshot.
        if count > self.header.instances as usize {
            return Err(Corrupt("more members than instances"));
        }
        let members = first
            .checked_mul(4)
            .and_then(|s| Some((s, s.checked_add(count.checked_mul(4)?)?)))
            .and_then(|(s, e)| self.section(S_MEMBERS).get(s..e))
            .ok_or(Corrupt("members out of bounds"))?;
        Ok(Answer {
            snap: self,
            idx,
            name,
            kind,
            members,
        })
    }

    /// Number of names (enumeration bound).
    pub fn len(&self) -> usize {
        self.header.names as usize
    }

    /// True when the snapshot holds no names.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The instance record at `idx`.
    pub fn instance(&'a self, idx: usize) -> Result<InstanceRef<'a>, Corrupt> {
        let r = self.record(S_INSTANCES, idx)?;
        let f = |at| le32(r, at).unwrap_or(0) as usize;
        let v4 = (f(4) & 1 == 1).then(|| [r[8], r[9], r[10], r[11]]);
        let span = |k: usize, first: usize, count: usize| {
            let size = RECORD[k];
            let s = first.checked_mul(size)?;
            let e = s.checked_add(count.checked_mul(size)?)?;
            self.section(k).get(s..e)
        };
        if f(16) > MAX_V6_PER_INSTANCE {
            return Err(Corrupt("too many IPv6 addresses"));
        }
        // Aliases are distinct names.
        if f(24) > self.header.names as usize {
            return Err(Corrupt("more aliases than names"));
        }
        let v6 = span(S_V6, f(12), f(16)).ok_or(Corrupt("ipv6 out of bounds"))?;
        let aliases = span(S_ALIASES, f(20), f(24)).ok_or(Corrupt("aliases out of bounds"))?;
        Ok(InstanceRef {
            snap: self,
            name: f(0) as u32,
            v4,
            v6,
            aliases,
        })
    }

    /// The live instance that has this IPv4 address (the first launched, if several).
    pub fn reverse_v4(&'a self, addr: [u8; 4]) -> Result<Option<InstanceRef<'a>>, Corrupt> {
        self.reverse(S_REV4, &addr)
    }

    /// The live instance that has this IPv6 address (the first launched, if several).
    pub fn reverse_v6(&'a self, addr: [u8; 16]) -> Result<Option<InstanceRef<'a>>, Corrupt> {
        self.reverse(S_REV6, &addr)
    }

    fn reverse(&'a self, k: usize, addr: &[u8]) -> Result<Option<InstanceRef<'a>>, Corrupt> {
        let sec = self.section(k);
        let size = RECORD[k];
        let alen = addr.len();
        // Record i's address; the section's length is a whole number of records (parse()), so
        // this is always Some for i < n, and a miss (never taken) reads as "not found".
        let key = |i: usize| sec.get(i * size..i * size + alen);
        let n = sec.len() / size;
        // Lower bound by binary search: at most log2(n)+1 rounds, whatever the bytes say.
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            self.step(1);
            let mid = lo + (hi - lo) / 2;
            if key(mid).ok_or(Corrupt("reverse record"))? < addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < n && key(lo) == Some(addr) {
            let inst = le32(sec, lo * size + alen).ok_or(Corrupt("reverse record"))? as usize;
            return self.instance(inst).map(Some);
        }
        Ok(None)
    }
}

impl<'a> Answer<'a> {
    /// Its place in enumeration order ([`Snapshot::answer`]).
    pub fn index(&self) -> usize {
        self.idx
    }

    /// The `i`-th instance behind the name (answer order), if there is one.
    pub fn member(&self, i: usize) -> Option<Result<InstanceRef<'a>, Corrupt>> {
        let c = self.members.get(i.checked_mul(4)?..i.checked_mul(4)? + 4)?;
        Some(
            self.snap
                .instance(u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize),
        )
    }

    /// The name, lower case, with the domain.
    pub fn name(&self) -> &'a [u8] {
        self.name
    }

    /// What the name stands for.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Number of instances behind the name.
    pub fn member_count(&self) -> usize {
        self.members.len() / 4
    }

    /// The instances behind the name, in answer order.
    pub fn members(&self) -> impl Iterator<Item = Result<InstanceRef<'a>, Corrupt>> + 'a {
        let snap = self.snap;
        self.members
            .chunks_exact(4)
            .map(move |c| snap.instance(u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize))
    }

    /// Number of addresses of `family` behind the name. The members of a name are distinct
    /// instances whose IPv6 ranges are disjoint, so together they cannot have more IPv6
    /// addresses than the file holds: a name that claims more is corrupt.
    pub fn count(&self, family: Family) -> Result<usize, Corrupt> {
        let mut n = 0usize;
        for m in self.members() {
            n += m?.count(family);
        }
        if family == Family::V6 && n > self.snap.records(S_V6) {
            return Err(Corrupt("more IPv6 addresses than the file holds"));
        }
        Ok(n)
    }

    /// Calls `f` with every address of `family`, 4 or 16 bytes, in answer order.
    pub fn for_each_addr(&self, family: Family, mut f: impl FnMut(&[u8])) -> Result<(), Corrupt> {
        for m in self.members() {
            m?.for_each_addr(family, &mut f);
        }
        Ok(())
    }
}

impl<'a> InstanceRef<'a> {
    /// Number of addresses of `family`.
    pub fn count(&self, family: Family) -> usize {
        match family {
            Family::V4 => usize::from(self.v4.is_some()),
            Family::V6 => self.v6.len() / 16,
        }
    }

    /// Calls `f` with every address of `family`.
    pub fn for_each_addr(&self, family: Family, mut f: impl FnMut(&[u8])) {
        self.snap.step(self.count(family));
        match family {
            Family::V4 => {
                if let Some(a) = &self.v4 {
                    f(a)
                }
            }
            Family::V6 => self.v6.chunks_exact(16).for_each(f),
        }
    }

    /// The `I.D` name: the canonical name of reverse lookups.
    pub fn name(&self) -> Result<&'a [u8], Corrupt> {
        Ok(self.snap.answer(self.name as usize)?.name)
    }

    /// Number of aliases, each checked. An instance's aliases are distinct names, so their
    /// strings together fit in the strings section: an instance that claims more is corrupt.
    pub fn alias_count(&self) -> Result<usize, Corrupt> {
        let (mut n, mut bytes) = (0usize, 0usize);
        for a in self.aliases() {
            bytes += a?.len();
            n += 1;
        }
        if bytes > self.snap.sections[S_STRINGS].len {
            return Err(Corrupt("aliases longer than the strings section"));
        }
        Ok(n)
    }

    /// The numbered names that single this instance out.
    pub fn aliases(&self) -> impl Iterator<Item = Result<&'a [u8], Corrupt>> + 'a {
        let snap = self.snap;
        self.aliases.chunks_exact(4).map(move |c| {
            let idx = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize;
            Ok(snap.answer(idx)?.name)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            domain: "ec2".into(),
            generated_unix: 1_700_000_000,
            interval_secs: 30,
            max_age_secs: 0,
        }
    }

    fn small() -> Table {
        Table {
            names: vec![
                Name {
                    name: "tphon.ec2".into(),
                    kind: Kind::Group,
                    members: vec![0, 1],
                },
                Name {
                    name: "1.tphon.ec2".into(),
                    kind: Kind::GroupNth,
                    members: vec![0],
                },
                Name {
                    name: "i-1.ec2".into(),
                    kind: Kind::Instance,
                    members: vec![0],
                },
                Name {
                    name: "i-2.ec2".into(),
                    kind: Kind::Instance,
                    members: vec![1],
                },
            ],
            instances: vec![
                Instance {
                    name: 2,
                    v4: Some([10, 0, 0, 1]),
                    v6: vec![[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]],
                    aliases: vec![1],
                },
                Instance {
                    name: 3,
                    v4: None,
                    v6: vec![],
                    aliases: vec![],
                },
            ],
        }
    }

    fn addrs(a: &Answer, f: Family) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        a.for_each_addr(f, |b| v.push(b.to_vec())).unwrap();
        v
    }

    #[test]
    fn round_trip_answers_every_name() {
        let bytes = small().encode(&meta()).unwrap();
        let s = Snapshot::parse(&bytes).unwrap();
        assert_eq!(s.domain(), b"ec2");
        assert_eq!(s.header().interval_secs, 30);
        let Find::Found(a) = s.find(b"TPHON.ec2.").unwrap() else {
            panic!("tphon not found")
        };
        assert_eq!(a.name(), b"tphon.ec2");
        assert_eq!(addrs(&a, Family::V4), vec![vec![10, 0, 0, 1]]);
        assert_eq!(a.count(Family::V6).unwrap(), 1);
        assert!(matches!(s.find(b"2.tphon.ec2").unwrap(), Find::NotFound));
        assert!(matches!(s.find(b"example.com").unwrap(), Find::OutOfZone));
        assert!(matches!(s.find(b"ec2").unwrap(), Find::OutOfZone));
        assert!(matches!(s.find(b".ec2").unwrap(), Find::OutOfZone));
        assert!(matches!(s.find(b"xec2").unwrap(), Find::OutOfZone));
        let long = format!("{}.ec2", "a".repeat(300));
        assert!(matches!(s.find(long.as_bytes()).unwrap(), Find::NotFound));
        let r = s.reverse_v4([10, 0, 0, 1]).unwrap().unwrap();
        assert_eq!(r.name().unwrap(), b"i-1.ec2");
        let al: Vec<_> = r.aliases().map(|a| a.unwrap().to_vec()).collect();
        assert_eq!(al, vec![b"1.tphon.ec2".to_vec()]);
        assert!(s.reverse_v4([10, 0, 0, 2]).unwrap().is_none());
        let mut v6 = [0u8; 16];
        v6[..4].copy_from_slice(&[0x20, 1, 0xd, 0xb8]);
        v6[15] = 1;
        assert_eq!(
            s.reverse_v6(v6).unwrap().unwrap().name().unwrap(),
            b"i-1.ec2"
        );
    }

    #[test]
    fn encode_refuses_inconsistent_tables() {
        let mut t = small();
        t.names[0].members.push(9);
        assert!(t.encode(&meta()).is_err());
        let mut t = small();
        t.names[1].name = "tphon.ec2".into();
        assert!(t.encode(&meta()).is_err());
        let mut t = small();
        t.names[1].name = "Upper.ec2".into();
        assert!(t.encode(&meta()).is_err());
    }

    #[test]
    fn header_damage_is_refused() {
        let bytes = small().encode(&meta()).unwrap();
        for at in 0..HEADER_LEN {
            let mut b = bytes.clone();
            b[at] ^= 0x40;
            assert!(Snapshot::parse(&b).is_err(), "flip at {at} accepted");
        }
        assert!(Snapshot::parse(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Snapshot::parse(&longer).is_err());
    }

    fn put32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Offset of record `i` of section `k`.
    fn rec(b: &[u8], k: usize, i: usize) -> usize {
        le32(b, SECTIONS_AT + k * 8).unwrap() as usize + i * RECORD[k]
    }

    #[test]
    fn the_writer_keeps_at_most_64_ipv6_addresses_per_instance() {
        let mut t = small();
        t.instances[0].v6 = (0..70u8)
            .map(|k| [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, k])
            .collect();
        let bytes = t.encode(&meta()).unwrap();
        let s = Snapshot::parse(&bytes).unwrap();
        let Find::Found(a) = s.find(b"1.tphon.ec2").unwrap() else {
            panic!("not found")
        };
        assert_eq!(a.count(Family::V6).unwrap(), MAX_V6_PER_INSTANCE);
        assert_eq!(addrs(&a, Family::V6)[63][15], 63);
        let mut last = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 63];
        assert!(s.reverse_v6(last).unwrap().is_some());
        last[15] = 64;
        assert!(
            s.reverse_v6(last).unwrap().is_none(),
            "dropped addresses are not kept"
        );
    }

    #[test]
    fn the_writer_refuses_repeated_members_and_aliases() {
        let mut t = small();
        t.names[0].members = vec![0, 1, 0];
        assert!(t.encode(&meta()).is_err());
        let mut t = small();
        t.instances[0].aliases = vec![1, 1];
        assert!(t.encode(&meta()).is_err());
        // The same instance behind several names, and one alias on several instances, is fine.
        let mut t = small();
        t.instances[1].aliases = vec![1];
        assert!(t.encode(&meta()).is_ok());
    }

    /// Records that claim more than a legitimate file can hold are corrupt, so that no lookup
    /// works beyond the file: more members than instances, more IPv6 addresses than an instance
    /// keeps or than the file holds behind one name, more aliases than names or alias strings
    /// longer than the strings section.
    #[test]
    fn the_reader_refuses_records_beyond_the_limits() {
        let good = small().encode(&meta()).unwrap();
        let tphon = |b: &[u8]| -> Result<(), Corrupt> {
            let s = Snapshot::parse(b).unwrap();
            match s.find(b"tphon.ec2")? {
                Find::Found(a) => a.count(Family::V4).and(a.count(Family::V6)).map(|_| ()),
                _ => panic!("tphon.ec2 not found"),
            }
        };
        assert!(tphon(&good).is_ok());
        // tphon.ec2 with 3 members (of 2 instances): members 0, 1 and 0 of the next name.
        let mut b = good.clone();
        put32(&mut b, rec(&good, S_NAMES, 0) + 12, 3);
        assert_eq!(tphon(&b), Err(Corrupt("more members than instances")));
        // Instance 0 with 65 IPv6 addresses, and with the file's only one twice (both members
        // pointing at instance 0).
        let mut b = good.clone();
        put32(&mut b, rec(&good, S_INSTANCES, 0) + 16, 65);
        assert_eq!(tphon(&b), Err(Corrupt("too many IPv6 addresses")));
        let mut b = good.clone();
        put32(&mut b, rec(&good, S_MEMBERS, 1), 0);
        assert_eq!(
            tphon(&b),
            Err(Corrupt("more IPv6 addresses than the file holds"))
        );
        // Aliases: 5 of 4 names; or one alias whose string is longer than the strings section.
        let s = Snapshot::parse(&good).unwrap();
        assert_eq!(
            s.reverse_v4([10, 0, 0, 1]).unwrap().unwrap().alias_count(),
            Ok(1)
        );
        let mut b = good.clone();
        put32(&mut b, rec(&good, S_INSTANCES, 0) + 24, 5);
        let s = Snapshot::parse(&b).unwrap();
        assert_eq!(
            s.reverse_v4([10, 0, 0, 1]).err(),
            Some(Corrupt("more aliases than names"))
        );
        let mut b = good.clone();
        let name1 = rec(&good, S_NAMES, 1);
        put32(&mut b, name1, 0);
        // The alias's string: the file's first 253 bytes, longer than the whole strings section.
        b[name1 + 4..name1 + 6].copy_from_slice(&253u16.to_le_bytes());
        assert!(le32(&good, SECTIONS_AT + S_STRINGS * 8 + 4).unwrap() < 253);
        let s = Snapshot::parse(&b).unwrap();
        assert_eq!(
            s.reverse_v4([10, 0, 0, 1]).unwrap().unwrap().alias_count(),
            Err(Corrupt("aliases longer than the strings section"))
        );
    }

    #[test]
    fn a_name_longer_than_253_bytes_is_corrupt() {
        let good = small().encode(&meta()).unwrap();
        let mut b = good.clone();
        let name0 = rec(&good, S_NAMES, 0);
        b[name0 + 4..name0 + 6].copy_from_slice(&254u16.to_le_bytes());
        let s = Snapshot::parse(&b).unwrap();
        assert_eq!(s.answer(0).err(), Some(Corrupt("name too long")));
    }

    #[test]
    fn a_metered_snapshot_counts_its_reads() {
        let bytes = small().encode(&meta()).unwrap();
        let meter = AtomicU64::new(0);
        let s = Snapshot::parse(&bytes).unwrap().metered(&meter);
        let Find::Found(a) = s.find(b"tphon.ec2").unwrap() else {
            panic!("not found")
        };
        let probes_and_name = meter.swap(0, Ordering::Relaxed);
        assert!((2..=4).contains(&probes_and_name), "{probes_and_name}");
        a.count(Family::V4).unwrap();
        assert_eq!(meter.swap(0, Ordering::Relaxed), 2, "two member records");
        addrs(&a, Family::V4);
        assert_eq!(
            meter.swap(0, Ordering::Relaxed),
            2 + 1,
            "two members, one address"
        );
    }

    #[test]
    fn empty_table_is_valid() {
        let bytes = Table::default().encode(&meta()).unwrap();
        let s = Snapshot::parse(&bytes).unwrap();
        assert!(s.is_empty());
        assert!(matches!(s.find(b"x.ec2").unwrap(), Find::NotFound));
    }
}
