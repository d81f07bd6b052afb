//! The stub's answers, one outcome per test, read back with hickory-proto as a client would.

use super::*;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use crate::testing::{fixture, GEN};

fn query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

fn ask_with(bytes: &[u8], m: &Message, transport: Transport) -> (Message, usize) {
    let snap = Snapshot::parse(bytes).unwrap();
    let index = Index::build(&snap);
    let zone = Zone {
        domain: "ec2",
        served: Some((&snap, &index)),
    };
    let wire = respond(&zone, &m.to_vec().unwrap(), transport).expect("an answer");
    let r = Message::from_vec(&wire).expect("the answer parses");
    assert_eq!(r.metadata.id, m.metadata.id);
    assert_eq!(r.metadata.message_type, MessageType::Response);
    assert!(!r.metadata.recursion_available, "RA is never set");
    assert_eq!(r.metadata.recursion_desired, m.metadata.recursion_desired);
    (r, wire.len())
}

fn ask(name: &str, qtype: RecordType) -> Message {
    ask_with(&fixture(), &query(name, qtype), Transport::Udp).0
}

fn addrs(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(a) => a.0.to_string(),
            RData::PTR(p) => p.0.to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn assert_soa_authority(m: &Message) {
    assert_eq!(m.authorities.len(), 1, "{m}");
    let RData::SOA(soa) = &m.authorities[0].data else {
        panic!("not a SOA: {m}")
    };
    assert_eq!(soa.serial, GEN as u32);
    assert_eq!(soa.minimum, 30);
    assert_eq!(m.authorities[0].name.to_string(), "ec2.");
}

#[test]
fn a_record_of_a_service_is_authoritative_with_the_interval_as_ttl() {
    let r = ask("postgres.tphon.ec2.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(addrs(&r), ["10.0.0.1"]);
    assert_eq!(r.answers[0].ttl, 30);
    assert!(r.authorities.is_empty());
}

#[test]
fn group_answers_every_member_in_order_and_case_is_echoed() {
    let r = ask("TPHON.Ec2.", RecordType::A);
    assert_eq!(addrs(&r), ["10.0.0.1", "10.0.0.2"]);
    assert_eq!(r.answers[0].name.to_string(), "TPHON.Ec2.");
    assert_eq!(r.queries[0].name().to_string(), "TPHON.Ec2.");
}

#[test]
fn aaaa_and_nodata() {
    assert_eq!(
        addrs(&ask("tphon.ec2.", RecordType::AAAA)),
        ["2600::1", "2600::3"]
    );
    for (n, t) in [
        ("i-2.ec2.", RecordType::AAAA),
        ("i-3.ec2.", RecordType::A),
        ("postgres.tphon.ec2.", RecordType::MX),
        ("postgres.tphon.ec2.", RecordType::TXT),
    ] {
        let r = ask(n, t);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{n} {t}");
        assert!(r.metadata.authoritative);
        assert!(r.answers.is_empty(), "{r}");
        assert_soa_authority(&r);
    }
}

/// RFC 8482 (issue 23, item 4): ANY gets one RRset, the IPv4 addresses if there are any.
#[test]
fn any_gives_one_family() {
    let r = ask("i-1.ec2.", RecordType::ANY);
    assert_eq!(addrs(&r), ["10.0.0.1"]);
    let r = ask("i-3.ec2.", RecordType::ANY);
    assert_eq!(addrs(&r), ["2600::3"]);
}

#[test]
fn unknown_names_under_the_domain_are_nxdomain_with_the_soa() {
    for n in [
        "nope.tphon.ec2.",
        "2.postgres.tphon.ec2.",
        "i-0abc.ec2.",
        "a.b.c.d.ec2.",
        "x.postgres.tphon.ec2.",
    ] {
        let r = ask(n, RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{n}");
        assert!(r.metadata.authoritative);
        assert!(r.answers.is_empty());
        assert_soa_authority(&r);
    }
}

#[test]
fn a_label_holding_a_dot_byte_is_no_name_of_ours() {
    // One label "postgres.tphon" under ec2: joined naively it would read postgres.tphon.ec2.
    let label = Name::from_labels(vec![b"postgres.tphon".to_vec(), b"ec2".to_vec()]).unwrap();
    let mut m = Message::query();
    m.add_query(Query::query(label, RecordType::A));
    let (r, _) = ask_with(&fixture(), &m, Transport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.answers.is_empty());
}

#[test]
fn an_empty_non_terminal_is_nodata_not_nxdomain() {
    let snap = fixture();
    let s = Snapshot::parse(&snap).unwrap();
    let index = Index::build(&s);
    assert!(index.is_empty_non_terminal(b"mysql.tphon.ec2"));
    assert_eq!(index.len(), 1, "{index:?}");
    let r = ask("mysql.tphon.ec2.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_soa_authority(&r);
    assert_eq!(
        addrs(&ask("readonly.mysql.tphon.ec2.", RecordType::A)),
        ["10.0.0.2"]
    );
}

#[test]
fn apex_soa_ns_and_nodata() {
    let r = ask("ec2.", RecordType::SOA);
    assert!(r.metadata.authoritative);
    let RData::SOA(soa) = &r.answers[0].data else {
        panic!("{r}")
    };
    assert_eq!(soa.serial, GEN as u32);
    assert_eq!(
        soa.mname.to_string(),
        "ec2.",
        "the zone's own name (RFC 6303)"
    );
    assert_eq!(
        ask("Ec2.", RecordType::SOA).answers[0].name.to_string(),
        "Ec2."
    );
    let r = ask("EC2.", RecordType::NS);
    assert_eq!(addrs(&r), ["NS(NS(Name(\"ec2.\")))"]);
    let r = ask("ec2.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_soa_authority(&r);
}

#[test]
fn everything_else_is_refused_without_authority() {
    for (n, t) in [
        ("example.com.", RecordType::A),
        ("ec2.example.com.", RecordType::A),
        ("xec2.", RecordType::A),
        (".", RecordType::NS),
        ("9.9.9.9.in-addr.arpa.", RecordType::PTR),
        ("0.10.in-addr.arpa.", RecordType::PTR),
        // In no /24 of an instance address (10.0.0.x is one: 01.0.0.10 is NXDOMAIN there).
        ("01.0.5.10.in-addr.arpa.", RecordType::PTR),
        ("ec2.", RecordType::AXFR),
        ("ec2.", RecordType::IXFR),
    ] {
        let r = ask(n, t);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{n} {t}");
        assert!(!r.metadata.authoritative, "{n}");
        assert!(r.answers.is_empty() && r.authorities.is_empty());
    }
    let mut m = query("postgres.tphon.ec2.", RecordType::A);
    m.queries[0].set_query_class(DNSClass::CH);
    let (r, _) = ask_with(&fixture(), &m, Transport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn ptr_of_an_instance_address_gives_its_id_then_its_numbered_names() {
    let r = ask("1.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert!(r.metadata.authoritative);
    assert_eq!(addrs(&r), ["i-1.ec2.", "1.postgres.tphon.ec2."]);
    let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.2.ip6.arpa.";
    assert_eq!(
        addrs(&ask(v6, RecordType::PTR)),
        ["i-1.ec2.", "1.postgres.tphon.ec2."]
    );
    let r = ask("2.0.0.10.in-addr.arpa.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
}

#[test]
fn no_snapshot_is_servfail_for_the_domain_and_refused_elsewhere() {
    let zone = Zone {
        domain: "ec2",
        served: None,
    };
    let mut codes = Vec::new();
    for n in [
        "postgres.tphon.ec2.",
        "ec2.",
        "example.com.",
        "1.0.0.10.in-addr.arpa.",
    ] {
        let wire = respond(
            &zone,
            &query(n, RecordType::A).to_vec().unwrap(),
            Transport::Udp,
        );
        let r = Message::from_vec(&wire.unwrap()).unwrap();
        assert!(!r.metadata.authoritative);
        codes.push(r.metadata.response_code);
    }
    use ResponseCode::*;
    assert_eq!(codes, [ServFail, ServFail, Refused, Refused]);
}

#[test]
fn udp_answers_are_truncated_at_512_or_the_edns_size_and_tcp_is_whole() {
    let snap = fixture();
    let m = query("big.ec2.", RecordType::A);
    let (r, len) = ask_with(&snap, &m, Transport::Udp);
    assert!(len <= 512, "{len}");
    assert!(r.metadata.truncation);
    assert!(!r.answers.is_empty() && r.answers.len() < 100);
    assert_eq!(addrs(&r)[0], "10.1.0.0", "the first members, in order");

    let mut e = m.clone();
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    e.set_edns(edns);
    let (r, len) = ask_with(&snap, &e, Transport::Udp);
    assert!(len <= usize::from(EDNS_PAYLOAD) && len > 512, "{len}");
    assert!(r.metadata.truncation);
    assert_eq!(r.edns.as_ref().unwrap().max_payload(), EDNS_PAYLOAD);

    let (r, _) = ask_with(&snap, &m, Transport::Tcp);
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 100);

    // A small answer is not truncated whatever the transport; an EDNS query gets an OPT back.
    let (r, _) = ask_with(&snap, &e.clone(), Transport::Tcp);
    assert!(!r.metadata.truncation && r.edns.is_some());
}

#[test]
fn an_edns_size_below_512_still_allows_512() {
    let mut m = query("big.ec2.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(100);
    m.set_edns(edns);
    let (r, len) = ask_with(&fixture(), &m, Transport::Udp);
    assert!(len <= 512 && len > 400, "{len}");
    assert!(r.metadata.truncation);
}

#[test]
fn malformed_queries_get_formerr_or_nothing() {
    // Issue 23, item 4: what cannot be parsed as a query gets nothing (a FORMERR to garbage
    // could bounce between two UDP services); a query with zero or two questions, FORMERR.
    let bytes = fixture();
    let snap = Snapshot::parse(&bytes).unwrap();
    let index = Index::build(&snap);
    let zone = Zone {
        domain: "ec2",
        served: Some((&snap, &index)),
    };
    let r = |b: &[u8]| respond(&zone, b, Transport::Udp);
    assert_eq!(r(&[]), None);
    assert_eq!(r(&[0x12, 0x34, 0x01]), None);
    // A response (QR set) is never answered.
    let mut resp = query("ec2.", RecordType::SOA);
    resp.metadata.message_type = MessageType::Response;
    assert_eq!(r(&resp.to_vec().unwrap()), None);
    // Header claims a question that is not there.
    let garbage = [0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e'];
    assert_eq!(r(&garbage), None);
    // Two questions, or none.
    let mut two = query("ec2.", RecordType::SOA);
    two.add_query(Query::query(
        Name::from_ascii("tphon.ec2.").unwrap(),
        RecordType::A,
    ));
    let m = Message::from_vec(&r(&two.to_vec().unwrap()).unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    let none = Message::query();
    let m = Message::from_vec(&r(&none.to_vec().unwrap()).unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn other_opcodes_are_not_implemented_and_edns_versions_above_0_are_badvers() {
    let mut notify = query("ec2.", RecordType::SOA);
    notify.metadata.op_code = OpCode::Notify;
    let (r, _) = ask_with(&fixture(), &notify, Transport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
    assert!(r.answers.is_empty());

    let mut v1 = query("postgres.tphon.ec2.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    v1.set_edns(edns);
    let (r, _) = ask_with(&fixture(), &v1, Transport::Udp);
    // 16 is BADVERS in an OPT (hickory-proto reads the shared code as BADSIG).
    assert_eq!(u16::from(r.metadata.response_code), 16);
    assert!(r.answers.is_empty());
    assert_eq!(r.edns.unwrap().version(), 0);
}

#[test]
fn refusals_are_no_larger_than_the_query_plus_an_opt() {
    for n in ["example.com.", "x.y.z.example.org."] {
        let m = query(n, RecordType::ANY);
        let (_, len) = ask_with(&fixture(), &m, Transport::Udp);
        assert!(len <= m.to_vec().unwrap().len(), "{n}: {len}");
    }
}

// ----- exports -----

fn parsed() -> Vec<u8> {
    fixture()
}

#[test]
fn zone_export_has_origin_soa_ns_and_every_address() {
    let bytes = parsed();
    let snap = Snapshot::parse(&bytes).unwrap();
    let z = export::forward(&snap, export::Format::Zone).unwrap();
    assert!(z.contains("\n$ORIGIN ec2.\n$TTL 30\n"), "{z}");
    assert!(z.contains(&format!(
        "@\tIN\tSOA\tec2. nobody.invalid. ( {} 30 30 604800 30 )\n@\tIN\tNS\tns.invalid.\n",
        GEN as u32
    )));
    assert!(z.contains("\npostgres.tphon\tIN\tA\t10.0.0.1\n"));
    assert!(z.contains("\ni-1\tIN\tAAAA\t2600::1\n"));
    assert!(z.contains("\n1.postgres.tphon\tIN\tA\t10.0.0.1\n"));
    assert_eq!(
        z.matches("\tIN\tA\t").count(),
        2 + 1 + 1 + 1 + 2 + 100 + 100
    );
    assert_eq!(z, export::forward(&snap, export::Format::Zone).unwrap());
}

#[test]
fn reverse_zones_split_by_slash_24_and_slash_64() {
    let bytes = parsed();
    let snap = Snapshot::parse(&bytes).unwrap();
    let zones = export::reverse_zones(&snap).unwrap();
    let origins: Vec<&str> = zones.iter().map(|z| z.origin.as_str()).collect();
    assert_eq!(
        origins,
        [
            "0.0.10.in-addr.arpa.",
            "0.1.10.in-addr.arpa.",
            "0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.2.ip6.arpa."
        ]
    );
    let v4 = &zones[0].text;
    assert!(v4.contains("\n1\tIN\tPTR\ti-1.ec2.\n1\tIN\tPTR\t1.postgres.tphon.ec2.\n"));
    assert!(zones[1].text.contains("\n0\tIN\tPTR\ti-big0.ec2.\n"));
    let v6 = &zones[2].text;
    assert!(v6.contains("\n3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0\tIN\tPTR\ti-3.ec2.\n"));
}

#[test]
fn hosts_and_dnsmasq_list_instances_first() {
    let bytes = parsed();
    let snap = Snapshot::parse(&bytes).unwrap();
    let h = export::forward(&snap, export::Format::Hosts).unwrap();
    let lines: Vec<&str> = h.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines[0], "10.0.0.1\ti-1.ec2 1.postgres.tphon.ec2");
    assert_eq!(lines[1], "2600::1\ti-1.ec2 1.postgres.tphon.ec2");
    assert!(lines.contains(&"10.0.0.2\ttphon.ec2"));
    assert!(!lines.contains(&"10.0.0.1\t1.postgres.tphon.ec2"));
    let d = export::forward(&snap, export::Format::Dnsmasq).unwrap();
    let lines: Vec<&str> = d.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines[0], "local=/ec2/");
    assert_eq!(
        lines[1],
        "host-record=i-1.ec2,1.postgres.tphon.ec2,10.0.0.1,30"
    );
    assert!(lines.contains(&"host-record=postgres.tphon.ec2,10.0.0.1,30"));
}

#[test]
fn unbound_export_is_a_static_zone() {
    let bytes = parsed();
    let snap = Snapshot::parse(&bytes).unwrap();
    let u = export::forward(&snap, export::Format::Unbound).unwrap();
    assert!(u.contains("server:\n  local-zone: \"ec2.\" static\n"));
    assert!(u.contains("  local-data: \"postgres.tphon.ec2. 30 IN A 10.0.0.1\"\n"));
    assert!(u.contains("  local-data-ptr: \"10.0.0.1 30 i-1.ec2.\"\n"));
}

/// A group of `n` instances (10.2.x.y), its name `huge.ec2`.
fn huge(n: u32) -> Vec<u8> {
    use nss_ec2_snapshot::{Instance, Kind, Table};
    let mut t = Table::default();
    for k in 0..n {
        t.names.push(nss_ec2_snapshot::Name {
            name: format!("i-{k}.ec2"),
            kind: Kind::Instance,
            members: vec![k],
        });
        t.instances.push(Instance {
            name: k,
            v4: Some([10, 2, (k >> 8) as u8, k as u8]),
            ..Default::default()
        });
    }
    t.names.push(nss_ec2_snapshot::Name {
        name: "huge.ec2".into(),
        kind: Kind::Group,
        members: (0..n).collect(),
    });
    crate::testing::encode(&t)
}

/// Issue 23, item 2: over TCP an answer past 64 KiB keeps the whole records that fit, never
/// with TC (Go's resolver gives up on TC over TCP), every owner a pointer to the question.
#[test]
fn an_answer_over_64_kib_keeps_whole_records_and_no_tc_over_tcp() {
    let bytes = huge(6000);
    for t in [RecordType::A, RecordType::ANY] {
        let m = query("huge.ec2.", t);
        let (r, len) = ask_with(&bytes, &m, Transport::Tcp);
        assert!(len <= TCP_MAX, "{len}");
        assert!(!r.metadata.truncation, "TC over TCP");
        // 12 header + 14 question (huge.ec2, type, class), 16 an A record.
        assert_eq!(r.answers.len(), (TCP_MAX - 12 - 14) / 16);
        assert_eq!(addrs(&r)[0], "10.2.0.0");
    }
    // Over UDP the work stops at what 512 bytes can hold.
    let (r, len) = ask_with(&bytes, &query("huge.ec2.", RecordType::A), Transport::Udp);
    assert!(len <= 512 && r.metadata.truncation && !r.answers.is_empty());
}
