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
    /// The PTR records as zone files, one per /24 of IPv4 and /64 of IPv6: needs --output DIR.
    ReverseZone,
}

/// Writes the export to `output` atomically (or to stdout); `reverse-zone` writes one file per
/// zone into the directory `output` and lists them on stdout (`ORIGIN FILE`). A name cut to
/// [`export::MAX_RECORDS`] records is said on stderr (and in the export's own comment).
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
            warn_cuts(zones.iter().flat_map(|z| &z.cuts));
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
    let export::Export { text, cuts } =
        export::forward_with_cuts(&snap, format).map_err(|e| e.to_string())?;
    warn_cuts(&cuts);
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

/// Says on stderr which names were cut to [`export::MAX_RECORDS`] records: the first 10, then how
/// many more (the export's own comment lists them all).
fn warn_cuts<'a>(cuts: impl IntoIterator<Item = &'a export::Cut>) {
    const SHOWN: usize = 10;
    let cuts: Vec<&export::Cut> = cuts.into_iter().collect();
    for c in cuts.iter().take(SHOWN) {
        eprintln!(
            "ec2cached: warning: {c} (an export gives a name at most {} records of a type: \
             BIND loads no more)",
            export::MAX_RECORDS
        );
    }
    if cuts.len() > SHOWN {
        eprintln!(
            "ec2cached: warning: and {} more names cut (listed at the top of the export)",
            cuts.len() - SHOWN
        );
    }
}

/// What every reverse zone file this command writes begins with.
const REVERSE_HEADER: &str = "; ec2cached export --format reverse-zone:";

/// Removes the reverse zones an earlier export wrote into `dir` that this one did not (a /24 or
/// /64 without instances now, or a /8 or /32 of an export before zones were /24 and /64): a
/// server loading `DIR/*.zone` would go on answering from them. Only files named `*.arpa.zone`
/// that begin with this command's header are touched.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::fixture::setup;

    #[test]
    fn a_forward_export_is_written_whole_from_the_installed_snapshot() {
        let (d, cfg) = setup(0);
        let out = d.path().join("ec2.hosts");
        run(&cfg, Kind::Hosts, Some(&out), 2_000).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let line = |name: &str| {
            text.lines()
                .find(|l| l.split_whitespace().skip(1).any(|n| n == name))
                .map(|l| l.split_whitespace().next().unwrap().to_string())
        };
        assert_eq!(
            line("postgres.tphon.ec2").as_deref(),
            Some("10.0.0.1"),
            "{text}"
        );
        assert_eq!(
            line("redis.tphon.ec2").as_deref(),
            Some("10.0.0.2"),
            "{text}"
        );
        assert_eq!(line("i-0b.ec2").as_deref(), Some("10.0.0.2"), "{text}");
        run(&cfg, Kind::Zone, Some(&out), 2_000).unwrap();
        assert!(std::fs::read_to_string(&out).unwrap().contains("SOA"));
        // No snapshot: nothing written, an error that says so.
        std::fs::remove_file(&cfg.snapshot).unwrap();
        let e = run(&cfg, Kind::Hosts, Some(&d.path().join("new")), 2_000).unwrap_err();
        assert!(e.starts_with("no snapshot at"), "{e}");
        assert!(!d.path().join("new").exists());
    }

    #[test]
    fn reverse_zones_go_to_a_directory_and_only_this_command_s_stale_ones_are_removed() {
        let (d, cfg) = setup(0);
        let e = run(&cfg, Kind::ReverseZone, Some(&cfg.snapshot), 2_000).unwrap_err();
        assert!(e.contains("--output must name a directory"), "{e}");
        let zones = d.path().join("zones");
        std::fs::create_dir(&zones).unwrap();
        // A /24 without instances now, and the /8 that an export wrote before zones were /24.
        let ours_stale = zones.join("0.0.11.in-addr.arpa.zone");
        let ours_wide = zones.join("10.in-addr.arpa.zone");
        std::fs::write(&ours_wide, format!("{REVERSE_HEADER} old\n")).unwrap();
        std::fs::write(&ours_stale, format!("{REVERSE_HEADER} old\n")).unwrap();
        let foreign = zones.join("12.in-addr.arpa.zone");
        std::fs::write(&foreign, "; someone else's zone\n").unwrap();
        let other = zones.join("notes.txt");
        std::fs::write(&other, format!("{REVERSE_HEADER}\n")).unwrap();
        run(&cfg, Kind::ReverseZone, Some(&zones), 2_000).unwrap();
        let ten = std::fs::read_to_string(zones.join("0.0.10.in-addr.arpa.zone")).unwrap();
        assert!(ten.starts_with(REVERSE_HEADER), "{ten}");
        assert!(ten.contains("PTR"), "{ten}");
        assert!(
            !ours_stale.exists() && !ours_wide.exists(),
            "a zone this command wrote and has no instance now"
        );
        assert!(
            foreign.exists() && other.exists(),
            "files it did not write stay"
        );
    }
}
