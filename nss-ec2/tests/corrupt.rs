//! Hostile snapshots through the module's whole lookup path (forward in both families and
//! through `gethostbyname4_r`, reverse, enumeration, with glibc-like growing buffers): every
//! truncation, thousands of seeded random corruptions, crafted headers (re-sealed, so they get
//! past the checksum) whose offsets and counts point past the end, to `u32::MAX`, or into loops,
//! and records whose ranges overlap (the structured mutation of the fuzz target). Each ends in an
//! answer or UNAVAIL, without a panic, and `exercise` meters every call and every whole
//! enumeration against what the file's counts allow: a step budget, not a timeout.

use nss_ec2::testing::{exercise, mutate_ranges};
use nss_ec2_snapshot::fleet::{build, Ec2Instance, Rules};
use nss_ec2_snapshot::format::seal_header;
use nss_ec2_snapshot::Meta;

fn fleet(n: usize) -> Vec<u8> {
    fleet_with(n, 1)
}

/// `n` instances in group tphon and one of three others, listing redis or postgres; every
/// second one has `v6` IPv6 addresses.
fn fleet_with(n: usize, v6: usize) -> Vec<u8> {
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
                (0..v6)
                    .map(|k| format!("2001:db8::{i:x}:{k:x}").parse().unwrap())
                    .collect()
            } else {
                vec![]
            },
            ..Default::default()
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

/// Runs one case; `exercise` panics if a call or an enumeration works beyond its budget.
fn run(bytes: &[u8]) -> usize {
    exercise(bytes, EXTRA)
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

/// Offset of record `i` of section `k` (record sizes as in snapshot/src/format.rs).
fn rec(b: &[u8], k: usize, size: usize, i: usize) -> usize {
    section(b, k).0 + i * size
}

fn count(b: &[u8], k: usize, size: usize) -> usize {
    section(b, k).1 / size
}

/// Every name's members, every instance's IPv6 addresses, or both, made to overlap: the shapes
/// that made one `gethostent_r` take seconds (members × names) and one answer ask for members ×
/// IPv6 addresses. With the reader's and the enumeration's bounds, every call and the whole
/// enumeration stay within the budget of the file's counts, and names still answer where their
/// records are legitimate.
#[test]
fn overlapping_ranges_cost_work_bounded_by_the_file() {
    let good = fleet_with(400, 3);
    let (names, members, instances, v6) = (
        count(&good, 1, 16),
        count(&good, 2, 4),
        count(&good, 3, 32),
        count(&good, 4, 16),
    );
    assert!(
        members > instances && v6 > 64,
        "the fleet is big enough to overlap"
    );
    for (member_count, v6_count) in [
        (Some(members), None),
        (Some(instances), None),
        (None, Some(v6)),
        (None, Some(64)),
        (Some(instances), Some(64)),
        (Some(members), Some(v6)),
    ] {
        let mut b = good.clone();
        if let Some(c) = member_count {
            for i in 0..names {
                put32(&mut b, rec(&good, 1, 16, i) + 8, 0);
                put32(&mut b, rec(&good, 1, 16, i) + 12, c as u32);
            }
        }
        if let Some(c) = v6_count {
            for i in 0..instances {
                put32(&mut b, rec(&good, 3, 32, i) + 12, 0);
                put32(&mut b, rec(&good, 3, 32, i) + 16, c as u32);
            }
        }
        // Records only: the header (and its checksum) is untouched.
        let ok = run(&b);
        // An instance with more IPv6 addresses than any instance keeps is corrupt, and so is
        // every name it is behind; names whose records stay within the limits still answer.
        if member_count != Some(members) && v6_count != Some(v6) {
            assert!(
                ok > 0,
                "{member_count:?} {v6_count:?}: legitimate-looking names answer"
            );
        }
    }
}

/// A legitimate fleet at the limits (every second instance with the most IPv6 addresses an
/// instance keeps) answers everything within the same budgets.
#[test]
fn the_largest_legitimate_answers_fit_the_budget() {
    let good = fleet_with(300, nss_ec2_snapshot::format::MAX_V6_PER_INSTANCE + 10);
    assert!(run(&good) > 300);
}

/// The fuzz target's structured mutation, many seeds, on small and larger fleets.
#[test]
fn structured_range_mutations() {
    for (n, v6, seeds) in [(40usize, 1usize, 1000u64), (150, 4, 150)] {
        let good = fleet_with(n, v6);
        let mut answered = 0;
        for seed in 0..seeds {
            let mut b = good.clone();
            mutate_ranges(&mut b, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) + 1);
            if seed % 7 == 0 {
                // Twice: overlaps on overlaps.
                mutate_ranges(&mut b, seed + 0x1234);
            }
            answered += usize::from(run(&b) > 0);
        }
        assert!(answered > 0);
    }
}
