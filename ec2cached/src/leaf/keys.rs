//! Ed25519 keys for fleet mode: `keygen`, the poller's signing key, followers' trusted keys.
//!
//! A public key is written `ed25519:` and 64 hex digits, one line, as `keygen` prints it and as
//! `trusted_keys` lists it. The secret key file holds `ed25519-secret:` and the 32-byte seed in
//! hex; it must be readable by its owner only.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use nss_ec2_snapshot::signed;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "ed25519-secret:";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A public key as `keygen` prints it.
pub fn public_text(key: &VerifyingKey) -> String {
    format!("{PUBLIC_PREFIX}{}", hex(key.as_bytes()))
}

/// Reads a public key written as `ed25519:<64 hex>`.
pub fn parse_public(text: &str) -> Result<VerifyingKey, String> {
    let bytes = text
        .trim()
        .strip_prefix(PUBLIC_PREFIX)
        .and_then(unhex::<32>)
        .ok_or_else(|| format!("{text:?} is not a public key (`ed25519:` and 64 hex digits)"))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| format!("{text:?} is not a valid Ed25519 public key"))?;
    if key.is_weak() {
        return Err(format!("{text:?} is a weak (small-order) Ed25519 key"));
    }
    Ok(key)
}

/// `ec2cached keygen --secret FILE`: writes a new signing key (mode 0600, never over an existing
/// file) and returns its public key text.
pub fn keygen(path: &Path) -> Result<String, String> {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::getrandom(seed.as_mut()).map_err(|e| format!("no randomness for a key: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => format!(
                "{} exists: refusing to overwrite a signing key (remove it first if you mean to \
                 replace it, and give followers the new public key)",
                path.display()
            ),
            _ => format!("cannot create {}: {e}", path.display()),
        })?;
    // The secret's text is wiped once written, as the key itself is when dropped.
    let text = zeroize::Zeroizing::new(format!(
        "{SECRET_PREFIX}{}\n",
        zeroize::Zeroizing::new(hex(key.as_bytes())).as_str()
    ));
    let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(format!("cannot write {}: {e}", path.display()));
    }
    Ok(public_text(&key.verifying_key()))
}

/// Reads the poller's signing key; refuses a file that group or others may read.
pub fn load_signing(path: &Path) -> Result<SigningKey, String> {
    use std::io::Read;
    let what = || format!("signing key {}", path.display());
    let cant = |e: &dyn std::fmt::Display| format!("cannot read the {}: {e}", what());
    // One open: the mode checked is the mode of what is read, and a FIFO is refused, not
    // waited on at start-up.
    let f = crate::leaf::files::open_regular(path).map_err(|e| cant(&e))?;
    let mode = f.metadata().map_err(|e| cant(&e))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "the {} is readable by group or others (mode {mode:03o}): chmod 600 it",
            what()
        ));
    }
    // The key's text is wiped when dropped, as the key itself is.
    // Room for all of it at once: no smaller buffer left behind unwiped as it grows.
    let mut text = zeroize::Zeroizing::new(String::with_capacity(4096));
    f.take(4096)
        .read_to_string(&mut text)
        .map_err(|e| cant(&e))?;
    let seed = zeroize::Zeroizing::new(
        text.trim()
            .strip_prefix(SECRET_PREFIX)
            .and_then(unhex::<32>)
            .ok_or_else(|| format!("the {} is not a key written by `ec2cached keygen`", what()))?,
    );
    Ok(SigningKey::from_bytes(&seed))
}

/// Signs an unsigned snapshot for `fleet`: the same snapshot with a signature trailer.
pub fn sign(key: &SigningKey, fleet: &str, unsigned: &[u8]) -> Result<Vec<u8>, String> {
    let message = signed::prepare(unsigned, fleet).map_err(|e| format!("cannot sign: {e}"))?;
    let signature: Signature = key.sign(&message);
    Ok(signed::attach(
        message,
        key.verifying_key().as_bytes(),
        &signature.to_bytes(),
    ))
}

/// Why a snapshot's signature was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The file has no signature.
    Unsigned,
    /// Signed by a key that is not trusted (its public key text).
    UnknownKey(String),
    /// The signature does not verify: the file was changed after signing.
    BadSignature,
    /// The file is not a snapshot, or its trailer is damaged.
    Corrupt(String),
    /// Signed for another fleet (its identity, escaped), by a trusted key or not.
    OtherFleet(String),
    /// Signed before fleet identities existed: bound to no fleet.
    NoFleet,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unsigned => write!(f, "not signed (trusted_keys is set)"),
            Refusal::UnknownKey(k) => write!(f, "signed by {k}, which is not in trusted_keys"),
            Refusal::BadSignature => {
                write!(f, "the signature does not verify (changed after signing)")
            }
            Refusal::Corrupt(e) => write!(f, "{e}"),
            Refusal::OtherFleet(x) => write!(
                f,
                "signed for fleet {x:?}, not this one (`fleet`, by default the object's url)"
            ),
            Refusal::NoFleet => write!(
                f,
                "signed for no fleet (by an ec2cached from before fleet identities): upgrade \
                 the pollers"
            ),
        }
    }
}

/// Checks that `bytes` is signed for `fleet` by one of `trusted` (strict verification: no
/// malleable or small-order signatures).
pub fn verify(bytes: &[u8], trusted: &[VerifyingKey], fleet: &str) -> Result<(), Refusal> {
    signer(bytes, trusted, fleet).map(|_| ())
}

/// [`verify`], returning the trusted key that signed. In this order: an unknown key is said as
/// such whatever its trailer claims; a trusted key's fleet (or its first trailer's lack of one)
/// is believed only once its signature (over the fleet too) verifies.
pub fn signer(
    bytes: &[u8],
    trusted: &[VerifyingKey],
    fleet: &str,
) -> Result<VerifyingKey, Refusal> {
    let parts = signed::split(bytes)
        .map_err(|e| Refusal::Corrupt(e.to_string()))?
        .ok_or(Refusal::Unsigned)?;
    let key = trusted
        .iter()
        .find(|k| k.as_bytes() == &parts.public_key)
        .ok_or_else(|| Refusal::UnknownKey(format!("{PUBLIC_PREFIX}{}", hex(&parts.public_key))))?;
    key.verify_strict(parts.message, &Signature::from_bytes(&parts.signature))
        .map_err(|_| Refusal::BadSignature)?;
    let Some(theirs) = parts.fleet else {
        return Err(Refusal::NoFleet);
    };
    if theirs != fleet.as_bytes() {
        return Err(Refusal::OtherFleet(
            String::from_utf8_lossy(theirs).escape_debug().to_string(),
        ));
    }
    Ok(*key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &str = "s3://b/hosts.snap";

    fn snap() -> Vec<u8> {
        nss_ec2_snapshot::format::tiny("ec2", 1, 1)
    }

    #[test]
    fn keygen_writes_a_private_key_once_and_prints_its_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let public = keygen(&path).unwrap();
        assert!(
            public.starts_with("ed25519:") && public.len() == 8 + 64,
            "{public}"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let before = std::fs::read(&path).unwrap();
        let again = keygen(&path).unwrap_err();
        assert!(again.contains("refusing to overwrite"), "{again}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let key = load_signing(&path).unwrap();
        assert_eq!(public_text(&key.verifying_key()), public);
        assert_eq!(parse_public(&public).unwrap(), key.verifying_key());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let open = load_signing(&path).unwrap_err();
        assert!(
            open.contains("readable by group or others (mode 640)"),
            "{open}"
        );
    }

    #[test]
    fn only_a_trusted_untouched_signature_verifies() {
        let a = SigningKey::from_bytes(&[1; 32]);
        let b = SigningKey::from_bytes(&[2; 32]);
        let plain = snap();
        let signed = sign(&a, F, &plain).unwrap();
        assert_eq!(
            verify(&signed, &[b.verifying_key(), a.verifying_key()], F),
            Ok(())
        );
        assert_eq!(
            verify(&plain, &[a.verifying_key()], F),
            Err(Refusal::Unsigned)
        );
        assert!(matches!(
            verify(&signed, &[b.verifying_key()], F),
            Err(Refusal::UnknownKey(k)) if k == public_text(&a.verifying_key())
        ));
        // Any byte the module reads is covered: change an address, re-seal the header checksum.
        let mut changed = signed.clone();
        let at = plain.len() - 40;
        changed[at] ^= 1;
        nss_ec2_snapshot::format::seal_header(&mut changed);
        assert_eq!(
            verify(&changed, &[a.verifying_key()], F),
            Err(Refusal::BadSignature)
        );
        let mut sig = signed.clone();
        let last = sig.len() - 1;
        sig[last] ^= 1;
        assert_eq!(
            verify(&sig, &[a.verifying_key()], F),
            Err(Refusal::BadSignature)
        );
    }

    /// Issue 22, item 4: a trusted key's signature for another fleet is refused, and the fleet
    /// is signed: rewriting it in the trailer breaks the signature.
    #[test]
    fn a_signature_binds_one_fleet() {
        let a = SigningKey::from_bytes(&[1; 32]);
        let staging = sign(&a, "s3://staging/hosts.snap", &snap()).unwrap();
        assert_eq!(
            verify(&staging, &[a.verifying_key()], "s3://prod/hosts.snap"),
            Err(Refusal::OtherFleet("s3://staging/hosts.snap".into()))
        );
        let prod = sign(&a, "s3://prod/hosts.snap", &snap()).unwrap();
        assert_eq!(
            verify(&prod, &[a.verifying_key()], "s3://prod/hosts.snap"),
            Ok(())
        );
        // Same length, other fleet: the identity is part of what is signed.
        let mut forged = sign(&a, "s3://stage/hosts.snap", &snap()).unwrap();
        let at = snap().len() + 10;
        forged[at..at + 21].copy_from_slice(b"s3://prod1/hosts.snap");
        assert_eq!(
            verify(&forged, &[a.verifying_key()], "s3://prod1/hosts.snap"),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn public_keys_are_checked() {
        assert!(parse_public("ed25519:zz").is_err());
        assert!(parse_public(&format!("ed25519:{}", "00".repeat(32))).is_err());
        assert!(parse_public(&format!("rsa:{}", "00".repeat(32))).is_err());
    }

    /// A signing key that is a FIFO is refused at once, not waited on (issue 22, item 11).
    #[test]
    fn a_fifo_in_place_of_the_key_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || tx.send(load_signing(&p)).unwrap());
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("load_signing waited on a FIFO");
        let e = r.unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        // Unblock a reader the old code left waiting, so the test process can end.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path);
    }
}
