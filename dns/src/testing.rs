//! A fixed snapshot and the fuzz body, shared by the unit tests, the corpus replay
//! (`dns/tests/corpus.rs`) and the fuzz target (`fuzz/fuzz_targets/dns_query.rs`).

use crate::{respond, Index, Transport, Zone};
use nss_ec2_snapshot::{Instance, Kind, Meta, Snapshot, Table};
use std::sync::LazyLock;

/// The generation (SOA serial) of [`fixture`].
pub const GEN: u64 = 1_795_000_000;

/// i-1 (10.0.0.1, 2600::1), i-2 (10.0.0.2), i-3 (2600::3 only), and 100 instances in `big`.
/// `readonly.mysql.tphon.ec2` exists, `mysql.tphon.ec2` does not: an empty non-terminal.
pub fn fixture() -> Vec<u8> {
    let mut t = Table::default();
    let name = |t: &mut Table, n: &str, kind: Kind, members: Vec<u32>| {
        t.names.push(nss_ec2_snapshot::Name {
            name: n.into(),
            kind,
            members,
        });
        t.names.len() as u32 - 1
    };
    let v6 = |last: u8| {
        let mut a = [0u8; 16];
        a[0] = 0x26;
        a[15] = last;
        a
    };
    let ids: Vec<u32> = ["i-1.ec2", "i-2.ec2", "i-3.ec2"]
        .iter()
        .map(|n| name(&mut t, n, Kind::Instance, vec![]))
        .collect();
    for (k, id) in ids.iter().enumerate() {
        t.names[*id as usize].members = vec![k as u32];
    }
    t.instances.push(Instance {
        name: ids[0],
        v4: Some([10, 0, 0, 1]),
        v6: vec![v6(1)],
        aliases: vec![],
    });
    t.instances.push(Instance {
        name: ids[1],
        v4: Some([10, 0, 0, 2]),
        ..Default::default()
    });
    t.instances.push(Instance {
        name: ids[2],
        v6: vec![v6(3)],
        ..Default::default()
    });
    name(&mut t, "tphon.ec2", Kind::Group, vec![0, 1, 2]);
    name(&mut t, "postgres.tphon.ec2", Kind::Service, vec![0]);
    let first = name(&mut t, "1.postgres.tphon.ec2", Kind::ServiceNth, vec![0]);
    t.instances[0].aliases.push(first);
    name(&mut t, "readonly.mysql.tphon.ec2", Kind::Service, vec![1]);
    let mut big = Vec::new();
    for k in 0..100u32 {
        let id = name(&mut t, &format!("i-big{k}.ec2"), Kind::Instance, vec![]);
        let idx = t.instances.len() as u32;
        t.names[id as usize].members = vec![idx];
        t.instances.push(Instance {
            name: id,
            v4: Some([10, 1, 0, k as u8]),
            ..Default::default()
        });
        big.push(idx);
    }
    name(&mut t, "big.ec2", Kind::Group, big);
    encode(&t)
}

/// A snapshot of domain `prod.internal` (two labels): `i-1`, `i-2` and the group `web`, an
/// empty non-terminal `db` above `ro.db`.
pub fn fixture_multi_label() -> Vec<u8> {
    let mut t = Table::default();
    for (k, n) in ["i-1", "i-2"].iter().enumerate() {
        t.names.push(nss_ec2_snapshot::Name {
            name: format!("{n}.prod.internal"),
            kind: Kind::Instance,
            members: vec![k as u32],
        });
        t.instances.push(Instance {
            name: k as u32,
            v4: Some([10, 9, 0, k as u8 + 1]),
            ..Default::default()
        });
    }
    for (n, kind) in [
        ("web.prod.internal", Kind::Group),
        ("ro.db.prod.internal", Kind::Service),
    ] {
        t.names.push(nss_ec2_snapshot::Name {
            name: n.into(),
            kind,
            members: vec![0, 1],
        });
    }
    t.encode(&nss_ec2_snapshot::Meta {
        domain: "prod.internal".into(),
        generated_unix: GEN,
        interval_secs: 30,
        max_age_secs: 0,
    })
    .unwrap()
}

/// `t` as a snapshot of domain `ec2`, generation [`GEN`], interval 30 s.
pub fn encode(t: &Table) -> Vec<u8> {
    t.encode(&Meta {
        domain: "ec2".into(),
        generated_unix: GEN,
        interval_secs: 30,
        max_age_secs: 0,
    })
    .expect("a test table encodes")
}

/// One fuzz input: the query path on the fixture (first byte even: UDP, odd: TCP; bit 1 set: no
/// snapshot installed; bit 2 set: [`fixture_multi_label`] instead); checks what must hold for any input: no panic, the fast
/// path's answer (when it gives one) the general path's, an answer
/// that parses, never larger than the transport allows, a UDP answer to a query without EDNS at
/// most 512 bytes, no bytes beyond the records the header counts, and an answer to a response
/// never.
pub fn fuzz_one(data: &[u8]) {
    let Some((&mode, query)) = data.split_first() else {
        return;
    };
    static BYTES: LazyLock<Vec<u8>> = LazyLock::new(fixture);
    static INDEX: LazyLock<Index> =
        LazyLock::new(|| Index::build(&Snapshot::parse(&BYTES).expect("the fixture parses")));
    static CORP: LazyLock<Vec<u8>> = LazyLock::new(fixture_multi_label);
    static CORP_INDEX: LazyLock<Index> =
        LazyLock::new(|| Index::build(&Snapshot::parse(&CORP).expect("the fixture parses")));
    // Bit 2 of the first byte: the domain of two labels.
    let (bytes, index, domain) = if mode & 4 == 0 {
        (&*BYTES, &*INDEX, "ec2")
    } else {
        (&*CORP, &*CORP_INDEX, "prod.internal")
    };
    let snap = Snapshot::parse(bytes).expect("the fixture parses");
    let served = (mode & 2 == 0).then_some((&snap, index));
    let zone = Zone { domain, served };
    let transport = if mode & 1 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let out = respond(&zone, query, transport);
    // The fast path is a shortcut, never other rules: when it answers, the general path gives
    // the same bytes.
    if let Some(fast) = crate::fast::respond(&zone, query, transport) {
        assert_eq!(
            Some(&fast),
            crate::respond_general(&zone, query, transport).as_ref(),
            "the fast path differs from the general one"
        );
    }
    let Some(out) = out else {
        return;
    };
    assert!(
        query.len() >= 12 && query[2] & 0x80 == 0,
        "answered a non-query"
    );
    assert!(out.len() >= 12 && out[..2] == query[..2], "id not echoed");
    assert!(out[2] & 0x80 != 0, "QR not set");
    assert!(out[3] & 0x80 == 0, "RA set");
    let limit = match transport {
        Transport::Udp => usize::from(crate::EDNS_PAYLOAD),
        Transport::Tcp => crate::TCP_MAX,
    };
    assert!(out.len() <= limit, "{} bytes over {transport:?}", out.len());
    let parsed = hickory_proto::op::Message::from_vec(&out).expect("the answer parses");
    if transport == Transport::Udp {
        let asked_edns = hickory_proto::op::Message::from_vec(query)
            .map(|q| q.edns.is_some())
            .unwrap_or(false);
        if !asked_edns {
            assert!(
                out.len() <= 512,
                "{} bytes to a query without EDNS",
                out.len()
            );
        }
    }
    // No trailing bytes, no half record: the answer is exactly what its header counts.
    assert_eq!(
        parsed.to_vec().expect("re-encodes"),
        out,
        "trailing or damaged bytes"
    );
}
