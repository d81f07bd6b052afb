//! `ec2cached export`: the snapshot's names in the formats DNS servers load.
//!
//! Every format says what the stub ([`crate::respond`]) says, but for three things (docs/dns.md,
//! "It also differs from the stub"): at most [`MAX_RECORDS`] records of a name and type, a
//! `TXT "no address"` record on a name without addresses, and `ns.invalid.` as the zone files'
//! NS. The same names, addresses and TTL (`interval`), `I.D` as the name of an address, then the
//! numbered names that single its instance out. Where two live instances share an address (two VPCs), the first launched has it,
//! as in the module's reverse lookups. Output is deterministic: one snapshot, one text.
//!
//! What every format shares:
//!
//! * **Every name, addresses or not.** A name whose instances have no address (of either family,
//!   e.g. `address = "public"` without a public IP) answers NODATA from the stub: the exports keep
//!   it with one record of another type, `TXT "no address"` ([`NO_ADDRESS_TXT`]), so that the
//!   server loading them answers NODATA for A and AAAA too (NXDOMAIN would deny the name).
//! * **No duplicate records** (RFC 2181 §5: an RRset is a set): two instances of one name with
//!   one address give that address once.
//! * **At most [`MAX_RECORDS`] records of a type per name** (A, AAAA, PTR): the first in launch
//!   order. BIND refuses to load a zone with a larger RRset (`max-records-per-type`, 100 by
//!   default since 9.18.28). A name that was cut is listed ([`Cut`]) in the export's own comment
//!   at the top and returned to the caller, which warns on stderr.
//! * **SOA and NS of the zone's own name** (RFC 6303 style, a zone served locally): SOA
//!   `APEX nobody.invalid. SERIAL I I 604800 I` (serial = generation, I = interval). The NS is the
//!   apex itself in the unbound export, as in RFC 6303; in zone files it is [`ZONE_FILE_NS`],
//!   a name that has no address anywhere (RFC 6761: `.invalid`), because BIND refuses to load
//!   a primary zone whose NS inside the zone has no address (and the apex has none here). Either
//!   way no resolver priming from the NS goes to an address (`localhost.` sent it to 127.0.0.1).
//!
//! The formats:
//!
//! * [`Format::Zone`]: the forward zone, `$ORIGIN D.`, `$TTL`, SOA and NS, owner names relative
//!   to `D`.
//! * [`reverse_zones`]: one zone per `/24` of IPv4 (`0.20.10.in-addr.arpa.`) and per `/64` of
//!   IPv6 (16 nibbles), each with its SOA and NS, holding the PTR records; never wider, so that
//!   a server loading them claims no more address space than the instances' own networks.
//! * [`Format::Hosts`]: `/etc/hosts` lines. An instance's line first (`ADDR I.D numbered...`,
//!   which a server such as dnsmasq uses for the address's PTR), then `ADDR G.D`, `ADDR S.G.D`.
//!   A hosts file cannot hold a name without an address: such a name is a comment line.
//! * [`Format::Dnsmasq`]: a conf snippet: `local=/D/` (names under `D` are answered from here or
//!   NXDOMAIN, never forwarded), `host-record=` lines with the TTL, instances first, and a
//!   `txt-record=` for a name without addresses (dnsmasq then answers NODATA for A and AAAA).
//! * [`Format::Unbound`]: `server:` clauses: `local-zone: "D." static`, the SOA and NS as
//!   `local-data`, every address as `local-data`, and `local-data-ptr` for reverse lookups
//!   (unbound makes a zone of the PTR's name alone).

use crate::{soa_serial, SOA_EXPIRE, SOA_RNAME};
use nss_ec2_snapshot::{Corrupt, Family, Kind, Snapshot};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The most records a name gets of one type (A, AAAA, PTR) in an export: the first, in launch
/// order. BIND (9.18.28 and later, 9.20) refuses to load a zone holding a larger RRset
/// (`max-records-per-type`, default 100: "too many records"); NSD, unbound and dnsmasq take
/// more, so this one cap keeps every export loadable by all four with their defaults, and every
/// server answers the same. 100 A records (about 1.6 KB) are more than a UDP answer carries
/// anyway (about 70 within 1232 bytes).
pub const MAX_RECORDS: usize = 100;

/// The NS of the zone files (`zone`, `reverse-zone`): a name under `.invalid` (RFC 6761), which
/// has no address anywhere. RFC 6303 names the zone's apex, as the unbound export does, but
/// BIND refuses to load a primary zone whose NS inside the zone has no address ("NS 'ec2' has
/// no address records (A or AAAA)", whatever `check-integrity` says), and the apex must have
/// none.
pub const ZONE_FILE_NS: &str = "ns.invalid.";

/// The text of the TXT record that keeps a name without addresses in an export.
pub const NO_ADDRESS_TXT: &str = "no address";

/// The single-file formats of `ec2cached export --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `/etc/hosts` lines.
    Hosts,
    /// The forward zone file of `D`.
    Zone,
    /// A dnsmasq conf snippet.
    Dnsmasq,
    /// unbound `local-zone`/`local-data`.
    Unbound,
}

/// Why an export was refused: the snapshot cannot be read whole, or holds a name that is not a
/// DNS name (an export is all or nothing: a partial zone would deny names that exist).
#[derive(Debug, PartialEq, Eq)]
pub struct ExportError(pub String);

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExportError {}

impl From<Corrupt> for ExportError {
    fn from(c: Corrupt) -> Self {
        ExportError(c.to_string())
    }
}

/// A name whose records of one type were cut to [`MAX_RECORDS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The owner name, with the final dot (`us-east-1.ec2.`, `6.0.20.10.in-addr.arpa.`).
    pub name: String,
    /// `A`, `AAAA` or `PTR`.
    pub rtype: &'static str,
    /// How many distinct records the name has; [`MAX_RECORDS`] of them are exported.
    pub total: usize,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {MAX_RECORDS} of {} records exported, {} left out",
            self.name,
            self.rtype,
            self.total,
            self.total - MAX_RECORDS
        )
    }
}

/// A single-file export: its text and the names it cut.
#[derive(Debug, PartialEq, Eq)]
pub struct Export {
    /// The file.
    pub text: String,
    /// Every name whose records were cut to [`MAX_RECORDS`] (also listed in the text's comment).
    pub cuts: Vec<Cut>,
}

/// A name as text, checked: labels of 1-63 bytes of `[a-z0-9_-]`, at most 253 bytes in all.
fn dns_name(bytes: &[u8]) -> Result<&str, ExportError> {
    let ok = !bytes.is_empty()
        && bytes.len() <= 253
        && bytes.split(|&c| c == b'.').all(|l| {
            (1..=63).contains(&l.len())
                && l.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_".contains(c))
        });
    if !ok {
        return Err(ExportError(format!(
            "the snapshot holds a name that is not a DNS name: {:?}",
            String::from_utf8_lossy(bytes)
        )));
    }
    std::str::from_utf8(bytes).map_err(|_| ExportError("name is not UTF-8".into()))
}

fn addr(family: Family, a: &[u8]) -> Option<IpAddr> {
    match family {
        Family::V4 => <[u8; 4]>::try_from(a)
            .ok()
            .map(|b| Ipv4Addr::from(b).into()),
        Family::V6 => <[u8; 16]>::try_from(a)
            .ok()
            .map(|b| Ipv6Addr::from(b).into()),
    }
}

fn rtype(family: Family) -> &'static str {
    match family {
        Family::V4 => "A",
        Family::V6 => "AAAA",
    }
}

/// The records of one type of one name: each once, in order, at most [`MAX_RECORDS`]; and how
/// many distinct ones there were.
struct Capped<T> {
    kept: Vec<T>,
    seen: HashSet<T>,
    total: usize,
}

impl<T: Copy + Eq + std::hash::Hash> Capped<T> {
    fn new() -> Self {
        Capped {
            kept: Vec::new(),
            seen: HashSet::new(),
            total: 0,
        }
    }

    fn push(&mut self, v: T) {
        // A linear look while few (most names have one record), a set beyond.
        const LINEAR: usize = 8;
        let new = if self.total < LINEAR {
            !self.kept.contains(&v)
        } else {
            if self.seen.is_empty() {
                self.seen.extend(self.kept.iter().copied());
            }
            self.seen.insert(v)
        };
        if new {
            self.total += 1;
            if self.kept.len() < MAX_RECORDS {
                self.kept.push(v);
            }
        }
    }

    /// The kept records, and the cut if there was one.
    fn finish(self, name: impl FnOnce() -> String, rtype: &'static str) -> (Vec<T>, Option<Cut>) {
        let cut = (self.total > MAX_RECORDS).then(|| Cut {
            name: name(),
            rtype,
            total: self.total,
        });
        (self.kept, cut)
    }
}

/// Both families of addresses, each deduplicated and capped; the cuts go to `cuts`.
fn capped_addrs(
    name: &str,
    cuts: &mut Vec<Cut>,
    mut each: impl FnMut(Family, &mut dyn FnMut(&[u8])) -> Result<(), Corrupt>,
) -> Result<Vec<IpAddr>, ExportError> {
    let mut out = Vec::new();
    for family in [Family::V4, Family::V6] {
        let mut c = Capped::new();
        each(family, &mut |b| {
            if let Some(a) = addr(family, b) {
                c.push(a);
            }
        })?;
        let (kept, cut) = c.finish(|| format!("{name}."), rtype(family));
        out.extend(kept);
        cuts.extend(cut);
    }
    Ok(out)
}

/// One instance: its `I.D` name, its numbered names, its addresses (as its `I.D` has them).
struct Named<'a> {
    id: &'a str,
    aliases: Vec<&'a str>,
    addrs: Vec<IpAddr>,
}

/// Every live instance, in launch order, with its names and addresses. The cuts are those of
/// its `I.D`, which [`names`] reports: not reported again.
fn instances<'a>(snap: &'a Snapshot<'a>) -> Result<Vec<Named<'a>>, ExportError> {
    let mut out = Vec::new();
    for i in 0..snap.header().instances as usize {
        let inst = snap.instance(i)?;
        let mut aliases = Vec::new();
        for a in inst.aliases() {
            aliases.push(dns_name(a?)?);
        }
        let id = dns_name(inst.name()?)?;
        let addrs = capped_addrs(id, &mut Vec::new(), |family, f| {
            inst.for_each_addr(family, f);
            Ok(())
        })?;
        out.push(Named { id, aliases, addrs });
    }
    Ok(out)
}

/// The address → names map of reverse lookups: the first launched instance holding an address,
/// its `I.D` then its numbered names, at most [`MAX_RECORDS`] (the cuts go to `cuts`).
fn reverse_map<'a>(named: &[Named<'a>], cuts: &mut Vec<Cut>) -> BTreeMap<IpAddr, Vec<&'a str>> {
    let mut map = BTreeMap::new();
    for n in named {
        for a in &n.addrs {
            map.entry(*a).or_insert_with(|| {
                let total = 1 + n.aliases.len();
                if total > MAX_RECORDS {
                    cuts.push(Cut {
                        name: format!("{}.", reverse_name(a)),
                        rtype: "PTR",
                        total,
                    });
                }
                std::iter::once(n.id)
                    .chain(n.aliases.iter().copied())
                    .take(MAX_RECORDS)
                    .collect()
            });
        }
    }
    map
}

/// A name, what it stands for, and its addresses (both families, deduplicated and capped).
type NameAddrs<'a> = (&'a str, Kind, Vec<IpAddr>);

/// Every name with its addresses, in the snapshot's order; the cuts go to `cuts`.
fn names<'a>(
    snap: &'a Snapshot<'a>,
    cuts: &mut Vec<Cut>,
) -> Result<Vec<NameAddrs<'a>>, ExportError> {
    let mut out = Vec::with_capacity(snap.len());
    for i in 0..snap.len() {
        let a = snap.answer(i)?;
        let name = dns_name(a.name())?;
        let addrs = capped_addrs(name, cuts, |family, f| a.for_each_addr(family, f))?;
        out.push((name, a.kind(), addrs));
    }
    Ok(out)
}

fn header_comment(snap: &Snapshot<'_>, format: &str, comment: &str, cuts: &[Cut]) -> String {
    let h = snap.header();
    let mut out = format!(
        "{comment} ec2cached export --format {format}: the names of {d} from the snapshot generated at \
         {gen} (unix), {n} names, {i} instances.\n{comment} Generated: edit the daemon's configuration, not this file.\n",
        d = String::from_utf8_lossy(snap.domain()),
        gen = h.generated_unix,
        n = h.names,
        i = h.instances,
    );
    if !cuts.is_empty() {
        let sets = match cuts.len() {
            1 => "1 record set holds".to_string(),
            n => format!("{n} record sets hold"),
        };
        let _ = writeln!(
            out,
            "{comment} Cut: {sets} more than {MAX_RECORDS} records (the most BIND loads, \
             max-records-per-type); each keeps its first {MAX_RECORDS}, in launch order:"
        );
        for c in cuts {
            let _ = writeln!(out, "{comment}   {c}");
        }
    }
    out
}

/// The SOA and NS of a zone file whose apex is `origin` (with the final dot).
fn soa_lines(out: &mut String, snap: &Snapshot<'_>, origin: &str) {
    let ttl = snap.header().interval_secs;
    let _ = writeln!(
        out,
        "@\tIN\tSOA\t{origin} {SOA_RNAME} ( {serial} {ttl} {ttl} {SOA_EXPIRE} {ttl} )\n@\tIN\tNS\t{ZONE_FILE_NS}",
        serial = soa_serial(snap),
    );
}

/// The names as `format`.
pub fn forward(snap: &Snapshot<'_>, format: Format) -> Result<String, ExportError> {
    forward_with_cuts(snap, format).map(|e| e.text)
}

/// The names as `format`, and the names it cut to [`MAX_RECORDS`] records.
pub fn forward_with_cuts(snap: &Snapshot<'_>, format: Format) -> Result<Export, ExportError> {
    let d = dns_name(snap.domain())?;
    let ttl = snap.header().interval_secs;
    let named = instances(snap)?;
    let mut cuts = Vec::new();
    let all = names(snap, &mut cuts)?;
    // unbound also carries the PTR records (local-data-ptr).
    let ptrs = match format {
        Format::Unbound => reverse_map(&named, &mut cuts),
        _ => BTreeMap::new(),
    };
    let mut out = String::new();
    match format {
        Format::Zone => {
            out += &header_comment(snap, "zone", ";", &cuts);
            let _ = writeln!(out, "$ORIGIN {d}.\n$TTL {ttl}");
            soa_lines(&mut out, snap, &format!("{d}."));
            let suffix = format!(".{d}");
            for (name, _, addrs) in &all {
                let rel = name.strip_suffix(&suffix).unwrap_or(name);
                for a in addrs {
                    let t = if a.is_ipv4() { "A" } else { "AAAA" };
                    let _ = writeln!(out, "{rel}\tIN\t{t}\t{a}");
                }
                if addrs.is_empty() {
                    let _ = writeln!(out, "{rel}\tIN\tTXT\t\"{NO_ADDRESS_TXT}\"");
                }
            }
        }
        Format::Hosts => {
            out += &header_comment(snap, "hosts", "#", &cuts);
            // Instance lines first: the first name of an address's first line is its PTR.
            address_lines(&mut out, &named, &all, |a, names| {
                format!("{a}\t{}", names.join(" "))
            });
            for (name, _, addrs) in &all {
                if addrs.is_empty() {
                    let _ = writeln!(
                        out,
                        "# {name}: no address (a hosts file cannot hold it: --format dnsmasq can)"
                    );
                }
            }
        }
        Format::Dnsmasq => {
            out += &header_comment(snap, "dnsmasq", "#", &cuts);
            let _ = writeln!(out, "local=/{d}/");
            // One address a line (host-record takes one of each family).
            address_lines(&mut out, &named, &all, |a, names| {
                host_records(names, a, ttl)
            });
            // A name with a TXT record answers NODATA for A and AAAA, not NXDOMAIN.
            for (name, _, addrs) in &all {
                if addrs.is_empty() {
                    let _ = writeln!(out, "txt-record={name},\"{NO_ADDRESS_TXT}\"");
                }
            }
        }
        Format::Unbound => {
            out += &header_comment(snap, "unbound", "#", &cuts);
            let serial = soa_serial(snap);
            let _ = writeln!(
                out,
                "server:\n  local-zone: \"{d}.\" static\n  local-data: \"{d}. {ttl} IN SOA {d}. {SOA_RNAME} {serial} {ttl} {ttl} {SOA_EXPIRE} {ttl}\"\n  local-data: \"{d}. {ttl} IN NS {d}.\""
            );
            for (name, _, addrs) in &all {
                for a in addrs {
                    let t = if a.is_ipv4() { "A" } else { "AAAA" };
                    let _ = writeln!(out, "  local-data: \"{name}. {ttl} IN {t} {a}\"");
                }
                if addrs.is_empty() {
                    let _ = writeln!(
                        out,
                        "  local-data: '{name}. {ttl} IN TXT \"{NO_ADDRESS_TXT}\"'"
                    );
                }
            }
            for (a, names) in ptrs {
                for n in names {
                    let _ = writeln!(out, "  local-data-ptr: \"{a} {ttl} {n}.\"");
                }
            }
        }
    }
    Ok(Export { text: out, cuts })
}

/// The lines of the hosts and dnsmasq formats, as `line(address, names)` makes them: first every
/// address of every instance with all its names (`I.D` first: these servers answer an address's
/// PTR with the first name of its first line), then every address of the group and service names.
fn address_lines(
    out: &mut String,
    named: &[Named<'_>],
    all: &[NameAddrs<'_>],
    line: impl Fn(&IpAddr, &[&str]) -> String,
) {
    for n in named {
        let names: Vec<&str> = std::iter::once(n.id)
            .chain(n.aliases.iter().copied())
            .collect();
        for a in &n.addrs {
            *out += &line(a, &names);
            out.push('\n');
        }
    }
    for (name, kind, addrs) in all {
        if !listed_with_instance(*kind) {
            for a in addrs {
                *out += &line(a, &[name]);
                out.push('\n');
            }
        }
    }
}

/// The longest dnsmasq conf line this export writes: dnsmasq reads a line into a buffer of
/// 1025 bytes (`MAXDNAME`) and refuses the rest as a bad option.
const DNSMASQ_LINE: usize = 1000;

/// `host-record=NAMES,ADDR,TTL`, on as many lines as the names need within [`DNSMASQ_LINE`]
/// bytes (an instance with many numbered names). `I.D` stays first on the first line: dnsmasq
/// answers an address's PTR with the first name of its first host-record.
fn host_records(names: &[&str], a: &IpAddr, ttl: u32) -> String {
    let tail = format!(",{a},{ttl}");
    let mut out = String::new();
    let mut line = String::new();
    for n in names {
        if !line.is_empty() && line.len() + 1 + n.len() + tail.len() > DNSMASQ_LINE {
            let _ = writeln!(out, "{line}{tail}");
            line.clear();
        }
        line += if line.is_empty() { "host-record=" } else { "," };
        line += n;
    }
    out + &line + &tail
}

/// Names written on an instance's own line (hosts, dnsmasq): `I.D` and the numbered names.
fn listed_with_instance(kind: Kind) -> bool {
    matches!(kind, Kind::Instance | Kind::GroupNth | Kind::ServiceNth)
}

/// One reverse zone: its origin (`0.20.10.in-addr.arpa.`), its text and the names it cut.
#[derive(Debug, PartialEq, Eq)]
pub struct ReverseZone {
    /// The zone's name, with the final dot.
    pub origin: String,
    /// The zone file.
    pub text: String,
    /// Its PTR names whose records were cut to [`MAX_RECORDS`] (also in the text's comment).
    pub cuts: Vec<Cut>,
}

/// The labels of an address's reverse name, most significant last, without the arpa suffix.
fn reverse_labels(a: &IpAddr) -> Vec<String> {
    match a {
        IpAddr::V4(v4) => v4.octets().iter().rev().map(u8::to_string).collect(),
        IpAddr::V6(v6) => v6
            .octets()
            .iter()
            .rev()
            .flat_map(|b| [format!("{:x}", b & 0xf), format!("{:x}", b >> 4)])
            .collect(),
    }
}

fn arpa(a: &IpAddr) -> &'static str {
    match a {
        IpAddr::V4(_) => "in-addr.arpa",
        IpAddr::V6(_) => "ip6.arpa",
    }
}

/// An address's reverse name, without the final dot (`6.0.20.10.in-addr.arpa`).
fn reverse_name(a: &IpAddr) -> String {
    format!("{}.{}", reverse_labels(a).join("."), arpa(a))
}

/// Labels of an address's reverse name that its zone's origin keeps: the /24 of IPv4 (3 labels),
/// the /64 of IPv6 (16 nibbles).
const fn zone_labels(v6: bool) -> usize {
    if v6 {
        16
    } else {
        3
    }
}

/// The PTR records as zone files: one per `/24` of IPv4 and per `/64` of IPv6 that holds an
/// instance address, in address order.
pub fn reverse_zones(snap: &Snapshot<'_>) -> Result<Vec<ReverseZone>, ExportError> {
    let ttl = snap.header().interval_secs;
    let named = instances(snap)?;
    let mut cuts = Vec::new();
    let map = reverse_map(&named, &mut cuts);
    // (origin, records, cuts) in address order: the map is sorted, so a zone's addresses are
    // consecutive.
    let mut zones: Vec<(String, String, Vec<Cut>)> = Vec::new();
    for (a, names) in map {
        let labels = reverse_labels(&a);
        let split = labels.len() - zone_labels(a.is_ipv6());
        let origin = format!("{}.{}.", labels[split..].join("."), arpa(&a));
        let owner = labels[..split].join(".");
        if zones.last().is_none_or(|(o, _, _)| *o != origin) {
            zones.push((origin, String::new(), Vec::new()));
        }
        let Some((origin, records, zone_cuts)) = zones.last_mut() else {
            continue;
        };
        let full = format!("{owner}.{origin}");
        zone_cuts.extend(cuts.iter().filter(|c| c.name == full).cloned());
        for n in names {
            let _ = writeln!(records, "{owner}\tIN\tPTR\t{n}.");
        }
    }
    Ok(zones
        .into_iter()
        .map(|(origin, records, cuts)| {
            let mut text = header_comment(snap, "reverse-zone", ";", &cuts);
            let _ = writeln!(text, "$ORIGIN {origin}\n$TTL {ttl}");
            soa_lines(&mut text, snap, &origin);
            text += &records;
            ReverseZone { origin, text, cuts }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nss_ec2_snapshot::{Instance, Name, Table};

    /// A table builder: names and instances of domain `ec2`.
    #[derive(Default)]
    struct Fleet(Table);

    impl Fleet {
        fn name(&mut self, name: &str, kind: Kind, members: Vec<u32>) -> u32 {
            self.0.names.push(Name {
                name: name.into(),
                kind,
                members,
            });
            self.0.names.len() as u32 - 1
        }

        /// An instance `i-ID.ec2` with these addresses; returns its index.
        fn instance(&mut self, id: &str, v4: Option<[u8; 4]>, v6: Vec<[u8; 16]>) -> u32 {
            let idx = self.0.instances.len() as u32;
            let name = self.name(&format!("{id}.ec2"), Kind::Instance, vec![idx]);
            self.0.instances.push(Instance {
                name,
                v4,
                v6,
                aliases: vec![],
            });
            idx
        }

        /// `N.G.ec2` for each member of group `g` (its numbered names, as aliases).
        fn group(&mut self, g: &str, members: Vec<u32>) {
            self.name(&format!("{g}.ec2"), Kind::Group, members.clone());
            for (n, m) in members.iter().enumerate() {
                let nth = self.name(&format!("{}.{g}.ec2", n + 1), Kind::GroupNth, vec![*m]);
                self.0.instances[*m as usize].aliases.push(nth);
            }
        }

        fn bytes(&self) -> Vec<u8> {
            crate::testing::encode(&self.0)
        }
    }

    fn v6(hi: u16, lo: u16) -> [u8; 16] {
        Ipv6Addr::new(0x2600, 0x1f18, 0, hi, 0, 0, 0, lo).octets()
    }

    fn every_format(bytes: &[u8]) -> Vec<(Format, Export)> {
        let snap = Snapshot::parse(bytes).unwrap();
        [
            Format::Zone,
            Format::Hosts,
            Format::Dnsmasq,
            Format::Unbound,
        ]
        .into_iter()
        .map(|f| (f, forward_with_cuts(&snap, f).unwrap()))
        .collect()
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| !l.starts_with([';', '#']))
            .collect()
    }

    #[test]
    fn a_name_without_addresses_is_in_every_export_with_a_txt_record() {
        let mut f = Fleet::default();
        let with = f.instance("i-a", Some([10, 0, 0, 1]), vec![]);
        let without = f.instance("i-b", None, vec![]);
        f.group("g", vec![with, without]);
        f.group("bare", vec![without]);
        for (format, e) in every_format(&f.bytes()) {
            let l = lines(&e.text);
            for name in ["i-b.ec2", "bare.ec2", "1.bare.ec2", "2.g.ec2"] {
                let rel = name.trim_end_matches(".ec2");
                let want = match format {
                    Format::Zone => format!("{rel}\tIN\tTXT\t\"no address\""),
                    Format::Unbound => format!("  local-data: '{name}. 30 IN TXT \"no address\"'"),
                    Format::Dnsmasq => format!("txt-record={name},\"no address\""),
                    Format::Hosts => format!(
                        "# {name}: no address (a hosts file cannot hold it: --format dnsmasq can)"
                    ),
                };
                let found = e.text.lines().filter(|l| **l == want).count();
                assert_eq!(found, 1, "{format:?} {name}:\n{}", e.text);
            }
            // A name with an address has none.
            assert!(!e.text.contains("i-a.ec2,\"no") && !e.text.contains("\ni-a\tIN\tTXT"));
            assert!(!e.text.contains("# g.ec2: no") && !e.text.contains("\ng\tIN\tTXT"));
            assert!(!l.is_empty());
        }
    }

    #[test]
    fn no_record_is_exported_twice() {
        let mut f = Fleet::default();
        // Two VPCs with the same addresses, and an instance listing one IPv6 address twice.
        let a = f.instance("i-a", Some([10, 0, 0, 1]), vec![v6(0, 1)]);
        let b = f.instance("i-b", Some([10, 0, 0, 1]), vec![v6(0, 1), v6(0, 1)]);
        f.group("g", vec![a, b]);
        for (format, e) in every_format(&f.bytes()) {
            let l = lines(&e.text);
            let count = |want: &str| l.iter().filter(|x| **x == want).count();
            let (g4, g6, b6) = match format {
                Format::Zone => (
                    "g\tIN\tA\t10.0.0.1",
                    "g\tIN\tAAAA\t2600:1f18::1",
                    "i-b\tIN\tAAAA\t2600:1f18::1",
                ),
                Format::Unbound => (
                    "  local-data: \"g.ec2. 30 IN A 10.0.0.1\"",
                    "  local-data: \"g.ec2. 30 IN AAAA 2600:1f18::1\"",
                    "  local-data: \"i-b.ec2. 30 IN AAAA 2600:1f18::1\"",
                ),
                Format::Dnsmasq => (
                    "host-record=g.ec2,10.0.0.1,30",
                    "host-record=g.ec2,2600:1f18::1,30",
                    "host-record=i-b.ec2,2.g.ec2,2600:1f18::1,30",
                ),
                Format::Hosts => (
                    "10.0.0.1\tg.ec2",
                    "2600:1f18::1\tg.ec2",
                    "2600:1f18::1\ti-b.ec2 2.g.ec2",
                ),
            };
            for want in [g4, g6, b6] {
                assert_eq!(count(want), 1, "{format:?} {want}:\n{}", e.text);
            }
            // unbound: one PTR set per address, the first launched's.
            if format == Format::Unbound {
                assert_eq!(count("  local-data-ptr: \"10.0.0.1 30 i-a.ec2.\""), 1);
                assert!(!e.text.contains("i-b.ec2.\"\n  local-data-ptr: \"10.0.0.1"));
            }
        }
        let bytes = f.bytes();
        let snap = Snapshot::parse(&bytes).unwrap();
        let zones = reverse_zones(&snap).unwrap();
        let ptr = |z: &ReverseZone, owner: &str| {
            lines(&z.text)
                .iter()
                .filter(|l| l.starts_with(&format!("{owner}\t")))
                .count()
        };
        assert_eq!(
            ptr(&zones[0], "1"),
            2,
            "i-a.ec2, 1.g.ec2: {}",
            zones[0].text
        );
    }

    #[test]
    fn a_name_gets_at_most_100_records_of_a_type_and_the_cut_is_said() {
        let mut f = Fleet::default();
        let members: Vec<u32> = (0..150u16)
            .map(|k| f.instance(&format!("i-{k}"), Some([10, 3, 0, k as u8]), vec![v6(0, k)]))
            .collect();
        f.group("huge", members.clone());
        // An instance with 120 numbered names (120 groups): 121 PTR records for its address.
        let many = f.instance("i-many", Some([10, 4, 0, 1]), vec![]);
        for k in 0..120 {
            f.group(&format!("g{k}"), vec![many]);
        }
        let cut = |name: &str, rtype, total| Cut {
            name: name.into(),
            rtype,
            total,
        };
        let forward = vec![cut("huge.ec2.", "A", 150), cut("huge.ec2.", "AAAA", 150)];
        let ptr = cut("1.0.4.10.in-addr.arpa.", "PTR", 121);
        for (format, e) in every_format(&f.bytes()) {
            let mut want = forward.clone();
            if format == Format::Unbound {
                want.push(ptr.clone());
            }
            assert_eq!(e.cuts, want, "{format:?}");
            // Said at the top of the export.
            let c = if format == Format::Zone { ';' } else { '#' };
            assert!(
                e.text.contains(&format!(
                    "\n{c} Cut: {} record sets hold more than 100 records (the most BIND loads, \
                     max-records-per-type); each keeps its first 100, in launch order:\n",
                    want.len()
                )),
                "{}",
                e.text
            );
            assert!(e.text.contains(&format!(
                "\n{c}   huge.ec2. A: 100 of 150 records exported, 50 left out\n"
            )));
            let l = lines(&e.text);
            let (a, aaaa): (Vec<&str>, Vec<&str>) = match format {
                Format::Zone => (
                    l.iter()
                        .filter_map(|x| x.strip_prefix("huge\tIN\tA\t"))
                        .collect(),
                    l.iter()
                        .filter_map(|x| x.strip_prefix("huge\tIN\tAAAA\t"))
                        .collect(),
                ),
                Format::Unbound => (
                    l.iter()
                        .filter_map(|x| x.strip_prefix("  local-data: \"huge.ec2. 30 IN A "))
                        .collect(),
                    l.iter()
                        .filter_map(|x| x.strip_prefix("  local-data: \"huge.ec2. 30 IN AAAA "))
                        .collect(),
                ),
                Format::Dnsmasq => l
                    .iter()
                    .filter_map(|x| x.strip_prefix("host-record=huge.ec2,"))
                    .partition(|x| !x.contains(':')),
                Format::Hosts => l
                    .iter()
                    .filter_map(|x| x.strip_suffix("\thuge.ec2"))
                    .partition(|x| !x.contains(':')),
            };
            assert_eq!((a.len(), aaaa.len()), (100, 100), "{format:?}");
            // The first 100, in launch order.
            assert!(
                a[0].starts_with("10.3.0.0") && a[99].starts_with("10.3.0.99"),
                "{a:?}"
            );
            assert!(aaaa[99].starts_with("2600:1f18::63"), "{aaaa:?}");
            if format == Format::Unbound {
                let ptrs = l
                    .iter()
                    .filter(|x| x.starts_with("  local-data-ptr: \"10.4.0.1 "))
                    .count();
                assert_eq!(ptrs, 100);
            }
        }
        let bytes = f.bytes();
        let snap = Snapshot::parse(&bytes).unwrap();
        let zones = reverse_zones(&snap).unwrap();
        let z = zones
            .iter()
            .find(|z| z.origin == "0.4.10.in-addr.arpa.")
            .unwrap();
        assert_eq!(z.cuts, [ptr]);
        assert_eq!(
            lines(&z.text)
                .iter()
                .filter(|l| l.starts_with("1\tIN\tPTR\t"))
                .count(),
            100
        );
        assert!(z.text.contains(
            "\n;   1.0.4.10.in-addr.arpa. PTR: 100 of 121 records exported, 21 left out\n"
        ));
        assert!(zones
            .iter()
            .filter(|z| z.origin != "0.4.10.in-addr.arpa.")
            .all(|z| z.cuts.is_empty()));
        // 100 is not cut.
        let mut f = Fleet::default();
        let members = (0..100u8)
            .map(|k| f.instance(&format!("i-{k}"), Some([10, 3, 0, k]), vec![]))
            .collect();
        f.group("full", members);
        for (format, e) in every_format(&f.bytes()) {
            assert!(e.cuts.is_empty() && !e.text.contains("Cut:"), "{format:?}");
        }
    }

    #[test]
    fn a_dnsmasq_line_stays_within_what_dnsmasq_reads() {
        let mut f = Fleet::default();
        let a = f.instance("i-a", Some([10, 0, 0, 1]), vec![]);
        for k in 0..120 {
            f.group(&format!("group-{k}"), vec![a]);
        }
        let bytes = f.bytes();
        let snap = Snapshot::parse(&bytes).unwrap();
        let d = forward(&snap, Format::Dnsmasq).unwrap();
        let records: Vec<&str> = d
            .lines()
            .filter(|l| l.starts_with("host-record=") && l.ends_with(",10.0.0.1,30"))
            .filter(|l| !l.starts_with("host-record=group-"))
            .collect();
        assert!(records.len() > 1, "{d}");
        assert!(records[0].starts_with("host-record=i-a.ec2,1.group-0.ec2,"));
        assert!(d.lines().all(|l| l.len() <= DNSMASQ_LINE), "{d}");
        // Every numbered name once, across the lines.
        let names: Vec<&str> = records
            .iter()
            .flat_map(|l| l["host-record=".len()..].split(','))
            .filter(|n| n.ends_with(".ec2"))
            .collect();
        assert_eq!(names.len(), 121);
        assert_eq!(names.iter().collect::<HashSet<_>>().len(), 121);
    }

    #[test]
    fn soa_and_ns_are_the_zone_s_own_name_and_the_apex_has_no_address() {
        let mut f = Fleet::default();
        let a = f.instance("i-a", Some([10, 0, 0, 1]), vec![v6(0, 1)]);
        f.group("g", vec![a]);
        let bytes = f.bytes();
        let snap = Snapshot::parse(&bytes).unwrap();
        let serial = crate::testing::GEN as u32;
        let zone = forward(&snap, Format::Zone).unwrap();
        assert!(zone.contains(&format!(
            "\n@\tIN\tSOA\tec2. nobody.invalid. ( {serial} 30 30 604800 30 )\n@\tIN\tNS\tns.invalid.\n"
        )));
        let unbound = forward(&snap, Format::Unbound).unwrap();
        assert!(unbound.contains(&format!(
            "  local-data: \"ec2. 30 IN SOA ec2. nobody.invalid. {serial} 30 30 604800 30\"\n  \
             local-data: \"ec2. 30 IN NS ec2.\"\n"
        )));
        let zones = reverse_zones(&snap).unwrap();
        assert_eq!(zones.len(), 2);
        for z in &zones {
            assert!(z.text.contains(&format!(
                "\n@\tIN\tSOA\t{} nobody.invalid. ( {serial} 30 30 604800 30 )\n@\tIN\tNS\tns.invalid.\n",
                z.origin
            )));
        }
        for text in [&zone, &unbound, &zones[0].text, &zones[1].text] {
            assert!(!text.contains("localhost"), "{text}");
            // No address record at an apex.
            assert!(
                !text.contains("\n@\tIN\tA") && !text.contains("\"ec2. 30 IN A"),
                "{text}"
            );
        }
    }

    #[test]
    fn reverse_zones_are_one_per_slash_24_and_slash_64_never_wider() {
        let mut f = Fleet::default();
        let a = f.instance("i-a", Some([10, 0, 0, 1]), vec![v6(0, 1), v6(1, 3)]);
        let b = f.instance("i-b", Some([10, 0, 1, 5]), vec![v6(0, 2)]);
        let c = f.instance("i-c", Some([54, 1, 2, 3]), vec![]);
        f.group("g", vec![a, b, c]);
        let bytes = f.bytes();
        let snap = Snapshot::parse(&bytes).unwrap();
        let zones = reverse_zones(&snap).unwrap();
        let origins: Vec<&str> = zones.iter().map(|z| z.origin.as_str()).collect();
        assert_eq!(
            origins,
            [
                "0.0.10.in-addr.arpa.",
                "1.0.10.in-addr.arpa.",
                "2.1.54.in-addr.arpa.",
                "0.0.0.0.0.0.0.0.8.1.f.1.0.0.6.2.ip6.arpa.",
                "1.0.0.0.0.0.0.0.8.1.f.1.0.0.6.2.ip6.arpa.",
            ]
        );
        let v6 = &zones[3].text;
        assert!(
            v6.contains("\n1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0\tIN\tPTR\ti-a.ec2.\n"),
            "{v6}"
        );
        assert!(
            v6.contains("\n2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0\tIN\tPTR\ti-b.ec2.\n"),
            "{v6}"
        );
        assert!(zones[2]
            .text
            .contains("\n3\tIN\tPTR\ti-c.ec2.\n3\tIN\tPTR\t3.g.ec2.\n"));
        // Every owner is one label (IPv4) or 16 nibbles (IPv6) below its origin.
        for z in &zones {
            for l in lines(&z.text).iter().filter(|l| !l.starts_with(['$', '@'])) {
                let owner = l.split('\t').next().unwrap();
                let want = if z.origin.ends_with("ip6.arpa.") {
                    16
                } else {
                    1
                };
                assert_eq!(owner.split('.').count(), want, "{l}");
            }
        }
    }
}
