//! The poller's S3 side (fleet mode): after the local publish, read the object (a conditional
//! GET: 304 when it is what this poller last saw), then upload only if ours is a later sweep
//! **and** either the names changed or the published copy's sweep is older than
//! `republish_after`. The upload is conditional on the ETag just read (`If-Match`, or
//! `If-None-Match: *` for a new object): when two pollers race, one write wins and the other gets
//! 412/409, reads again and decides again, so an older sweep never replaces a newer one.

use crate::config::{Config, Publish, DEFAULT_MAX_SIZE};
use crate::leaf::clock::now;
use crate::leaf::keys;
use crate::leaf::ledger::Status;
use crate::leaf::outcome::Reason;
use crate::leaf::s3::{self, Expect, Got, Put};
use crate::writer::CLOCK_SLACK_SECS;
use ed25519_dalek::SigningKey;
use nss_ec2_snapshot::signed::same_fleet;
use nss_ec2_snapshot::Snapshot;
use std::path::Path;

/// What the poller did with S3 after a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uploaded {
    /// Uploaded: the names changed, or the published copy was older than `republish_after`.
    Uploaded,
    /// Not uploaded: the published copy has the same names and is recent.
    Unchanged,
    /// Not uploaded: another poller already published a later sweep.
    NewerPublished,
}

impl Uploaded {
    /// The status file's word for it.
    pub fn label(self) -> &'static str {
        match self {
            Uploaded::Uploaded => "uploaded",
            Uploaded::Unchanged => "unchanged",
            Uploaded::NewerPublished => "newer_published",
        }
    }
}

/// The published object as this poller last read or wrote it.
#[derive(Debug)]
struct Remote {
    etag: String,
    generated: u64,
    body: Vec<u8>,
    /// Signed by a key that is neither this poller's nor a peer's, or for another fleet: which.
    foreign: Option<String>,
}

/// A poller's S3 side: the client and signing key, loaded once.
#[derive(Debug)]
pub struct Publisher {
    object: s3::Object,
    /// The signing key.
    pub key: SigningKey,
    /// Keys whose snapshots count as pollers' sweeps when read back: this poller's and
    /// `[publish] peer_keys`.
    pollers: Vec<ed25519_dalek::VerifyingKey>,
    domain: String,
    /// The fleet identity signed into each snapshot and asked of those read back.
    pub fleet: String,
    republish_after: u32,
    remote: Option<Remote>,
    /// The latest sweep this poller has seen in S3 (its own uploads and its peers'; kept in the
    /// status file): an older object was put back by someone, and is replaced even if its names
    /// are current.
    high_water: u64,
    /// A snapshot whose upload failed, to upload again before the next sweep.
    pending: Option<Vec<u8>>,
    /// When the last sweep was published locally.
    swept_at: Option<std::time::Instant>,
    /// The key of an object from an unknown signer that the last upload replaced, to record.
    foreign_replaced: Option<String>,
}

/// The largest object a poller reads back before deciding (a published object is one of ours).
const READ_BACK_MAX: u64 = 4 * DEFAULT_MAX_SIZE;

/// How much of the published object a poller reads back before deciding: a pollers' sweep of
/// this fleet is about the size of its own snapshot, so twice that (at least 1 MiB, at most
/// [`READ_BACK_MAX`]); a larger object is not one of theirs, is not downloaded whole, and is
/// replaced like any other foreign object.
fn read_back_cap(ours: usize) -> u64 {
    (ours as u64)
        .saturating_mul(2)
        .clamp(1 << 20, READ_BACK_MAX)
}

impl Publisher {
    /// Loads the signing key and builds the S3 client once.
    pub async fn new(cfg: &Config, p: &Publish) -> Result<Publisher, String> {
        let key = keys::load_signing(&p.signing_key)?;
        let mut pollers = vec![key.verifying_key()];
        pollers.extend(p.peer_keys.iter().copied());
        Ok(Publisher {
            object: s3::Object::new(&p.url, cfg.regions.first().map(String::as_str), 3).await?,
            key,
            pollers,
            domain: cfg.rules.domain.clone(),
            fleet: p.fleet.clone(),
            republish_after: p.republish_after,
            remote: None,
            high_water: Status::load(&cfg.snapshot).s3_high_water,
            pending: None,
            swept_at: None,
            foreign_replaced: None,
        })
    }

    /// The key that signs this poller's snapshots.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Uploads a sweep just published locally; one whose upload fails is kept for
    /// [`Publisher::retry_pending`].
    pub async fn upload_swept(
        &mut self,
        snapshot: &Path,
        signed: Vec<u8>,
    ) -> Result<Uploaded, String> {
        self.swept_at = Some(std::time::Instant::now());
        let done = self.upload_and_record(snapshot, &signed).await;
        self.pending = done.is_err().then_some(signed);
        done
    }

    /// Uploads a patch just published locally (`[events]`). One whose upload fails is not kept
    /// (its messages stay in the queue and come back); one that lands supersedes a sweep whose
    /// upload failed, which is then not retried.
    pub async fn upload_patch(
        &mut self,
        snapshot: &Path,
        signed: Vec<u8>,
    ) -> Result<Uploaded, String> {
        let done = self.upload_and_record(snapshot, &signed).await;
        if done.is_ok() {
            self.pending = None;
        }
        done
    }

    /// Uploads again the sweep whose upload failed, while it is less than `interval` seconds
    /// old (an older one waits for the next sweep); `None`: nothing to upload.
    pub async fn retry_pending(
        &mut self,
        snapshot: &Path,
        interval: u32,
    ) -> Option<Result<Uploaded, String>> {
        let recent = self
            .swept_at
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(u64::from(interval)));
        let bytes = self.pending.take().filter(|_| recent)?;
        let done = self.upload_and_record(snapshot, &bytes).await;
        if done.is_err() {
            self.pending = Some(bytes);
        }
        Some(done)
    }

    /// The sweep time of an object read back, if it is a pollers' snapshot: signed by this
    /// poller or a peer, for this domain, not from the far future. Anything else (written by
    /// someone else, damaged, a broken clock) counts as the oldest sweep, 0, and is replaced.
    fn sweep_of(&self, body: &[u8], by_a_poller: bool) -> u64 {
        if !by_a_poller {
            return 0;
        }
        Snapshot::parse(body)
            .ok()
            .filter(|s| s.domain() == self.domain.as_bytes())
            .map(|s| s.header().generated_unix)
            .filter(|&g| g <= now().saturating_add(CLOCK_SLACK_SECS))
            .unwrap_or(0)
    }

    /// Uploads `signed` (the snapshot just published locally) unless S3 has the same names
    /// recently or a later sweep. Conflicting writers: read again, decide again (3 rounds).
    pub async fn upload(&mut self, signed: &[u8]) -> Result<Uploaded, String> {
        let ours = Snapshot::parse(signed)
            .map_err(|e| format!("self-check failed: {e}"))?
            .header()
            .generated_unix;
        for _ in 0..3 {
            let etag = self.remote.as_ref().map(|r| r.etag.clone());
            // Without s3:ListBucket, S3 answers 403 for a missing key: try to create it.
            let mut denied = None;
            match self
                .object
                .get(etag.as_deref(), read_back_cap(signed.len()))
                .await?
            {
                Got::Unchanged => {}
                Got::Missing => self.remote = None,
                Got::Denied(why) => {
                    self.remote = None;
                    denied = Some(why);
                }
                // Not a snapshot of ours: the oldest sweep, replaced (still conditionally).
                Got::TooLarge { etag, .. } => {
                    self.remote = Some(Remote {
                        etag,
                        generated: 0,
                        body: Vec::new(),
                        foreign: None,
                    })
                }
                Got::Object { etag, body } => {
                    let verified = keys::verify(&body, &self.pollers, &self.fleet);
                    let generated = self.sweep_of(&body, verified.is_ok());
                    let foreign = match verified {
                        Err(keys::Refusal::UnknownKey(k)) => Some(format!(
                            "signed by {k}, neither this poller's key nor in peer_keys"
                        )),
                        Err(e @ (keys::Refusal::OtherFleet(_) | keys::Refusal::NoFleet)) => {
                            Some(e.to_string())
                        }
                        _ => None,
                    };
                    self.remote = Some(Remote {
                        etag,
                        generated,
                        body,
                        foreign,
                    });
                }
            }
            let expect = match &self.remote {
                None => Expect::Absent,
                Some(r) => {
                    if r.generated > ours {
                        self.high_water = self.high_water.max(r.generated);
                        return Ok(Uploaded::NewerPublished);
                    }
                    let recent =
                        now().saturating_sub(r.generated) < u64::from(self.republish_after);
                    let rolled_back = r.generated < self.high_water;
                    if r.body == signed || (recent && !rolled_back && same_fleet(&r.body, signed)) {
                        self.high_water = self.high_water.max(r.generated);
                        return Ok(Uploaded::Unchanged);
                    }
                    Expect::Etag(r.etag.clone())
                }
            };
            match self.object.put(signed.to_vec(), &expect).await? {
                Put::Stored(etag) => {
                    if let Some(k) = self.remote.as_ref().and_then(|r| r.foreign.clone()) {
                        tracing::warn!(
                            "replaced {}, which was {k}. If another poller writes this object, \
                             list each other's keys in [publish] peer_keys and give them the \
                             same fleet, or each replaces the other's snapshot at every sweep \
                             and followers flap",
                            self.object.url
                        );
                        self.foreign_replaced = Some(k);
                    }
                    self.high_water = self.high_water.max(ours);
                    self.remote = Some(Remote {
                        etag,
                        generated: ours,
                        body: signed.to_vec(),
                        foreign: None,
                    });
                    return Ok(Uploaded::Uploaded);
                }
                Put::Conflict if denied.is_some() => {
                    return Err(format!(
                        "{}; it exists but this poller cannot read it: grant s3:GetObject",
                        denied.unwrap_or_default()
                    ));
                }
                Put::Conflict => {
                    tracing::info!(
                        "{} changed while uploading (another poller): reading it again",
                        self.object.url
                    );
                }
            }
        }
        Err(format!(
            "{} kept changing under three uploads in a row: another poller is writing it",
            self.object.url
        ))
    }

    /// Uploads and records the outcome in the status file.
    pub async fn upload_and_record(
        &mut self,
        snapshot: &Path,
        signed: &[u8],
    ) -> Result<Uploaded, String> {
        let result = self.upload(signed).await;
        let high_water = self.high_water;
        let foreign = self.foreign_replaced.take();
        let counts = self.object.counts();
        // S3 holds this sweep's names, or a later sweep's.
        let confirmed = Snapshot::parse(signed)
            .ok()
            .map(|s| s.header().generated_unix);
        let outcome = result.as_ref().map(|u| u.label()).map_err(String::clone);
        Status::update_off_runtime(snapshot, move |st| {
            counts.add_to(st);
            if let Some(k) = foreign {
                st.s3_foreign_replaced = st.s3_foreign_replaced.saturating_add(1);
                st.s3_foreign_key = Some(k);
                st.s3_foreign_at = Some(now());
            }
            st.published_at = Some(now());
            st.s3_high_water = st.s3_high_water.max(high_water);
            match outcome {
                Ok(label) => {
                    st.publish_outcome = Some(label.into());
                    if confirmed.is_some() {
                        st.s3_confirmed = confirmed;
                    }
                    // A retried upload that succeeds ends the failure of its sweep.
                    st.consecutive_failures = 0;
                }
                Err(e) => {
                    st.publish_outcome = Some(format!("FAILED: {e}"));
                    st.poll_failed(
                        now(),
                        &format!("published locally, not to S3: {e}"),
                        Reason::S3,
                    );
                }
            }
        })
        .await;
        result
    }
}
