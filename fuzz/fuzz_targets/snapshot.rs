//! Arbitrary bytes as a snapshot, through the module's whole lookup path (forward in both
//! families and through gethostbyname4_r, reverse, enumeration, with growing buffers).
//! See `nss_ec2::testing::fuzz_one` for how the first byte is used.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nss_ec2::testing::fuzz_one(data));
