//! Reports: what `ec2cached status`, the metrics file, `facts`, `explain` and `export` say. They
//! read the config, the snapshot and the status ledger; they never run a role.

pub mod explain;
pub mod export;
pub mod facts;
pub mod metrics;
pub mod status;

/// The fleet the reports' tests read: i-0a (10.0.0.1) in groups tphon and "Web Front" with
/// services postgres and readonly.postgres, launched first; i-0b (10.0.0.2) in tphon with redis.
#[cfg(test)]
pub(crate) mod fixture {
    use crate::config::Config;
    use nss_ec2_snapshot::fleet::{build, Ec2Instance};
    use nss_ec2_snapshot::Meta;

    pub fn inst(id: &str, ip: u8, groups: &[&str], services: &str, launch: i64) -> Ec2Instance {
        Ec2Instance {
            id: id.into(),
            state: "running".into(),
            launch_time_ms: launch,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            tags: vec![("services".into(), services.into())],
            private_ipv4: Some(std::net::Ipv4Addr::new(10, 0, 0, ip)),
            ..Ec2Instance::default()
        }
    }

    pub fn fleet() -> Vec<Ec2Instance> {
        vec![
            inst(
                "i-0a",
                1,
                &["tphon", "Web Front"],
                "postgres readonly.postgres",
                1,
            ),
            inst("i-0b", 2, &["tphon"], "redis", 2),
        ]
    }

    pub fn setup(max_age: u32) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::parse(
            &dir.path().join("c.toml"),
            &format!("snapshot = {:?}", dir.path().join("hosts.snap")),
        )
        .unwrap();
        let fleet = fleet();
        let built = build(&fleet, &cfg.rules);
        let meta = Meta {
            domain: "ec2".into(),
            generated_unix: 1_000,
            interval_secs: 30,
            max_age_secs: max_age,
        };
        std::fs::write(&cfg.snapshot, built.table.encode(&meta).unwrap()).unwrap();
        (dir, cfg)
    }
}
