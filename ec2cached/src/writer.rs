//! The writer of the local snapshot: every writer (the daemon as poller or follower, `refresh`,
//! `install`) takes `<snapshot>.lock`, compares, and replaces the file whole, so two writers never
//! put an older generation over a newer one. A failed poll never reaches it, so the last good
//! snapshot stays byte-for-byte as it was.

use crate::leaf::clock::{now, utc};
use crate::leaf::files::{lock_file, remove_stale_temps_of, write_atomic, write_atomic_and};
use crate::leaf::ledger::status_path;
use nss_ec2_snapshot::Snapshot;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Removes temp files that a killed process left beside the snapshot and its status file
/// ([`remove_stale_temps_of`]).
pub fn remove_stale_temps(snapshot: &Path) {
    remove_stale_temps_of(snapshot);
    remove_stale_temps_of(&status_path(snapshot));
}

/// Path of the follower's high-water mark: the newest sweep it has verified and installed,
/// kept beside the snapshot and outside it, so that removing the snapshot (an emptied state
/// directory, a damaged file) does not reopen the door to an older signed sweep.
pub fn high_water_path(snapshot: &Path) -> PathBuf {
    let mut s = snapshot.as_os_str().to_owned();
    s.push(".high-water");
    PathBuf::from(s)
}

/// A high-water mark: the newest sweep verified here, the key that signed it and the fleet it
/// was signed for (either empty in a mark written before they were recorded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// The sweep (unix seconds).
    pub sweep: u64,
    /// The signer's public key text.
    pub key: String,
    /// The fleet identity.
    pub fleet: String,
}

/// The high-water mark, if one was recorded (a damaged file counts as none, and is said).
pub fn high_water(snapshot: &Path) -> Option<Mark> {
    let path = high_water_path(snapshot);
    let text = std::fs::read_to_string(&path).ok()?;
    let mut words = text.split_whitespace();
    let sweep = words.next().and_then(|w| w.parse().ok());
    if sweep.is_none() {
        tracing::warn!("{}: not a sweep time; ignored", path.display());
    }
    let mut next = || words.next().unwrap_or_default().to_string();
    Some(Mark {
        sweep: sweep?,
        key: next(),
        fleet: next(),
    })
}

/// Raises the high-water mark to `sweep`, signed by `signer` for `fleet` (never lowers a mark
/// of the same fleet; replaces one of another fleet, which no longer counts). Called under the
/// writers' lock, before the snapshot of that sweep is renamed into place.
pub fn raise_high_water(snapshot: &Path, sweep: u64, signer: &str, fleet: &str) {
    if high_water(snapshot)
        .is_some_and(|m| m.sweep >= sweep && (m.fleet.is_empty() || m.fleet == fleet))
    {
        return;
    }
    let path = high_water_path(snapshot);
    if let Err(e) = write_atomic(&path, format!("{sweep} {signer} {fleet}\n").as_bytes()) {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
}

/// Path of the lock file that serialises writers of a snapshot.
pub fn lock_path(snapshot: &Path) -> PathBuf {
    let mut s = snapshot.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

pub use crate::leaf::clock::CLOCK_SLACK_SECS;

/// How long a writer waits for another to finish before it gives up.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Takes `<snapshot>.lock`, the lock every writer of the snapshot holds while it compares and
/// replaces ([`lock_file`]), waiting at most [`LOCK_WAIT`] (the caller's thread sleeps
/// meanwhile; the daemon waits on tokio's blocking pool and serves SIGTERM at once).
fn lock_writers(snapshot: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, NotInstalled> {
    lock_file(&lock_path(snapshot), LOCK_WAIT).map_err(NotInstalled::Io)
}

/// What [`install`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    /// The file was replaced.
    Replaced,
    /// The installed file already has these bytes.
    Same,
}

/// Why [`install`] left the installed snapshot alone.
#[derive(Debug, PartialEq, Eq)]
pub enum NotInstalled {
    /// The installed snapshot comes from a later sweep (its generation time, ours).
    Rollback(u64, u64),
    /// Writing failed.
    Io(String),
}

impl std::fmt::Display for NotInstalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotInstalled::Rollback(installed, ours) => write!(
                f,
                "older than the installed snapshot (sweep at {}, installed: {}): no rollback",
                utc(*ours),
                utc(*installed)
            ),
            NotInstalled::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Replaces the snapshot at `path` with `bytes` (a snapshot that parses) unless the installed
/// one comes from a later sweep: every writer (the daemon as poller or follower, `refresh`,
/// `install`) takes `<path>.lock` first, so two writers never put an older generation over a
/// newer one. An installed file that does not parse, or whose sweep is more than
/// [`CLOCK_SLACK_SECS`] in the future, is replaced.
pub fn install(path: &Path, bytes: &[u8]) -> Result<Installed, NotInstalled> {
    install_and(path, bytes, || {})
}

/// [`install`], calling `before` (under the lock) once the new snapshot is written and synced,
/// just before it is renamed into place: what it records (the status ledger) is there by the
/// time a reader sees the new snapshot. Not called when nothing is replaced (the same bytes, a
/// rollback, a failure before the rename).
pub fn install_and(
    path: &Path,
    bytes: &[u8],
    before: impl FnOnce(),
) -> Result<Installed, NotInstalled> {
    install_checked(path, bytes, |_, installed| within_slack(installed), before)
}

/// The default rule: an installed sweep counts unless it is more than [`CLOCK_SLACK_SECS`] in
/// this host's future (a broken clock, or no poller, wrote it).
pub fn within_slack(installed: u64) -> bool {
    installed <= now().saturating_add(CLOCK_SLACK_SECS)
}

/// [`install_and`], where the installed snapshot blocks an older one only if `counts` says so
/// of its bytes and sweep (read under the lock): a follower's installed snapshot that no key it
/// trusts today signed does not count, and one a trusted key signed always does.
pub fn install_checked(
    path: &Path,
    bytes: &[u8],
    counts: impl FnOnce(&[u8], u64) -> bool,
    before: impl FnOnce(),
) -> Result<Installed, NotInstalled> {
    let ours = Snapshot::parse(bytes)
        .map_err(|e| NotInstalled::Io(format!("self-check failed: {e}")))?
        .header()
        .generated_unix;
    let _held = lock_writers(path)?;
    if let Ok(current) = std::fs::read(path) {
        if current == bytes {
            return Ok(Installed::Same);
        }
        if let Ok(s) = Snapshot::parse(&current) {
            let installed = s.header().generated_unix;
            if installed > ours && counts(&current, installed) {
                return Err(NotInstalled::Rollback(installed, ours));
            }
        }
    }
    write_atomic_and(path, bytes, before)
        .map_err(|e| NotInstalled::Io(format!("cannot publish {}: {e}", path.display())))?;
    Ok(Installed::Replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nss_ec2_snapshot::format::tiny;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn dir() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let snap = d.path().join("hosts.snap");
        (d, snap)
    }

    #[test]
    fn install_replaces_whole_and_keeps_a_later_sweep() {
        let (_d, snap) = dir();
        let (v1, v2, v3) = (
            tiny("ec2", 100, 1),
            tiny("ec2", 200, 2),
            tiny("ec2", 150, 3),
        );
        assert_eq!(install(&snap, &v1), Ok(Installed::Replaced));
        assert_eq!(std::fs::read(&snap).unwrap(), v1);
        // World-readable: every process on the host maps it.
        assert_eq!(
            std::fs::metadata(&snap).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(install(&snap, &v1), Ok(Installed::Same));
        assert_eq!(install(&snap, &v2), Ok(Installed::Replaced));
        // An older sweep never goes over a later one, and the file stays as it was.
        assert_eq!(install(&snap, &v3), Err(NotInstalled::Rollback(200, 150)));
        assert_eq!(std::fs::read(&snap).unwrap(), v2);
        let text = NotInstalled::Rollback(200, 150).to_string();
        assert!(
            text.contains("no rollback") && text.contains("1970-01-01T00:03:20Z"),
            "{text}"
        );
    }

    #[test]
    fn install_refuses_what_a_reader_would_refuse_and_replaces_what_no_reader_can_use() {
        let (_d, snap) = dir();
        let good = tiny("ec2", 100, 1);
        match install(&snap, b"not a snapshot") {
            Err(NotInstalled::Io(e)) => assert!(e.starts_with("self-check failed"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(!snap.exists(), "nothing installed");
        // A damaged installed file, or one from past the clock slack, does not block.
        std::fs::write(&snap, b"garbage").unwrap();
        assert_eq!(install(&snap, &good), Ok(Installed::Replaced));
        let future = now() + CLOCK_SLACK_SECS + 3600;
        std::fs::write(&snap, tiny("ec2", future, 9)).unwrap();
        assert_eq!(install(&snap, &good), Ok(Installed::Replaced));
        // Within the slack, a later sweep still counts.
        let soon = now() + CLOCK_SLACK_SECS / 2;
        std::fs::write(&snap, tiny("ec2", soon, 9)).unwrap();
        assert_eq!(
            install(&snap, &good),
            Err(NotInstalled::Rollback(soon, 100))
        );
    }

    #[test]
    fn the_lock_is_made_private_and_refused_when_it_is_not_a_plain_file() {
        let (d, snap) = dir();
        let good = tiny("ec2", 100, 1);
        assert_eq!(install(&snap, &good), Ok(Installed::Replaced));
        let lock = lock_path(&snap);
        assert_eq!(lock, d.path().join("hosts.snap.lock"));
        assert_eq!(std::fs::metadata(&lock).unwrap().mode() & 0o777, 0o600);
        let refused = |why: &str| match install(&snap, &tiny("ec2", 300, 2)) {
            Err(NotInstalled::Io(e)) => assert!(e.contains(why), "{e}"),
            other => panic!("{other:?}"),
        };
        // A symlink (to a file another account owns, say) is not followed.
        std::fs::remove_file(&lock).unwrap();
        std::os::unix::fs::symlink(d.path().join("elsewhere"), &lock).unwrap();
        std::fs::write(d.path().join("elsewhere"), b"").unwrap();
        refused("cannot open");
        // A FIFO would block the daemon: opened without blocking, and refused.
        std::fs::remove_file(&lock).unwrap();
        nix::unistd::mkfifo(&lock, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        refused("not a regular file with one link");
        // A hard link to some other file: refused.
        std::fs::remove_file(&lock).unwrap();
        std::fs::hard_link(d.path().join("elsewhere"), &lock).unwrap();
        refused("not a regular file with one link");
        assert_eq!(
            std::fs::read(&snap).unwrap(),
            good,
            "every refusal left the snapshot"
        );
    }

    #[test]
    fn a_writer_waits_for_the_one_holding_the_lock() {
        let (_d, snap) = dir();
        install(&snap, &tiny("ec2", 100, 1)).unwrap();
        let held = lock_writers(&snap).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = snap.clone();
        let other = std::thread::spawn(move || {
            let r = install(&path, &tiny("ec2", 200, 2));
            tx.send(()).unwrap();
            r
        });
        // It waits while the lock is held ...
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        assert_eq!(std::fs::read(&snap).unwrap(), tiny("ec2", 100, 1));
        // ... and goes on once it is released.
        drop(held);
        assert_eq!(other.join().unwrap(), Ok(Installed::Replaced));
        assert_eq!(std::fs::read(&snap).unwrap(), tiny("ec2", 200, 2));
    }

    #[test]
    fn stale_temp_files_of_dead_writers_go_and_live_ones_stay() {
        let (d, snap) = dir();
        let status = crate::leaf::ledger::status_path(&snap);
        // A pid that is not running: the child of a command that has exited.
        let dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        let mut dead = dead;
        dead.wait().unwrap();
        let me = std::process::id();
        let names = [
            format!(".hosts.snap.{dead_pid}.abc.tmp"),
            format!(".hosts.snap.status.{dead_pid}.abc.tmp"),
            format!(".hosts.snap.{me}.abc.tmp"),
            ".hosts.snap.1.abc.tmp".to_string(),
            "unrelated.tmp".to_string(),
        ];
        for n in &names {
            std::fs::write(d.path().join(n), b"x").unwrap();
        }
        assert!(status.file_name().is_some());
        remove_stale_temps(&snap);
        let left: Vec<bool> = names.iter().map(|n| d.path().join(n).exists()).collect();
        assert_eq!(left, [false, false, true, true, true], "{names:?}");
    }

    #[test]
    fn install_and_calls_before_only_when_it_replaces_and_before_the_new_file_is_seen() {
        let (_d, snap) = dir();
        let (v1, v2) = (tiny("ec2", 100, 1), tiny("ec2", 200, 2));
        install(&snap, &v2).unwrap();
        let mut called = false;
        assert_eq!(
            install_and(&snap, &v2, || called = true),
            Ok(Installed::Same)
        );
        assert_eq!(
            install_and(&snap, &v1, || called = true),
            Err(NotInstalled::Rollback(200, 100))
        );
        assert!(!called, "nothing replaced, nothing to record");
        let v3 = tiny("ec2", 300, 3);
        let mut seen = None;
        assert_eq!(
            install_and(&snap, &v3, || seen = Some(std::fs::read(&snap).unwrap())),
            Ok(Installed::Replaced)
        );
        assert_eq!(
            seen,
            Some(v2),
            "called while readers still see the old snapshot"
        );
        assert_eq!(std::fs::read(&snap).unwrap(), v3);
    }

    /// Writers racing into a fresh directory all get the lock (issue 22, item 9: "cannot
    /// create ...hosts.snap.lock: File exists" before).
    #[test]
    fn writers_racing_to_create_the_lock_all_get_it() {
        for round in 0..40u64 {
            let (_d, snap) = dir();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let threads: Vec<_> = (0..4u8)
                .map(|k| {
                    let (snap, barrier) = (snap.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        install(&snap, &tiny("ec2", 100 + round, k + 1))
                    })
                })
                .collect();
            for t in threads {
                match t.join().unwrap() {
                    Ok(_) | Err(NotInstalled::Rollback(..)) => {}
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
        }
    }
}
