//! Arbitrary bytes as a snapshot, through the module's whole lookup path (forward in both
//! families and through gethostbyname4_r, reverse, enumeration, with growing buffers), every call
//! and every whole enumeration metered against the step budget the file's counts allow (a
//! quadratic shape is a crash, like a panic). See `nss_ec2::testing::fuzz_one` for how the first
//! byte is used.
//!
//! The mutator: two times in three, a structured mutation (`nss_ec2::testing::mutate_ranges`)
//! that rewrites names' member ranges, instances' IPv6 and alias ranges or member entries so that
//! they overlap or run past their section, on an input whose header is re-sealed (first byte
//! even); otherwise libFuzzer's own byte-level mutations.
#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};

fuzz_target!(|data: &[u8]| nss_ec2::testing::fuzz_one(data));

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    if seed % 3 != 0 && size > 1 + nss_ec2_snapshot::format::HEADER_LEN {
        data[0] &= !1;
        nss_ec2::testing::mutate_ranges(&mut data[1..size], u64::from(seed));
        return size;
    }
    fuzzer_mutate(data, size, max_size)
});
