//! Replays the fuzz corpus (`fuzz/corpus/snapshot`) and every crash the fuzzer ever found
//! (`fuzz/regressions`) through the same path as the fuzz target, in seconds.

use nss_ec2_snapshot::format::{seal_header, HEADER_LEN};
use std::path::Path;

/// The fuzz target's body (fuzz/fuzz_targets/snapshot.rs), kept in step with it.
fn one(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode % 2 == 0 && bytes.len() >= HEADER_LEN {
        let len = bytes.len() as u64;
        bytes[16..24].copy_from_slice(&len.to_le_bytes());
        seal_header(&mut bytes);
    }
    nss_ec2::testing::exercise(
        &bytes,
        &[
            b"tphon.ec2",
            b"1.redis.tphon.ec2",
            b"nosuch.ec2",
            b"x.example",
        ],
    );
}

#[test]
fn replay_corpus_and_regressions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["corpus/snapshot", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            one(&std::fs::read(e.path()).unwrap());
            n += 1;
        }
    }
    assert!(n > 0, "the committed corpus is empty");
    println!("replayed {n} inputs");
}
