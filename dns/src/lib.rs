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
//! | a name under `D` that exists, A/AAAA with addresses | NOERROR, AA, the addresses |
//! | a name under `D` that exists without that type (also `G.D` above a multi-label service) | NOERROR, AA, no answer, SOA in authority |
//! | a name under `D` that does not exist | NXDOMAIN, AA, SOA in authority |
//! | `D` itself: SOA, NS (ANY: both) | NOERROR, AA |
//! | PTR of an instance address | NOERROR, AA, `I.D` then the numbered names |
//! | anything else (other zones, other reverse names, class other than IN, zone transfers) | REFUSED |
//! | `D` while no usable snapshot is installed | SERVFAIL |
//! | malformed | FORMERR (a bare header), or nothing for a packet shorter than a header or a response |
//!
//! The recursion-available flag is never set, and nothing is ever forwarded. A UDP answer
//! never exceeds 512 bytes, or the client's EDNS size clamped to [`EDNS_PAYLOAD`]: what does not
//! fit is left out with TC set, and TCP carries the whole answer (up to 65 535 bytes).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod export;
/// The DNS message crate, for callers' tests (one version across the workspace).
pub use hickory_proto;
#[doc(hidden)]
pub mod testing;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NS, PTR, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use nss_ec2_snapshot::{Family, Find, Snapshot};
use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The UDP payload size the stub offers in its OPT record and the most it sends over UDP,
/// whatever larger size a client offers (DNS flag day 2020: no IP fragmentation).
pub const EDNS_PAYLOAD: u16 = 1232;
/// The largest DNS message over TCP (its length prefix is 16 bits).
pub const TCP_MAX: usize = 65_535;
/// The SOA's expire field: how long a secondary would keep serving the zone (exports).
pub const SOA_EXPIRE: u32 = 604_800;
/// The name server of `D` (NS) and the SOA's MNAME: the zone is served only locally (RFC 6303).
pub const NS_NAME: &str = "localhost.";
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

/// The names that exist in DNS terms without being names of the snapshot: empty non-terminals,
/// such as `postgres.tphon.ec2` when only `readonly.postgres.tphon.ec2` is published. They answer
/// NODATA, not NXDOMAIN (RFC 8020: NXDOMAIN would deny every name below them too).
#[derive(Debug, Default)]
pub struct Index {
    empty_non_terminals: HashSet<Box<[u8]>>,
}

impl Index {
    /// Reads every name of the snapshot once (O(names)); a name that cannot be read is skipped
    /// (a lookup of it fails on its own).
    pub fn build(snap: &Snapshot<'_>) -> Index {
        let mut ents = HashSet::new();
        let d = snap.domain();
        for i in 0..snap.len() {
            let Ok(a) = snap.answer(i) else { continue };
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
        Index {
            empty_non_terminals: ents,
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

/// The answer to one query, or `None` when nothing should be sent (shorter than a DNS header,
/// or not a query). Never panics, whatever the bytes (fuzz target `dns_query`).
pub fn respond(zone: &Zone<'_>, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
    // Never answer a response: two servers would otherwise bounce packets forever.
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let req = match Message::from_vec(query) {
        Ok(m) => m,
        Err(_) => return Some(bare_formerr(query)),
    };
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut limit = match transport {
        Transport::Udp => 512,
        Transport::Tcp => TCP_MAX,
    };
    if let Some(e) = &req.edns {
        let mut ours = Edns::new();
        ours.set_max_payload(EDNS_PAYLOAD);
        ours.set_version(0);
        resp.set_edns(ours);
        if transport == Transport::Udp {
            limit = usize::from(e.max_payload().clamp(512, EDNS_PAYLOAD));
        }
    }
    if req.metadata.op_code != OpCode::Query {
        resp.metadata.response_code = ResponseCode::NotImp;
        return Some(encode(&resp, limit));
    }
    let [q] = req.queries.as_slice() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return Some(encode(&resp, limit));
    };
    resp.add_query(q.clone());
    if req.edns.as_ref().is_some_and(|e| e.version() > 0) {
        resp.metadata.response_code = ResponseCode::BADVERS;
        return Some(encode(&resp, limit));
    }
    answer(zone, q, &mut resp, limit);
    Some(encode(&resp, limit))
}

/// FORMERR for a packet hickory-proto cannot parse: the 12-byte header alone (ID, opcode and RD
/// of the query), never larger than what came in.
fn bare_formerr(query: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 12];
    h[0] = query[0];
    h[1] = query[1];
    h[2] = 0x80 | (query[2] & 0x79); // QR, the opcode, RD
    h[3] = ResponseCode::FormErr.low();
    h
}

/// Fills `resp` (which already carries the question) for one question.
fn answer(zone: &Zone<'_>, q: &Query, resp: &mut Message, limit: usize) {
    let qtype = q.query_type();
    if q.query_class() != DNSClass::IN || matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        resp.metadata.response_code = ResponseCode::Refused;
        return;
    }
    let labels: Vec<&[u8]> = q.name().iter().collect();
    if let Some(addr) = reverse_address(&labels) {
        return answer_reverse(zone, q, addr, resp);
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
        // The apex, `D`: the SOA answered under the query's spelling, like every answer.
        let mut soa = soa_record(snap);
        soa.name = owner.clone();
        let ns = Record::from_rdata(owner.clone(), ttl, RData::NS(NS(name(NS_NAME))));
        match qtype {
            RecordType::SOA => {
                resp.add_answer(soa);
            }
            RecordType::NS => {
                resp.add_answer(ns);
            }
            RecordType::ANY => {
                resp.add_answer(soa);
                resp.add_answer(ns);
            }
            _ => {
                resp.add_authority(soa);
            }
        }
        return;
    }
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
            resp.add_authority(soa_record(snap));
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
            resp.add_authority(soa_record(snap));
            return;
        }
        Err(_) => {
            *resp = servfail(resp);
            return;
        }
    };
    // Build no more records than could fit: every A/AAAA record takes at least 16 bytes.
    let cap = limit / 16 + 1;
    let mut records = Vec::new();
    // Stops at `cap` whatever the size of the name: the work of a query is bounded by what its
    // answer can hold, not by the group behind it.
    let mut add = |family: Family| {
        for m in found.members() {
            if records.len() >= cap {
                break;
            }
            let Ok(m) = m else { return false };
            m.for_each_addr(family, |a| {
                let rdata = match family {
                    Family::V4 => <[u8; 4]>::try_from(a).map(|b| RData::A(A(Ipv4Addr::from(b)))),
                    Family::V6 => {
                        <[u8; 16]>::try_from(a).map(|b| RData::AAAA(AAAA(Ipv6Addr::from(b))))
                    }
                };
                if let Ok(rdata) = rdata {
                    records.push(Record::from_rdata(owner.clone(), ttl, rdata));
                }
            });
        }
        true
    };
    let ok = match qtype {
        RecordType::A => add(Family::V4),
        RecordType::AAAA => add(Family::V6),
        RecordType::ANY => add(Family::V4) && add(Family::V6),
        _ => true,
    };
    if !ok {
        *resp = servfail(resp);
        return;
    }
    if records.is_empty() {
        resp.add_authority(soa_record(snap));
    } else {
        resp.add_answers(records);
    }
}

/// PTR for an address of the snapshot; REFUSED for any other reverse name (not our zone).
fn answer_reverse(zone: &Zone<'_>, q: &Query, addr: Addr, resp: &mut Message) {
    let Some((snap, _)) = zone.served else {
        resp.metadata.response_code = ResponseCode::Refused;
        return;
    };
    let inst = match addr {
        Addr::V4(a) => snap.reverse_v4(a),
        Addr::V6(a) => snap.reverse_v6(a),
    };
    let names: Result<Vec<&[u8]>, _> = match inst {
        Ok(None) => {
            // Not an instance address: not ours to answer, another server may know it.
            resp.metadata.response_code = ResponseCode::Refused;
            return;
        }
        Ok(Some(inst)) => std::iter::once(inst.name()).chain(inst.aliases()).collect(),
        Err(e) => Err(e),
    };
    let Ok(names) = names else {
        *resp = servfail(resp);
        return;
    };
    let ttl = snap.header().interval_secs;
    resp.metadata.authoritative = true;
    if !matches!(q.query_type(), RecordType::PTR | RecordType::ANY) {
        return;
    }
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

/// An address named by a complete reverse name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// `d.c.b.a.in-addr.arpa` (each 0-255, no leading zeros) or the 32 nibbles of `ip6.arpa`.
fn reverse_address(labels: &[&[u8]]) -> Option<Addr> {
    let is = |l: &[u8], s: &str| l.eq_ignore_ascii_case(s.as_bytes());
    match labels {
        [d, c, b, a, x, y] if is(x, "in-addr") && is(y, "arpa") => {
            let octet = |l: &[u8]| -> Option<u8> {
                let ok = !l.is_empty()
                    && l.len() <= 3
                    && l.iter().all(u8::is_ascii_digit)
                    && (l.len() == 1 || l[0] != b'0');
                ok.then(|| std::str::from_utf8(l).ok()?.parse().ok())?
            };
            Some(Addr::V4([octet(a)?, octet(b)?, octet(c)?, octet(d)?]))
        }
        [nibbles @ .., x, y] if nibbles.len() == 32 && is(x, "ip6") && is(y, "arpa") => {
            let mut out = [0u8; 16];
            for (i, l) in nibbles.iter().rev().enumerate() {
                let [c] = l else { return None };
                let v = (*c as char).to_digit(16)? as u8;
                out[i / 2] |= if i % 2 == 0 { v << 4 } else { v };
            }
            Some(Addr::V6(out))
        }
        _ => None,
    }
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap_or_else(|_| Name::root())
}

/// The domain as a DNS name (`ec2.`).
fn apex(snap: &Snapshot<'_>) -> Name {
    let d = String::from_utf8_lossy(snap.domain());
    name(&format!("{d}."))
}

/// `D`'s SOA: serial = the snapshot's generation (unix seconds; wraps after 2106 as RFC 1982
/// serial arithmetic allows), refresh = retry = negative TTL = `interval`.
fn soa_record(snap: &Snapshot<'_>) -> Record {
    let h = snap.header();
    let ttl = h.interval_secs;
    let i = i32::try_from(ttl).unwrap_or(i32::MAX);
    Record::from_rdata(
        apex(snap),
        ttl,
        RData::SOA(SOA::new(
            name(NS_NAME),
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

/// The wire form within `limit`: whole if it fits, else the first answers that fit with TC set.
fn encode(resp: &Message, limit: usize) -> Vec<u8> {
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
    m.metadata.truncation = true;
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
        h[2] = 0x82; // QR, TC
        h[3] = ResponseCode::ServFail.low();
        h
    })
}

#[cfg(test)]
mod tests;
