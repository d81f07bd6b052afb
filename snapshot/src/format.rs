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
//! 136  reserved (zero)             152  FNV-1a 64 of bytes 0..152
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

use crate::hash::{fnv1a, normalize_query, slot, MAX_NAME};
use std::fmt;

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
        for n in &self.names {
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
        }
        for i in &self.instances {
            if i.name as usize >= n_names || i.aliases.iter().any(|&a| a as usize >= n_names) {
                return Err(EncodeError("instance refers to a missing name".into()));
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
            let rec = &mut sec[S_INSTANCES];
            rec.extend_from_slice(&i.name.to_le_bytes());
            rec.extend_from_slice(&u32::from(i.v4.is_some()).to_le_bytes());
            rec.extend_from_slice(&i.v4.unwrap_or_default());
            rec.extend_from_slice(&u32_of(v6_at, "ipv6")?.to_le_bytes());
            rec.extend_from_slice(&u32_of(i.v6.len(), "ipv6")?.to_le_bytes());
            rec.extend_from_slice(&u32_of(alias_at, "aliases")?.to_le_bytes());
            rec.extend_from_slice(&u32_of(i.aliases.len(), "aliases")?.to_le_bytes());
            rec.extend_from_slice(&0u32.to_le_bytes());
            v6_at += i.v6.len();
            alias_at += i.aliases.len();
            for a in &i.v6 {
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

/// Recomputes the header checksum of `bytes` in place (for tests that damage a snapshot past
/// the header check on purpose). Does nothing to a buffer shorter than the header.
#[doc(hidden)]
pub fn seal_header(bytes: &mut [u8]) {
    if bytes.len() >= HEADER_LEN {
        let sum = fnv1a(&bytes[..CHECKSUM_AT]);
        bytes[CHECKSUM_AT..HEADER_LEN].copy_from_slice(&sum.to_le_bytes());
    }
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
        let mut sections = [Section { off: 0, len: 0 }; N_SECTIONS];
        for (k, s) in sections.iter_mut().enumerate() {
            let off = r32(SECTIONS_AT + k * 8) as usize;
            let len = r32(SECTIONS_AT + k * 8 + 4) as usize;
            let end = off.checked_add(len).ok_or(Corrupt("section overflows"))?;
            if off < HEADER_LEN || end > bytes.len() || !len.is_multiple_of(RECORD[k]) {
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
        })
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
        let name = off
            .checked_add(len)
            .and_then(|end| self.bytes.get(off..end))
            .ok_or(Corrupt("name out of bounds"))?;
        let members = first
            .checked_mul(4)
            .and_then(|s| Some((s, s.checked_add(count.checked_mul(4)?)?)))
            .and_then(|(s, e)| self.section(S_MEMBERS).get(s..e))
            .ok_or(Corrupt("members out of bounds"))?;
        Ok(Answer {
            snap: self,
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
        let key = |i: usize| &sec[i * size..i * size + alen];
        // Lower bound by binary search: at most log2(n)+1 rounds, whatever the bytes say.
        let (mut lo, mut hi) = (0usize, sec.len() / size);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if key(mid) < addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < sec.len() / size && key(lo) == addr {
            let inst = le32(sec, lo * size + alen).unwrap_or(u32::MAX) as usize;
            return self.instance(inst).map(Some);
        }
        Ok(None)
    }
}

impl<'a> Answer<'a> {
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

    /// Number of addresses of `family` behind the name.
    pub fn count(&self, family: Family) -> Result<usize, Corrupt> {
        let mut n = 0usize;
        for m in self.members() {
            n += m?.count(family);
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

    #[test]
    fn empty_table_is_valid() {
        let bytes = Table::default().encode(&meta()).unwrap();
        let s = Snapshot::parse(&bytes).unwrap();
        assert!(s.is_empty());
        assert!(matches!(s.find(b"x.ec2").unwrap(), Find::NotFound));
    }
}
