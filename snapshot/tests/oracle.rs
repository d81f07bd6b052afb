//! Property tests: the encoded snapshot answers exactly what a naive map of the same table does,
//! and corrupting bytes never panics.

use nss_ec2_snapshot::fleet::{build, Ec2Instance, Rules};
use nss_ec2_snapshot::{Family, Find, Meta, Snapshot};
use proptest::prelude::*;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

fn meta() -> Meta {
    Meta {
        domain: "ec2".into(),
        generated_unix: 1,
        interval_secs: 30,
        max_age_secs: 0,
    }
}

fn instance() -> impl Strategy<Value = Ec2Instance> {
    (
        0u32..40,
        0i64..5,
        prop::sample::subsequence(vec!["tphon", "Search", "web", "a.b"], 0..3),
        prop::sample::subsequence(
            vec!["redis", "postgres", "readonly.postgres", "1", "Web"],
            0..4,
        ),
        any::<bool>(),
        any::<bool>(),
        any::<[u8; 4]>(),
        prop::option::of(any::<[u8; 16]>()),
    )
        .prop_map(
            |(id, t, groups, services, running, ready, ip, v6)| Ec2Instance {
                id: format!("i-{id:04x}"),
                state: if running { "running" } else { "stopped" }.into(),
                launch_time_ms: t,
                groups: groups.into_iter().map(String::from).collect(),
                tags: vec![
                    ("services".into(), services.join(", ")),
                    ("ready".into(), if ready { "yes" } else { "no" }.into()),
                ],
                private_ipv4: Some(Ipv4Addr::from(ip)),
                public_ipv4: None,
                ipv6: v6.map(Ipv6Addr::from).into_iter().collect(),
                ..Default::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn snapshot_answers_like_the_table(fleet in prop::collection::vec(instance(), 0..30), ready in any::<bool>()) {
        let rules = Rules {
            ready_tag: ready.then(|| ("ready".to_string(), "yes".to_string())),
            ..Rules::default()
        };
        let built = build(&fleet, &rules);
        let t = &built.table;
        let bytes = t.encode(&meta()).unwrap();
        let snap = Snapshot::parse(&bytes).unwrap();
        // Oracle: name -> (v4 list, v6 list), straight from the table.
        let mut oracle = HashMap::new();
        for n in &t.names {
            let v4: Vec<Vec<u8>> = n.members.iter().filter_map(|&m| t.instances[m as usize].v4.map(|a| a.to_vec())).collect();
            let v6: Vec<Vec<u8>> = n.members.iter().flat_map(|&m| t.instances[m as usize].v6.iter().map(|a| a.to_vec())).collect();
            oracle.insert(n.name.clone(), (v4, v6));
        }
        for (name, (v4, v6)) in &oracle {
            let upper = name.to_ascii_uppercase() + ".";
            let Find::Found(a) = snap.find(upper.as_bytes()).unwrap() else { panic!("{name} missing") };
            let mut got4 = Vec::new();
            a.for_each_addr(Family::V4, |b| got4.push(b.to_vec())).unwrap();
            let mut got6 = Vec::new();
            a.for_each_addr(Family::V6, |b| got6.push(b.to_vec())).unwrap();
            prop_assert_eq!(&got4, v4);
            prop_assert_eq!(&got6, v6);
        }
        for probe in ["nosuch.ec2", "9.tphon.ec2", "i-ffff.ec2", "x.tphon.ec2"] {
            if !oracle.contains_key(probe) {
                prop_assert!(matches!(snap.find(probe.as_bytes()).unwrap(), Find::NotFound));
            }
        }
        // Reverse: every live instance's IPv4 maps back to the first instance (launch order) with it.
        for (idx, inst) in t.instances.iter().enumerate() {
            if let Some(a) = inst.v4 {
                let first = t.instances.iter().position(|i| i.v4 == Some(a)).unwrap();
                let r = snap.reverse_v4(a).unwrap().unwrap();
                prop_assert_eq!(r.name().unwrap(), t.names[t.instances[first].name as usize].name.as_bytes());
                let _ = idx;
            }
        }
        // Enumeration sees every name once.
        prop_assert_eq!(snap.len(), t.names.len());
    }

    #[test]
    fn corrupt_bytes_never_panic(fleet in prop::collection::vec(instance(), 1..10), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let built = build(&fleet, &Rules::default());
        let mut bytes = built.table.encode(&meta()).unwrap();
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        if let Ok(snap) = Snapshot::parse(&bytes) {
            for n in ["tphon.ec2", "1.tphon.ec2", "redis.tphon.ec2", "i-0001.ec2", "x.ec2"] {
                if let Ok(Find::Found(a)) = snap.find(n.as_bytes()) {
                    let _ = a.count(Family::V4);
                    let _ = a.for_each_addr(Family::V6, |_| {});
                }
            }
            for i in 0..snap.len() {
                if let Ok(a) = snap.answer(i) {
                    let _ = a.count(Family::V4);
                }
            }
            let _ = snap.reverse_v4([10, 0, 0, 1]);
        }
    }
}
