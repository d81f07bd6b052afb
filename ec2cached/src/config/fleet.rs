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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFollow {
    url: Option<String>,
    trusted_keys: Option<Vec<String>>,
    max_size: Option<u64>,
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
    Ok(Publish {
        url,
        signing_key: p.signing_key,
        republish_after,
        peer_keys: keys(p.peer_keys, "publish.peer_keys")?,
    })
}

pub(super) fn follow(f: RawFollow) -> Checked<Follow> {
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
    Ok(Follow {
        url,
        trusted_keys,
        max_size,
    })
}
