//! Hashing and query normalisation shared by the writer and the reader.

/// Longest name the resolver accepts (RFC 1035 presentation form without the final dot).
pub const MAX_NAME: usize = 253;

/// FNV-1a, 64 bit. Used for the name index and for the header checksum; the file is trusted to be
/// written by the daemon (the module checks its owner and mode), so the hash need not resist
/// crafted collisions: probes are capped anyway.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Slot of `hash` in a table of `2^bits` slots (Fibonacci hashing spreads FNV's high bits).
pub fn slot(hash: u64, bits: u32) -> usize {
    if bits == 0 {
        return 0;
    }
    (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
}

/// Normalises a queried name into `out`: ASCII lower case, one trailing dot dropped.
///
/// Returns the normalised length, or `None` when the name is empty or longer than
/// [`MAX_NAME`] (such a name can never be in a snapshot).
pub fn normalize_query(name: &[u8], out: &mut [u8; MAX_NAME]) -> Option<usize> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME {
        return None;
    }
    for (o, &b) in out.iter_mut().zip(name) {
        *o = b.to_ascii_lowercase();
    }
    Some(name.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_and_one_trailing_dot() {
        let mut buf = [0u8; MAX_NAME];
        let n = normalize_query(b"Postgres.TPHON.ec2.", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"postgres.tphon.ec2");
        let n = normalize_query(b"a.ec2..", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"a.ec2.", "only one trailing dot is dropped");
        assert_eq!(normalize_query(b".", &mut buf), None);
        assert_eq!(normalize_query(b"", &mut buf), None);
        assert_eq!(normalize_query(&[b'a'; 254], &mut buf), None);
        assert!(normalize_query(&[b'a'; 253], &mut buf).is_some());
    }

    #[test]
    fn slots_stay_in_range() {
        for bits in 0..20 {
            for s in ["", "a", "postgres.tphon.ec2", "1.redis.tphon.ec2"] {
                assert!(slot(fnv1a(s.as_bytes()), bits) < (1usize << bits));
            }
        }
    }
}
