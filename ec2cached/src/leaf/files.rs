//! Files written whole: write-temp, fsync, rename, fsync the directory, so that readers that
//! still map the old file keep a whole old generation, new readers get a whole new one, and a
//! crash at any moment leaves one or the other; and the temp files a killed writer left behind.

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// Writes `bytes` to `path` by temp file, fsync and rename, world-readable (every process on the
/// host reads the snapshot), then fsyncs the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_and(path, bytes, || {})
}

/// [`write_atomic`], calling `before_rename` once the new bytes are written and synced, just
/// before they replace the file.
pub fn write_atomic_and(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce(),
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("{}{}.", temp_prefix(path), std::process::id()))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    before_rename();
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Takes the lock file `lock` exclusively (flock). A new lock file is the state directory owner's, mode 0600 (root makes it so when it
/// creates it), so no other account can open it and stall the daemon; it is opened without
/// following a symlink, without blocking on a FIFO, refused if it is not a regular file with one
/// link, and waited for at most `wait` (the caller's thread sleeps meanwhile).
pub fn lock_file(lock: &Path, wait: Duration) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let fail =
        |what: &str, e: &dyn std::fmt::Display| format!("cannot {what} {}: {e}", lock.display());
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    // An existing lock is opened read-only (enough for flock), so its owner and mode need not be
    // ours; a new one is made mode 0600, and root hands the one it made to the state
    // directory's owner (the daemon's account). A lock someone else made is never chowned or
    // chmodded.
    let open_existing = || {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(lock)
    };
    let file = match open_existing() {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(flags)
                .open(lock);
            match created {
                Ok(f) => {
                    let dir = lock
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                        .unwrap_or(Path::new("."));
                    if let Ok(d) = std::fs::metadata(dir) {
                        if nix::unistd::geteuid().is_root() && d.uid() != 0 {
                            std::os::unix::fs::fchown(&f, Some(d.uid()), Some(d.gid()))
                                .map_err(|e| fail("chown", &e))?;
                        }
                    }
                    f
                }
                // Another writer made it between our two opens (first boot: configuration
                // management's `install` beside the daemon): use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    open_existing().map_err(|e| fail("open", &e))?
                }
                Err(e) => return Err(fail("create", &e)),
            }
        }
        Err(e) => return Err(fail("open", &e)),
    };
    let meta = file.metadata().map_err(|e| fail("stat", &e))?;
    if !meta.is_file() || meta.nlink() != 1 {
        return Err(fail("use", &"not a regular file with one link"));
    }
    let deadline = std::time::Instant::now() + wait;
    let mut file = file;
    loop {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(held) => return Ok(held),
            Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) if std::time::Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(fail(
                    "lock",
                    &format!("another writer has held it for {} s", wait.as_secs()),
                ))
            }
            Err((_, e)) => return Err(fail("lock", &e)),
        }
    }
}

/// Opens `path` for reading without blocking on a FIFO or a device, and refuses anything but a
/// regular file. The descriptor is checked, not the path, and it is the one read: nothing can be
/// swapped in between.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(f)
}

pub(crate) fn temp_prefix(path: &Path) -> String {
    format!(
        ".{}.",
        path.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// Removes temp files that a killed writer left beside `path`. Temp names carry the writer's
/// pid (`.hosts.snap.<pid>.<random>.tmp`): a file whose writer is gone is removed; one whose
/// writer still runs (another `refresh` publishing right now) is left alone.
pub fn remove_stale_temps_of(path: &Path) {
    let Some(dir) = path.parent() else { return };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = temp_prefix(path);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(&prefix) && name.ends_with(".tmp")) {
            continue;
        }
        let writer = name[prefix.len()..]
            .split('.')
            .next()
            .and_then(|p| p.parse::<i32>().ok());
        let gone = match writer {
            Some(pid) if pid > 0 => {
                pid != std::process::id() as i32
                    && kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH)
            }
            // Not one of ours by name: remove it only once it is clearly abandoned.
            _ => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600)),
        };
        if gone && std::fs::remove_file(e.path()).is_ok() {
            tracing::info!("removed stale temp file {}", e.path().display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ec2cached install FIFO` hung for ever (issue 22, item 11): a FIFO, a directory and a
    /// device are refused at once; a regular file opens.
    #[test]
    fn only_regular_files_are_opened_and_none_is_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("snap.fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        for p in [fifo.as_path(), dir.path(), Path::new("/dev/null")] {
            let e = open_regular(p).unwrap_err();
            assert_eq!(e.to_string(), "not a regular file", "{}", p.display());
        }
        let file = dir.path().join("hosts.snap");
        std::fs::write(&file, b"x").unwrap();
        assert!(open_regular(&file).is_ok());
    }
}
