//! `ec2cached export`: the installed snapshot's names for a DNS server (no API call).
//! The formats are those of [`nss_ec2_dns::export`].

use crate::config::Config;
use nss_ec2_dns::export::{self, Format};
use nss_ec2_snapshot::Snapshot;
use std::path::Path;

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// `/etc/hosts` lines (dnsmasq `addn-hosts`, CoreDNS `hosts`).
    Hosts,
    /// The forward zone file of the domain (BIND, NSD, Knot, CoreDNS `file`).
    Zone,
    /// A dnsmasq conf snippet (`local=/D/` and `host-record=`).
    Dnsmasq,
    /// unbound `local-zone`/`local-data` in a `server:` clause.
    Unbound,
    /// The PTR records as zone files, one per /8 of IPv4 and /32 of IPv6: needs --output DIR.
    ReverseZone,
}

/// Writes the export to `output` atomically (or to stdout); `reverse-zone` writes one file per
/// zone into the directory `output` and lists them on stdout (`ORIGIN FILE`).
pub fn run(cfg: &Config, kind: Kind, output: Option<&Path>, now: u64) -> Result<(), String> {
    let bytes = crate::reports::facts::read_usable(cfg, now)?;
    let snap = Snapshot::parse(&bytes).map_err(|e| e.to_string())?;
    let write = |path: &Path, text: &str| {
        crate::leaf::files::write_atomic(path, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let format = match kind {
        Kind::Hosts => Format::Hosts,
        Kind::Zone => Format::Zone,
        Kind::Dnsmasq => Format::Dnsmasq,
        Kind::Unbound => Format::Unbound,
        Kind::ReverseZone => {
            let Some(dir) = output.filter(|d| d.is_dir()) else {
                return Err(
                    "--format reverse-zone writes one file per zone: --output must name a \
                     directory"
                        .into(),
                );
            };
            let zones = export::reverse_zones(&snap).map_err(|e| e.to_string())?;
            let mut written = Vec::new();
            for z in &zones {
                let file = dir.join(format!("{}zone", z.origin));
                write(&file, &z.text)?;
                println!("{} {}", z.origin, file.display());
                written.push(file);
            }
            remove_stale_zones(dir, &written);
            return Ok(());
        }
    };
    let text = export::forward(&snap, format).map_err(|e| e.to_string())?;
    match output {
        Some(path) => write(path, &text),
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|e| format!("stdout: {e}"))
        }
    }
}

/// What every reverse zone file this command writes begins with.
const REVERSE_HEADER: &str = "; ec2cached export --format reverse-zone:";

/// Removes the reverse zones an earlier export wrote into `dir` that this one did not (a /8 or
/// /32 without instances now): a server loading `DIR/*.zone` would go on answering from them.
/// Only files named `*.arpa.zone` that begin with this command's header are touched.
fn remove_stale_zones(dir: &Path, written: &[std::path::PathBuf]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let ours = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".arpa.zone"))
            && !written.contains(&p)
            && e.file_type().is_ok_and(|t| t.is_file())
            && std::fs::read(&p).is_ok_and(|b| b.starts_with(REVERSE_HEADER.as_bytes()));
        if ours && std::fs::remove_file(&p).is_ok() {
            eprintln!(
                "ec2cached: removed {} (no instance address in that zone now)",
                p.display()
            );
        }
    }
}
