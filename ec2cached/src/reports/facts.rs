//! `ec2cached facts`: what this host is, for configuration management (Facter, Ansible).
//!
//! The identity (instance id, region, zone, account) comes from the instance metadata service
//! through the SDK's IMDSv2 client (token first; `AWS_EC2_METADATA_SERVICE_ENDPOINT` honoured);
//! the host's groups, services and names from the snapshot the module answers from, so a
//! configuration picked by group sees exactly what other hosts resolve.

use crate::config::Config;
use crate::leaf::aws::{endpoint_of, find_source, root_cause};
use crate::leaf::clock::utc;
use nss_ec2_snapshot::{Find, Kind, Snapshot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// The facts, in the order they are printed.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Facts {
    /// `i-0abc...`.
    pub instance_id: String,
    /// `us-east-1`.
    pub region: String,
    /// `us-east-1a`.
    pub availability_zone: String,
    /// The account id, a string (it may start with 0).
    pub account_id: String,
    /// The sets whose name answers with this host, without the domain: security groups (`G.D`),
    /// and with zones, `[[name]]` entries or account labels their sets (`web-01.name`, `tphon.prod`).
    pub groups: Vec<String>,
    /// The services whose names (`S.SET.D`) answer with this host, as labels.
    pub services: Vec<String>,
    /// Every name whose answer includes this host.
    pub names: Vec<String>,
}

/// The fields of the instance identity document that the facts use.
#[derive(Deserialize, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// Instance id.
    pub instance_id: String,
    /// Region.
    pub region: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Account id.
    pub account_id: String,
}

/// The identity document path (IMDS).
const DOCUMENT: &str = "/latest/dynamic/instance-identity/document";

/// Asks IMDS who this host is: at most two attempts of 1 s to connect and 2 s to answer, and
/// 5 s in all, so a Facter or Ansible run on a host without IMDS is delayed by seconds, never
/// hung.
pub async fn identity() -> Result<Identity, String> {
    if std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(
            "the instance metadata service is disabled (AWS_EC2_METADATA_DISABLED=true): no \
             instance identity"
                .into(),
        );
    }
    let client = aws_config::imds::Client::builder()
        .max_attempts(2)
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build();
    let endpoint = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .map(|e| endpoint_of(&e))
        .unwrap_or_else(|| {
            "its endpoint (http://169.254.169.254, unless an AWS profile sets \
             ec2_metadata_service_endpoint)"
                .into()
        });
    let no_imds = |why: String| {
        format!(
            "no instance identity from the instance metadata service (IMDSv2) at {endpoint}: {why}"
        )
    };
    let doc = match tokio::time::timeout(Duration::from_secs(6), client.get(DOCUMENT)).await {
        Err(_) => return Err(no_imds("no answer within 6 s".into())),
        Ok(Err(e)) => {
            let why = match find_source::<std::io::Error>(&e) {
                Some(io) => root_cause(io),
                // The token request was sent and never answered: what a container sees when the
                // instance's hop limit for IMDS answers is 1 (the answer dies one hop short).
                None if matches!(
                    e,
                    aws_config::imds::client::error::ImdsError::FailedToLoadToken(_)
                ) =>
                {
                    format!(
                        "the IMDSv2 token request (PUT /latest/api/token) got no answer ({}). In \
                         a container, the instance's metadata hop limit must be at least 2: aws \
                         ec2 modify-instance-metadata-options --instance-id ID \
                         --http-put-response-hop-limit 2",
                        root_cause(&e)
                    )
                }
                None => root_cause(&e),
            };
            return Err(no_imds(why));
        }
        Ok(Ok(doc)) => doc,
    };
    serde_json::from_str::<Identity>(doc.as_ref())
        .map_err(|e| no_imds(format!("not an identity document: {e}")))
}

/// The installed snapshot's bytes, when the module would answer from it: it parses and is within
/// its `max_age`. Otherwise one line saying why (`facts`, `export`).
pub fn read_usable(cfg: &Config, now: u64) -> Result<Vec<u8>, String> {
    let path = cfg.snapshot.display();
    let bytes = std::fs::read(&cfg.snapshot).map_err(|e| {
        format!("no snapshot at {path}: {e} (is ec2cached running and has it polled?)")
    })?;
    let snap = Snapshot::parse(&bytes)
        .map_err(|e| format!("the snapshot at {path} is not usable: {e}"))?;
    let h = snap.header();
    if h.expired_at(now) {
        return Err(format!(
            "the snapshot at {path} is from {}, older than its max_age ({} s): .{} names answer \
             UNAVAIL",
            utc(h.generated_unix),
            h.max_age_secs,
            String::from_utf8_lossy(snap.domain())
        ));
    }
    Ok(bytes)
}

/// The facts of the host `id` is, from the snapshot at `cfg.snapshot`.
pub fn from_snapshot(cfg: &Config, id: Identity, now: u64) -> Result<Facts, String> {
    let path = cfg.snapshot.display();
    let bytes = read_usable(cfg, now)?;
    let snap = Snapshot::parse(&bytes)
        .map_err(|e| format!("the snapshot at {path} is not usable: {e}"))?;
    let domain = String::from_utf8_lossy(snap.domain()).into_owned();
    let corrupt = |e: nss_ec2_snapshot::Corrupt| format!("the snapshot at {path} is damaged: {e}");
    let query = format!("{}.{domain}", id.instance_id);
    let me = match snap.find(query.as_bytes()).map_err(corrupt)? {
        Find::Found(a) if a.kind() == Kind::Instance && a.member_count() == 1 => a
            .members()
            .next()
            .transpose()
            .map_err(corrupt)?
            .map(|m| m.name().map(<[u8]>::to_vec))
            .transpose()
            .map_err(corrupt)?,
        _ => None,
    };
    let Some(me) = me else {
        return Err(format!(
            "{} is not in the snapshot at {path} (sweep of {}): not running, not in the polled \
             groups or regions, or launched since",
            id.instance_id,
            utc(snap.header().generated_unix)
        ));
    };
    let mut names: Vec<(String, Kind)> = Vec::new();
    for idx in 0..snap.len() {
        let a = snap.answer(idx).map_err(corrupt)?;
        let mut members = a.members();
        if members
            .try_fold(false, |found, m| {
                Ok::<_, nss_ec2_snapshot::Corrupt>(found || m?.name()? == me.as_slice())
            })
            .map_err(corrupt)?
        {
            names.push((String::from_utf8_lossy(a.name()).into_owned(), a.kind()));
        }
    }
    // Groups: the sets the host is in (`G.D`, and zone and [[name]] sets), without the domain.
    // Services: `S.SET.D` names, S being what comes before the set the service belongs to: a
    // zone's set, never a [[name]] (which has no services), so of the host's sets that end the
    // name, the shortest, [[name]] sets of this config left out. Two zone sets never nest (a
    // zone's `under` label is no value at the top), so only a [[name]] can end like a service
    // (`[[name]] postgres.tphon` and `readonly.postgres.tphon.ec2`): the longest set would
    // make that service `readonly`.
    let suffix = format!(".{domain}");
    let sets: Vec<&str> = names
        .iter()
        .filter(|(_, k)| *k == Kind::Group)
        .map(|(n, _)| n.as_str())
        .collect();
    let groups: BTreeSet<String> = sets
        .iter()
        .map(|n| n.strip_suffix(&suffix).unwrap_or(n).to_string())
        .collect();
    let mut namespaces = vec![None];
    namespaces.extend(cfg.rules.account_labels.iter().map(|l| Some(l.as_str())));
    let and_names: BTreeSet<String> = cfg
        .rules
        .names
        .iter()
        .flat_map(|n| {
            namespaces
                .iter()
                .map(|ns| format!("{}.{}", n.name, cfg.rules.suffix(*ns)))
        })
        .collect();
    let services: BTreeSet<String> = names
        .iter()
        .filter(|(_, k)| *k == Kind::Service)
        .filter_map(|(n, _)| {
            sets.iter()
                .filter(|set| !and_names.contains(**set))
                .filter_map(|set| n.strip_suffix(set)?.strip_suffix('.'))
                .max_by_key(|s| s.len())
                .map(str::to_string)
        })
        .collect();
    let mut names: Vec<String> = names.into_iter().map(|(n, _)| n).collect();
    names.sort_by(|a, b| (a.matches('.').count(), a).cmp(&(b.matches('.').count(), b)));
    Ok(Facts {
        instance_id: id.instance_id,
        region: id.region,
        availability_zone: id.availability_zone,
        account_id: id.account_id,
        groups: groups.into_iter().collect(),
        services: services.into_iter().collect(),
        names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::fixture::setup;

    fn id(instance: &str) -> Identity {
        Identity {
            instance_id: instance.into(),
            region: "us-east-1".into(),
            availability_zone: "us-east-1a".into(),
            account_id: "000123456789".into(),
        }
    }

    #[test]
    fn the_host_s_groups_services_and_every_name_that_answers_with_it() {
        let (_d, cfg) = setup(0);
        let f = from_snapshot(&cfg, id("i-0a"), 2_000).unwrap();
        assert_eq!(f.groups, ["tphon", "web-front"]);
        assert_eq!(f.services, ["postgres", "readonly.postgres"]);
        for n in [
            "i-0a.ec2",
            "tphon.ec2",
            "1.tphon.ec2",
            "postgres.tphon.ec2",
            "1.postgres.tphon.ec2",
            "readonly.postgres.tphon.ec2",
            "web-front.ec2",
        ] {
            assert!(f.names.iter().any(|x| x == n), "{n}: {:?}", f.names);
        }
        assert!(!f
            .names
            .iter()
            .any(|x| x.contains("redis") || x == "2.tphon.ec2"));
        assert_eq!(f.account_id, "000123456789");
        let json = serde_json::to_string(&f).unwrap();
        assert!(json.starts_with("{\"instance_id\":\"i-0a\""), "{json}");
    }

    /// Issue 22, item 18: a [[name]] that ends like a service name (`postgres.tphon`, and the
    /// service `readonly.postgres` of group tphon) made `facts` list service `readonly`.
    #[test]
    fn a_name_that_ends_like_a_service_does_not_cut_the_service() {
        let (d, _) = setup(0);
        let text = format!(
            "snapshot = {:?}\n[[zone]]\nkey = \"security-group\"\nservices = true\n\
             [[name]]\nname = \"postgres.tphon\"\nmatch = [\"security-group=tphon\"]\n",
            d.path().join("hosts.snap")
        );
        let cfg = Config::parse(&d.path().join("c.toml"), &text).unwrap();
        let built = nss_ec2_snapshot::fleet::build(&crate::reports::fixture::fleet(), &cfg.rules);
        let meta = nss_ec2_snapshot::Meta {
            domain: "ec2".into(),
            generated_unix: 1_000,
            interval_secs: 30,
            max_age_secs: 0,
        };
        std::fs::write(&cfg.snapshot, built.table.encode(&meta).unwrap()).unwrap();
        let f = from_snapshot(&cfg, id("i-0a"), 2_000).unwrap();
        assert!(
            f.names.iter().any(|n| n == "postgres.tphon.ec2"),
            "{:?}",
            f.names
        );
        assert_eq!(f.services, ["postgres", "readonly.postgres"]);
        assert_eq!(f.groups, ["postgres.tphon", "tphon", "web-front"]);
    }

    #[test]
    fn a_host_not_in_the_snapshot_or_no_snapshot_or_an_expired_one_is_an_error() {
        let (_d, cfg) = setup(60);
        let e = from_snapshot(&cfg, id("i-0zz"), 1_010).unwrap_err();
        assert!(e.contains("i-0zz is not in the snapshot"), "{e}");
        let e = from_snapshot(&cfg, id("i-0a"), 5_000).unwrap_err();
        assert!(e.contains("older than its max_age"), "{e}");
        std::fs::remove_file(&cfg.snapshot).unwrap();
        let e = from_snapshot(&cfg, id("i-0a"), 1_010).unwrap_err();
        assert!(e.starts_with("no snapshot at"), "{e}");
        std::fs::write(&cfg.snapshot, b"garbage").unwrap();
        let e = from_snapshot(&cfg, id("i-0a"), 1_010).unwrap_err();
        assert!(e.contains("not usable"), "{e}");
    }
}
