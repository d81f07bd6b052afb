//! The pure lookup path (name → answer in a snapshot), without glibc: `cargo bench -p
//! nss-ec2-snapshot`. Regressions in the format or the probe show up here without root; the
//! end-to-end figures against /etc/hosts and DNS come from `bench/run`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use nss_ec2_snapshot::fleet::{build, Ec2Instance, Rules};
use nss_ec2_snapshot::{Family, Find, Meta, Snapshot};
use std::hint::black_box;

fn fleet(n: usize) -> Vec<u8> {
    let services = ["redis", "postgres", "web", "queue", "cache"];
    let instances: Vec<Ec2Instance> = (0..n)
        .map(|i| Ec2Instance {
            id: format!("i-{i:017x}"),
            state: "running".into(),
            launch_time_ms: i as i64,
            groups: vec![format!("g{}", i % 10)],
            tags: vec![("services".into(), services[i % 5].into())],
            private_ipv4: Some([10, (i >> 16) as u8, (i >> 8) as u8, i as u8].into()),
            public_ipv4: None,
            ipv6: vec![],
            ..Default::default()
        })
        .collect();
    let meta = Meta {
        domain: "ec2".into(),
        generated_unix: 0,
        interval_secs: 30,
        max_age_secs: 0,
    };
    build(&instances, &Rules::default())
        .table
        .encode(&meta)
        .unwrap()
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("find");
    for n in [10usize, 1_000, 100_000] {
        let bytes = fleet(n);
        g.bench_with_input(BenchmarkId::new("parse", n), &bytes, |b, bytes| {
            b.iter(|| Snapshot::parse(black_box(bytes)).unwrap().len())
        });
        let snap = Snapshot::parse(&bytes).unwrap();
        g.bench_with_input(BenchmarkId::new("hit", n), &snap, |b, snap| {
            b.iter(
                || match snap.find(black_box(b"1.Postgres.g1.ec2.")).unwrap() {
                    Find::Found(a) => {
                        let mut sum = 0u32;
                        a.for_each_addr(Family::V4, |x| sum += u32::from(x[3]))
                            .unwrap();
                        sum
                    }
                    _ => panic!("not found"),
                },
            )
        });
        g.bench_with_input(BenchmarkId::new("miss", n), &snap, |b, snap| {
            b.iter(|| {
                matches!(
                    snap.find(black_box(b"nosuch.g1.ec2")).unwrap(),
                    Find::NotFound
                )
            })
        });
        g.bench_with_input(BenchmarkId::new("reverse", n), &snap, |b, snap| {
            b.iter(|| snap.reverse_v4(black_box([10, 0, 0, 1])).unwrap().is_some())
        });
    }
    g.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
