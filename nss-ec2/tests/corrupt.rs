//! Hostile snapshots through the module's whole lookup path (forward in both families and
//! through `gethostbyname4_r`, reverse, enumeration, with glibc-like growing buffers): every
//! truncation, thousands of seeded random corruptions, and crafted headers (re-sealed, so they
//! get past the checksum) whose offsets and counts point past the end, to `u32::MAX`, or into
//! loops. Each ends in an answer or UNAVAIL, without a panic, in bounded time.

use nss_ec2::testing::exercise;
use nss_ec2_snapshot::fleet::{build, Ec2Instance, Rules};
use nss_ec2_snapshot::format::seal_header;
use nss_ec2_snapshot::Meta;
use std::time::{Duration, Instant};

fn fleet(n: usize) -> Vec<u8> {
    let instances: Vec<Ec2Instance> = (0..n)
        .map(|i| Ec2Instance {
            id: format!("i-{i:04x}"),
            state: "running".into(),
            launch_time_ms: i as i64,
            groups: vec!["tphon".into(), format!("g{}", i % 3)],
            tags: vec![(
                "services".into(),
                ["redis", "postgres, readonly.postgres"][i % 2].into(),
            )],
            private_ipv4: Some([10, 0, (i >> 8) as u8, i as u8].into()),
            public_ipv4: None,
            ipv6: if i % 2 == 0 {
                vec![format!("2001:db8::{i:x}").parse().unwrap()]
            } else {
                vec![]
            },
        })
        .collect();
    let meta = Meta {
        domain: "ec2".into(),
        generated_unix: 1_700_000_000,
        interval_secs: 30,
        max_age_secs: 0,
    };
    build(&instances, &Rules::default())
        .table
        .encode(&meta)
        .unwrap()
}

const EXTRA: &[&[u8]] = &[
    b"tphon.ec2",
    b"1.redis.tphon.ec2",
    b"nosuch.ec2",
    b"example.com",
    b"EC2.",
];

/// Runs one case, checking it finishes in bounded time.
fn run(bytes: &[u8]) -> usize {
    let t = Instant::now();
    let ok = exercise(bytes, EXTRA);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "a case took {:?}",
        t.elapsed()
    );
    ok
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn the_real_snapshot_answers() {
    let good = fleet(40);
    // 64 own names × (2 families + 2 × 4_r) + reverse + enumeration.
    assert!(run(&good) > 300);
}

#[test]
fn every_truncation_is_unavail() {
    let good = fleet(40);
    for len in 0..good.len() {
        assert_eq!(
            run(&good[..len]),
            0,
            "truncated to {len} bytes was accepted"
        );
    }
}

#[test]
fn seeded_random_corruptions() {
    let good = fleet(40);
    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    let mut accepted = 0;
    for case in 0..3000 {
        let mut b = good.clone();
        let flips = 1 + (rng.next() % 8) as usize;
        for _ in 0..flips {
            let at = (rng.next() as usize) % b.len();
            b[at] = rng.next() as u8;
        }
        // Half the cases get a valid checksum, so damage beyond the header is read for real.
        if case % 2 == 0 {
            seal_header(&mut b);
        }
        if run(&b) > 0 {
            accepted += 1;
        }
    }
    assert!(
        accepted > 0,
        "some corruptions land in data and still answer"
    );
}

/// Offset and length of header section `i` (the table at byte 64, see snapshot/src/format.rs).
fn section(b: &[u8], i: usize) -> (usize, usize) {
    let at = 64 + 8 * i;
    let get = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    (get(at), get(at + 4))
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn crafted_headers_offsets_counts_and_loops() {
    let good = fleet(40);
    let values = [
        0u32,
        1,
        7,
        159,
        160,
        (good.len() - 1) as u32,
        good.len() as u32,
        u32::MAX / 2,
        u32::MAX - 3,
        u32::MAX,
    ];
    // Every 32-bit header field: counts, domain, hash size, probe length, section offsets/lengths.
    for field in (8..152).step_by(4) {
        for &v in &values {
            let mut b = good.clone();
            put32(&mut b, field, v);
            seal_header(&mut b);
            run(&b);
        }
    }
    // 64-bit fields: file length and generation time.
    for field in [16usize, 24] {
        for v in [0u64, u64::MAX, good.len() as u64 + 1] {
            let mut b = good.clone();
            b[field..field + 8].copy_from_slice(&v.to_le_bytes());
            seal_header(&mut b);
            run(&b);
        }
    }
    // Wrong magic and version are refused.
    for (at, v) in [(0usize, 0u8), (8, 2)] {
        let mut b = good.clone();
        b[at] = v;
        seal_header(&mut b);
        assert_eq!(run(&b), 0);
    }
    // Records pointing anywhere: every name's first member and count, every instance's ranges.
    let (names_off, _) = section(&good, 1);
    let (inst_off, _) = section(&good, 3);
    for rec in 0..8 {
        for (base, fields) in [
            (names_off + rec * 16, [0usize, 8, 12]),
            (inst_off + rec * 32, [0, 12, 16]),
        ] {
            for f in fields {
                for &v in &values {
                    let mut b = good.clone();
                    put32(&mut b, base + f, v);
                    run(&b);
                }
            }
        }
    }
    // A hash table where every slot names entry 0: probes must stop at the cap.
    let (hash_off, hash_len) = section(&good, 6);
    let mut b = good.clone();
    for s in (hash_off..hash_off + hash_len).step_by(4) {
        put32(&mut b, s, 1);
    }
    put32(&mut b, 60, u32::MAX);
    seal_header(&mut b);
    run(&b);
    // Every member of every name pointing at one instance: answers, bounded.
    let (members_off, members_len) = section(&good, 2);
    let mut b = good.clone();
    for s in (members_off..members_off + members_len).step_by(4) {
        put32(&mut b, s, 0);
    }
    assert!(run(&b) > 0);
}
