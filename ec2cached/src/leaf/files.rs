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
