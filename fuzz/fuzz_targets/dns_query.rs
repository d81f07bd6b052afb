//! Arbitrary bytes as a DNS message, through the stub's whole query path
//! (`nss_ec2_dns::respond`) on a fixed snapshot (`nss_ec2_dns::testing::fixture`) or with none
//! installed, over UDP or TCP, checking what every answer must satisfy (it parses, echoes the ID,
//! fits the transport, never answers a response). See `nss_ec2_dns::testing::fuzz_one` for how
//! the first byte is used; `fuzz/seed_dns.py` writes the seed corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nss_ec2_dns::testing::fuzz_one(data));
