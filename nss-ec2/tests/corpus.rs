//! Replays the fuzz corpus (`fuzz/corpus/snapshot`) and the regressions (`fuzz/regressions`:
//! every crash the fuzzer found, and hostile shapes of its structured mutator, such as names
//! whose member ranges or instances whose IPv6 ranges overlap) through the fuzz target's own body
//! (every call metered against its budget), in seconds.

use std::path::Path;

#[test]
fn replay_corpus_and_regressions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for dir in ["corpus/snapshot", "regressions"] {
        let entries = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("fuzz/{dir}: {e}"))
            .map(|e| e.unwrap().path())
            .collect::<Vec<_>>();
        assert!(!entries.is_empty(), "fuzz/{dir} is empty");
        for p in &entries {
            nss_ec2::testing::fuzz_one(&std::fs::read(p).unwrap());
        }
        println!("fuzz/{dir}: replayed {} inputs", entries.len());
    }
}
