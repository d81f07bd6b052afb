//! Arbitrary bytes as a snapshot, through the module's whole lookup path (forward in both
//! families and through gethostbyname4_r, reverse, enumeration, with growing buffers).
//!
//! The first byte picks the mode: odd, the bytes are used as they are (the header checks must
//! refuse them); even, the header's file length and checksum are fixed up first, so that the
//! fuzzer explores what lies behind the header (offsets, counts, records, strings).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nss_ec2_snapshot::format::{seal_header, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode % 2 == 0 && bytes.len() >= HEADER_LEN {
        let len = bytes.len() as u64;
        bytes[16..24].copy_from_slice(&len.to_le_bytes());
        seal_header(&mut bytes);
    }
    nss_ec2::testing::exercise(&bytes, &[b"tphon.ec2", b"1.redis.tphon.ec2", b"nosuch.ec2", b"x.example"]);
});
