//! Replays the fuzz corpus (`fuzz/corpus/snapshot`) and every crash the fuzzer ever found
//! (`fuzz/regressions`) through the fuzz target's own body, in seconds.

use std::path::Path;

#[test]
fn replay_corpus_and_regressions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["corpus/snapshot", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            nss_ec2::testing::fuzz_one(&std::fs::read(e.path()).unwrap());
            n += 1;
        }
    }
    assert!(n > 0, "the committed corpus is empty");
    println!("replayed {n} inputs");
}
