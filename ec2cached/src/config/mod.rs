//! `/etc/ec2cached.toml`: reading, checking, and one-line errors that name the file and the key.
//!
//! One module per section, each with its raw form, its checks and its typed result:
//! [`polling`] (`snapshot`, `interval`, `max_age`, `api_timeout`, `regions`), [`names`] (the
//! naming rules, `[[zone]]`, `[[name]]`), [`accounts`], [`fleet`] (`[publish]`, `[follow]`),
//! [`dns`], [`metrics`]; the rules between sections are in [`across`]. [`Config::parse`] reads
//! them in the order their errors are reported.

mod accounts;
mod across;
pub mod dns;
pub mod events;
mod fleet;
mod metrics;
mod names;
mod polling;
#[cfg(test)]
mod tests;

pub use accounts::Account;
pub use fleet::{Follow, Publish, DEFAULT_MAX_SIZE, UNBOUND_MAX_AGE};

use crate::leaf::aws::one_line;
use nss_ec2_snapshot::fleet::Rules;
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

/// What is wrong with one key (or the whole file): a [`ConfigError`] once the file is known.
#[derive(Debug)]
pub(crate) struct KeyError {
    key: Option<String>,
    what: String,
}

impl KeyError {
    fn in_file(self, file: &Path) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            key: self.key,
            what: self.what,
        }
    }
}

/// A section's checked value, or what is wrong with which key.
type Checked<T> = Result<T, KeyError>;

/// What is wrong with `key`.
fn at(key: impl Into<String>, what: impl Into<String>) -> KeyError {
    KeyError {
        key: Some(key.into()),
        what: what.into(),
    }
}

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
    address: Option<names::Address>,
    max_age: Option<u32>,
    api_timeout: Option<u32>,
    publish: Option<fleet::RawPublish>,
    follow: Option<fleet::RawFollow>,
    metrics: Option<metrics::RawMetrics>,
    dns: Option<dns::RawDns>,
    events: Option<events::RawEvents>,
    zone: Option<Vec<names::RawZone>>,
    name: Option<Vec<names::RawName>>,
    account: Option<Vec<accounts::RawAccount>>,
}

/// Reads the TOML into the raw sections, and the top-level keys it names.
fn read(text: &str) -> Checked<(Raw, Vec<String>)> {
    let whole = |what: String| KeyError { key: None, what };
    let de = toml::Deserializer::parse(text).map_err(|e| whole(one_line(e.message())))?;
    let toml_keys: Vec<String> = toml::from_str::<toml::Table>(text)
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    let raw: Raw = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let msg = one_line(e.inner().message());
        if path == "." {
            // Unknown keys are reported at the top level: the message names the key.
            whole(msg)
        } else {
            at(path, msg)
        }
    })?;
    Ok((raw, toml_keys))
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
    /// Seconds one API request may take (see `leaf::aws::timeouts`).
    pub api_timeout: u32,
    /// The naming rules.
    pub rules: Rules,
    /// `[publish]`, on a poller that uploads to S3.
    pub publish: Option<Publish>,
    /// `[follow]`, on a host that follows a poller instead of polling.
    pub follow: Option<Follow>,
    /// `[metrics] textfile`: where Prometheus metrics are written after every poll or check.
    pub metrics_textfile: Option<PathBuf>,
    /// `[events]`: the queue of EC2's change events (a poller).
    pub events: Option<events::Events>,
    /// `[[account]]`; empty: the host's own credentials, as before accounts existed.
    pub accounts: Vec<Account>,
    /// `[dns] listen`: where the DNS stub answers (UDP and TCP each); empty: no stub, unless
    /// systemd passes sockets (`ec2cached-dns.socket`).
    pub dns_listen: Vec<std::net::SocketAddr>,
    /// `[dns] allow`: networks answered besides loopback.
    pub dns_allow: Vec<dns::Net>,
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
        let (raw, toml_keys) = read(text).map_err(|e| e.in_file(file))?;
        Self::checked(file, raw, &toml_keys).map_err(|e| e.in_file(file))
    }

    /// Every section checked, in the order their errors are reported.
    fn checked(file: &Path, raw: Raw, toml_keys: &[String]) -> Checked<Config> {
        let domain = names::domain(raw.domain)?;
        // With [events], the sweep reconciles what events missed: rarer unless set.
        let interval = raw
            .interval
            .or(raw.events.is_some().then_some(events::EVENTS_INTERVAL));
        let mut timing = polling::Timing::check(interval, raw.max_age, raw.api_timeout)?;
        if raw.publish.is_some() {
            timing = across::publish_bounds_max_age(timing, raw.max_age)?;
        }
        let regions = polling::regions(raw.regions.unwrap_or_default(), "regions")?;
        let ready_tag = names::ready_tag(raw.ready_tag)?;
        let service_tag = names::service_tag(raw.service_tag)?;
        let security_groups = names::security_groups(raw.security_groups)?;
        if raw.follow.is_some() {
            across::follower_has_no_poller_keys(toml_keys)?;
        }
        let publish = raw
            .publish
            .map(|p| fleet::publish(p, &timing))
            .transpose()?;
        let follow = raw
            .follow
            .map(|f| fleet::follow(f, timing.interval))
            .transpose()?;
        let snapshot = polling::snapshot(raw.snapshot)?;
        let metrics_textfile = raw.metrics.map(metrics::textfile).transpose()?;
        if let Some(t) = &metrics_textfile {
            across::textfile_is_not_the_snapshot(t, &snapshot)?;
        }
        let events = raw.events.map(events::events).transpose()?;
        let dns::Dns {
            listen: dns_listen,
            allow: dns_allow,
        } = raw.dns.map(dns::dns).transpose()?.unwrap_or_default();
        let zones = names::zones(raw.zone)?;
        let names = names::names(raw.name, &zones, &domain)?;
        let accounts = accounts::accounts(raw.account, &regions, &zones)?;
        let account_labels: Vec<String> = accounts.iter().filter_map(|a| a.label.clone()).collect();
        across::names_are_not_labels(&names, &account_labels, &domain)?;
        Ok(Config {
            file: file.to_path_buf(),
            snapshot,
            interval: timing.interval,
            regions,
            max_age: timing.max_age,
            api_timeout: timing.api_timeout,
            rules: Rules {
                domain,
                ready_tag,
                service_tag,
                address: names::Address::choice(raw.address),
                security_groups,
                zones,
                names,
                account_labels,
            },
            publish,
            follow,
            metrics_textfile,
            accounts,
            dns_listen,
            dns_allow,
            events,
        })
    }
}
