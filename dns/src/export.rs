//! `ec2cached export`: the snapshot's names in the formats DNS servers load.
//!
//! Every format says the same as the stub ([`crate::respond`]): the same names, addresses and
//! TTL (`interval`), `I.D` as the name of an address, then the numbered names that single its
//! instance out. Where two live instances share an address (two VPCs), the first launched has it,
//! as in the module's reverse lookups. Output is deterministic: one snapshot, one text.
//!
//! * [`Format::Zone`]: the forward zone, `$ORIGIN D.`, `$TTL`, SOA (serial = generation) and NS
//!   (`localhost.`, RFC 6303 style: a zone served locally), owner names relative to `D`.
//! * [`reverse_zones`]: one zone per `/8` of IPv4 (`10.in-addr.arpa.`) and per `/32` of IPv6
//!   (`8.b.d.0.1.0.0.2.ip6.arpa.`), each with its SOA and NS, holding the PTR records.
//! * [`Format::Hosts`]: `/etc/hosts` lines. An instance's line first (`ADDR I.D numbered...`,
//!   which a server such as dnsmasq uses for the address's PTR), then `ADDR G.D`, `ADDR S.G.D`.
//! * [`Format::Dnsmasq`]: a conf snippet: `local=/D/` (names under `D` are answered from here or
//!   NXDOMAIN, never forwarded) and `host-record=` lines with the TTL, instances first.
//! * [`Format::Unbound`]: `server:` clauses: `local-zone: "D." static`, the SOA and NS as
//!   `local-data`, every address as `local-data`, and `local-data-ptr` for reverse lookups.

use crate::{soa_serial, NS_NAME, SOA_EXPIRE, SOA_RNAME};
use nss_ec2_snapshot::{Corrupt, Family, InstanceRef, Kind, Snapshot};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

fn addrs_of(inst: &InstanceRef<'_>) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for family in [Family::V4, Family::V6] {
        inst.for_each_addr(family, |a| out.extend(addr(family, a)));
    }
    out
}

/// One instance: its `I.D` name and its numbered names.
struct Named<'a> {
    id: &'a str,
    aliases: Vec<&'a str>,
    addrs: Vec<IpAddr>,
}

/// Every live instance, in launch order, with its names and addresses.
fn instances<'a>(snap: &'a Snapshot<'a>) -> Result<Vec<Named<'a>>, ExportError> {
    let mut out = Vec::new();
    for i in 0..snap.header().instances as usize {
        let inst = snap.instance(i)?;
        let mut aliases = Vec::new();
        for a in inst.aliases() {
            aliases.push(dns_name(a?)?);
        }
        out.push(Named {
            id: dns_name(inst.name()?)?,
            aliases,
            addrs: addrs_of(&inst),
        });
    }
    Ok(out)
}

/// The address → names map of reverse lookups: the first launched instance holding an address.
fn reverse_map<'a>(named: &[Named<'a>]) -> BTreeMap<IpAddr, Vec<&'a str>> {
    let mut map = BTreeMap::new();
    for n in named {
        for a in &n.addrs {
            map.entry(*a).or_insert_with(|| {
                let mut v = vec![n.id];
                v.extend(&n.aliases);
                v
            });
        }
    }
    map
}

/// Every name with its addresses (both families), in the snapshot's order.
/// A name, what it stands for, and its addresses (both families).
type NameAddrs<'a> = (&'a str, Kind, Vec<IpAddr>);

fn names<'a>(snap: &'a Snapshot<'a>) -> Result<Vec<NameAddrs<'a>>, ExportError> {
    let mut out = Vec::with_capacity(snap.len());
    for i in 0..snap.len() {
        let a = snap.answer(i)?;
        let mut addrs = Vec::new();
        for family in [Family::V4, Family::V6] {
            a.for_each_addr(family, |b| addrs.extend(addr(family, b)))?;
        }
        out.push((dns_name(a.name())?, a.kind(), addrs));
    }
    Ok(out)
}

fn header_comment(snap: &Snapshot<'_>, format: &str, comment: &str) -> String {
    let h = snap.header();
    format!(
        "{comment} ec2cached export --format {format}: the names of {d} from the snapshot generated at \
         {gen} (unix), {n} names, {i} instances.\n{comment} Generated: edit the daemon's configuration, not this file.\n",
        d = String::from_utf8_lossy(snap.domain()),
        gen = h.generated_unix,
        n = h.names,
        i = h.instances,
    )
}

fn soa_lines(out: &mut String, snap: &Snapshot<'_>) {
    let ttl = snap.header().interval_secs;
    let _ = writeln!(
        out,
        "@\tIN\tSOA\t{NS_NAME} {SOA_RNAME} ( {serial} {ttl} {ttl} {SOA_EXPIRE} {ttl} )\n@\tIN\tNS\t{NS_NAME}",
        serial = soa_serial(snap),
    );
}

/// The names as `format`.
pub fn forward(snap: &Snapshot<'_>, format: Format) -> Result<String, ExportError> {
    let d = dns_name(snap.domain())?;
    let ttl = snap.header().interval_secs;
    let named = instances(snap)?;
    let all = names(snap)?;
    let mut out = String::new();
    match format {
        Format::Zone => {
            out += &header_comment(snap, "zone", ";");
            let _ = writeln!(out, "$ORIGIN {d}.\n$TTL {ttl}");
            soa_lines(&mut out, snap);
            let suffix = format!(".{d}");
            for (name, _, addrs) in &all {
                let rel = name.strip_suffix(&suffix).unwrap_or(name);
                for a in addrs {
                    let t = if a.is_ipv4() { "A" } else { "AAAA" };
                    let _ = writeln!(out, "{rel}\tIN\t{t}\t{a}");
                }
            }
        }
        Format::Hosts => {
            out += &header_comment(snap, "hosts", "#");
            // Instance lines first: the first name of an address's first line is its PTR.
            address_lines(&mut out, &named, &all, |a, names| {
                format!("{a}\t{}", names.join(" "))
            });
        }
        Format::Dnsmasq => {
            out += &header_comment(snap, "dnsmasq", "#");
            let _ = writeln!(out, "local=/{d}/");
            // One address a line (host-record takes one of each family).
            address_lines(&mut out, &named, &all, |a, names| {
                format!("host-record={},{a},{ttl}", names.join(","))
            });
        }
        Format::Unbound => {
            out += &header_comment(snap, "unbound", "#");
            let serial = soa_serial(snap);
            let _ = writeln!(
                out,
                "server:\n  local-zone: \"{d}.\" static\n  local-data: \"{d}. {ttl} IN SOA {NS_NAME} {SOA_RNAME} {serial} {ttl} {ttl} {SOA_EXPIRE} {ttl}\"\n  local-data: \"{d}. {ttl} IN NS {NS_NAME}\""
            );
            for (name, _, addrs) in &all {
                for a in addrs {
                    let t = if a.is_ipv4() { "A" } else { "AAAA" };
                    let _ = writeln!(out, "  local-data: \"{name}. {ttl} IN {t} {a}\"");
                }
            }
            for (a, names) in reverse_map(&named) {
                for n in names {
                    let _ = writeln!(out, "  local-data-ptr: \"{a} {ttl} {n}.\"");
                }
            }
        }
    }
    Ok(out)
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

/// Names written on an instance's own line (hosts, dnsmasq): `I.D` and the numbered names.
fn listed_with_instance(kind: Kind) -> bool {
    matches!(kind, Kind::Instance | Kind::GroupNth | Kind::ServiceNth)
}

/// One reverse zone: its origin (`10.in-addr.arpa.`) and its text.
#[derive(Debug, PartialEq, Eq)]
pub struct ReverseZone {
    /// The zone's name, with the final dot.
    pub origin: String,
    /// The zone file.
    pub text: String,
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

/// The PTR records as zone files: one per `/8` of IPv4 and per `/32` of IPv6 that holds an
/// instance address, in address order.
pub fn reverse_zones(snap: &Snapshot<'_>) -> Result<Vec<ReverseZone>, ExportError> {
    let ttl = snap.header().interval_secs;
    let named = instances(snap)?;
    let mut zones: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (a, names) in reverse_map(&named) {
        let labels = reverse_labels(&a);
        // Labels kept in the zone's origin: the /8 (1 label) or the /32 (8 nibbles).
        let (keep, arpa) = match a {
            IpAddr::V4(_) => (1, "in-addr.arpa."),
            IpAddr::V6(_) => (8, "ip6.arpa."),
        };
        let split = labels.len() - keep;
        let origin = format!("{}.{arpa}", labels[split..].join("."));
        let owner = labels[..split].join(".");
        let text = zones.entry(origin.clone()).or_insert_with(|| {
            order.push(origin.clone());
            let mut t = header_comment(snap, "reverse-zone", ";");
            let _ = writeln!(t, "$ORIGIN {origin}\n$TTL {ttl}");
            soa_lines(&mut t, snap);
            t
        });
        for n in names {
            let _ = writeln!(text, "{owner}\tIN\tPTR\t{n}.");
        }
    }
    Ok(order
        .into_iter()
        .map(|origin| ReverseZone {
            text: zones.remove(&origin).unwrap_or_default(),
            origin,
        })
        .collect())
}
