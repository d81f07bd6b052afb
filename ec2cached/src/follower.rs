//! The follower (fleet mode): follows the pollers' S3 object with conditional GETs
//! (`If-None-Match` with the last ETag seen; a 304 transfers no body). A new object is checked
//! (size cap, signature by a trusted key, parse, domain, not older than the installed snapshot)
//! and installed by the writer, or refused with the installed snapshot left byte-for-byte as it
//! was. `ec2cached install` goes through the same checks ([`check_and_install`]).

use crate::config::{Config, Follow};
use crate::leaf::clock::{now, utc};
use crate::leaf::keys::{self, Refusal};
use crate::leaf::ledger::Status;
use crate::leaf::outcome::Outcome;
use crate::leaf::s3::{self, Got};
use crate::writer::{self, Installed, NotInstalled, CLOCK_SLACK_SECS};
use nss_ec2_snapshot::Snapshot;

/// What a follow check (or `install`) decided, why in one line, and what the decision rests on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The outcome (its label is the metric's).
    pub outcome: Outcome,
    /// Why, in one line (for a refusal: what was wrong).
    pub why: String,
    basis: Basis,
}

/// What a verdict rests on, and so when the same object, unchanged, would get it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Basis {
    /// The object's bytes alone (size, signature, damage, domain): always.
    Bytes,
    /// Its sweep is past its max_age: while this host's clock says so (a clock that ran ahead
    /// and was set back ends it).
    Expiry { generated: u64, max_age: u64 },
    /// Its sweep is ahead of this host's clock: while it still is.
    Clock { generated: u64 },
    /// Older than the installed snapshot of that sweep: while that one is installed.
    Installed { sweep: u64 },
    /// Older than the newest sweep this host has verified (its high-water mark): the mark only
    /// rises, so always.
    HighWater,
    /// This host (its disk, S3): decided again at the next check.
    Here,
}

impl Verdict {
    fn new(outcome: Outcome, basis: Basis, why: impl Into<String>) -> Verdict {
        Verdict {
            outcome,
            why: why.into(),
            basis,
        }
    }

    /// True when the same object (a 304) gets this verdict again at `now`, with the snapshot of
    /// sweep `installed` in place: it was installed, refused for what it is, or refused for a
    /// reason that has not changed since. Then it is not downloaded again; otherwise it is.
    pub fn holds(&self, now: u64, installed: Option<u64>) -> bool {
        self.outcome.good()
            || match self.basis {
                Basis::Bytes | Basis::HighWater => true,
                Basis::Expiry { generated, max_age } => now.saturating_sub(generated) > max_age,
                Basis::Clock { generated } => generated > now.saturating_add(CLOCK_SLACK_SECS),
                Basis::Installed { sweep } => installed == Some(sweep),
                Basis::Here => false,
            }
    }
}

/// The checks every snapshot from elsewhere passes before it is installed, then the install.
pub fn check_and_install(cfg: &Config, follow: &Follow, bytes: &[u8]) -> Verdict {
    if bytes.len() as u64 > follow.max_size {
        return Verdict::new(
            Outcome::RefusedCorrupt,
            Basis::Bytes,
            format!(
                "{} bytes, more than max_size ({} bytes)",
                bytes.len(),
                follow.max_size
            ),
        );
    }
    // The key that signed it (empty without trusted_keys: nothing is verified), for the mark.
    let mut signer = String::new();
    if !follow.trusted_keys.is_empty() {
        match keys::signer(bytes, &follow.trusted_keys, &follow.fleet) {
            Ok(k) => signer = keys::public_text(&k),
            Err(r) => {
                let outcome = match r {
                    Refusal::Corrupt(_) => Outcome::RefusedCorrupt,
                    // Another fleet's snapshot (spec part 3: `refused_domain`), or one bound
                    // to no fleet.
                    Refusal::OtherFleet(_) | Refusal::NoFleet => Outcome::RefusedDomain,
                    _ => Outcome::RefusedSignature,
                };
                return Verdict::new(outcome, Basis::Bytes, r.to_string());
            }
        }
    }
    let snap = match Snapshot::parse(bytes) {
        Ok(s) => s,
        Err(e) => return Verdict::new(Outcome::RefusedCorrupt, Basis::Bytes, e.to_string()),
    };
    // Every record, not just the header: the module would answer UNAVAIL for the names of a
    // damaged record, and the installed snapshot is better than that.
    if let Err(e) = read_everything(&snap) {
        return Verdict::new(Outcome::RefusedCorrupt, Basis::Bytes, e.to_string());
    }
    let domain = String::from_utf8_lossy(snap.domain()).into_owned();
    if domain != cfg.rules.domain {
        return Verdict::new(
            Outcome::RefusedDomain,
            Basis::Bytes,
            format!(
                "for domain {domain:?}, this host serves {:?}",
                cfg.rules.domain
            ),
        );
    }
    let h = snap.header();
    let age = now().saturating_sub(h.generated_unix);
    // An old object put back in S3 cannot reach a host that has nothing newer (a new host, an
    // emptied state directory) once it has expired: it would answer UNAVAIL anyway. One that
    // carries no max_age (a poller from before fleets were bounded) is bounded here.
    if let Some(bound) = follow
        .install_bound(h.max_age_secs)
        .filter(|b| age > u64::from(*b))
    {
        let whose = if h.max_age_secs == bound {
            "its max_age"
        } else if follow.max_age == Some(bound) {
            "[follow] max_age"
        } else if h.max_age_secs == 0 {
            "the bound for an object without max_age (4 h unless [follow] max_age says)"
        } else {
            "the longest max_age of a fleet (7 days)"
        };
        return Verdict::new(
            Outcome::RefusedRollback,
            Basis::Expiry {
                generated: h.generated_unix,
                max_age: u64::from(bound),
            },
            format!(
                "expired: its sweep ({}) is {age} s old, more than {whose} ({bound} s)",
                utc(h.generated_unix),
            ),
        );
    }
    if h.generated_unix > now().saturating_add(CLOCK_SLACK_SECS) {
        return Verdict::new(
            Outcome::RefusedCorrupt,
            Basis::Clock {
                generated: h.generated_unix,
            },
            format!(
                "its sweep ({}) is more than {CLOCK_SLACK_SECS}s in this host's future: a \
                 poller's clock, or this host's, is wrong",
                utc(h.generated_unix)
            ),
        );
    }
    // Verified sweeps only go forward, also when the snapshot file is gone: the high-water mark
    // beside it is the newest sweep verified here.
    let verified = !follow.trusted_keys.is_empty();
    let trusted_texts: Vec<String> = follow.trusted_keys.iter().map(keys::public_text).collect();
    // A mark set by a key since removed from trusted_keys, or for another fleet, does not
    // count (as the snapshot it stands for does not); one without them recorded does.
    if let Some(mark) = writer::high_water(&cfg.snapshot).filter(|m| {
        verified
            && h.generated_unix < m.sweep
            && (m.key.is_empty() || trusted_texts.contains(&m.key))
            && (m.fleet.is_empty() || m.fleet == follow.fleet)
    }) {
        return Verdict::new(
            Outcome::RefusedRollback,
            Basis::HighWater,
            format!(
                "older than the newest sweep this host has verified ({}, in {}): no \
                 rollback{}",
                utc(mark.sweep),
                writer::high_water_path(&cfg.snapshot).display(),
                clock_hint(mark.sweep)
            ),
        );
    }
    // The installed snapshot blocks an older one if a key trusted today signed it, however far
    // ahead its sweep: it was verified when it was installed, and a clock stepped back must not
    // let an old signed sweep in (recovering from a bad clock is an operator's step:
    // docs/fleet.md, "When this host's clock was wrong"). One signed by a key since removed from trusted_keys
    // does not count: the next good object replaces it. Without trusted_keys nothing was
    // verified: the writer's default rule.
    let trusted = |current: &[u8], installed: u64| {
        if follow.trusted_keys.is_empty() {
            writer::within_slack(installed)
        } else {
            keys::verify(current, &follow.trusted_keys, &follow.fleet).is_ok()
        }
    };
    let mark = || {
        if verified {
            writer::raise_high_water(&cfg.snapshot, h.generated_unix, &signer, &follow.fleet);
        }
    };
    match writer::install_checked(&cfg.snapshot, bytes, trusted, mark) {
        Ok(Installed::Same) => {
            // A snapshot installed before marks existed: marked now.
            if verified {
                writer::raise_high_water(&cfg.snapshot, h.generated_unix, &signer, &follow.fleet);
            }
            Verdict::new(Outcome::Unchanged, Basis::Bytes, "same as installed")
        }
        Ok(Installed::Replaced) => Verdict::new(
            Outcome::Installed,
            Basis::Bytes,
            format!(
                "installed the sweep of {} ({} names, {} instances)",
                utc(h.generated_unix),
                h.names,
                h.instances
            ),
        ),
        Err(e @ NotInstalled::Rollback(sweep, _)) => Verdict::new(
            Outcome::RefusedRollback,
            Basis::Installed { sweep },
            format!("{e}{}", clock_hint(sweep)),
        ),
        Err(NotInstalled::Io(e)) => Verdict::new(Outcome::Error, Basis::Here, e),
    }
}

/// What to add to a rollback refusal when the newer sweep that blocks it is ahead of this host's
/// clock: this host's clock was (or is) wrong, and getting out of it is the operator's step.
fn clock_hint(blocking: u64) -> String {
    let now = now();
    if blocking <= now.saturating_add(CLOCK_SLACK_SECS) {
        return String::new();
    }
    format!(
        "; that sweep is {} s in this host's future: if this host's clock was wrong when it \
         was installed, see \"When this host's clock was wrong\" in docs/fleet.md",
        blocking - now
    )
}

/// Reads every record of a snapshot the way lookups do: each name is found by the hash table,
/// and its members, their names, aliases and addresses are in bounds; each instance is found by
/// its address. O(size of the file).
pub fn read_everything(snap: &Snapshot<'_>) -> Result<(), nss_ec2_snapshot::Corrupt> {
    use nss_ec2_snapshot::{Family, Find};
    for idx in 0..snap.len() {
        let a = snap.answer(idx)?;
        match snap.find(a.name())? {
            Find::Found(f) if f.name() == a.name() => {}
            _ => {
                return Err(nss_ec2_snapshot::Corrupt(
                    "a name is missing from the hash table",
                ))
            }
        }
        for m in a.members() {
            let m = m?;
            m.name()?;
            for alias in m.aliases() {
                alias?;
            }
            let mut v4 = None;
            m.for_each_addr(Family::V4, |b| v4 = b.try_into().ok());
            if let Some(addr) = v4 {
                if snap.reverse_v4(addr)?.is_none() {
                    return Err(nss_ec2_snapshot::Corrupt("an address is missing from rev4"));
                }
            }
        }
        a.count(Family::V4)?;
        a.count(Family::V6)?;
    }
    Ok(())
}

/// What a check saw before deciding (S3 traffic, the snapshot installed when it began), for its
/// record in the status file.
struct Seen {
    counts: s3::Counts,
    started: u64,
    installed: Option<nss_ec2_snapshot::Header>,
}

impl Seen {
    /// Records a check's verdict in the status file (under its lock).
    fn record(self, cfg: &Config, v: &Verdict) {
        let (outcome, msg) = (v.outcome, &v.why);
        Status::update(&cfg.snapshot, |st| {
            self.counts.add_to(st);
            st.follow_outcome = Some(outcome.label().into());
            let n = st.follow_fetches.entry(outcome.label().into()).or_default();
            *n = n.saturating_add(1);
            st.last_attempt = Some(self.started);
            if outcome.good() {
                st.last_success = Some(self.started);
                st.consecutive_failures = 0;
                let now_installed = if outcome == Outcome::Installed {
                    std::fs::read(&cfg.snapshot)
                        .ok()
                        .and_then(|b| Snapshot::parse(&b).ok().map(|s| s.header()))
                } else {
                    self.installed
                };
                if let Some(h) = now_installed {
                    st.names = h.names as usize;
                    st.live = h.instances as usize;
                    st.instances = st.live;
                }
            } else {
                st.failed(self.started, &format!("{}: {msg}", outcome.label()));
            }
        });
    }
}

/// A follower: the object, the last ETag seen, and the verdict on it.
#[derive(Debug)]
pub struct Follower {
    object: s3::Object,
    /// ETag of the last object read, installed or refused.
    etag: Option<String>,
    /// The refusal of that object, repeated while it stays in place (no new download).
    refused: Option<Verdict>,
    /// That object, when this host failed to install it (a full disk): installed from here at
    /// the next checks while S3 answers 304, not downloaded again.
    unsaved: Option<std::sync::Arc<Vec<u8>>>,
}

impl Follower {
    /// Builds the S3 client once.
    pub async fn new(cfg: &Config) -> Result<Follower, String> {
        let url = cfg
            .follow
            .as_ref()
            .and_then(|f| f.url.as_ref())
            .ok_or("[follow] has no `url`: nothing to follow (`ec2cached install FILE` installs snapshots shipped by other means)")?;
        Ok(Follower {
            // One attempt per check: the next check, one interval later, is the retry.
            object: s3::Object::new(url, None, 1).await?,
            etag: None,
            refused: None,
            unsaved: None,
        })
    }

    /// The checks and the install of an object, and the record of the check in the status
    /// file (on tokio's blocking pool, in one task: the install may wait for the writers' lock,
    /// up to 10 s, and the runtime goes on serving signals meanwhile; once it has replaced the
    /// snapshot, the record follows, also when SIGTERM comes between, as the daemon lets
    /// blocking tasks finish for half a second), and what to remember of it: its ETag while its
    /// verdict holds (installed, or refused for a reason that stands), so that the next checks
    /// do not download it again; after a local failure, the object itself, installed again from
    /// memory at the next check.
    async fn decide(
        &mut self,
        cfg: &Config,
        follow: &Follow,
        etag: String,
        body: std::sync::Arc<Vec<u8>>,
        seen: Seen,
    ) -> Verdict {
        let (c, f, b) = (cfg.clone(), follow.clone(), body.clone());
        let installed_sweep = seen.installed.map(|h| h.generated_unix);
        let v = tokio::task::spawn_blocking(move || {
            let v = check_and_install(&c, &f, &b);
            seen.record(&c, &v);
            v
        })
        .await
        .unwrap_or_else(|e| {
            Verdict::new(
                Outcome::Error,
                Basis::Here,
                format!("the install task failed: {e}"),
            )
        });
        let keep = v.holds(now(), installed_sweep);
        let unsaved = v.outcome == Outcome::Error;
        self.etag = (keep || unsaved).then_some(etag);
        self.refused = (!v.outcome.good() && keep).then(|| v.clone());
        self.unsaved = unsaved.then_some(body);
        v
    }

    /// What a check saw before deciding, for its record.
    fn seen(&mut self, started: u64, installed: Option<nss_ec2_snapshot::Header>) -> Seen {
        Seen {
            counts: self.object.counts(),
            started,
            installed,
        }
    }

    /// One check: conditional GET, then the checks and the install. Records the outcome in the
    /// status file.
    pub async fn check(&mut self, cfg: &Config) -> Verdict {
        let follow = cfg.follow.as_ref().expect("a follower has [follow]");
        let started = now();
        // A 304 says the object is the one last seen, not that it is installed here: if the
        // snapshot was removed or damaged since, fetch the object again.
        let installed = std::fs::read(&cfg.snapshot)
            .ok()
            .and_then(|b| Snapshot::parse(&b).ok().map(|s| s.header()));
        if installed.is_none() && self.refused.is_none() && self.unsaved.is_none() {
            self.etag = None;
        }
        // A refusal that no longer holds (this host's clock was set right, another snapshot was
        // installed): fetch the object again and decide again.
        let installed_sweep = installed.map(|h| h.generated_unix);
        if self
            .refused
            .as_ref()
            .is_some_and(|v| !v.holds(started, installed_sweep))
        {
            self.etag = None;
            self.refused = None;
        }
        let got = self.object.get(self.etag.as_deref(), follow.max_size).await;
        let verdict = match got {
            Ok(Got::Unchanged) => match (&self.refused, self.unsaved.clone()) {
                (Some(v), _) => Verdict {
                    why: format!("{} (the same object as before)", v.why),
                    ..v.clone()
                },
                // Not installed here last time (a local failure): again, from memory.
                (None, Some(body)) => {
                    let etag = self.etag.clone().unwrap_or_default();
                    let seen = self.seen(started, installed);
                    return self.decide(cfg, follow, etag, body, seen).await;
                }
                (None, None) => Verdict::new(Outcome::Unchanged, Basis::Bytes, "unchanged (304)"),
            },
            Ok(Got::Missing) => {
                self.etag = None;
                self.refused = None;
                self.unsaved = None;
                Verdict::new(
                    Outcome::Error,
                    Basis::Here,
                    format!(
                        "no object at {} (NoSuchKey or NoSuchBucket)",
                        self.object.url
                    ),
                )
            }
            Ok(Got::Denied(why)) => Verdict::new(
                Outcome::Error,
                Basis::Here,
                format!("{why}: no s3:GetObject permission, or no object (S3 answers 403 for a missing key to those without s3:ListBucket)"),
            ),
            Ok(Got::TooLarge { size, etag }) => {
                let why = format!(
                    "the object is {size} bytes or more, more than max_size ({} bytes)",
                    follow.max_size
                );
                let v = Verdict::new(Outcome::RefusedCorrupt, Basis::Bytes, why);
                self.etag = Some(etag);
                self.refused = Some(v.clone());
                v
            }
            Ok(Got::Object { etag, body }) => {
                let seen = self.seen(started, installed);
                return self
                    .decide(cfg, follow, etag, std::sync::Arc::new(body), seen)
                    .await;
            }
            Err(e) => Verdict::new(Outcome::Error, Basis::Here, e),
        };
        // Off the runtime: the status lock may be held by a `refresh` or `install` beside.
        let (seen, c, v) = (self.seen(started, installed), cfg.clone(), verdict.clone());
        let _ = tokio::task::spawn_blocking(move || seen.record(&c, &v)).await;
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Follow};
    use ed25519_dalek::SigningKey;

    fn snap(domain: &str, generated: u64, v4: u8) -> Vec<u8> {
        nss_ec2_snapshot::format::tiny(domain, generated, v4)
    }

    const FLEET: &str = "s3://b/hosts.snap";

    fn setup(trusted: &[&SigningKey]) -> (tempfile::TempDir, Config, Follow) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::parse(
            &dir.path().join("c.toml"),
            &format!("snapshot = {:?}", dir.path().join("hosts.snap")),
        )
        .unwrap();
        let follow = Follow {
            url: None,
            trusted_keys: trusted.iter().map(|k| k.verifying_key()).collect(),
            max_size: 1 << 20,
            fleet: FLEET.into(),
            // These sweeps are of 1970: no age bound here but the tests of it.
            max_age: Some(u32::MAX),
            own_files: false,
        };
        (dir, cfg, follow)
    }

    /// Issue 22, item 1 (follower side): an object that carries no max_age (from a poller before
    /// fleets were bounded) is bounded by the follower: 4 h, or `[follow] max_age`, which also
    /// lowers an object's own bound. The refusal names which bound.
    #[test]
    fn an_object_without_max_age_is_bounded_by_the_follower() {
        let good = SigningKey::from_bytes(&[1; 32]);
        let (_dir, cfg, mut follow) = setup(&[&good]);
        follow.max_age = None;
        let old = now() - u64::from(crate::config::UNBOUND_MAX_AGE) - 60;
        let v = check_and_install(
            &cfg,
            &follow,
            &keys::sign(&good, FLEET, &snap("ec2", old, 1)).unwrap(),
        );
        assert_eq!(v.outcome, Outcome::RefusedRollback, "{}", v.why);
        assert!(
            v.why.contains("without max_age") && v.why.contains("14400 s"),
            "{}",
            v.why
        );
        assert!(!cfg.snapshot.exists());
        let recent = now() - 600;
        follow.max_age = Some(300);
        let v = check_and_install(
            &cfg,
            &follow,
            &keys::sign(&good, FLEET, &snap("ec2", recent, 1)).unwrap(),
        );
        assert_eq!(v.outcome, Outcome::RefusedRollback, "{}", v.why);
        assert!(v.why.contains("(300 s)"), "{}", v.why);
        follow.max_age = None;
        let v = check_and_install(
            &cfg,
            &follow,
            &keys::sign(&good, FLEET, &snap("ec2", recent, 1)).unwrap(),
        );
        assert_eq!(v.outcome, Outcome::Installed, "{}", v.why);
        // With [follow], an unsigned file for `install` (no trusted_keys) is bounded too.
        let (_dir2, cfg2, mut open) = setup(&[]);
        open.max_age = None;
        let v = check_and_install(&cfg2, &open, &snap("ec2", 100, 1));
        assert_eq!(v.outcome, Outcome::RefusedRollback, "{}", v.why);
        // Without [follow] or [publish] (`install` on a plain host): the operator's own file,
        // no bound; but a [publish] host's own max_age bounds it (`main::fleet_unchecked`).
        (open.max_age, open.own_files) = (None, true);
        let v = check_and_install(&cfg2, &open, &snap("ec2", 100, 1));
        assert_eq!(v.outcome, Outcome::Installed, "{}", v.why);
    }

    #[test]
    fn every_refusal_leaves_the_installed_snapshot_as_it_was() {
        let good = SigningKey::from_bytes(&[1; 32]);
        let other = SigningKey::from_bytes(&[2; 32]);
        let (_dir, cfg, follow) = setup(&[&good]);
        let v1 = keys::sign(&good, FLEET, &snap("ec2", 100, 1)).unwrap();
        assert_eq!(
            check_and_install(&cfg, &follow, &v1).outcome,
            Outcome::Installed
        );
        assert_eq!(
            check_and_install(&cfg, &follow, &v1).outcome,
            Outcome::Unchanged
        );
        let mut flipped = keys::sign(&good, FLEET, &snap("ec2", 200, 2)).unwrap();
        let at = flipped.len() - nss_ec2_snapshot::signed::TRAILER_LEN - FLEET.len() - 16;
        flipped[at] ^= 0x40;
        let cases = [
            (snap("ec2", 200, 2), Outcome::RefusedSignature),
            (
                keys::sign(&other, FLEET, &snap("ec2", 200, 2)).unwrap(),
                Outcome::RefusedSignature,
            ),
            (flipped, Outcome::RefusedSignature),
            // Issue 22, item 4: a trusted key, another fleet.
            (
                keys::sign(&good, "s3://staging/hosts.snap", &snap("ec2", 200, 2)).unwrap(),
                Outcome::RefusedDomain,
            ),
            (
                keys::sign(&good, FLEET, &snap("ec2", 50, 2)).unwrap(),
                Outcome::RefusedRollback,
            ),
            (
                keys::sign(&good, FLEET, &snap("other", 200, 2)).unwrap(),
                Outcome::RefusedDomain,
            ),
            (v1[..v1.len() - 1].to_vec(), Outcome::RefusedCorrupt),
            (vec![0u8; 2 << 20], Outcome::RefusedCorrupt),
            (b"hello".to_vec(), Outcome::RefusedCorrupt),
        ];
        for (bytes, want) in cases {
            let Verdict {
                outcome: got, why, ..
            } = check_and_install(&cfg, &follow, &bytes);
            assert_eq!(got, want, "{why}");
            assert_eq!(std::fs::read(&cfg.snapshot).unwrap(), v1, "{why}");
        }
        // A later sweep by a trusted key, and an equal generation with other names, install.
        let v2 = keys::sign(&good, FLEET, &snap("ec2", 200, 2)).unwrap();
        assert_eq!(
            check_and_install(&cfg, &follow, &v2).outcome,
            Outcome::Installed
        );
        let v2b = keys::sign(&good, FLEET, &snap("ec2", 200, 3)).unwrap();
        assert_eq!(
            check_and_install(&cfg, &follow, &v2b).outcome,
            Outcome::Installed
        );
        assert_eq!(std::fs::read(&cfg.snapshot).unwrap(), v2b);
    }

    #[test]
    fn a_sweep_from_the_far_future_is_refused_and_does_not_block_later_ones() {
        let (_dir, cfg, follow) = setup(&[]);
        let future = now() + 3600;
        let Verdict {
            outcome: got, why, ..
        } = check_and_install(&cfg, &follow, &snap("ec2", future, 1));
        assert_eq!(got, Outcome::RefusedCorrupt, "{why}");
        assert!(why.contains("in this host's future"), "{why}");
        // One that got there anyway (written by an older version, or by hand) is replaced.
        std::fs::write(&cfg.snapshot, snap("ec2", future, 1)).unwrap();
        let Verdict {
            outcome: got, why, ..
        } = check_and_install(&cfg, &follow, &snap("ec2", now(), 2));
        assert_eq!(got, Outcome::Installed, "{why}");
    }

    #[test]
    fn without_trusted_keys_install_takes_unsigned_files_but_still_checks_the_rest() {
        let (_dir, cfg, follow) = setup(&[]);
        let plain = snap("ec2", 100, 1);
        assert_eq!(
            check_and_install(&cfg, &follow, &plain).outcome,
            Outcome::Installed
        );
        assert_eq!(
            check_and_install(&cfg, &follow, &snap("ec2", 99, 1)).outcome,
            Outcome::RefusedRollback
        );
        assert_eq!(
            check_and_install(&cfg, &follow, &snap("x", 101, 1)).outcome,
            Outcome::RefusedDomain
        );
    }

    #[test]
    fn a_damaged_record_behind_a_good_header_is_refused() {
        let (_dir, cfg, follow) = setup(&[]);
        let mut bad = snap("ec2", 100, 1);
        // Point the first name's first member past the members section, then re-seal.
        let names_off = u32::from_le_bytes(bad[72..76].try_into().unwrap()) as usize;
        bad[names_off + 8..names_off + 12].copy_from_slice(&1000u32.to_le_bytes());
        nss_ec2_snapshot::format::seal_header(&mut bad);
        assert!(Snapshot::parse(&bad).is_ok());
        let Verdict {
            outcome: got, why, ..
        } = check_and_install(&cfg, &follow, &bad);
        assert_eq!(got, Outcome::RefusedCorrupt, "{why}");
        assert!(!cfg.snapshot.exists());
    }

    /// Which verdicts a 304 keeps without a new download, and until when (issue 22, items 6
    /// and 7): for what the object is, always; expired, while this host's clock says so (one
    /// that ran ahead and is set back decides again); future-dated, while it still is; older
    /// than the installed snapshot, while that one is installed; a local failure, never.
    #[test]
    fn a_verdict_holds_while_what_it_rests_on_does() {
        let good = SigningKey::from_bytes(&[1; 32]);
        let (_dir, cfg, follow) = setup(&[&good]);
        let signed = |bytes: &[u8]| keys::sign(&good, FLEET, bytes).unwrap();
        let t = now();
        let unsigned = check_and_install(&cfg, &follow, &snap("ec2", 100, 1));
        assert_eq!(unsigned.outcome, Outcome::RefusedSignature);
        assert!(unsigned.holds(t, None) && unsigned.holds(0, Some(5)));
        let other = check_and_install(&cfg, &follow, &signed(&snap("x", 100, 1)));
        assert_eq!(
            (other.outcome, other.holds(t, None)),
            (Outcome::RefusedDomain, true)
        );

        let ahead = t + 3600;
        let future = check_and_install(&cfg, &follow, &signed(&snap("ec2", ahead, 1)));
        assert_eq!(
            (future.outcome, future.holds(t, None)),
            (Outcome::RefusedCorrupt, true)
        );
        assert!(
            !future.holds(ahead, None),
            "once the clock catches up: decided again"
        );

        let expired = {
            let table = nss_ec2_snapshot::fleet::build(&[], &cfg.rules).table;
            let meta = nss_ec2_snapshot::Meta {
                domain: "ec2".into(),
                generated_unix: 100,
                interval_secs: 30,
                max_age_secs: 60,
            };
            check_and_install(&cfg, &follow, &signed(&table.encode(&meta).unwrap()))
        };
        assert_eq!(expired.outcome, Outcome::RefusedRollback);
        assert!(expired.why.starts_with("expired: "), "{}", expired.why);
        assert!(expired.holds(t, None));
        assert!(
            !expired.holds(150, None),
            "a clock that ran ahead, set back: decided again"
        );

        let installed = check_and_install(&cfg, &follow, &signed(&snap("ec2", 200, 1)));
        assert_eq!(
            (installed.outcome, installed.holds(t, None)),
            (Outcome::Installed, true)
        );
        let older = check_and_install(&cfg, &follow, &signed(&snap("ec2", 150, 1)));
        assert_eq!(older.outcome, Outcome::RefusedRollback);
        // Refused by the high-water mark (the newest sweep verified here): that only rises, so
        // the refusal holds whatever is installed.
        assert!(
            older.holds(t, Some(200)) && older.holds(t, None),
            "{}",
            older.why
        );
        // Without the mark (none recorded yet: a snapshot installed by an earlier version), the
        // refusal rests on the installed snapshot, and holds while that one is installed.
        std::fs::remove_file(writer::high_water_path(&cfg.snapshot)).unwrap();
        let older = check_and_install(&cfg, &follow, &signed(&snap("ec2", 150, 1)));
        assert_eq!(older.outcome, Outcome::RefusedRollback);
        assert!(
            older.holds(t, Some(200)),
            "while the sweep of 200 is installed"
        );
        assert!(
            !older.holds(t, None) && !older.holds(t, Some(100)),
            "once it is not"
        );

        // A local failure (here: the snapshot's path is a directory) is decided again.
        std::fs::remove_file(&cfg.snapshot).unwrap();
        std::fs::create_dir(&cfg.snapshot).unwrap();
        let failed = check_and_install(&cfg, &follow, &signed(&snap("ec2", 300, 1)));
        assert_eq!(
            (failed.outcome, failed.holds(t, None)),
            (Outcome::Error, false)
        );
    }

    /// Issue 22, item 3: after a key leaves trusted_keys, what it signed no longer blocks an
    /// older object: the next good one replaces it.
    #[test]
    fn a_snapshot_signed_by_a_removed_key_does_not_block_the_next_good_one() {
        let (old, new) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        );
        let (_dir, cfg, both) = setup(&[&old, &new]);
        let by = |k: &SigningKey, generated: u64, v4: u8| {
            keys::sign(k, FLEET, &snap("ec2", generated, v4)).unwrap()
        };
        assert_eq!(
            check_and_install(&cfg, &both, &by(&old, 200, 1)).outcome,
            Outcome::Installed
        );
        // While both are trusted, an older sweep is a rollback.
        assert_eq!(
            check_and_install(&cfg, &both, &by(&new, 150, 2)).outcome,
            Outcome::RefusedRollback
        );
        // `old` removed: its snapshot no longer counts.
        let only_new = Follow {
            trusted_keys: vec![new.verifying_key()],
            ..both.clone()
        };
        let v = check_and_install(&cfg, &only_new, &by(&new, 150, 2));
        assert_eq!(v.outcome, Outcome::Installed, "{}", v.why);
        assert_eq!(std::fs::read(&cfg.snapshot).unwrap(), by(&new, 150, 2));
    }

    /// Issue 22, item 2: a trusted snapshot already installed is never ignored for being ahead
    /// of this host's clock (a clock stepped back): an old signed sweep does not get in.
    #[test]
    fn a_clock_stepped_back_does_not_let_an_old_signed_sweep_in() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let (_dir, cfg, follow) = setup(&[&key]);
        let by =
            |generated: u64, v4: u8| keys::sign(&key, FLEET, &snap("ec2", generated, v4)).unwrap();
        // Installed while this host's clock was right; now it reads an hour earlier.
        let ahead = by(now() + 3600, 1);
        std::fs::write(&cfg.snapshot, &ahead).unwrap();
        let v = check_and_install(&cfg, &follow, &by(now() - 90 * 86_400, 2));
        assert_eq!(v.outcome, Outcome::RefusedRollback, "{}", v.why);
        assert_eq!(std::fs::read(&cfg.snapshot).unwrap(), ahead);
    }

    /// Issue 22, item 1: removing the installed snapshot (an emptied state directory) does not
    /// reopen the door to an older signed sweep: the high-water mark beside it remembers.
    #[test]
    fn an_emptied_state_directory_does_not_reopen_rollback() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let (_dir, cfg, follow) = setup(&[&key]);
        let by =
            |generated: u64, v4: u8| keys::sign(&key, FLEET, &snap("ec2", generated, v4)).unwrap();
        let t = now();
        assert_eq!(
            check_and_install(&cfg, &follow, &by(t, 1)).outcome,
            Outcome::Installed
        );
        assert_eq!(writer::high_water(&cfg.snapshot).map(|m| m.sweep), Some(t));
        std::fs::remove_file(&cfg.snapshot).unwrap();
        let v = check_and_install(&cfg, &follow, &by(t - 86_400, 2));
        assert_eq!(v.outcome, Outcome::RefusedRollback, "{}", v.why);
        assert!(
            v.why.contains("newest sweep this host has verified"),
            "{}",
            v.why
        );
        assert!(!cfg.snapshot.exists());
        // The same sweep, and a later one, still install.
        assert_eq!(
            check_and_install(&cfg, &follow, &by(t, 1)).outcome,
            Outcome::Installed
        );
        assert_eq!(
            check_and_install(&cfg, &follow, &by(t + 1, 3)).outcome,
            Outcome::Installed
        );
        assert_eq!(
            writer::high_water(&cfg.snapshot).map(|m| m.sweep),
            Some(t + 1)
        );
    }
}
