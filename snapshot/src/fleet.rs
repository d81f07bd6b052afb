//! From EC2 instances to names: the rules of README.md, "How names work".
//!
//! * live = state `running`; ready = live and carrying the configured ready tag (if any).
//! * `G.D` / `S.G.D`: ready instances of group `G` (that list service `S`), in launch order
//!   (launch time, then instance id), numbered from 1 as `N.G.D` / `N.S.G.D`.
//! * `I.D`: every live instance, ready or not.
//! * Labels: lower case, each run of characters outside `[a-z0-9-]` becomes one `-`, leading and
//!   trailing `-` dropped; empty labels, labels over 63 characters, all-digit service labels and
//!   names over 253 characters are not published and are reported.
//! * Collisions, in this precedence: an instance id beats a group label; among groups whose names
//!   give the same label, the group whose name *is* the label wins, then the smallest name
//!   (byte order). Groups with the same name (in different VPCs) are one group.

use crate::format::{Instance as Record, Kind, Name, Table};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Which IPv4 address becomes the `A` record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddressChoice {
    /// Primary private IPv4 (default).
    #[default]
    Private,
    /// Public IPv4; instances without one have no `A`.
    Public,
}

/// The parts of the daemon's configuration that decide names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Domain, lower case (`ec2`).
    pub domain: String,
    /// `(key, value)` an instance must carry to be ready; `None`: every live instance is ready.
    pub ready_tag: Option<(String, String)>,
    /// Tag key listing an instance's services.
    pub service_tag: String,
    /// Which IPv4 address to publish.
    pub address: AddressChoice,
    /// Only these security groups (exact names); `None`: all.
    pub security_groups: Option<Vec<String>>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            domain: "ec2".into(),
            ready_tag: None,
            service_tag: "services".into(),
            address: AddressChoice::Private,
            security_groups: None,
        }
    }
}

/// An EC2 instance, as read from the API or from `describe-instances` JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ec2Instance {
    /// `i-0abc...`.
    pub id: String,
    /// EC2 state name (`running`, `pending`, ...).
    pub state: String,
    /// Launch time, milliseconds since the epoch.
    pub launch_time_ms: i64,
    /// Security group names.
    pub groups: Vec<String>,
    /// Tags, in API order.
    pub tags: Vec<(String, String)>,
    /// Primary private IPv4.
    pub private_ipv4: Option<Ipv4Addr>,
    /// Public IPv4.
    pub public_ipv4: Option<Ipv4Addr>,
    /// IPv6 addresses of the primary network interface (device index 0).
    pub ipv6: Vec<Ipv6Addr>,
}

impl Ec2Instance {
    fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The IPv4 address names resolve to under `rules` (private or public).
    pub fn ipv4(&self, rules: &Rules) -> Option<Ipv4Addr> {
        match rules.address {
            AddressChoice::Private => self.private_ipv4,
            AddressChoice::Public => self.public_ipv4,
        }
    }

    /// True when running.
    pub fn is_live(&self) -> bool {
        self.state == "running"
    }

    /// True when live and carrying the ready tag (if one is configured).
    pub fn is_ready(&self, rules: &Rules) -> bool {
        self.is_live()
            && match &rules.ready_tag {
                None => true,
                Some((k, v)) => self.tag(k) == Some(v.as_str()),
            }
    }

    /// The raw service entries of the services tag (split on commas and white space).
    pub fn services<'a>(&'a self, rules: &Rules) -> impl Iterator<Item = &'a str> + 'a {
        self.tag(&rules.service_tag)
            .unwrap_or("")
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
    }
}

/// Something the daemon did not publish, and why. Reported once per refresh.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// What was skipped (a group, a service entry, a name, an instance).
    pub subject: String,
    /// Why.
    pub reason: String,
}

/// Counts of a built snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Instances read (after removing duplicates).
    pub instances: usize,
    /// Running instances.
    pub live: usize,
    /// Ready instances.
    pub ready: usize,
    /// Groups published.
    pub groups: usize,
    /// Names published.
    pub names: usize,
}

/// The result of [`build`].
#[derive(Clone, Debug, Default)]
pub struct Built {
    /// The table to encode.
    pub table: Table,
    /// What was not published, sorted, without repeats.
    pub problems: Vec<Problem>,
    /// Counts.
    pub stats: Stats,
}

/// Why a label is not usable, or the label.
pub fn label(raw: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(raw.len());
    let mut in_run = false;
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    let out = out.trim_matches('-');
    if out.is_empty() {
        Err("empty label")
    } else if out.len() > 63 {
        Err("label over 63 characters")
    } else {
        Ok(out.to_string())
    }
}

/// A service entry (`readonly.postgres`) as its labels joined by dots, or why not.
pub fn service_key(raw: &str) -> Result<String, String> {
    let mut labels = Vec::new();
    for part in raw.split('.') {
        let l = label(part).map_err(|e| format!("{e} in service {raw:?}"))?;
        if l.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "all-digit label {l:?} in service {raw:?} would clash with numbered names"
            ));
        }
        labels.push(l);
    }
    Ok(labels.join("."))
}

struct Names<'r> {
    rules: &'r Rules,
    names: Vec<Name>,
    problems: BTreeSet<Problem>,
}

impl Names<'_> {
    fn push(&mut self, prefix: &str, kind: Kind, members: Vec<u32>) -> Option<u32> {
        let name = format!("{prefix}.{}", self.rules.domain);
        if name.len() > 253 {
            self.problems.insert(Problem {
                subject: format!("name {name}"),
                reason: "longer than 253 characters".into(),
            });
            return None;
        }
        self.names.push(Name {
            name,
            kind,
            members,
        });
        Some(self.names.len() as u32 - 1)
    }

    /// `P.D` and `N.P.D` for a set, recording the numbered names as aliases.
    fn set(
        &mut self,
        prefix: &str,
        kinds: (Kind, Kind),
        members: &[u32],
        aliases: &mut [Vec<u32>],
    ) {
        if self.push(prefix, kinds.0, members.to_vec()).is_none() {
            return;
        }
        for (n, &m) in members.iter().enumerate() {
            if let Some(idx) = self.push(&format!("{}.{prefix}", n + 1), kinds.1, vec![m]) {
                aliases[m as usize].push(idx);
            }
        }
    }
}

/// Builds the names of the contract from a fleet.
pub fn build(instances: &[Ec2Instance], rules: &Rules) -> Built {
    let mut problems = BTreeSet::new();
    let mut seen = HashMap::new();
    let mut unique = Vec::with_capacity(instances.len());
    for i in instances {
        if seen.insert(i.id.as_str(), ()).is_some() {
            problems.insert(Problem {
                subject: format!("instance {}", i.id),
                reason: "listed more than once; the first listing is used".into(),
            });
            continue;
        }
        unique.push(i);
    }
    let total = unique.len();
    // Launch order, then id: the order behind N, stable while the set does not change.
    let mut live: Vec<(&Ec2Instance, String)> = Vec::new();
    for i in unique.into_iter().filter(|i| i.is_live()) {
        match label(&i.id) {
            Ok(l) if l == i.id.to_ascii_lowercase() => live.push((i, l)),
            _ => {
                problems.insert(Problem {
                    subject: format!("instance {:?}", i.id),
                    reason: "id is not a valid label".into(),
                });
            }
        }
    }
    live.sort_by(|a, b| (a.0.launch_time_ms, &a.1).cmp(&(b.0.launch_time_ms, &b.1)));
    let id_labels: BTreeSet<&str> = live.iter().map(|(_, l)| l.as_str()).collect();

    // label -> raw group name -> member indices (instance order = launch order).
    let mut groups: BTreeMap<String, BTreeMap<&str, Vec<u32>>> = BTreeMap::new();
    let wanted = |g: &str| {
        rules
            .security_groups
            .as_ref()
            .is_none_or(|list| list.iter().any(|w| w == g))
    };
    let mut ready = 0;
    for (idx, (i, _)) in live.iter().enumerate() {
        if !i.is_ready(rules) {
            continue;
        }
        ready += 1;
        let mut mine = BTreeSet::new();
        for g in i.groups.iter().filter(|g| wanted(g)) {
            if !mine.insert(g.as_str()) {
                continue;
            }
            match label(g) {
                Ok(l) => groups
                    .entry(l)
                    .or_default()
                    .entry(g.as_str())
                    .or_default()
                    .push(idx as u32),
                Err(e) => {
                    problems.insert(Problem {
                        subject: format!("group {g:?}"),
                        reason: e.into(),
                    });
                }
            }
        }
    }

    let mut aliases = vec![Vec::new(); live.len()];
    let mut names = Names {
        rules,
        names: Vec::new(),
        problems,
    };
    let mut group_count = 0;
    for (glabel, raws) in &groups {
        // Precedence among groups giving one label: the exact label, then byte order.
        let winner = raws
            .keys()
            .find(|r| **r == glabel.as_str())
            .or_else(|| raws.keys().next())
            .copied()
            .unwrap_or_default();
        for loser in raws.keys().filter(|r| **r != winner) {
            names.problems.insert(Problem {
                subject: format!("group {loser:?}"),
                reason: format!(
                    "its name {glabel}.{} is taken by group {winner:?}",
                    rules.domain
                ),
            });
        }
        if id_labels.contains(glabel.as_str()) {
            names.problems.insert(Problem {
                subject: format!("group {winner:?}"),
                reason: format!("its name {glabel}.{} is an instance id", rules.domain),
            });
            continue;
        }
        let members = &raws[winner];
        group_count += 1;
        names.set(glabel, (Kind::Group, Kind::GroupNth), members, &mut aliases);

        let mut services: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for &m in members {
            let mut mine = BTreeSet::new();
            for raw in live[m as usize].0.services(rules) {
                match service_key(raw) {
                    Ok(key) => {
                        if mine.insert(key.clone()) {
                            services.entry(key).or_default().push(m);
                        }
                    }
                    Err(e) => {
                        names.problems.insert(Problem {
                            subject: format!("service {raw:?} of {}", live[m as usize].1),
                            reason: e,
                        });
                    }
                }
            }
        }
        for (skey, smembers) in &services {
            let prefix = format!("{skey}.{glabel}");
            names.set(
                &prefix,
                (Kind::Service, Kind::ServiceNth),
                smembers,
                &mut aliases,
            );
        }
    }

    let mut records = Vec::with_capacity(live.len());
    for (idx, (i, l)) in live.iter().enumerate() {
        let v4 = i.ipv4(rules);
        // Cannot fail once the config has checked the domain length (instance labels are short);
        // if it did, `Table::encode` refuses the dangling index instead of publishing it.
        let name = names
            .push(l, Kind::Instance, vec![idx as u32])
            .unwrap_or(u32::MAX);
        records.push(Record {
            name,
            v4: v4.map(|a| a.octets()),
            v6: i.ipv6.iter().map(|a| a.octets()).collect(),
            aliases: std::mem::take(&mut aliases[idx]),
        });
    }
    let stats = Stats {
        instances: total,
        live: live.len(),
        ready,
        groups: group_count,
        names: names.names.len(),
    };
    Built {
        table: Table {
            names: names.names,
            instances: records,
        },
        problems: names.problems.into_iter().collect(),
        stats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, t: i64, groups: &[&str], tags: &[(&str, &str)], ip: [u8; 4]) -> Ec2Instance {
        Ec2Instance {
            id: id.into(),
            state: "running".into(),
            launch_time_ms: t,
            groups: groups.iter().map(|s| s.to_string()).collect(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            private_ipv4: Some(ip.into()),
            public_ipv4: None,
            ipv6: vec![],
        }
    }

    fn names(b: &Built) -> Vec<(String, Vec<String>)> {
        b.table
            .names
            .iter()
            .map(|n| {
                let ids = n
                    .members
                    .iter()
                    .map(|&m| {
                        let rec = &b.table.instances[m as usize];
                        b.table.names[rec.name as usize].name.clone()
                    })
                    .collect();
                (n.name.clone(), ids)
            })
            .collect()
    }

    fn lookup(b: &Built, name: &str) -> Option<Vec<String>> {
        names(b)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
    }

    #[test]
    fn labels_follow_the_spec() {
        assert_eq!(label("Airavata Search").unwrap(), "airavata-search");
        assert_eq!(label("a.b").unwrap(), "a-b");
        assert_eq!(label("--x--").unwrap(), "x");
        assert_eq!(label("a  &  b").unwrap(), "a-b");
        assert_eq!(label("a - b").unwrap(), "a---b");
        assert_eq!(label("Ünïcode").unwrap(), "n-code");
        assert_eq!(label("!!!"), Err("empty label"));
        assert_eq!(label(&"x".repeat(63)).unwrap().len(), 63);
        assert_eq!(label(&"x".repeat(64)), Err("label over 63 characters"));
        assert_eq!(
            service_key("ReadOnly.Postgres").unwrap(),
            "readonly.postgres"
        );
        assert!(service_key("1").is_err());
        assert!(service_key("2.redis").is_err());
        assert!(service_key("a..b").is_err());
        assert_eq!(service_key("redis6").unwrap(), "redis6");
    }

    #[test]
    fn seed_fleet() {
        let ready = ("af-status", "ready");
        let fleet = vec![
            inst(
                "i-3",
                3,
                &["tphon"],
                &[ready, ("services", "redis")],
                [10, 0, 0, 3],
            ),
            inst(
                "i-1",
                1,
                &["tphon"],
                &[ready, ("services", "redis")],
                [10, 0, 0, 1],
            ),
            inst(
                "i-2",
                1,
                &["tphon"],
                &[ready, ("services", "redis,postgres")],
                [10, 0, 0, 2],
            ),
            inst(
                "i-4",
                4,
                &["tphon"],
                &[ready, ("services", "readonly.postgres")],
                [10, 0, 0, 4],
            ),
            inst(
                "i-5",
                5,
                &["tphon"],
                &[("services", "redis")],
                [10, 0, 0, 5],
            ),
            Ec2Instance {
                state: "stopped".into(),
                ..inst(
                    "i-6",
                    0,
                    &["tphon"],
                    &[ready, ("services", "redis")],
                    [10, 0, 0, 6],
                )
            },
        ];
        let rules = Rules {
            ready_tag: Some(("af-status".into(), "ready".into())),
            ..Rules::default()
        };
        let b = build(&fleet, &rules);
        let ids = |v: &[&str]| v.iter().map(|s| format!("{s}.ec2")).collect::<Vec<_>>();
        assert_eq!(
            lookup(&b, "tphon.ec2").unwrap(),
            ids(&["i-1", "i-2", "i-3", "i-4"])
        );
        assert_eq!(
            lookup(&b, "redis.tphon.ec2").unwrap(),
            ids(&["i-1", "i-2", "i-3"])
        );
        assert_eq!(lookup(&b, "3.redis.tphon.ec2").unwrap(), ids(&["i-3"]));
        assert_eq!(lookup(&b, "postgres.tphon.ec2").unwrap(), ids(&["i-2"]));
        assert_eq!(
            lookup(&b, "1.readonly.postgres.tphon.ec2").unwrap(),
            ids(&["i-4"])
        );
        assert_eq!(
            lookup(&b, "i-5.ec2").unwrap(),
            ids(&["i-5"]),
            "live but not ready"
        );
        assert!(lookup(&b, "i-6.ec2").is_none(), "stopped");
        assert!(lookup(&b, "4.redis.tphon.ec2").is_none());
        assert_eq!(b.stats.live, 5);
        assert_eq!(b.stats.ready, 4);
        // Reverse aliases: i-2 is 2nd of tphon, 2nd of redis, 1st of postgres.
        let i2 = b
            .table
            .instances
            .iter()
            .find(|r| b.table.names[r.name as usize].name == "i-2.ec2");
        let al: Vec<_> = i2
            .unwrap()
            .aliases
            .iter()
            .map(|&a| b.table.names[a as usize].name.as_str())
            .collect();
        assert_eq!(
            al,
            ["2.tphon.ec2", "1.postgres.tphon.ec2", "2.redis.tphon.ec2"]
        );
        assert!(b.problems.is_empty(), "{:?}", b.problems);
    }

    #[test]
    fn collisions_and_skips_are_reported() {
        let fleet = vec![
            inst(
                "i-1",
                1,
                &["Airavata Search", "airavata-search", "i-2"],
                &[],
                [10, 0, 0, 1],
            ),
            inst(
                "i-2",
                2,
                &["Airavata Search", "!!!", "web"],
                &[("services", "1, ok, x..y")],
                [10, 0, 0, 2],
            ),
        ];
        let b = build(&fleet, &Rules::default());
        assert_eq!(lookup(&b, "airavata-search.ec2").unwrap(), vec!["i-1.ec2"]);
        assert_eq!(lookup(&b, "i-2.ec2").unwrap(), vec!["i-2.ec2"]);
        let subjects: Vec<_> = b.problems.iter().map(|p| p.subject.as_str()).collect();
        assert!(
            subjects.contains(&"group \"Airavata Search\""),
            "{subjects:?}"
        );
        assert!(subjects.contains(&"group \"i-2\""), "{subjects:?}");
        assert!(subjects.contains(&"group \"!!!\""), "{subjects:?}");
        assert!(subjects.contains(&"service \"1\" of i-2"), "{subjects:?}");
        assert!(
            subjects.contains(&"service \"x..y\" of i-2"),
            "{subjects:?}"
        );
    }

    #[test]
    fn group_filter_public_address_and_long_names() {
        let mut a = inst(
            "i-1",
            1,
            &["web", "ssh"],
            &[("services", &"s".repeat(63))],
            [10, 0, 0, 1],
        );
        a.public_ipv4 = Some([1, 2, 3, 4].into());
        let rules = Rules {
            security_groups: Some(vec!["web".into()]),
            address: AddressChoice::Public,
            domain: format!("{}.{}.{}", "d".repeat(63), "d".repeat(63), "d".repeat(60)),
            ..Rules::default()
        };
        let b = build(&[a], &rules);
        let all: Vec<_> = names(&b).into_iter().map(|(n, _)| n).collect();
        assert!(all.iter().any(|n| n.starts_with("web.")));
        assert!(!all.iter().any(|n| n.starts_with("ssh.")));
        assert!(
            !all.iter().any(|n| n.starts_with("sss")),
            "service name is over 253"
        );
        assert_eq!(b.table.instances[0].v4, Some([1, 2, 3, 4]));
        assert!(b.problems.iter().any(|p| p.reason.contains("253")));
    }

    #[test]
    fn duplicates_and_ties() {
        let fleet = vec![
            inst("i-b", 7, &["g"], &[], [10, 0, 0, 2]),
            inst("i-a", 7, &["g"], &[], [10, 0, 0, 1]),
            inst("i-a", 7, &["g"], &[], [10, 0, 0, 9]),
        ];
        let b = build(&fleet, &Rules::default());
        assert_eq!(
            lookup(&b, "1.g.ec2").unwrap(),
            vec!["i-a.ec2"],
            "same launch time: id order"
        );
        assert_eq!(b.table.instances[0].v4, Some([10, 0, 0, 1]));
        assert_eq!(b.problems.len(), 1);
    }
}
