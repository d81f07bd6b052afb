//! Replays the fuzz corpus of the query path (`fuzz/corpus/dns_query`: the seeds of
//! `fuzz/seed_dns.py` and what libFuzzer found) and its regressions (`fuzz/regressions-dns_query`:
//! every crash the fuzzer found) through the fuzz target's own body
//! (`nss_ec2_dns::testing::fuzz_one`: every answer checked), in well under a second.

use std::path::Path;

#[test]
fn replay_corpus_and_regressions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    // The corpus must hold inputs; the regressions directory must exist (its README says what
    // goes there) but may hold none yet.
    for (dir, must_hold_inputs) in [("corpus/dns_query", true), ("regressions-dns_query", false)] {
        let entries = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("fuzz/{dir}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name() != Some("README.md".as_ref()))
            .collect::<Vec<_>>();
        assert!(
            !must_hold_inputs || !entries.is_empty(),
            "fuzz/{dir} is empty"
        );
        for p in &entries {
            nss_ec2_dns::testing::fuzz_one(&std::fs::read(p).unwrap());
        }
        println!("fuzz/{dir}: replayed {} inputs", entries.len());
    }
}
