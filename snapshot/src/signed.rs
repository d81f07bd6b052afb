//! The signature trailer of a published snapshot (fleet mode).
//!
//! A signed snapshot is still a version-1 snapshot: the unsigned file, then a trailer.
//!
//! ```text
//! header 136  trailer offset u32      140  trailer length u32 (= 106 + n) (were reserved zero)
//! trailer     magic "\x89EC2SIG2" 8 B, fleet length n u16 (1..=255), fleet identity n B,
//!             Ed25519 public key 32 B, signature 64 B
//! ```
//!
//! The header's file length and checksum cover the whole file, trailer included, and the
//! signature is over bytes `[0, trailer offset + 10 + n)`: the header (with the trailer's place
//! in it), every section, the trailer's magic and the fleet identity, so every byte that a reader
//! of names looks at, bound to one fleet: a key shared by two fleets (staging and prod) cannot
//! carry one fleet's snapshot into the other. Readers of names never read the trailer;
//! `Snapshot::parse` checks its place (header bytes 136..144) and that no section and not the
//! domain run into it. Modules built before signing existed read a signed file as any other
//! snapshot (they ignored those header bytes). The cryptography lives in `ec2cached`
//! (ed25519-dalek); this module only places and finds the bytes, so the NSS module gains nothing.
//!
//! The first signed files (magic `"\x89EC2SIG1"`, 104 bytes: key and signature over
//! `[0, trailer offset)`) named no fleet; [`split`] still finds them, so that a follower can say
//! why it refuses one.

use crate::format::{seal_header, Corrupt, Snapshot, HEADER_LEN};

/// Trailer magic, high byte first like the file's.
pub const TRAILER_MAGIC: [u8; 8] = *b"\x89EC2SIG2";
/// The magic of the first trailers, which named no fleet.
pub const UNBOUND_MAGIC: [u8; 8] = *b"\x89EC2SIG1";
/// The length of a first (unbound) trailer: magic, public key, signature.
pub const UNBOUND_LEN: usize = 8 + 32 + 64;
/// Trailer length without the fleet identity: magic, fleet length, public key, signature.
pub const TRAILER_LEN: usize = 8 + 2 + 32 + 64;
/// The longest fleet identity.
pub const FLEET_MAX: usize = 255;
const AT_OFFSET: usize = 136;
const AT_LENGTH: usize = 140;
/// Header bytes that differ between two publications of one fleet: the file length and the
/// generation time (16..32), the trailer's place and the checksum (136..160).
const VOLATILE: [(usize, usize); 2] = [(16, 32), (AT_OFFSET, HEADER_LEN)];

/// The parts of a signed snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signed<'a> {
    /// The signed bytes: the file up to the trailer's public key.
    pub message: &'a [u8],
    /// The fleet the signature binds the snapshot to; `None` for a first (unbound) trailer.
    pub fleet: Option<&'a [u8]>,
    /// The signer's Ed25519 public key, as the trailer names it.
    pub public_key: [u8; 32],
    /// The Ed25519 signature of `message`.
    pub signature: [u8; 64],
}

fn le32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// Checks a fleet identity: 1 to 255 bytes of printable ASCII (no space or control character).
pub fn check_fleet(fleet: &str) -> Result<(), &'static str> {
    if fleet.is_empty() || fleet.len() > FLEET_MAX {
        return Err("must be 1 to 255 characters");
    }
    if !fleet.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces");
    }
    Ok(())
}

/// Makes room for a signature in an unsigned snapshot: the header points at a trailer after the
/// last byte and its length and checksum cover it. Returns the bytes to sign (the file, the
/// trailer's magic and the fleet identity); [`attach`] then appends the key and signature.
/// Fails on a file that is not an unsigned snapshot, or on a bad fleet identity.
pub fn prepare(unsigned: &[u8], fleet: &str) -> Result<Vec<u8>, Corrupt> {
    Snapshot::parse(unsigned)?;
    check_fleet(fleet).map_err(|_| Corrupt("bad fleet identity"))?;
    if unsigned[AT_OFFSET..AT_LENGTH + 4].iter().any(|&b| b != 0) {
        return Err(Corrupt("already signed"));
    }
    let len = unsigned.len();
    let trailer = TRAILER_LEN + fleet.len();
    let off = u32::try_from(len + trailer).map_err(|_| Corrupt("too large to sign"))?;
    let off = off - trailer as u32;
    let mut out = Vec::with_capacity(len + trailer);
    out.extend_from_slice(unsigned);
    out[16..24].copy_from_slice(&((len + trailer) as u64).to_le_bytes());
    out[AT_OFFSET..AT_OFFSET + 4].copy_from_slice(&off.to_le_bytes());
    out[AT_LENGTH..AT_LENGTH + 4].copy_from_slice(&(trailer as u32).to_le_bytes());
    seal_header(&mut out);
    out.extend_from_slice(&TRAILER_MAGIC);
    out.extend_from_slice(&(fleet.len() as u16).to_le_bytes());
    out.extend_from_slice(fleet.as_bytes());
    Ok(out)
}

/// Appends the public key and signature to bytes made by [`prepare`].
pub fn attach(mut message: Vec<u8>, public_key: &[u8; 32], signature: &[u8; 64]) -> Vec<u8> {
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
    if len < UNBOUND_LEN || off < HEADER_LEN || off.checked_add(len) != Some(bytes.len()) {
        return Err(Corrupt("signature trailer is not at the end of the file"));
    }
    let t = &bytes[off..];
    // Where the signed bytes end (from the trailer's start) and where the key begins.
    let (fleet, signed_len, key_at) = if t[..8] == UNBOUND_MAGIC && len == UNBOUND_LEN {
        (None, 0, 8)
    } else if t[..8] == TRAILER_MAGIC && len > TRAILER_LEN {
        let n = usize::from(u16::from_le_bytes([t[8], t[9]]));
        if n == 0 || n > FLEET_MAX || len != TRAILER_LEN + n {
            return Err(Corrupt("bad signature trailer length"));
        }
        (Some(&t[10..10 + n]), 10 + n, 10 + n)
    } else {
        return Err(Corrupt("bad signature trailer magic"));
    };
    let keyed = &t[key_at..];
    let mut public_key = [0u8; 32];
    public_key.copy_from_slice(&keyed[..32]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&keyed[32..96]);
    Ok(Some(Signed {
        message: &bytes[..off + signed_len],
        fleet,
        public_key,
        signature,
    }))
}

/// The bytes that say which names a snapshot holds: everything up to the trailer, with the
/// generation time, the trailer's place and the checksum zeroed.
fn names_part(bytes: &[u8]) -> Option<Vec<u8>> {
    let body = match split(bytes).ok()? {
        Some(_) => &bytes[..le32(bytes, AT_OFFSET)],
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
        let msg = prepare(&plain, "s3://b/k").unwrap();
        let signed = attach(msg.clone(), &[7; 32], &[9; 64]);
        assert_eq!(signed.len(), plain.len() + TRAILER_LEN + 8);
        let s = Snapshot::parse(&signed).unwrap();
        assert_eq!(s.header().generated_unix, 100);
        assert_eq!(s.header().file_len, signed.len() as u64);
        let parts = split(&signed).unwrap().unwrap();
        assert_eq!(parts.message, &msg[..]);
        assert_eq!(parts.public_key, [7; 32]);
        assert_eq!(parts.signature, [9; 64]);
        assert_eq!(parts.fleet, Some(&b"s3://b/k"[..]));
        // The message is the whole file, the trailer's magic and the fleet: header, every
        // section and the fleet the signature binds them to.
        assert_eq!(parts.message, &signed[..plain.len() + 10 + 8]);
        assert_eq!(&parts.message[plain.len()..plain.len() + 8], &TRAILER_MAGIC);
        assert_eq!(prepare(&signed, "f"), Err(Corrupt("already signed")));
        assert_eq!(
            prepare(&plain, "two words"),
            Err(Corrupt("bad fleet identity"))
        );
        assert!(prepare(&plain, &"x".repeat(256)).is_err());
        assert!(prepare(&plain, "").is_err());
    }

    /// A first trailer (no fleet) is still found, with no fleet, so that a follower can say why
    /// it refuses it.
    #[test]
    fn an_unbound_trailer_splits_without_a_fleet() {
        let plain = snap(100, 1);
        let mut old = plain.clone();
        let len = plain.len();
        old[16..24].copy_from_slice(&((len + UNBOUND_LEN) as u64).to_le_bytes());
        old[AT_OFFSET..AT_OFFSET + 4].copy_from_slice(&(len as u32).to_le_bytes());
        old[AT_LENGTH..AT_LENGTH + 4].copy_from_slice(&(UNBOUND_LEN as u32).to_le_bytes());
        seal_header(&mut old);
        old.extend_from_slice(&UNBOUND_MAGIC);
        old.extend_from_slice(&[7; 32]);
        old.extend_from_slice(&[9; 64]);
        let parts = split(&old).unwrap().unwrap();
        assert_eq!(parts.fleet, None);
        assert_eq!(parts.message, &old[..len]);
        assert_eq!(parts.public_key, [7; 32]);
        // A fleet length that disagrees with the trailer's is corrupt.
        let mut bad = attach(prepare(&plain, "abc").unwrap(), &[7; 32], &[9; 64]);
        bad[len + 8] = 4;
        assert_eq!(split(&bad), Err(Corrupt("bad signature trailer length")));
    }

    #[test]
    fn a_misplaced_or_damaged_trailer_is_corrupt() {
        let signed = attach(prepare(&snap(100, 1), "f").unwrap(), &[7; 32], &[9; 64]);
        let mut bad = signed.clone();
        let last = bad.len() - TRAILER_LEN - 1;
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
        let sa = attach(prepare(&a, "f").unwrap(), &[1; 32], &[2; 64]);
        assert!(same_fleet(&sa, &b));
        assert!(!same_fleet(&sa, &c));
        assert!(!same_fleet(&sa, b"not a snapshot"));
    }

    /// Issue 22, item 8: a section (or the domain) that runs into the trailer would have bytes
    /// no signature covers read as names: the parser refuses it, whatever the signature says.
    #[test]
    fn no_section_or_domain_may_run_into_the_trailer() {
        let signed = attach(prepare(&snap(100, 1), "f").unwrap(), &[7; 32], &[9; 64]);
        let off = u32::from_le_bytes(signed[AT_OFFSET..AT_OFFSET + 4].try_into().unwrap());
        let field = |at: usize| u32::from_le_bytes(signed[at..at + 4].try_into().unwrap());
        // The strings section (records of one byte) grown over the trailer.
        let strings = (field(64), field(68));
        let mut bad = signed.clone();
        let grown = off - strings.0 + TRAILER_LEN as u32 + 1;
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
