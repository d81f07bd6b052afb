//! The signature trailer of a published snapshot (fleet mode).
//!
//! A signed snapshot is still a version-1 snapshot: the unsigned file, then a 104-byte trailer.
//!
//! ```text
//! header 136  trailer offset u32      140  trailer length u32 (= 104)     (were reserved zero)
//! trailer     magic "\x89EC2SIG1" 8 B, Ed25519 public key 32 B, signature 64 B
//! ```
//!
//! The header's file length and checksum cover the whole file, trailer included, and the
//! signature is over bytes `[0, trailer offset)`: the header (with the trailer's place in it)
//! and every section, so every byte that a reader of names looks at. Readers of names never read
//! the trailer; `Snapshot::parse` checks its place (header bytes 136..144) and that no section and
//! not the domain run into it. Modules built before signing existed read a signed file as any
//! other snapshot (they ignored those header bytes). The cryptography lives in `ec2cached`
//! (ed25519-dalek); this module only places and finds the bytes, so the NSS module gains nothing.

use crate::format::{seal_header, Corrupt, Snapshot, HEADER_LEN};

/// Trailer magic, high byte first like the file's.
pub const TRAILER_MAGIC: [u8; 8] = *b"\x89EC2SIG1";
/// Trailer length: magic, public key, signature.
pub const TRAILER_LEN: usize = 8 + 32 + 64;
const AT_OFFSET: usize = 136;
const AT_LENGTH: usize = 140;
/// Header bytes that differ between two publications of one fleet: the file length and the
/// generation time (16..32), the trailer's place and the checksum (136..160).
const VOLATILE: [(usize, usize); 2] = [(16, 32), (AT_OFFSET, HEADER_LEN)];

/// The parts of a signed snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signed<'a> {
    /// The signed bytes: the file up to the trailer.
    pub message: &'a [u8],
    /// The signer's Ed25519 public key, as the trailer names it.
    pub public_key: [u8; 32],
    /// The Ed25519 signature of `message`.
    pub signature: [u8; 64],
}

fn le32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// Makes room for a signature in an unsigned snapshot: the header points at a trailer after the
/// last byte and its length and checksum cover it. Returns the bytes to sign; [`attach`] then
/// appends the trailer. Fails on a file that is not an unsigned snapshot.
pub fn prepare(unsigned: &[u8]) -> Result<Vec<u8>, Corrupt> {
    Snapshot::parse(unsigned)?;
    if unsigned[AT_OFFSET..AT_LENGTH + 4].iter().any(|&b| b != 0) {
        return Err(Corrupt("already signed"));
    }
    let len = unsigned.len();
    let off = u32::try_from(len).map_err(|_| Corrupt("too large to sign"))?;
    let mut out = Vec::with_capacity(len + TRAILER_LEN);
    out.extend_from_slice(unsigned);
    out[16..24].copy_from_slice(&((len + TRAILER_LEN) as u64).to_le_bytes());
    out[AT_OFFSET..AT_OFFSET + 4].copy_from_slice(&off.to_le_bytes());
    out[AT_LENGTH..AT_LENGTH + 4].copy_from_slice(&(TRAILER_LEN as u32).to_le_bytes());
    seal_header(&mut out);
    Ok(out)
}

/// Appends the trailer to bytes made by [`prepare`].
pub fn attach(mut message: Vec<u8>, public_key: &[u8; 32], signature: &[u8; 64]) -> Vec<u8> {
    message.extend_from_slice(&TRAILER_MAGIC);
    message.extend_from_slice(public_key);
    message.extend_from_slice(signature);
    message
}

/// Finds the signature of a snapshot: `Ok(None)` for an unsigned one, an error for a file that is
/// not a snapshot or whose trailer is not where and what the header says.
pub fn split(bytes: &[u8]) -> Result<Option<Signed<'_>>, Corrupt> {
    Snapshot::parse(bytes)?;
    let (off, len) = (le32(bytes, AT_OFFSET), le32(bytes, AT_LENGTH));
    if off == 0 && len == 0 {
        return Ok(None);
    }
    if len != TRAILER_LEN || off < HEADER_LEN || off.checked_add(len) != Some(bytes.len()) {
        return Err(Corrupt("signature trailer is not at the end of the file"));
    }
    let t = &bytes[off..];
    if t[..8] != TRAILER_MAGIC {
        return Err(Corrupt("bad signature trailer magic"));
    }
    let mut public_key = [0u8; 32];
    public_key.copy_from_slice(&t[8..40]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&t[40..104]);
    Ok(Some(Signed {
        message: &bytes[..off],
        public_key,
        signature,
    }))
}

/// The bytes that say which names a snapshot holds: everything up to the trailer, with the
/// generation time, the trailer's place and the checksum zeroed.
fn names_part(bytes: &[u8]) -> Option<Vec<u8>> {
    let body = match split(bytes).ok()? {
        Some(s) => s.message,
        None => bytes,
    };
    let mut v = body.to_vec();
    for (from, to) in VOLATILE {
        v[from..to].fill(0);
    }
    Some(v)
}

/// True when two snapshots publish the same names with the same addresses and settings, however
/// they differ in generation time and signature: a poller need not upload the second.
pub fn same_fleet(a: &[u8], b: &[u8]) -> bool {
    match (names_part(a), names_part(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tiny;

    fn snap(generated: u64, v4: u8) -> Vec<u8> {
        tiny("ec2", generated, v4)
    }

    #[test]
    fn a_signed_file_reads_as_any_snapshot_and_splits_back() {
        let plain = snap(100, 1);
        assert_eq!(split(&plain).unwrap(), None);
        let msg = prepare(&plain).unwrap();
        let signed = attach(msg.clone(), &[7; 32], &[9; 64]);
        assert_eq!(signed.len(), plain.len() + TRAILER_LEN);
        let s = Snapshot::parse(&signed).unwrap();
        assert_eq!(s.header().generated_unix, 100);
        assert_eq!(s.header().file_len, signed.len() as u64);
        let parts = split(&signed).unwrap().unwrap();
        assert_eq!(parts.message, &msg[..]);
        assert_eq!(parts.public_key, [7; 32]);
        assert_eq!(parts.signature, [9; 64]);
        // The message is the whole file but the trailer: header and every section.
        assert_eq!(parts.message, &signed[..plain.len()]);
        assert_eq!(prepare(&signed), Err(Corrupt("already signed")));
    }

    #[test]
    fn a_misplaced_or_damaged_trailer_is_corrupt() {
        let signed = attach(prepare(&snap(100, 1)).unwrap(), &[7; 32], &[9; 64]);
        let mut bad = signed.clone();
        let last = bad.len() - TRAILER_LEN;
        bad[last] ^= 1;
        assert!(split(&bad).is_err());
        let mut moved = signed.clone();
        moved[AT_OFFSET] = moved[AT_OFFSET].wrapping_sub(8);
        seal_header(&mut moved);
        assert!(split(&moved).is_err());
        // Cut: the header's length no longer matches.
        assert!(split(&signed[..signed.len() - 1]).is_err());
    }

    #[test]
    fn same_fleet_ignores_time_and_signature_only() {
        let a = snap(100, 1);
        let b = snap(200, 1);
        let c = snap(100, 2);
        assert!(same_fleet(&a, &b));
        assert!(!same_fleet(&a, &c));
        let sa = attach(prepare(&a).unwrap(), &[1; 32], &[2; 64]);
        assert!(same_fleet(&sa, &b));
        assert!(!same_fleet(&sa, &c));
        assert!(!same_fleet(&sa, b"not a snapshot"));
    }

    /// Issue 22, item 8: a section (or the domain) that runs into the trailer would have bytes
    /// no signature covers read as names: the parser refuses it, whatever the signature says.
    #[test]
    fn no_section_or_domain_may_run_into_the_trailer() {
        let signed = attach(prepare(&snap(100, 1)).unwrap(), &[7; 32], &[9; 64]);
        let off = u32::from_le_bytes(signed[AT_OFFSET..AT_OFFSET + 4].try_into().unwrap());
        let field = |at: usize| u32::from_le_bytes(signed[at..at + 4].try_into().unwrap());
        // The strings section (records of one byte) grown over the trailer.
        let strings = (field(64), field(68));
        let mut bad = signed.clone();
        let grown = off - strings.0 + TRAILER_LEN as u32;
        bad[68..72].copy_from_slice(&grown.to_le_bytes());
        seal_header(&mut bad);
        assert_eq!(
            Snapshot::parse(&bad).unwrap_err(),
            Corrupt("section out of bounds")
        );
        // The domain pointed into the trailer.
        let mut bad = signed.clone();
        bad[40..44].copy_from_slice(&off.to_le_bytes());
        bad[44..48].copy_from_slice(&3u32.to_le_bytes());
        seal_header(&mut bad);
        assert_eq!(
            Snapshot::parse(&bad).unwrap_err(),
            Corrupt("domain out of bounds")
        );
        // A trailer place that is not the end of the file.
        let mut bad = signed.clone();
        bad[AT_OFFSET..AT_OFFSET + 4].copy_from_slice(&(off - 8).to_le_bytes());
        seal_header(&mut bad);
        assert!(Snapshot::parse(&bad).is_err());
        assert!(Snapshot::parse(&signed).is_ok());
    }
}
