//! `/etc/ec2cached.toml`: reading, checking, and one-line errors that name the file and the key.

use crate::leaf::aws::one_line;
use crate::leaf::s3::S3Url;
use nss_ec2_snapshot::fleet::{label, AddressChoice, AndName, Condition, Rules, Zone, ZoneKey};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the config is read from when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/ec2cached.toml";
/// Where the snapshot goes by default; the NSS module's compiled-in path.
pub const DEFAULT_SNAPSHOT: &str = "/var/lib/ec2cached/hosts.snap";

/// A config that cannot be used, with the file and the key.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The key, if the problem is one key's.
    pub key: Option<String>,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{}: key `{k}`: {}", self.file.display(), self.what),
            None => write!(f, "{}: {}", self.file.display(), self.what),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    domain: Option<String>,
    snapshot: Option<PathBuf>,
    interval: Option<u32>,
    regions: Option<Vec<String>>,
    security_groups: Option<Vec<String>>,
    ready_tag: Option<String>,
    service_tag: Option<String>,
    address: Option<Address>,
    max_age: Option<u32>,
    api_timeout: Option<u32>,
    publish: Option<RawPublish>,
    follow: Option<RawFollow>,
    metrics: Option<RawMetrics>,
    dns: Option<RawDns>,
    zone: Option<Vec<RawZone>>,
    name: Option<Vec<RawName>>,
    account: Option<Vec<RawAccount>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    key: String,
    under: Option<String>,
    services: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawName {
    name: String,
    #[serde(rename = "match")]
    conditions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    role_arn: Option<String>,
    external_id: Option<String>,
    regions: Option<Vec<String>>,
    label: Option<String>,
}

/// One `[[account]]`: whose instances to read, where, and under which label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The role to assume with the host's credentials; `None`: the host's own account.
    pub role_arn: Option<String>,
    /// `ExternalId` of the AssumeRole call.
    pub external_id: Option<String>,
    /// Its regions (the top-level `regions` when it lists none; empty: the SDK's region).
    pub regions: Vec<String>,
    /// Its names live under `label.D` instead of the top.
    pub label: Option<String>,
}

impl Account {
    /// How messages name it: `account 111122223333 (prod)`, `the host's account`.
    pub fn describe(&self) -> String {
        let id = self
            .role_arn
            .as_deref()
            .and_then(|a| a.split(':').nth(4))
            .filter(|id| !id.is_empty());
        match (id, &self.label) {
            (Some(id), Some(l)) => format!("account {id} ({l})"),
            (Some(id), None) => format!("account {id}"),
            (None, Some(l)) => format!("the host's account ({l})"),
            (None, None) => "the host's account".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    listen: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    textfile: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublish {
    url: String,
    signing_key: PathBuf,
    republish_after: Option<u32>,
    peer_keys: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFollow {
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
    pub peer_keys: Vec<ed25519_dalek::VerifyingKey>,
}

/// `[follow]`: this host installs what a poller published instead of polling EC2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Follow {
    /// The object to follow; `None`: snapshots arrive by `ec2cached install` only.
    pub url: Option<S3Url>,
    /// Keys a snapshot must be signed by (empty: `install` accepts unsigned files).
    pub trusted_keys: Vec<ed25519_dalek::VerifyingKey>,
    /// The largest object accepted, in bytes.
    pub max_size: u64,
}

/// Default `[follow] max_size`: 64 MiB, about four times a 100 000-instance snapshot.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 20;

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Address {
    Private,
    Public,
}

/// The daemon's configuration, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file it came from (or the default path when that file does not exist).
    pub file: PathBuf,
    /// Where the snapshot is published.
    pub snapshot: PathBuf,
    /// Seconds between polls.
    pub interval: u32,
    /// Regions to poll; empty: the SDK's region chain.
    pub regions: Vec<String>,
    /// Seconds after which readers stop trusting the snapshot; 0: never.
    pub max_age: u32,
    /// Seconds one API request may take (see `source::timeouts`).
    pub api_timeout: u32,
    /// The naming rules.
    pub rules: Rules,
    /// `[publish]`, on a poller that uploads to S3.
    pub publish: Option<Publish>,
    /// `[follow]`, on a host that follows a poller instead of polling.
    pub follow: Option<Follow>,
    /// `[metrics] textfile`: where Prometheus metrics are written after every poll or check.
    pub metrics_textfile: Option<PathBuf>,
    /// `[[account]]`; empty: the host's own credentials, as before accounts existed.
    pub accounts: Vec<Account>,
    /// `[dns] listen`: where the DNS stub answers (UDP and TCP each); empty: no stub, unless
    /// systemd passes sockets (`ec2cached-dns.socket`).
    pub dns_listen: Vec<std::net::SocketAddr>,
}

impl Config {
    /// Reads `path`, or the defaults when `path` is the default path and does not exist.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (file, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        let err = |key: Option<&str>, what: String| ConfigError {
            file: file.clone(),
            key: key.map(str::to_string),
            what,
        };
        let text = match std::fs::read(&file) {
            Ok(t) => String::from_utf8(t).map_err(|_| err(None, "not UTF-8 text".into()))?,
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(err(None, format!("cannot read: {e}"))),
        };
        Self::parse(&file, &text)
    }

    /// Parses and checks config text; `file` is only used in messages.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let err = |key: Option<&str>, what: String| ConfigError {
            file: file.to_path_buf(),
            key: key.map(str::to_string),
            what,
        };
        let de = toml::Deserializer::parse(text).map_err(|e| err(None, one_line(e.message())))?;
        let toml_keys: Vec<String> = toml::from_str::<toml::Table>(text)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        let raw: Raw = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let msg = one_line(e.inner().message());
            if path == "." {
                // Unknown keys are reported at the top level: the message names the key.
                err(None, msg)
            } else {
                err(Some(&path), msg)
            }
        })?;

        let domain = raw.domain.unwrap_or_else(|| "ec2".into());
        let domain = domain
            .strip_suffix('.')
            .unwrap_or(&domain)
            .to_ascii_lowercase();
        if domain.is_empty() || domain.len() > 189 {
            return Err(err(
                Some("domain"),
                "must be 1 to 189 characters, so that instance names fit in 253".into(),
            ));
        }
        for l in domain.split('.') {
            if label(l).as_deref() != Ok(l) {
                return Err(err(
                    Some("domain"),
                    format!("label {l:?} is not a valid name label ([a-z0-9-], 1 to 63)"),
                ));
            }
        }
        let interval = raw.interval.unwrap_or(30);
        if !(1..=86_400).contains(&interval) {
            return Err(err(Some("interval"), "must be 1 to 86400 seconds".into()));
        }
        let max_age = raw.max_age.unwrap_or(0);
        // A poll starts up to 1.1 × interval after the last one started and takes a while:
        // with less than 2 × interval, a healthy daemon's snapshot would go stale between polls.
        if max_age != 0 && u64::from(max_age) < 2 * u64::from(interval) {
            return Err(err(
                Some("max_age"),
                format!(
                    "must be 0 (no limit) or at least 2 × `interval` ({} s): the snapshot would \
                     go stale between two healthy polls",
                    2 * u64::from(interval)
                ),
            ));
        }
        let api_timeout = raw.api_timeout.unwrap_or(20);
        if !(1..=600).contains(&api_timeout) {
            return Err(err(Some("api_timeout"), "must be 1 to 600 seconds".into()));
        }
        let regions = raw.regions.unwrap_or_default();
        if let Some(r) = regions
            .iter()
            .find(|r| r.is_empty() || r.contains(char::is_whitespace))
        {
            return Err(err(Some("regions"), format!("{r:?} is not a region name")));
        }
        let ready_tag = match raw.ready_tag {
            None => None,
            Some(t) => match t.split_once('=') {
                Some((k, v)) if !k.is_empty() => Some((k.to_string(), v.to_string())),
                _ => return Err(err(Some("ready_tag"), format!("{t:?} is not KEY=VALUE"))),
            },
        };
        let service_tag = raw.service_tag.unwrap_or_else(|| "services".into());
        if service_tag.is_empty() {
            return Err(err(Some("service_tag"), "must not be empty".into()));
        }
        if let Some(groups) = &raw.security_groups {
            if groups.iter().any(String::is_empty) {
                return Err(err(
                    Some("security_groups"),
                    "contains an empty name".into(),
                ));
            }
        }
        if raw.follow.is_some() {
            // A follower's names, regions and max_age are the poller's, carried in the snapshot.
            const POLLER_ONLY: [&str; 11] = [
                "regions",
                "max_age",
                "api_timeout",
                "security_groups",
                "ready_tag",
                "service_tag",
                "address",
                "publish",
                "zone",
                "name",
                "account",
            ];
            if let Some(k) = POLLER_ONLY
                .iter()
                .find(|k| toml_keys.iter().any(|t| t == *k))
            {
                return Err(err(
                    Some(k),
                    "not allowed with [follow]: a follower takes its names, regions and max_age \
                     from the poller that signed the snapshot (set it in the poller's config)"
                        .into(),
                ));
            }
        }
        let publish = match raw.publish {
            None => None,
            Some(p) => {
                let url = S3Url::parse(&p.url).map_err(|e| err(Some("publish.url"), e))?;
                if max_age != 0 && u64::from(max_age) < 4 * u64::from(interval) {
                    return Err(err(
                        Some("max_age"),
                        format!(
                            "must be 0 (no limit) or at least 4 × `interval` ({} s) with \
                             [publish]: followers check every interval too, and would go stale \
                             between healthy polls",
                            4 * u64::from(interval)
                        ),
                    ));
                }
                let default = if max_age == 0 { 3600 } else { max_age / 4 };
                let republish_after = p.republish_after.unwrap_or(default.max(interval));
                let most = if max_age == 0 { u32::MAX } else { max_age / 4 };
                if republish_after < interval || republish_after > most {
                    return Err(err(
                        Some("publish.republish_after"),
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
                    return Err(err(Some("publish.signing_key"), "must be a file".into()));
                }
                let mut peer_keys = Vec::new();
                for (i, k) in p.peer_keys.unwrap_or_default().iter().enumerate() {
                    let key = crate::leaf::keys::parse_public(k)
                        .map_err(|e| err(Some(&format!("publish.peer_keys[{i}]")), e))?;
                    peer_keys.push(key);
                }
                Some(Publish {
                    url,
                    signing_key: p.signing_key,
                    republish_after,
                    peer_keys,
                })
            }
        };
        let follow = match raw.follow {
            None => None,
            Some(f) => {
                let url = match &f.url {
                    Some(u) => Some(S3Url::parse(u).map_err(|e| err(Some("follow.url"), e))?),
                    None => None,
                };
                let mut trusted_keys = Vec::new();
                for (i, k) in f.trusted_keys.unwrap_or_default().iter().enumerate() {
                    let key = crate::leaf::keys::parse_public(k)
                        .map_err(|e| err(Some(&format!("follow.trusted_keys[{i}]")), e))?;
                    trusted_keys.push(key);
                }
                if url.is_some() && trusted_keys.is_empty() {
                    return Err(err(
                        Some("follow.trusted_keys"),
                        "must list the public key of every poller (`ec2cached keygen` prints it): \
                         a follower installs signed snapshots only"
                            .into(),
                    ));
                }
                let max_size = f.max_size.unwrap_or(DEFAULT_MAX_SIZE);
                if !(4096..=1 << 30).contains(&max_size) {
                    return Err(err(
                        Some("follow.max_size"),
                        "must be 4096 bytes to 1 GiB".into(),
                    ));
                }
                Some(Follow {
                    url,
                    trusted_keys,
                    max_size,
                })
            }
        };
        let snapshot = raw.snapshot.unwrap_or_else(|| DEFAULT_SNAPSHOT.into());
        if snapshot.file_name().is_none() || snapshot.parent().is_none() {
            return Err(err(Some("snapshot"), "must be a file path".into()));
        }
        let metrics_textfile = match raw.metrics {
            None => None,
            Some(m) => {
                let t = m.textfile;
                // The node exporter's textfile collector reads only `*.prom` files; anything
                // else would be written and never read.
                if t.file_name().is_none()
                    || t.parent().is_none()
                    || t.extension().is_none_or(|e| e != "prom")
                {
                    return Err(err(
                        Some("metrics.textfile"),
                        format!(
                            "{:?} is not a file path ending in .prom (the node exporter's \
                             textfile collector reads only *.prom files)",
                            t
                        ),
                    ));
                }
                if t == snapshot || t == crate::leaf::ledger::status_path(&snapshot) {
                    return Err(err(
                        Some("metrics.textfile"),
                        "must not be the snapshot or its status file".into(),
                    ));
                }
                Some(t)
            }
        };
        let mut dns_listen = Vec::new();
        if let Some(d) = raw.dns {
            if d.listen.is_empty() {
                return Err(err(
                    Some("dns.listen"),
                    "lists no ADDRESS:PORT (leave [dns] out for no stub)".into(),
                ));
            }
            for (i, text) in d.listen.iter().enumerate() {
                let key = format!("dns.listen[{i}]");
                let a = parse_listen(text).map_err(|e| err(Some(&key), e))?;
                if dns_listen.contains(&a) {
                    return Err(err(Some(&key), format!("{a} is listed twice")));
                }
                dns_listen.push(a);
            }
        }
        let zones =
            match raw.zone {
                None => vec![Zone::default_zone()],
                Some(list) if list.is_empty() => return Err(err(
                    Some("zone"),
                    "lists no zone: there would be no names (leave [[zone]] out for the default)"
                        .into(),
                )),
                Some(list) => {
                    let mut zones = Vec::new();
                    for (i, z) in list.into_iter().enumerate() {
                        let at = |k: &str| format!("zone[{i}].{k}");
                        let key = ZoneKey::parse(&z.key).map_err(|e| err(Some(&at("key")), e))?;
                        let under = z.under.unwrap_or_default().to_ascii_lowercase();
                        if !under.is_empty()
                            && (label(&under).as_deref() != Ok(under.as_str())
                                || under.bytes().all(|b| b.is_ascii_digit()))
                        {
                            return Err(err(
                                Some(&at("under")),
                                format!(
                                    "{under:?} is not one name label ([a-z0-9-], 1 to 63, not all \
                                 digits), or \"\" for the top"
                                ),
                            ));
                        }
                        if zones
                            .iter()
                            .any(|o: &Zone| o.key == key && o.under == under)
                        {
                            return Err(err(
                                Some(&at("key")),
                                format!(
                                    "{} under {under:?} is listed twice: the second would \
                                     publish nothing",
                                    key.text()
                                ),
                            ));
                        }
                        zones.push(Zone {
                            key,
                            under,
                            services: z.services.unwrap_or(false),
                        });
                    }
                    zones
                }
            };
        let mut names = Vec::new();
        for (i, n) in raw.name.unwrap_or_default().into_iter().enumerate() {
            let at = |k: &str| format!("name[{i}].{k}");
            let name = n.name.trim_end_matches('.').to_ascii_lowercase();
            let labels: Vec<&str> = name.split('.').collect();
            if name.is_empty() || labels.iter().any(|l| label(l).as_deref() != Ok(*l)) {
                return Err(err(
                    Some(&at("name")),
                    format!(
                        "{:?} is not name labels ([a-z0-9-], 1 to 63 each) joined by dots",
                        n.name
                    ),
                ));
            }
            if labels[0].bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(
                    Some(&at("name")),
                    format!(
                        "{:?} starts with an all-digit label: it would clash with numbered names",
                        n.name
                    ),
                ));
            }
            if n.conditions.is_empty() {
                return Err(err(
                    Some(&at("match")),
                    "must list at least one condition".into(),
                ));
            }
            let mut conditions = Vec::new();
            for (k, c) in n.conditions.iter().enumerate() {
                conditions.push(
                    Condition::parse(c)
                        .map_err(|e| err(Some(&format!("name[{i}].match[{k}]")), e))?,
                );
            }
            if names.iter().any(|o: &AndName| o.name == name) {
                return Err(err(
                    Some(&at("name")),
                    format!("{name:?} is listed twice: the second would never be published"),
                ));
            }
            if zones.iter().any(|z| z.under == name) {
                return Err(err(
                    Some(&at("name")),
                    format!(
                        "{name:?} is a zone's `under` label: N.{name} would be both a numbered \
                         name of this entry and a zone value"
                    ),
                ));
            }
            names.push(AndName { name, conditions });
        }
        let mut accounts = Vec::new();
        for (i, a) in raw.account.unwrap_or_default().into_iter().enumerate() {
            let at = |k: &str| format!("account[{i}].{k}");
            if let Some(arn) = &a.role_arn {
                let parts: Vec<&str> = arn.split(':').collect();
                if parts.len() != 6
                    || parts[0] != "arn"
                    || parts[2] != "iam"
                    || parts[4].len() != 12
                    || !parts[4].bytes().all(|b| b.is_ascii_digit())
                    || parts[5].strip_prefix("role/").is_none_or(str::is_empty)
                {
                    return Err(err(
                        Some(&at("role_arn")),
                        format!("{arn:?} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME, ACCOUNT of 12 digits)"),
                    ));
                }
            }
            if a.external_id.is_some() && a.role_arn.is_none() {
                return Err(err(
                    Some(&at("external_id")),
                    "needs role_arn: the host's own account is not assumed".into(),
                ));
            }
            let regions = match a.regions {
                Some(r) if r.is_empty() => {
                    return Err(err(Some(&at("regions")), "must not be empty".into()))
                }
                Some(r) => r,
                None => regions.clone(),
            };
            if let Some(r) = regions
                .iter()
                .find(|r| r.is_empty() || r.contains(char::is_whitespace))
            {
                return Err(err(
                    Some(&at("regions")),
                    format!("{r:?} is not a region name"),
                ));
            }
            let label_ = match a.label {
                None => None,
                Some(l) => {
                    let l = l.to_ascii_lowercase();
                    if label(&l).as_deref() != Ok(l.as_str())
                        || l.bytes().all(|b| b.is_ascii_digit())
                    {
                        return Err(err(
                            Some(&at("label")),
                            format!(
                                "{l:?} is not one name label ([a-z0-9-], 1 to 63, not all digits)"
                            ),
                        ));
                    }
                    if zones.iter().any(|z| z.under == l) {
                        return Err(err(
                            Some(&at("label")),
                            format!("{l:?} is also a zone's `under`: one of them must change"),
                        ));
                    }
                    Some(l)
                }
            };
            let account = Account {
                role_arn: a.role_arn,
                external_id: a.external_id,
                regions,
                label: label_,
            };
            if let Some(l) = &account.label {
                if accounts
                    .iter()
                    .any(|o: &Account| o.label.as_ref() == Some(l))
                {
                    return Err(err(
                        Some(&at("label")),
                        format!("{l:?} labels two accounts"),
                    ));
                }
            }
            // An empty list means the SDK's one region.
            let overlap = |a: &[String], b: &[String]| {
                (a.is_empty() && b.is_empty()) || a.iter().any(|r| b.contains(r))
            };
            // Two roles into one account would read its instances twice.
            let id = |a: &Account| {
                a.role_arn
                    .as_deref()
                    .and_then(|r| r.split(':').nth(4).map(str::to_string))
            };
            if accounts
                .iter()
                .any(|o: &Account| id(o) == id(&account) && overlap(&o.regions, &account.regions))
            {
                return Err(err(
                    Some(&at("role_arn")),
                    format!(
                        "{} is listed twice for a region: its instances would be read twice",
                        account.describe()
                    ),
                ));
            }
            accounts.push(account);
        }
        if let Some((i, n)) = names
            .iter()
            .enumerate()
            .find(|(_, n)| accounts.iter().any(|a| a.label.as_ref() == Some(&n.name)))
        {
            return Err(err(
                Some(&format!("name[{i}].name")),
                format!(
                    "{:?} is an account label: {}.{domain} is where that account's names live",
                    n.name, n.name
                ),
            ));
        }
        Ok(Config {
            file: file.to_path_buf(),
            snapshot,
            interval,
            regions,
            max_age,
            api_timeout,
            rules: Rules {
                domain,
                ready_tag,
                service_tag,
                address: match raw.address {
                    Some(Address::Public) => AddressChoice::Public,
                    _ => AddressChoice::Private,
                },
                security_groups: raw.security_groups,
                zones,
                names,
                account_labels: accounts.iter().filter_map(|a| a.label.clone()).collect(),
            },
            publish,
            follow,
            metrics_textfile,
            accounts,
            dns_listen,
        })
    }
}

/// `[dns] listen` entries: `ADDRESS:PORT`.
fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    let a: std::net::SocketAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not ADDRESS:PORT (127.0.0.153:53, [::1]:53)"))?;
    if a.port() == 0 {
        return Err(format!(
            "{text:?}: port 0 is not a port clients can be told"
        ));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, String> {
        Config::parse(Path::new("/etc/x.toml"), t).map_err(|e| e.to_string())
    }

    #[test]
    fn the_spec_example_parses() {
        let c = parse(
            r#"
domain          = "ec2"
snapshot        = "/var/lib/ec2cached/hosts.snap"
interval        = 30
regions         = ["us-east-1"]
security_groups = ["tphon"]
ready_tag       = "af-status=ready"
service_tag     = "services"
address         = "private"
max_age         = 3600
"#,
        )
        .unwrap();
        assert_eq!(
            c.rules.ready_tag,
            Some(("af-status".into(), "ready".into()))
        );
        assert_eq!(c.rules.security_groups, Some(vec!["tphon".to_string()]));
        assert_eq!(c.max_age, 3600);
        assert_eq!(parse("").unwrap().rules, Rules::default());
    }

    #[test]
    fn every_key_with_a_wrong_type_names_that_key() {
        let keys = [
            "domain",
            "snapshot",
            "interval",
            "regions",
            "security_groups",
            "ready_tag",
            "service_tag",
            "address",
            "max_age",
            "api_timeout",
        ];
        for key in keys {
            for bad in ["true", "{ a = 1 }", "1.5"] {
                let got = parse(&format!("{key} = {bad}")).unwrap_err();
                assert!(
                    got.starts_with(&format!("/etc/x.toml: key `{key}`: ")),
                    "{key} = {bad}: {got}"
                );
                assert!(!got.contains('\n'));
            }
        }
    }

    #[test]
    fn dns_listen_takes_address_port_pairs_once_each() {
        let c = parse("[dns]\nlisten = [\"127.0.0.153:53\", \"[::1]:5353\"]").unwrap();
        assert_eq!(
            c.dns_listen,
            vec![
                "127.0.0.153:53".parse().unwrap(),
                "[::1]:5353".parse().unwrap()
            ]
        );
        assert!(parse("").unwrap().dns_listen.is_empty());
        for (text, want) in [
            ("listen = []", "key `dns.listen`: lists no ADDRESS:PORT"),
            (
                "listen = [\"nope\"]",
                "key `dns.listen[0]`: \"nope\" is not ADDRESS:PORT",
            ),
            (
                "listen = [\"127.0.0.1\"]",
                "key `dns.listen[0]`: \"127.0.0.1\" is not",
            ),
            (
                "listen = [\"127.0.0.1:0\"]",
                "key `dns.listen[0]`: \"127.0.0.1:0\": port 0",
            ),
            (
                "listen = [\"127.0.0.1:53\", \"127.0.0.1:53\"]",
                "key `dns.listen[1]`: 127.0.0.1:53 is listed twice",
            ),
            (
                "listen = \"127.0.0.1:53\"",
                "key `dns.listen`: invalid type",
            ),
            ("port = 53", "unknown field `port`"),
        ] {
            let got = parse(&format!("[dns]\n{text}")).unwrap_err();
            assert!(got.starts_with("/etc/x.toml: "), "{got}");
            assert!(got.contains(want), "{text}: {got}");
            assert!(!got.contains('\n'), "{got}");
        }
    }

    #[test]
    fn max_age_is_none_or_at_least_twice_the_interval() {
        assert_eq!(parse("interval = 60\nmax_age = 120").unwrap().max_age, 120);
        assert_eq!(parse("interval = 60\nmax_age = 0").unwrap().max_age, 0);
        assert_eq!(parse("max_age = 60").unwrap().max_age, 60);
        let e = parse("interval = 60\nmax_age = 119").unwrap_err();
        assert!(
            e.starts_with("/etc/x.toml: key `max_age`: must be 0 (no limit) or at least 2 × `interval` (120 s)"),
            "{e}"
        );
        assert!(parse("max_age = 59").is_err());
    }

    const KEY: &str = "ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    #[test]
    fn publish_and_follow_sections_parse() {
        let c = parse(
            "interval = 30\nmax_age = 600\n[publish]\nurl = \"s3://my-bucket/fleet/hosts.snap\"\n\
             signing_key = \"/etc/ec2cached/signing.key\"\n",
        )
        .unwrap();
        let p = c.publish.unwrap();
        assert_eq!(p.url.to_string(), "s3://my-bucket/fleet/hosts.snap");
        assert!(p.peer_keys.is_empty());
        let peers = parse(&format!(
            "[publish]\nurl = \"s3://b-1/k\"\nsigning_key = \"/k\"\npeer_keys = [\"{KEY}\"]"
        ))
        .unwrap();
        assert_eq!(peers.publish.unwrap().peer_keys.len(), 1);
        for bad in [
            "s3://-b/k",
            "s3://b..c/k",
            "s3://bc-/k",
            "s3://bcd/a\u{7}b",
            "s3://bcd/",
        ] {
            assert!(S3Url::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(p.republish_after, 150);
        assert_eq!(
            parse("[publish]\nurl = \"s3://b-1/k\"\nsigning_key = \"/k\"")
                .unwrap()
                .publish
                .unwrap()
                .republish_after,
            3600
        );
        let f = parse(&format!(
            "interval = 10\n[follow]\nurl = \"s3://b-1/k\"\ntrusted_keys = [\"{KEY}\"]\n"
        ))
        .unwrap()
        .follow
        .unwrap();
        assert_eq!(f.trusted_keys.len(), 1);
        assert_eq!(f.max_size, DEFAULT_MAX_SIZE);
        // No url: `install` checks signatures, nothing is followed.
        assert!(parse(&format!("[follow]\ntrusted_keys = [\"{KEY}\"]"))
            .unwrap()
            .follow
            .unwrap()
            .url
            .is_none());
    }

    #[test]
    fn fleet_mistakes_name_the_key() {
        let follow = format!("[follow]\nurl = \"s3://b-1/k\"\ntrusted_keys = [\"{KEY}\"]\n");
        for key in [
            "regions = [\"us-east-1\"]",
            "max_age = 3600",
            "security_groups = [\"a\"]",
            "ready_tag = \"a=b\"",
            "service_tag = \"s\"",
            "address = \"public\"",
            "api_timeout = 5",
        ] {
            let got = parse(&format!("{key}\n{follow}")).unwrap_err();
            let name = key.split(' ').next().unwrap();
            assert!(
                got.starts_with(&format!(
                    "/etc/x.toml: key `{name}`: not allowed with [follow]"
                )),
                "{got}"
            );
        }
        let got = parse(&format!(
            "{follow}[publish]\nurl = \"s3://b-1/k\"\nsigning_key = \"/k\""
        ))
        .unwrap_err();
        assert!(
            got.contains("key `publish`: not allowed with [follow]"),
            "{got}"
        );
        let cases = [
            (
                "[follow]\nurl = \"s3://b-1/k\"".to_string(),
                "key `follow.trusted_keys`: must list",
            ),
            (
                "[follow]\nurl = \"http://b/k\"\ntrusted_keys = []".into(),
                "key `follow.url`: \"http://b/k\" is not s3://BUCKET/KEY",
            ),
            (
                "[follow]\ntrusted_keys = [\"ed25519:00\"]".into(),
                "key `follow.trusted_keys[0]`: ",
            ),
            (
                format!("[follow]\ntrusted_keys = [\"{KEY}\"]\nmax_size = 10"),
                "key `follow.max_size`: must be 4096 bytes to 1 GiB",
            ),
            (
                "[follow]\nurl = \"s3://b-1/k\"\ncolour = 1".into(),
                "key `follow.colour`: unknown field",
            ),
            (
                "interval = 60\nmax_age = 200\n[publish]\nurl = \"s3://b-1/k\"\nsigning_key = \"/k\"".into(),
                "key `max_age`: must be 0 (no limit) or at least 4 × `interval` (240 s) with [publish]",
            ),
            (
                "interval = 60\nmax_age = 600\n[publish]\nurl = \"s3://b-1/k\"\nsigning_key = \"/k\"\nrepublish_after = 300".into(),
                "key `publish.republish_after`: must be at least `interval` (60 s) and at most max_age / 4 (150 s)",
            ),
        ];
        for (text, want) in cases {
            let got = parse(&text).unwrap_err();
            assert!(got.contains(want), "{text:?}: {got}");
            assert!(!got.contains('\n'), "{got}");
        }
    }

    #[test]
    fn errors_name_file_and_key_on_one_line() {
        let cases = [
            (
                "interval = \"x\"",
                "/etc/x.toml: key `interval`: invalid type",
            ),
            ("interval = 0", "/etc/x.toml: key `interval`: must be"),
            (
                "regions = [1]",
                "/etc/x.toml: key `regions[0]`: invalid type",
            ),
            (
                "address = \"both\"",
                "/etc/x.toml: key `address`: unknown variant",
            ),
            (
                "ready_tag = \"ready\"",
                "/etc/x.toml: key `ready_tag`: \"ready\" is not KEY=VALUE",
            ),
            (
                "domain = \"Bad_Domain\"",
                "/etc/x.toml: key `domain`: label",
            ),
            (
                "colour = 1",
                "/etc/x.toml: key `colour`: unknown field `colour`",
            ),
            ("interval = ", "/etc/x.toml: "),
            ("max_age = -1", "/etc/x.toml: key `max_age`: invalid value"),
            (
                "interval = 60\nmax_age = 59",
                "/etc/x.toml: key `max_age`: must be 0 (no limit) or at least 2 × `interval` (120 s)",
            ),
            ("max_age = 59", "/etc/x.toml: key `max_age`: must be 0"),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap_err();
            assert!(got.starts_with(want), "{text:?}: {got}");
            assert!(!got.contains('\n'), "{got}");
        }
    }

    #[test]
    fn zones_names_and_accounts_that_would_clash_are_refused() {
        let arn = |id: &str, role: &str| format!("arn:aws:iam::{id}:role/{role}");
        for (text, key, what) in [
            (
                "[[zone]]\nkey = \"az\"\nunder = \"az\"\n[[zone]]\nkey = \"az\"\nunder = \"az\"".to_string(),
                "zone[1].key",
                "listed twice",
            ),
            (
                "[[zone]]\nkey = \"tag:rack\"\nunder = \"web\"\n[[name]]\nname = \"web\"\nmatch = [\"tag:role=web\"]".into(),
                "name[0].name",
                "`under` label",
            ),
            (
                "[[name]]\nname = \"prod\"\nmatch = [\"tag:env\"]\n[[account]]\nlabel = \"prod\"".into(),
                "name[0].name",
                "account label",
            ),
            (
                "[[name]]\nname = \"a\"\nmatch = [\"tag:x\"]\n[[name]]\nname = \"a\"\nmatch = [\"tag:y\"]".into(),
                "name[1].name",
                "listed twice",
            ),
            (
                "[[name]]\nname = \"a\"\nmatch = [\"asg=\"]".into(),
                "name[0].match[0]",
                "empty value",
            ),
            (
                format!("[[account]]\nrole_arn = {:?}", arn("abc", "r")),
                "account[0].role_arn",
                "12 digits",
            ),
            (
                format!("[[account]]\nrole_arn = {:?}", arn("111122223333", "")),
                "account[0].role_arn",
                "not a role ARN",
            ),
            (
                format!(
                    "regions = [\"us-east-1\"]\n[[account]]\nrole_arn = {:?}\n[[account]]\nrole_arn = {:?}",
                    arn("111122223333", "a"),
                    arn("111122223333", "b")
                ),
                "account[1].role_arn",
                "listed twice",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(
                e.contains(&format!("key `{key}`")) && e.contains(what),
                "{text}\n=> {e}"
            );
        }
        // The spec's own example: a [[name]] web.prod next to an account labelled prod.
        let ok = parse(&format!(
            "regions = [\"us-east-1\"]\n[[name]]\nname = \"web.prod\"\nmatch = [\"tag:role=web\"]\n\
             [[account]]\nlabel = \"prod\"\nrole_arn = {:?}",
            arn("111122223333", "r")
        ))
        .unwrap();
        assert_eq!(ok.rules.account_labels, ["prod"]);
        assert_eq!(ok.rules.zones, [Zone::default_zone()]);
    }
}
