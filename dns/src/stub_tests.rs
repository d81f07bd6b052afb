//! Issue 23: the stub's work per query, whole answers over TCP, minimal ANY, the reverse zones
//! of the exports, duplicates, DO/CD and the zone's own NS, and what is never answered.

use super::*;
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use nss_ec2_snapshot::{Instance, Kind, Table};
use std::sync::atomic::{AtomicU64, Ordering};

fn query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

/// The answer to `m` from `bytes`, and the steps the snapshot reader took for it (records read,
/// hash probes, addresses handed out: `Snapshot::metered`), the index built beforehand.
fn ask_counted(bytes: &[u8], m: &Message, transport: Transport) -> (Option<Message>, u64, usize) {
    let plain = Snapshot::parse(bytes).unwrap();
    let index = Index::build(&plain);
    let meter = AtomicU64::new(0);
    let snap = Snapshot::parse(bytes).unwrap().metered(&meter);
    let zone = Zone {
        domain: "ec2",
        served: Some((&snap, &index)),
    };
    let wire = respond(&zone, &m.to_vec().unwrap(), transport);
    let len = wire.as_ref().map_or(0, Vec::len);
    (
        wire.map(|w| Message::from_vec(&w).expect("the answer parses")),
        meter.load(Ordering::Relaxed),
        len,
    )
}

fn ask(bytes: &[u8], name: &str, qtype: RecordType) -> Message {
    ask_counted(bytes, &query(name, qtype), Transport::Udp)
        .0
        .unwrap()
}

/// `n` instances in one group `big.ec2` (10.2.x.y), the last two also with IPv6 (2600:10::k):
/// `v4only.ec2` is all but those two, `dual.ec2` the last 1000.
fn fleet(n: u32) -> Vec<u8> {
    let mut t = Table::default();
    for k in 0..n {
        t.names.push(nss_ec2_snapshot::Name {
            name: format!("i-{k}.ec2"),
            kind: Kind::Instance,
            members: vec![k],
        });
        let mut v6 = Vec::new();
        if k >= n - 2 {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&[0x26, 0, 0, 0x10]);
            a[15] = k as u8;
            v6.push(a);
        }
        t.instances.push(Instance {
            name: k,
            v4: Some([10, 2, (k >> 8) as u8, k as u8]),
            v6,
            ..Default::default()
        });
    }
    t.names.push(nss_ec2_snapshot::Name {
        name: "big.ec2".into(),
        kind: Kind::Group,
        members: (0..n).collect(),
    });
    t.names.push(nss_ec2_snapshot::Name {
        name: "v4only.ec2".into(),
        kind: Kind::Group,
        members: (0..n - 2).collect(),
    });
    t.names.push(nss_ec2_snapshot::Name {
        name: "dual.ec2".into(),
        kind: Kind::Group,
        members: (n.saturating_sub(1000)..n).collect(),
    });
    crate::testing::encode(&t)
}

/// Item 1: `AAAA` of a 100 000-member group of an IPv4-only fleet walked every member (3.7 ms a
/// query); now it reads no member at all, and `AAAA` of a group whose two IPv6 members come
/// last reads those two. Counted in snapshot steps, as the module's tests count.
#[test]
fn the_work_of_a_query_is_bounded_by_its_answer() {
    let bytes = fleet(100_000);
    let (r, steps, _) = ask_counted(
        &bytes,
        &query("v4only.ec2.", RecordType::AAAA),
        Transport::Udp,
    );
    let r = r.unwrap();
    assert!(r.answers.is_empty() && r.metadata.response_code == ResponseCode::NoError);
    assert!(
        steps < 50,
        "AAAA of a 100 000-member IPv4-only group: {steps} steps"
    );
    let (r, steps, _) = ask_counted(
        &bytes,
        &query("dual.ec2.", RecordType::AAAA),
        Transport::Udp,
    );
    assert_eq!(r.unwrap().answers.len(), 2);
    assert!(
        steps < 50,
        "AAAA of two members at the end of 1000: {steps} steps"
    );
    // A is bounded by what 512 bytes hold (33 records), not by the group.
    let (r, steps, _) = ask_counted(&bytes, &query("big.ec2.", RecordType::A), Transport::Udp);
    assert!(r.unwrap().metadata.truncation);
    assert!(
        steps < 200,
        "A of a 100 000-member group over UDP: {steps} steps"
    );
}

/// Item 2: past 64 KiB the stub set TC over TCP (Go's resolver gives up on it); and
/// hickory-proto writes owners whole after 120 names, so far fewer records fitted. Now every
/// owner is a pointer to the question: 4 000-odd records fill the 64 KiB, and TC is never set
/// over TCP (it is over UDP).
#[test]
fn tcp_answers_fill_64_kib_without_tc() {
    let bytes = fleet(100_000);
    let (r, _, len) = ask_counted(&bytes, &query("big.ec2.", RecordType::A), Transport::Tcp);
    let r = r.unwrap();
    assert!(!r.metadata.truncation, "TC over TCP");
    assert!(len <= TCP_MAX, "{len}");
    // 12 header + 13 question (big.ec2, type, class), then 16 a record.
    assert_eq!(r.answers.len(), (TCP_MAX - 12 - 13) / 16);
    assert!(r.answers.iter().all(|a| a.name.to_string() == "big.ec2."));
    // With EDNS the OPT record still comes last, whole.
    let mut m = query("BIG.ec2.", RecordType::A);
    m.set_edns(Edns::new());
    let (r, _, len) = ask_counted(&bytes, &m, Transport::Tcp);
    let r = r.unwrap();
    assert!(r.edns.is_some() && !r.metadata.truncation && len <= TCP_MAX);
    assert_eq!(
        r.answers[0].name.to_string(),
        "BIG.ec2.",
        "0x20: the query's spelling"
    );
    let (r, _, len) = ask_counted(&bytes, &m, Transport::Udp);
    assert!(r.unwrap().metadata.truncation && len <= usize::from(EDNS_PAYLOAD));
}

/// Item 4: ANY is answered minimally (RFC 8482): one RRset.
#[test]
fn any_gets_one_rrset() {
    let bytes = fleet(10);
    let r = ask(&bytes, "big.ec2.", RecordType::ANY);
    assert!(
        r.answers.iter().all(|a| matches!(a.data, RData::A(_))),
        "{r}"
    );
    assert_eq!(r.answers.len(), 10);
    let r = ask(&bytes, "ec2.", RecordType::ANY);
    assert_eq!(r.answers.len(), 1);
    assert!(matches!(r.answers[0].data, RData::SOA(_)));
}

/// Item 4: what cannot be parsed as a query is never answered (no FORMERR to bounce).
#[test]
fn garbage_is_never_answered() {
    let bytes = fleet(10);
    let snap = Snapshot::parse(&bytes).unwrap();
    let index = Index::build(&snap);
    let zone = Zone {
        domain: "ec2",
        served: Some((&snap, &index)),
    };
    let mut junk = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    junk.extend_from_slice(b"\xffgarbage");
    assert_eq!(respond(&zone, &junk, Transport::Udp), None);
}

fn soa_of(m: &Message) -> (String, String) {
    let soa = m
        .authorities
        .iter()
        .chain(&m.answers)
        .find_map(|r| match &r.data {
            RData::SOA(s) => Some((r.name.to_string(), s.mname.to_string())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no SOA: {m}"));
    soa
}

/// Item 6: the reverse zones the exports define (one per /24, one per /64) are served with
/// their SOA and NS; other addresses in them are NXDOMAIN and other types NODATA, both with
/// the SOA; names between a /64's apex and its addresses exist; above the zones is not ours.
#[test]
fn reverse_zones_are_served_whole() {
    let bytes = fleet(10);
    let r = ask(&bytes, "0.2.10.in-addr.arpa.", RecordType::SOA);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(
        soa_of(&r),
        ("0.2.10.in-addr.arpa.".into(), "0.2.10.in-addr.arpa.".into())
    );
    let r = ask(&bytes, "0.2.10.in-addr.arpa.", RecordType::NS);
    assert!(
        matches!(&r.answers[0].data, RData::NS(n) if n.0.to_string() == "0.2.10.in-addr.arpa.")
    );
    let r = ask(&bytes, "1.0.2.10.in-addr.arpa.", RecordType::AAAA);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(soa_of(&r).0, "0.2.10.in-addr.arpa.");
    let r = ask(&bytes, "200.0.2.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa_of(&r).0, "0.2.10.in-addr.arpa.");
    let r = ask(&bytes, "1.0.2.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        r.answers[0].data,
        RData::PTR(hickory_proto::rr::rdata::PTR(
            Name::from_ascii("i-1.ec2.").unwrap()
        ))
    );
    for above in [
        "2.10.in-addr.arpa.",
        "10.in-addr.arpa.",
        "1.1.2.10.in-addr.arpa.",
    ] {
        let r = ask(&bytes, above, RecordType::SOA);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{above}");
    }
    // IPv6: 2600:0010::/64 holds i-8 and i-9 (::8, ::9).
    let apex = "0.0.0.0.0.0.0.0.0.1.0.0.0.0.6.2.ip6.arpa.";
    let r = ask(&bytes, apex, RecordType::SOA);
    assert_eq!(soa_of(&r), (apex.to_string(), apex.to_string()));
    let between = format!("0.0.0.0.{apex}");
    let r = ask(&bytes, &between, RecordType::PTR);
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::NoError,
        "an empty non-terminal"
    );
    let nowhere = format!("f.0.0.0.{apex}");
    let r = ask(&bytes, &nowhere, RecordType::PTR);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let addr = format!("9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.{apex}");
    let r = ask(&bytes, &addr, RecordType::PTR);
    assert_eq!(r.answers.len(), 1, "{r}");
}

/// Item 9: two instances with one address (two VPCs) answer it once.
#[test]
fn an_address_is_answered_once() {
    let mut t = Table::default();
    for k in 0..2u32 {
        t.names.push(nss_ec2_snapshot::Name {
            name: format!("i-{k}.ec2"),
            kind: Kind::Instance,
            members: vec![k],
        });
        t.instances.push(Instance {
            name: k,
            v4: Some([10, 0, 0, 1]),
            ..Default::default()
        });
    }
    t.names.push(nss_ec2_snapshot::Name {
        name: "g.ec2".into(),
        kind: Kind::Group,
        members: vec![0, 1],
    });
    let bytes = crate::testing::encode(&t);
    assert_eq!(ask(&bytes, "g.ec2.", RecordType::A).answers.len(), 1);
}

/// Item 11: DO (RFC 3225) and CD (RFC 4035) are copied; the NS and the SOA's MNAME are the
/// zone's own name (RFC 6303), never `localhost.`.
#[test]
fn do_and_cd_are_copied_and_the_zone_names_itself() {
    let bytes = fleet(10);
    let mut m = query("big.ec2.", RecordType::A);
    let mut e = Edns::new();
    e.set_dnssec_ok(true);
    m.set_edns(e);
    m.metadata.checking_disabled = true;
    let r = ask_counted(&bytes, &m, Transport::Udp).0.unwrap();
    assert!(r.metadata.checking_disabled);
    assert!(r.edns.as_ref().unwrap().flags().dnssec_ok);
    let r = ask(&bytes, "big.ec2.", RecordType::A);
    assert!(!r.metadata.checking_disabled && r.edns.is_none());
    let r = ask(&bytes, "ec2.", RecordType::NS);
    assert!(matches!(&r.answers[0].data, RData::NS(n) if n.0.to_string() == "ec2."));
    assert_eq!(
        soa_of(&ask(&bytes, "nope.ec2.", RecordType::A)),
        ("ec2.".into(), "ec2.".into())
    );
}

/// Review of item 6: a name inside a served zone that is no address (a bad label, too many
/// labels, a DNS-SD browse name) is NXDOMAIN with the zone's SOA, as the exports' servers
/// answer, not REFUSED.
#[test]
fn other_names_inside_a_reverse_zone_do_not_exist() {
    let bytes = fleet(10);
    for n in [
        "x.1.0.2.10.in-addr.arpa.",
        "5.1.0.2.10.in-addr.arpa.",
        "01.0.2.10.in-addr.arpa.",
        "_dns-sd._udp.0.2.10.in-addr.arpa.",
        "x.0.0.0.0.0.0.0.0.0.1.0.0.0.0.6.2.ip6.arpa.",
    ] {
        let r = ask(&bytes, n, RecordType::PTR);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{n}");
        assert!(r.metadata.authoritative, "{n}");
        assert!(soa_of(&r).0.ends_with(".arpa."), "{n}");
    }
    // Outside every served zone: still not ours.
    let r = ask(&bytes, "x.1.0.99.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
}

/// Review of item 11: CD is copied on a SERVFAIL too.
#[test]
fn servfail_keeps_cd() {
    let mut m = Message::response(7, hickory_proto::op::OpCode::Query);
    m.metadata.checking_disabled = true;
    assert!(servfail(&m).metadata.checking_disabled);
}

/// Review of item 1: a trusted but hostile file whose names all list every member (overlapping
/// ranges) made the index read names × members; it stops at twice the file's member records.
#[test]
fn the_index_of_a_hostile_file_is_bounded_by_the_file() {
    let mut bytes = fleet(2000);
    let r32 = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let (names_off, names_len) = (
        r32(&bytes, 64 + 8) as usize,
        r32(&bytes, 64 + 8 + 4) as usize,
    );
    let members = r32(&bytes, 64 + 16 + 4) / 4;
    let instances = Snapshot::parse(&bytes).unwrap().header().instances;
    let take = members.min(instances);
    for rec in (names_off..names_off + names_len).step_by(16) {
        bytes[rec + 8..rec + 12].copy_from_slice(&0u32.to_le_bytes());
        bytes[rec + 12..rec + 16].copy_from_slice(&take.to_le_bytes());
    }
    nss_ec2_snapshot::format::seal_header(&mut bytes);
    let meter = AtomicU64::new(0);
    let snap = Snapshot::parse(&bytes).unwrap().metered(&meter);
    let names = snap.len() as u64;
    let _ = Index::build(&snap);
    let steps = meter.load(Ordering::Relaxed);
    // Without the bound: names × members × 2 (about 2 × 4 000 × 2 000 × 2 = 32 million).
    let bound = 8 * u64::from(members) + 40 * names + 20 * u64::from(instances);
    assert!(steps <= bound, "{steps} steps, bound {bound}");
}

/// The fast path ([`crate::fast`]) gives exactly the general path's bytes, or leaves the query
/// to it: every name of two snapshots (the fixture, and a fleet with a 5 000-member group),
/// names that do not exist or exist only as empty non-terminals, in other spellings, as A, AAAA
/// and other types, with and without EDNS (DO, payload sizes), RD and CD, over UDP and TCP, and
/// every one-byte corruption of some of them. The shapes clients send take the fast path.
#[test]
fn the_fast_path_answers_as_the_general_one() {
    let fixture = crate::testing::fixture();
    let big = fleet(5_000);
    let corp = crate::testing::fixture_multi_label();
    let mut names: Vec<String> = Vec::new();
    for bytes in [&fixture, &big, &corp] {
        let snap = Snapshot::parse(bytes).unwrap();
        for i in 0..snap.len() {
            if let Ok(a) = snap.answer(i) {
                let n = String::from_utf8(a.name().to_vec()).unwrap();
                if names.len() < 400 || i % 97 == 0 {
                    names.push(n);
                }
            }
        }
    }
    for extra in [
        "mysql.tphon.ec2",
        "nothing.ec2",
        "x.nothing.tphon.ec2",
        "ec2",
        "TPHON.EC2",
        "Postgres.Tphon.ec2",
        "1.postgres.tphon.EC2",
        "a_b.ec2",
        "1.0.0.10.in-addr.arpa",
        "example.com",
        "a.b.c",
        "i-1.PROD.internal",
        "x.y.prod.internal",
        "db.prod.internal",
        "prod.internal",
        "internal",
        "nobody.invalid",
    ] {
        names.push(extra.into());
    }
    // Past hickory-proto's 64 compression targets (the fuzzer found the negative answer of a
    // 70-label name compressed otherwise).
    for labels in [62, 63, 64, 65, 70, 120] {
        let extra = format!("{}ec2", "0.".repeat(labels - 1));
        names.push(extra);
    }
    let mut fast = 0;
    let mut asked = 0;
    let mut check = |zone: &Zone<'_>, wire: &[u8], transport: Transport| {
        asked += 1;
        let general = respond_general(zone, wire, transport);
        if let Some(f) = fast::respond(zone, wire, transport) {
            fast += 1;
            assert_eq!(
                Some(&f),
                general.as_ref(),
                "the fast path differs on {wire:?} over {transport:?}"
            );
        }
        assert_eq!(respond(zone, wire, transport), general);
    };
    for bytes in [&fixture, &big, &corp] {
        let snap = Snapshot::parse(bytes).unwrap();
        let index = Index::build(&snap);
        let domain = String::from_utf8(snap.domain().to_vec()).unwrap();
        let zone = Zone {
            domain: &domain,
            served: Some((&snap, &index)),
        };
        for n in &names {
            for qtype in [
                RecordType::A,
                RecordType::AAAA,
                RecordType::MX,
                RecordType::ANY,
            ] {
                for variant in 0..6u8 {
                    let mut m = query(&format!("{n}."), qtype);
                    m.metadata.id = 0x1234 + u16::from(variant);
                    m.metadata.recursion_desired = variant & 1 == 1;
                    m.metadata.checking_disabled = variant == 3;
                    if variant >= 2 {
                        let mut e = Edns::new();
                        e.set_max_payload([512, 1232, 4096, 100][usize::from(variant - 2)]);
                        e.set_dnssec_ok(variant == 4);
                        m.set_edns(e);
                    }
                    let wire = m.to_vec().unwrap();
                    for transport in [Transport::Udp, Transport::Tcp] {
                        check(&zone, &wire, transport);
                    }
                    if variant == 2 && n.len() % 5 == 0 {
                        for at in 0..wire.len() {
                            for b in [0u8, 1, 0x41, 0xc0, 0xff] {
                                let mut w = wire.clone();
                                w[at] = b;
                                check(&zone, &w, Transport::Udp);
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!("{fast} of {asked} queries took the fast path");
    // The shapes clients send take it, in every domain: an address, NODATA, NXDOMAIN.
    for (bytes, domain) in [(&fixture, "ec2"), (&big, "ec2"), (&corp, "prod.internal")] {
        let snap = Snapshot::parse(bytes).unwrap();
        let index = Index::build(&snap);
        let zone = Zone {
            domain,
            served: Some((&snap, &index)),
        };
        for (name, qtype) in [
            ("i-1", RecordType::A),
            ("i-2", RecordType::AAAA),
            ("nothing", RecordType::A),
        ] {
            let wire = query(&format!("{name}.{domain}."), qtype).to_vec().unwrap();
            assert!(
                fast::respond(&zone, &wire, Transport::Udp).is_some(),
                "{name}.{domain} {qtype} took the general path"
            );
        }
    }
}
