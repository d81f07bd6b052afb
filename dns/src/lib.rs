//! The `.ec2` names over DNS, from the same snapshot the NSS module maps.
//!
//! * [`respond`]: one DNS query in, at most one answer out, for the stub inside `ec2cached`
//!   (`[dns] listen`). Pure: no I/O, no clock, so the fuzz target and the tests call exactly what
//!   the server calls. Messages are parsed and built by hickory-proto.
//! * [`export`]: the snapshot's names as a zone file, reverse zones, a hosts file, a dnsmasq
//!   snippet or unbound `local-data` (`ec2cached export`).
//!
//! What the stub answers (the contract: spec "DNS", docs/dns.md, "What the stub answers"):
//!
//! | query | answer |
//! |---|---|
//! | a name under `D` that exists, A/AAAA with addresses | NOERROR, AA, the addresses (each once) |
//! | a name under `D` that exists without that type (also `G.D` above a multi-label service) | NOERROR, AA, no answer, SOA in authority |
//! | a name under `D` that does not exist | NXDOMAIN, AA, SOA in authority |
//! | `D` itself: SOA, NS (`D.` itself, RFC 6303) | NOERROR, AA |
//! | ANY (RFC 8482) | one RRset: the SOA at an apex, the A (else AAAA) records of a name, the PTRs of an address |
//! | a reverse name in a zone of the exports (an IPv4 /24 or IPv6 /64 holding an instance address) | PTR of an instance address (`I.D`, then the numbered names); SOA and NS at the apex; NXDOMAIN for another address, NODATA for another type, with the zone's SOA |
//! | anything else (other zones, other reverse names, class other than IN, zone transfers) | REFUSED |
//! | `D` while no usable snapshot is installed | SERVFAIL |
//! | two questions or none | FORMERR |
//! | not parseable as a query, a response, shorter than a header | nothing |
//!
//! The recursion-available flag is never set, and nothing is ever forwarded; CD and DO are
//! copied (RFC 4035, RFC 3225). A UDP answer never exceeds 512 bytes, or the client's EDNS size
//! clamped to [`EDNS_PAYLOAD`]: what does not fit is left out with TC set. Over TCP TC is never
//! set: the answer carries the records that fit in 65 535 bytes, every owner a pointer to the
//! question (4 000-odd A records). The work of a query is bounded by its answer ([`Index`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod export;
mod fast;
/// The DNS message crate, for callers' tests (one version across the workspace).
pub use hickory_proto;
#[doc(hidden)]
pub mod testing;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NS, PTR, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use nss_ec2_snapshot::{Family, Find, Snapshot};
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The UDP payload size the stub offers in its OPT record and the most it sends over UDP,
/// whatever larger size a client offers (DNS flag day 2020: no IP fragmentation).
pub const EDNS_PAYLOAD: u16 = 1232;
/// The largest DNS message over TCP (its length prefix is 16 bits).
pub const TCP_MAX: usize = 65_535;
/// The SOA's expire field: how long a secondary would keep serving the zone (exports).
pub const SOA_EXPIRE: u32 = 604_800;
/// The SOA's RNAME (RFC 6303: nobody to write to).
pub const SOA_RNAME: &str = "nobody.invalid.";

/// How a query arrived: it sets the largest answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// 512 bytes, or the client's EDNS size up to [`EDNS_PAYLOAD`].
    Udp,
    /// The whole answer, up to [`TCP_MAX`] bytes.
    Tcp,
}

/// What the stub reads once per snapshot (O(names + members + addresses)), so that the work of
/// every query is bounded by its answer, not by the snapshot:
///
/// * the names that exist in DNS terms without being names of the snapshot: empty non-terminals,
///   such as `postgres.tphon.ec2` when only `readonly.postgres.tphon.ec2` is published. They
///   answer NODATA, not NXDOMAIN (RFC 8020: NXDOMAIN would deny every name below them too);
/// * for each name and address family, which members have an address of that family: all (the
///   walk stops at the answer's size), none (no walk: NODATA), or the list of those that do
///   (`AAAA` of a 100 000-member group of an IPv4-only VPC walks nothing);
/// * the reverse zones the exports define, one per IPv4 /24 and IPv6 /64 holding an instance
///   address, and the IPv6 addresses (the names between a /64's apex and an address exist).
#[derive(Debug, Default)]
pub struct Index {
    empty_non_terminals: HashSet<Box<[u8]>>,
    /// Per name (enumeration order): [`ALL_V4`], [`NO_V4`], [`ALL_V6`], [`NO_V6`] bits; a
    /// family with neither has its holders in `holders`.
    families: Vec<u8>,
    holders: HashMap<(u32, bool), Box<[u32]>>,
    v4_zones: HashSet<[u8; 3]>,
    v6_zones: HashSet<[u8; 8]>,
    v6_addrs: Vec<[u8; 16]>,
}

const ALL_V4: u8 = 1;
const NO_V4: u8 = 2;
const ALL_V6: u8 = 4;
const NO_V6: u8 = 8;

/// Which members of a name have an address of a family.
enum Holders<'i> {
    All,
    None,
    These(&'i [u32]),
}

impl Index {
    /// Reads every name, member and address of the snapshot once; what cannot be read is
    /// skipped (a lookup of it fails on its own).
    pub fn build(snap: &Snapshot<'_>) -> Index {
        let mut ents = HashSet::new();
        let d = snap.domain();
        let mut families = vec![0u8; snap.len()];
        let mut holders = HashMap::new();
        // A legitimate file's names have disjoint member ranges: both families' walks read at
        // most twice its member records. A file whose names overlap (trusted, but hostile)
        // stops the indexing there; what is not indexed is walked per query, bounded by the
        // answer's size.
        let mut budget = snap.member_records().saturating_mul(2);
        for (i, flags) in families.iter_mut().enumerate() {
            let Ok(a) = snap.answer(i) else { continue };
            let walk = a.member_count().saturating_mul(2);
            let indexed = walk <= budget;
            budget = budget.saturating_sub(walk);
            for (v6, all, none) in [(false, ALL_V4, NO_V4), (true, ALL_V6, NO_V6)] {
                if !indexed {
                    break;
                }
                let family = if v6 { Family::V6 } else { Family::V4 };
                let mut have = Vec::new();
                for (k, m) in a.members().enumerate() {
                    if m.is_ok_and(|m| m.count(family) > 0) {
                        have.push(k as u32);
                    }
                }
                if have.len() == a.member_count() {
                    *flags |= all;
                } else if have.is_empty() {
                    *flags |= none;
                } else {
                    holders.insert((i as u32, v6), have.into_boxed_slice());
                }
            }
            let name = a.name();
            // Suffixes strictly between the name and `D`.
            let Some(rel) = name
                .strip_suffix(d)
                .and_then(|r| r.strip_suffix(b"."))
                .filter(|r| !r.is_empty())
            else {
                continue;
            };
            for (p, _) in rel.iter().enumerate().filter(|(_, &c)| c == b'.') {
                let suffix = &name[p + 1..];
                if ents.contains(suffix) {
                    break;
                }
                if matches!(snap.find(suffix), Ok(Find::NotFound)) {
                    ents.insert(Box::from(suffix));
                }
            }
        }
        let (mut v4_zones, mut v6_zones, mut v6_addrs) =
            (HashSet::new(), HashSet::new(), Vec::new());
        for j in 0..snap.header().instances as usize {
            let Ok(inst) = snap.instance(j) else { continue };
            inst.for_each_addr(Family::V4, |a| {
                if let Ok(z) = <[u8; 3]>::try_from(&a[..3]) {
                    v4_zones.insert(z);
                }
            });
            inst.for_each_addr(Family::V6, |a| {
                if let Ok(full) = <[u8; 16]>::try_from(a) {
                    let mut z = [0u8; 8];
                    z.copy_from_slice(&full[..8]);
                    v6_zones.insert(z);
                    v6_addrs.push(full);
                }
            });
        }
        v6_addrs.sort_unstable();
        v6_addrs.dedup();
        Index {
            empty_non_terminals: ents,
            families,
            holders,
            v4_zones,
            v6_zones,
            v6_addrs,
        }
    }

    /// True when `name` (lower case, no trailing dot) is an empty non-terminal.
    pub fn is_empty_non_terminal(&self, name: &[u8]) -> bool {
        self.empty_non_terminals.contains(name)
    }

    /// Number of empty non-terminals.
    pub fn len(&self) -> usize {
        self.empty_non_terminals.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.empty_non_terminals.is_empty()
    }

    fn holders(&self, name: usize, family: Family) -> Holders<'_> {
        let (v6, all, none) = match family {
            Family::V4 => (false, ALL_V4, NO_V4),
            Family::V6 => (true, ALL_V6, NO_V6),
        };
        let flags = self.families.get(name).copied().unwrap_or(0);
        if flags & all != 0 {
            Holders::All
        } else if flags & none != 0 {
            Holders::None
        } else {
            match self.holders.get(&(name as u32, v6)) {
                Some(h) => Holders::These(h),
                // Not indexed (a record that could not be read): walk, bounded by the answer.
                None => Holders::All,
            }
        }
    }

    /// True when some instance address lies under the IPv6 nibble prefix `nibbles` (high
    /// nibble first).
    fn v6_prefix_exists(&self, nibbles: &[u8]) -> bool {
        let mut lo = [0u8; 16];
        for (i, n) in nibbles.iter().enumerate() {
            lo[i / 2] |= if i % 2 == 0 { n << 4 } else { *n };
        }
        let at = self.v6_addrs.partition_point(|a| a < &lo);
        self.v6_addrs.get(at).is_some_and(|a| {
            nibbles.iter().enumerate().all(|(i, n)| {
                let b = a[i / 2];
                (if i % 2 == 0 { b >> 4 } else { b & 15 }) == *n
            })
        })
    }
}

/// What the stub answers from: the configured domain, and the installed snapshot (parsed, within
/// its `max_age`) with its [`Index`], if there is one.
#[derive(Clone, Copy, Debug)]
pub struct Zone<'a> {
    /// `domain` of the configuration, lower case, without dots at either end: which names are
    /// ours (SERVFAIL) while no snapshot is installed.
    pub domain: &'a str,
    /// The installed snapshot; `None` when there is none, it is corrupt or past its `max_age`.
    pub served: Option<(&'a Snapshot<'a>, &'a Index)>,
}

/// The answer to one query, or `None` when nothing should be sent: shorter than a DNS header,
/// not a query, or not parseable as one (answering garbage, even with FORMERR, lets a spoofed
/// packet start a loop between two UDP services). Never panics, whatever the bytes (fuzz
/// target `dns_query`).
pub fn respond(zone: &Zone<'_>, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
    match fast::respond(zone, query, transport) {
        Some(answer) => Some(answer),
        None => respond_general(zone, query, transport),
    }
}

/// [`respond`] without its fast path ([`fast`]): every query through hickory-proto. The tests
/// and the fuzz target check that both give the same answer.
#[doc(hidden)]
pub fn respond_general(zone: &Zone<'_>, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
    // Never answer a response: two servers would otherwise bounce packets forever.
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let req = Message::from_vec(query).ok()?;
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    // RFC 4035 3.2.2: CD is copied into the response.
    resp.metadata.checking_disabled = req.metadata.checking_disabled;
    let mut limit = match transport {
        Transport::Udp => 512,
        Transport::Tcp => TCP_MAX,
    };
    if let Some(e) = &req.edns {
        let mut ours = Edns::new();
        ours.set_max_payload(EDNS_PAYLOAD);
        ours.set_version(0);
        // RFC 3225: DO is copied into the response (no signatures are sent: the zone is not
        // signed, so a validator treats the answers as insecure under a negative trust anchor).
        ours.set_dnssec_ok(e.flags().dnssec_ok);
        resp.set_edns(ours);
        if transport == Transport::Udp {
            limit = usize::from(e.max_payload().clamp(512, EDNS_PAYLOAD));
        }
    }
    if req.metadata.op_code != OpCode::Query {
        resp.metadata.response_code = ResponseCode::NotImp;
        return Some(encode(&resp, limit, transport));
    }
    let [q] = req.queries.as_slice() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return Some(encode(&resp, limit, transport));
    };
    resp.add_query(q.clone());
    if req.edns.as_ref().is_some_and(|e| e.version() > 0) {
        resp.metadata.response_code = ResponseCode::BADVERS;
        return Some(encode(&resp, limit, transport));
    }
    answer(zone, q, &mut resp, limit);
    Some(encode(resp, limit, transport))
}

/// Fills `resp` (which already carries the question) for one question.
fn answer(zone: &Zone<'_>, q: &Query, resp: &mut Message, limit: usize) {
    let qtype = q.query_type();
    if q.query_class() != DNSClass::IN || matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        resp.metadata.response_code = ResponseCode::Refused;
        return;
    }
    let labels: Vec<&[u8]> = q.name().iter().collect();
    if let Some(rev) = reverse_name(&labels) {
        return answer_reverse(zone, q, rev, resp);
    }
    let Some((snap, index)) = zone.served else {
        // Ours, but nothing to answer from: the resolver asks elsewhere or fails for now.
        let ours = split_zone(&labels, zone.domain.as_bytes()).is_some();
        resp.metadata.response_code = if ours {
            ResponseCode::ServFail
        } else {
            ResponseCode::Refused
        };
        return;
    };
    let Some(relative) = split_zone(&labels, snap.domain()) else {
        resp.metadata.response_code = ResponseCode::Refused;
        return;
    };
    let h = snap.header();
    let ttl = h.interval_secs;
    resp.metadata.authoritative = true;
    let owner = q.name().clone();
    if relative == 0 {
        let apex_name = apex(snap);
        // The apex, `D`: the SOA answered under the query's spelling, like every answer. The
        // NS is the zone's own name (RFC 6303), which has no address: a priming resolver is
        // never sent to another host.
        let mut soa = soa_record(snap, apex_name.clone());
        soa.name = owner.clone();
        let ns = Record::from_rdata(owner.clone(), ttl, RData::NS(NS(apex_name)));
        match qtype {
            // RFC 8482: ANY gets one RRset, the SOA.
            RecordType::SOA | RecordType::ANY => {
                resp.add_answer(soa);
            }
            RecordType::NS => {
                resp.add_answer(ns);
            }
            _ => {
                resp.add_authority(soa);
            }
        }
        return;
    }
    let negative = |resp: &mut Message| {
        resp.add_authority(soa_record(snap, apex(snap)));
    };
    // A name of the snapshot is made of [a-z0-9_-] labels; anything else cannot be one (and must
    // not be joined into one: a label holding a '.' byte).
    let mut full = Vec::with_capacity(255);
    for l in &labels {
        if l.is_empty()
            || !l
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_".contains(c))
        {
            resp.metadata.response_code = ResponseCode::NXDomain;
            negative(resp);
            return;
        }
        if !full.is_empty() {
            full.push(b'.');
        }
        full.extend(l.iter().map(u8::to_ascii_lowercase));
    }
    let found = match snap.find(&full) {
        Ok(Find::Found(a)) => a,
        Ok(Find::NotFound) | Ok(Find::OutOfZone) => {
            if !index.is_empty_non_terminal(&full) {
                resp.metadata.response_code = ResponseCode::NXDomain;
            }
            negative(resp);
            return;
        }
        Err(_) => {
            *resp = servfail(resp);
            return;
        }
    };
    // RFC 8482: ANY gets one RRset: the addresses of one family, IPv4 if there are any.
    let families: &[Family] = match qtype {
        RecordType::A => &[Family::V4],
        RecordType::AAAA => &[Family::V6],
        RecordType::ANY => match index.holders(found.index(), Family::V4) {
            Holders::None => &[Family::V6],
            _ => &[Family::V4],
        },
        _ => &[],
    };
    let mut records = Vec::new();
    for &family in families {
        if addresses(found, index, family, limit, &owner, ttl, &mut records).is_err() {
            *resp = servfail(resp);
            return;
        }
    }
    if records.is_empty() {
        negative(resp);
    } else {
        resp.add_answers(records);
    }
}

/// The records of `found`'s addresses of `family`, no more than could fit in `limit` bytes
/// ([`for_each_address`]).
fn addresses(
    found: nss_ec2_snapshot::Answer<'_>,
    index: &Index,
    family: Family,
    limit: usize,
    owner: &Name,
    ttl: u32,
    records: &mut Vec<Record>,
) -> Result<(), nss_ec2_snapshot::Corrupt> {
    for_each_address(found, index, family, limit, |a| {
        let rdata = match family {
            Family::V4 => <[u8; 4]>::try_from(a).map(|b| RData::A(A(Ipv4Addr::from(b)))),
            Family::V6 => <[u8; 16]>::try_from(a).map(|b| RData::AAAA(AAAA(Ipv6Addr::from(b)))),
        };
        if let Ok(rdata) = rdata {
            records.push(Record::from_rdata(owner.clone(), ttl, rdata));
        }
    })
}

/// Hands `f` the addresses of `family` of `found`, each once (RFC 2181 5: an RRset has no
/// duplicates; two instances of two VPCs may share one), no more than could fit in `limit` bytes
/// (every A/AAAA record takes at least 16). The work is bounded by the answer, not by the name:
/// only members that have an address of the family are visited ([`Index`]).
fn for_each_address(
    found: nss_ec2_snapshot::Answer<'_>,
    index: &Index,
    family: Family,
    limit: usize,
    mut f: impl FnMut(&[u8]),
) -> Result<(), nss_ec2_snapshot::Corrupt> {
    let cap = limit / 16 + 1;
    let mut given = 0usize;
    // Each address once: a list while the answer is small (a UDP answer holds at most 76), a
    // set beyond.
    let mut seen: Vec<[u8; 16]> = Vec::new();
    let mut seen_set: HashSet<[u8; 16]> = HashSet::new();
    let mut visit = |m: nss_ec2_snapshot::InstanceRef<'_>, given: &mut usize| {
        m.for_each_addr(family, |a| {
            if *given >= cap {
                return;
            }
            let mut key = [0u8; 16];
            let n = a.len().min(16);
            key[..n].copy_from_slice(&a[..n]);
            if seen_set.contains(&key) || seen.contains(&key) {
                return;
            }
            if seen.len() < 64 {
                seen.push(key);
            } else {
                seen_set.insert(key);
            }
            *given += 1;
            f(a);
        });
    };
    match index.holders(found.index(), family) {
        Holders::None => {}
        Holders::All => {
            for m in found.members() {
                if given >= cap {
                    break;
                }
                visit(m?, &mut given);
            }
        }
        Holders::These(list) => {
            for &k in list {
                if given >= cap {
                    break;
                }
                if let Some(m) = found.member(k as usize) {
                    visit(m?, &mut given);
                }
            }
        }
    }
    Ok(())
}

/// A reverse name, parsed: which zone (an IPv4 /24, an IPv6 /64) and where in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reverse {
    /// Above every zone the stub serves (`10.in-addr.arpa`, fewer than 16 nibbles), or with
    /// labels where a zone's would be that name none.
    Above,
    /// `c.b.a.in-addr.arpa`, the apex of an IPv4 /24.
    V4Apex([u8; 3]),
    /// `d.c.b.a.in-addr.arpa`.
    V4([u8; 4]),
    /// Under a /24's apex but no address (`x.1.0.0.10`, `01.0.0.10`, `_dns-sd._udp.0.0.10`).
    V4Other([u8; 3]),
    /// An IPv6 name of 16 to 32 nibbles (high nibble first): 16 is a /64's apex, 32 an address.
    V6 { nibbles: [u8; 32], len: usize },
    /// Under a /64's apex but no address or nibble path.
    V6Other([u8; 8]),
}

/// Parses `…in-addr.arpa` (octets 0-255, no leading zeros) and `…ip6.arpa` (hex nibbles).
fn reverse_name(labels: &[&[u8]]) -> Option<Reverse> {
    let is = |l: &[u8], s: &str| l.eq_ignore_ascii_case(s.as_bytes());
    let n = labels.len();
    if n >= 2 && is(labels[n - 2], "in-addr") && is(labels[n - 1], "arpa") {
        let octets = &labels[..n - 2];
        let octet = |l: &[u8]| -> Option<u8> {
            let ok = !l.is_empty()
                && l.len() <= 3
                && l.iter().all(u8::is_ascii_digit)
                && (l.len() == 1 || l[0] != b'0');
            ok.then(|| std::str::from_utf8(l).ok()?.parse().ok())?
        };
        let k = octets.len();
        if k < 3 {
            return Some(Reverse::Above);
        }
        let (Some(a), Some(b), Some(c)) = (
            octet(octets[k - 1]),
            octet(octets[k - 2]),
            octet(octets[k - 3]),
        ) else {
            return Some(Reverse::Above);
        };
        return Some(match &octets[..k - 3] {
            [] => Reverse::V4Apex([a, b, c]),
            [d] => match octet(d) {
                Some(d) => Reverse::V4([a, b, c, d]),
                None => Reverse::V4Other([a, b, c]),
            },
            _ => Reverse::V4Other([a, b, c]),
        });
    }
    if n >= 2 && is(labels[n - 2], "ip6") && is(labels[n - 1], "arpa") {
        let nib = &labels[..n - 2];
        if nib.len() < 16 {
            return Some(Reverse::Above);
        }
        let nibble = |l: &[u8]| -> Option<u8> {
            match l {
                [c] => (*c as char).to_digit(16).map(|v| v as u8),
                _ => None,
            }
        };
        let mut nibbles = [0u8; 32];
        for (i, l) in nib.iter().rev().take(16).enumerate() {
            match nibble(l) {
                Some(v) => nibbles[i] = v,
                None => return Some(Reverse::Above),
            }
        }
        let zone = pack::<8>(&nibbles[..16]);
        if nib.len() > 32 {
            return Some(Reverse::V6Other(zone));
        }
        for (i, l) in nib.iter().rev().enumerate().skip(16) {
            match nibble(l) {
                Some(v) => nibbles[i] = v,
                None => return Some(Reverse::V6Other(zone)),
            }
        }
        return Some(Reverse::V6 {
            nibbles,
            len: nib.len(),
        });
    }
    None
}

/// Packs high-nibble-first nibbles into bytes.
fn pack<const N: usize>(nibbles: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, n) in nibbles.iter().take(2 * N).enumerate() {
        out[i / 2] |= if i % 2 == 0 { n << 4 } else { *n };
    }
    out
}

/// The reverse zones of the exports, one per IPv4 /24 and IPv6 /64 holding an instance
/// address: PTR of an instance address (`I.D`, then its numbered names), the SOA and NS at each
/// apex, NXDOMAIN for other addresses and NODATA for other types, with the zone's SOA; REFUSED
/// for reverse names in no such zone (not ours: another server may know them).
fn answer_reverse(zone: &Zone<'_>, q: &Query, rev: Reverse, resp: &mut Message) {
    let Some((snap, index)) = zone.served else {
        resp.metadata.response_code = ResponseCode::Refused;
        return;
    };
    let qtype = q.query_type();
    let labels: Vec<&[u8]> = q.name().iter().collect();
    // The zone's apex: the name's last `keep` labels, lower case.
    let apex_of = |keep: usize| -> Name {
        let text: Vec<String> = labels[labels.len() - keep..]
            .iter()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect();
        name(&format!("{}.", text.join(".")))
    };
    let refused = |resp: &mut Message| resp.metadata.response_code = ResponseCode::Refused;
    // (apex, the instance named, whether the name exists without one)
    let (apex_name, keep, inst, exists) = match rev {
        Reverse::Above => return refused(resp),
        Reverse::V4Other(z) => {
            if !index.v4_zones.contains(&z) {
                return refused(resp);
            }
            (apex_of(5), 5, None, false)
        }
        Reverse::V6Other(z) => {
            if !index.v6_zones.contains(&z) {
                return refused(resp);
            }
            (apex_of(18), 18, None, false)
        }
        Reverse::V4Apex(z) => {
            if !index.v4_zones.contains(&z) {
                return refused(resp);
            }
            (apex_of(5), 5, None, true)
        }
        Reverse::V4(a) => {
            if !index.v4_zones.contains(&[a[0], a[1], a[2]]) {
                return refused(resp);
            }
            match snap.reverse_v4(a) {
                Ok(i) => (apex_of(5), 5, i, false),
                Err(_) => {
                    *resp = servfail(resp);
                    return;
                }
            }
        }
        Reverse::V6 { nibbles, len } => {
            if !index.v6_zones.contains(&pack::<8>(&nibbles[..16])) {
                return refused(resp);
            }
            if len < 32 {
                // The apex, or a name between it and the addresses: it exists (NODATA) if an
                // address lies under it.
                let exists = index.v6_prefix_exists(&nibbles[..len]);
                (apex_of(18), 18, None, exists)
            } else {
                match snap.reverse_v6(pack::<16>(&nibbles)) {
                    Ok(i) => (apex_of(18), 18, i, false),
                    Err(_) => {
                        *resp = servfail(resp);
                        return;
                    }
                }
            }
        }
    };
    resp.metadata.authoritative = true;
    let ttl = snap.header().interval_secs;
    let soa = || soa_record(snap, apex_name.clone());
    if labels.len() == keep {
        let mut s = soa();
        s.name = q.name().clone();
        match qtype {
            // RFC 8482: ANY gets one RRset, the SOA.
            RecordType::SOA | RecordType::ANY => resp.add_answer(s),
            RecordType::NS => resp.add_answer(Record::from_rdata(
                q.name().clone(),
                ttl,
                RData::NS(NS(apex_name.clone())),
            )),
            _ => resp.add_authority(soa()),
        };
        return;
    }
    let Some(inst) = inst else {
        if !exists {
            resp.metadata.response_code = ResponseCode::NXDomain;
        }
        resp.add_authority(soa());
        return;
    };
    if !matches!(qtype, RecordType::PTR | RecordType::ANY) {
        resp.add_authority(soa());
        return;
    }
    let names: Result<Vec<&[u8]>, _> = std::iter::once(inst.name()).chain(inst.aliases()).collect();
    let Ok(names) = names else {
        *resp = servfail(resp);
        return;
    };
    for n in names {
        let Ok(text) = std::str::from_utf8(n) else {
            continue;
        };
        if let Ok(target) = Name::from_ascii(format!("{text}.")) {
            resp.add_answer(Record::from_rdata(
                q.name().clone(),
                ttl,
                RData::PTR(PTR(target)),
            ));
        }
    }
}

fn servfail(resp: &Message) -> Message {
    let mut m = Message::error_msg(
        resp.metadata.id,
        resp.metadata.op_code,
        ResponseCode::ServFail,
    );
    m.metadata.recursion_desired = resp.metadata.recursion_desired;
    m.metadata.checking_disabled = resp.metadata.checking_disabled;
    m.add_queries(resp.queries.iter().cloned());
    if let Some(e) = &resp.edns {
        m.set_edns(e.clone());
    }
    m
}

/// How many labels of `labels` lie below the domain, when the name is the domain or under it.
fn split_zone(labels: &[&[u8]], domain: &[u8]) -> Option<usize> {
    let d: Vec<&[u8]> = domain.split(|&c| c == b'.').collect();
    let rel = labels.len().checked_sub(d.len())?;
    labels[rel..]
        .iter()
        .zip(&d)
        .all(|(a, b)| a.eq_ignore_ascii_case(b))
        .then_some(rel)
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap_or_else(|_| Name::root())
}

/// The domain as a DNS name (`ec2.`).
fn apex(snap: &Snapshot<'_>) -> Name {
    let d = String::from_utf8_lossy(snap.domain());
    name(&format!("{d}."))
}

/// A zone's SOA (`D`'s, or a reverse zone's, `apex`): MNAME = the zone's own name (RFC 6303),
/// serial = the snapshot's generation (unix seconds; wraps after 2106 as RFC 1982 serial
/// arithmetic allows), refresh = retry = negative TTL = `interval`.
fn soa_record(snap: &Snapshot<'_>, apex: Name) -> Record {
    let h = snap.header();
    let ttl = h.interval_secs;
    let i = i32::try_from(ttl).unwrap_or(i32::MAX);
    Record::from_rdata(
        apex.clone(),
        ttl,
        RData::SOA(SOA::new(
            apex,
            name(SOA_RNAME),
            soa_serial(snap),
            i,
            i,
            SOA_EXPIRE as i32,
            ttl,
        )),
    )
}

/// The SOA serial: the generation, in 32 bits.
pub fn soa_serial(snap: &Snapshot<'_>) -> u32 {
    snap.header().generated_unix as u32
}

/// The wire form within `limit`. Over UDP: whole if it fits, else the first answers that fit
/// with TC set (the client asks again over TCP). Over TCP TC is never set (Go's resolver gives
/// up on it, systemd-resolved retries for ever): the answers that fit in 65 535 bytes are sent.
fn encode(resp: impl std::borrow::Borrow<Message>, limit: usize, transport: Transport) -> Vec<u8> {
    let resp = resp.borrow();
    if let Some(fast) = encode_addresses(resp, limit, transport) {
        return fast;
    }
    // hickory-proto stops at 65 535 bytes itself, with TC set: only an encoding that holds every
    // record (the header's counts say so) is whole.
    let counts = |b: &[u8], at: usize| b.get(at..at + 2).map(|c| u16::from_be_bytes([c[0], c[1]]));
    let holds = |b: &[u8], m: &Message| {
        counts(b, 6) == Some(m.answers.len() as u16)
            && counts(b, 8) == Some(m.authorities.len() as u16)
    };
    let whole = resp.to_vec().unwrap_or_default();
    if !whole.is_empty() && whole.len() <= limit && holds(&whole, resp) {
        return whole;
    }
    let mut m = resp.clone();
    m.metadata.truncation = transport == Transport::Udp;
    m.authorities.clear();
    m.additionals.clear();
    // The largest prefix of the answers that fits; none always fits (a question is at most
    // 259 bytes, the header and OPT 23).
    let (mut lo, mut hi) = (0usize, resp.answers.len());
    let fits = |m: &mut Message, k: usize| {
        m.answers = resp.answers[..k].to_vec();
        m.to_vec().ok().filter(|b| b.len() <= limit && holds(b, m))
    };
    let mut best = fits(&mut m, 0);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match fits(&mut m, mid) {
            Some(b) => {
                lo = mid;
                best = Some(b);
            }
            None => hi = mid - 1,
        }
    }
    best.unwrap_or_else(|| {
        let mut h = vec![0u8; 12];
        h[..2].copy_from_slice(&resp.metadata.id.to_be_bytes());
        h[2] = 0x80; // QR
        h[3] = ResponseCode::ServFail.low();
        h
    })
}

/// An answer of A or AAAA records, written with every owner a pointer to the question name
/// (offset 12): 16 bytes an A record and 28 an AAAA. hickory-proto compresses at most 120 names
/// a message and writes every later owner whole, so past about record 119 an answer would hold
/// far fewer records than fit. `None` for any other answer (hickory-proto writes it).
fn encode_addresses(resp: &Message, limit: usize, transport: Transport) -> Option<Vec<u8>> {
    let [q] = resp.queries.as_slice() else {
        return None;
    };
    if resp.answers.is_empty()
        || !resp.authorities.is_empty()
        || !resp
            .answers
            .iter()
            .all(|r| matches!(r.data, RData::A(_) | RData::AAAA(_)) && r.name == *q.name())
    {
        return None;
    }
    // The message without its answers (not a clone of them: they may be thousands).
    let mut bare = Message::response(resp.metadata.id, resp.metadata.op_code);
    bare.metadata = resp.metadata;
    bare.add_queries(resp.queries.iter().cloned());
    if let Some(e) = &resp.edns {
        bare.set_edns(e.clone());
    }
    let base = bare.to_vec().ok()?;
    // After the question comes only our OPT record (no options: 11 bytes, a root name then type
    // 41) when the query had EDNS; the answers go between.
    let qend = if resp.edns.is_some() {
        let at = base.len().checked_sub(11)?;
        if base.get(at..at + 3) != Some(&[0, 0, 41][..]) {
            return None;
        }
        at
    } else {
        base.len()
    };
    if qend < 12 + 5 {
        return None;
    }
    let tail = base.len() - qend;
    let mut out = Vec::with_capacity(limit.min(base.len() + resp.answers.len() * 28));
    out.extend_from_slice(&base[..qend]);
    let mut n: u16 = 0;
    for r in &resp.answers {
        let (v4, v6);
        let (rtype, rdata): (u16, &[u8]) = match &r.data {
            RData::A(a) => {
                v4 = a.0.octets();
                (1, &v4)
            }
            RData::AAAA(a) => {
                v6 = a.0.octets();
                (28, &v6)
            }
            _ => return None,
        };
        if out.len() + 12 + rdata.len() + tail > limit {
            break;
        }
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&r.ttl.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
        n += 1;
    }
    out.extend_from_slice(&base[qend..]);
    out[6..8].copy_from_slice(&n.to_be_bytes());
    if usize::from(n) < resp.answers.len() && transport == Transport::Udp {
        out[2] |= 0x02; // TC: the whole answer is for TCP.
    }
    Some(out)
}

#[cfg(test)]
mod stub_tests;
#[cfg(test)]
mod tests;
