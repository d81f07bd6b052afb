//! Fleet mode: `[publish]` (a poller uploads each good sweep to S3, signed) and `[follow]` (a
//! host installs what a poller published instead of polling EC2).

use super::polling::Timing;
use super::{across, at, Checked};
use crate::leaf::s3::S3Url;
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPublish {
    url: String,
    signing_key: PathBuf,
    republish_after: Option<u32>,
    peer_keys: Option<Vec<String>>,
    fleet: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFollow {
    url: Option<String>,
    trusted_keys: Option<Vec<String>>,
    max_size: Option<u64>,
    fleet: Option<String>,
    max_age: Option<u32>,
}

/// `[publish]`: where a poller uploads each good sweep, signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// The object.
    pub url: S3Url,
    /// The secret key file `ec2cached keygen` wrote.
    pub signing_key: PathBuf,
    /// Seconds after which an unchanged fleet is uploaded again, so that followers' `max_age`
    /// counts from a recent sweep.
    pub republish_after: u32,
    /// Public keys of the other pollers of the object: their snapshots count as sweeps (a later
    /// one is not replaced); anything else in S3 is replaced.
    pub peer_keys: Vec<VerifyingKey>,
    /// The fleet identity signed into every snapshot (default: `url`).
    pub fleet: String,
}

/// `[follow]`: this host installs what a poller published instead of polling EC2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Follow {
    /// The object to follow; `None`: snapshots arrive by `ec2cached install` only.
    pub url: Option<S3Url>,
    /// Keys a snapshot must be signed by (empty: `install` accepts unsigned files).
    pub trusted_keys: Vec<VerifyingKey>,
    /// The largest object accepted, in bytes.
    pub max_size: u64,
    /// The fleet a snapshot must be signed for (default: `url`; required with `trusted_keys`
    /// and no `url`); empty without `trusted_keys`.
    pub fleet: String,
    /// The oldest sweep installed, in seconds: `None` is the object's own `max_age` (at most
    /// [`across::FLEET_MAX_AGE`]), and [`UNBOUND_MAX_AGE`] for an object that has none; set,
    /// the smaller of the two.
    pub max_age: Option<u32>,
    /// `install` on a host with neither `[follow]` nor `[publish]`: the operator's own files,
    /// not a feed; one without `max_age` is taken however old.
    pub own_files: bool,
}

/// The oldest sweep a follower installs from an object that carries no `max_age` (0: from a
/// poller before fleets were bounded, or an unsigned `install`), unless `[follow] max_age` says.
pub const UNBOUND_MAX_AGE: u32 = super::across::PUBLISH_MAX_AGE;

impl Follow {
    /// The oldest sweep this host installs from an object whose own `max_age` is `carried`
    /// (`None`: no bound, for an operator's own file without `max_age`, [`Follow::own_files`]).
    pub fn install_bound(&self, carried: u32) -> Option<u32> {
        if self.own_files {
            return (carried != 0).then_some(carried);
        }
        let carried = carried.min(across::FLEET_MAX_AGE);
        Some(match (carried, self.max_age) {
            (0, set) => set.unwrap_or(UNBOUND_MAX_AGE),
            (c, None) => c,
            (c, Some(set)) => c.min(set),
        })
    }
}

/// A fleet identity: `fleet` if set, else the object's URL.
fn fleet_id(set: Option<String>, url: Option<&S3Url>, section: &str) -> Checked<String> {
    match (set, url) {
        (Some(f), _) => {
            nss_ec2_snapshot::signed::check_fleet(&f)
                .map_err(|e| at(format!("{section}.fleet"), e))?;
            Ok(f)
        }
        (None, Some(u)) => {
            let id = u.to_string();
            nss_ec2_snapshot::signed::check_fleet(&id).map_err(|e| {
                at(
                    format!("{section}.url"),
                    format!(
                        "is the default fleet identity, which {e}: set `fleet` (the same on \
                         every poller and follower of the object)"
                    ),
                )
            })?;
            Ok(id)
        }
        (None, None) => Ok(String::new()),
    }
}

/// Default `[follow] max_size`: 64 MiB, about four times a 100 000-instance snapshot.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 20;

/// A list of public keys under `key` (`publish.peer_keys`, `follow.trusted_keys`).
fn keys(list: Option<Vec<String>>, key: &str) -> Checked<Vec<VerifyingKey>> {
    let mut out = Vec::new();
    for (i, k) in list.unwrap_or_default().iter().enumerate() {
        out.push(crate::leaf::keys::parse_public(k).map_err(|e| at(format!("{key}[{i}]"), e))?);
    }
    Ok(out)
}

pub(super) fn publish(p: RawPublish, timing: &Timing) -> Checked<Publish> {
    let url = S3Url::parse(&p.url).map_err(|e| at("publish.url", e))?;
    across::publish_max_age(timing)?;
    let Timing {
        interval, max_age, ..
    } = *timing;
    let default = if max_age == 0 { 3600 } else { max_age / 4 };
    let republish_after = p.republish_after.unwrap_or(default.max(interval));
    let most = if max_age == 0 { u32::MAX } else { max_age / 4 };
    if republish_after < interval || republish_after > most {
        return Err(at(
            "publish.republish_after",
            format!(
                "must be at least `interval` ({interval} s){}",
                if max_age == 0 {
                    String::new()
                } else {
                    format!(" and at most max_age / 4 ({most} s)")
                }
            ),
        ));
    }
    if p.signing_key.as_os_str().is_empty() {
        return Err(at("publish.signing_key", "must be a file"));
    }
    let fleet = fleet_id(p.fleet, Some(&url), "publish")?;
    Ok(Publish {
        url,
        signing_key: p.signing_key,
        republish_after,
        peer_keys: keys(p.peer_keys, "publish.peer_keys")?,
        fleet,
    })
}

pub(super) fn follow(f: RawFollow, interval: u32) -> Checked<Follow> {
    let url = match &f.url {
        Some(u) => Some(S3Url::parse(u).map_err(|e| at("follow.url", e))?),
        None => None,
    };
    let trusted_keys = keys(f.trusted_keys, "follow.trusted_keys")?;
    if url.is_some() && trusted_keys.is_empty() {
        return Err(at(
            "follow.trusted_keys",
            "must list the public key of every poller (`ec2cached keygen` prints it): a \
             follower installs signed snapshots only",
        ));
    }
    let max_size = f.max_size.unwrap_or(DEFAULT_MAX_SIZE);
    if !(4096..=1 << 30).contains(&max_size) {
        return Err(at("follow.max_size", "must be 4096 bytes to 1 GiB"));
    }
    if trusted_keys.is_empty() && f.fleet.is_some() {
        return Err(at(
            "follow.fleet",
            "needs trusted_keys: only a signature binds a snapshot to a fleet",
        ));
    }
    if url.is_none() && !trusted_keys.is_empty() && f.fleet.is_none() {
        return Err(at(
            "follow.fleet",
            "must name the fleet with trusted_keys and no url: the poller's [publish] fleet, \
             by default its url (\"s3://bucket/key\")",
        ));
    }
    let fleet = if trusted_keys.is_empty() {
        String::new()
    } else {
        fleet_id(f.fleet, url.as_ref(), "follow")?
    };
    if let Some(m) = f.max_age {
        let least = interval.saturating_mul(4).max(60);
        if m < least {
            return Err(at(
                "follow.max_age",
                format!(
                    "must be at least {least} s (4 × interval, and a minute): a follower would \
                     refuse the objects of a healthy fleet (leave it out for the poller's \
                     max_age, or {UNBOUND_MAX_AGE} s when an object has none)"
                ),
            ));
        }
    }
    Ok(Follow {
        url,
        trusted_keys,
        max_size,
        fleet,
        max_age: f.max_age,
        own_files: false,
    })
}
