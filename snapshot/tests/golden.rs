//! Golden snapshots: today's configurations must keep giving byte-for-byte the same snapshot as
//! they did before zones, AND-names and accounts existed (issue 12). The files in
//! `tests/golden/` were written by this test (`UPDATE_GOLDEN=1 cargo test -p nss-ec2-snapshot
//! --test golden`) before that change; a difference fails with the first name that differs.

use nss_ec2_snapshot::fleet::{build, AddressChoice, Ec2Instance, Rules};
use nss_ec2_snapshot::{Meta, Snapshot};
use std::path::PathBuf;

/// A deterministic fleet that touches every rule: groups that collide by label, a group named
/// like an instance id, services with several labels, bad labels and all-digit ones, ready and
/// not-ready instances, stopped ones, duplicates, public addresses, IPv6, equal launch times.
fn fleet() -> Vec<Ec2Instance> {
    let groups = [
        "tphon",
        "Web Front",
        "web-front",
        "web front",
        "a.b",
        "db",
        "i-00000000000000007",
        "!!!",
        &"x".repeat(70),
    ];
    let services = [
        "postgres",
        "postgres, readonly.postgres",
        "redis memcached",
        "1",
        "2.redis",
        "",
        "a..b",
        "Web,API ,  Admin",
    ];
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let mut out = Vec::new();
    for n in 0..80u32 {
        let mut gs = vec![groups[next() % groups.len()].to_string()];
        if next() % 3 == 0 {
            gs.push(groups[next() % groups.len()].to_string());
        }
        let mut tags = vec![(
            "services".to_string(),
            services[next() % services.len()].to_string(),
        )];
        if next() % 4 != 0 {
            tags.push(("af-status".into(), "ready".into()));
        }
        if next() % 5 == 0 {
            tags.push(("role".into(), "web".into()));
        }
        let state = if next() % 9 == 0 {
            "stopped"
        } else {
            "running"
        };
        out.push(Ec2Instance {
            id: format!("i-{n:017x}"),
            state: state.into(),
            // Some equal launch times: the id breaks the tie.
            launch_time_ms: 1_700_000_000_000 + (next() % 40) as i64 * 1000,
            groups: gs,
            tags,
            private_ipv4: Some([10, 1, (n / 200) as u8, (n % 200) as u8 + 1].into()),
            public_ipv4: (next() % 2 == 0).then(|| [203, 0, 113, n as u8].into()),
            ipv6: if next() % 3 == 0 {
                vec![format!("2600:1f18::{n:x}").parse().unwrap()]
            } else {
                vec![]
            },
            ..Default::default()
        });
    }
    // A duplicate listing (same id twice) and a bad id.
    out.push(out[3].clone());
    out.push(Ec2Instance {
        id: "i-BAD id".into(),
        state: "running".into(),
        groups: vec!["tphon".into()],
        private_ipv4: Some([10, 9, 9, 9].into()),
        ..Default::default()
    });
    out
}

/// Today's configuration keys, each alone and together.
fn configs() -> Vec<(&'static str, Rules)> {
    let base = Rules::default();
    vec![
        ("default", base.clone()),
        (
            "ready-tag",
            Rules {
                ready_tag: Some(("af-status".into(), "ready".into())),
                ..base.clone()
            },
        ),
        (
            "security-groups",
            Rules {
                security_groups: Some(vec!["tphon".into(), "Web Front".into(), "db".into()]),
                ..base.clone()
            },
        ),
        (
            "public",
            Rules {
                address: AddressChoice::Public,
                ..base.clone()
            },
        ),
        (
            "service-tag-domain",
            Rules {
                service_tag: "role".into(),
                domain: "corp.example".into(),
                ..base.clone()
            },
        ),
        (
            "all",
            Rules {
                domain: "ec2".into(),
                ready_tag: Some(("af-status".into(), "ready".into())),
                service_tag: "services".into(),
                address: AddressChoice::Public,
                security_groups: Some(vec!["tphon".into(), "web-front".into(), "a.b".into()]),
                ..base.clone()
            },
        ),
    ]
}

fn listing(bytes: &[u8]) -> Vec<String> {
    let snap = Snapshot::parse(bytes).unwrap();
    (0..snap.len())
        .map(|i| {
            let a = snap.answer(i).unwrap();
            let members: Vec<String> = a
                .members()
                .map(|m| String::from_utf8_lossy(m.unwrap().name().unwrap()).into_owned())
                .collect();
            format!(
                "{} {:?} {}",
                String::from_utf8_lossy(a.name()),
                a.kind(),
                members.join(",")
            )
        })
        .collect()
}

#[test]
fn old_configs_give_the_same_bytes_as_before() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let fleet = fleet();
    for (name, rules) in configs() {
        let built = build(&fleet, &rules);
        let meta = Meta {
            domain: rules.domain.clone(),
            generated_unix: 1_750_000_000,
            interval_secs: 30,
            max_age_secs: 3600,
        };
        let bytes = built.table.encode(&meta).unwrap();
        let problems: Vec<String> = built
            .problems
            .iter()
            .map(|p| format!("{}: {}\n", p.subject, p.reason))
            .collect();
        let snap = dir.join(format!("{name}.snap"));
        let probs = dir.join(format!("{name}.problems"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&snap, &bytes).unwrap();
            std::fs::write(&probs, problems.concat()).unwrap();
            continue;
        }
        let want = std::fs::read(&snap).unwrap();
        if want != bytes {
            let (w, g) = (listing(&want), listing(&bytes));
            let first = w.iter().zip(&g).position(|(a, b)| a != b);
            panic!(
                "{name}: the snapshot differs from {} ({} vs {} bytes); first differing name: \
                 {:?} vs {:?}",
                snap.display(),
                want.len(),
                bytes.len(),
                first.map(|i| &w[i]),
                first.map(|i| &g[i])
            );
        }
        assert_eq!(
            std::fs::read_to_string(&probs).unwrap(),
            problems.concat(),
            "{name}: the reported problems differ"
        );
        // The fleet exercises what it should.
        assert!(built.stats.names > 50, "{name}: {:?}", built.stats);
    }
}
