//! The poller: sweeps EC2 ([`ec2`], or a describe-instances file: [`json`]), builds and signs the
//! snapshot and hands it to the writer ([`build`]), and uploads it to S3 in fleet mode
//! ([`upload`]).

pub mod build;
pub mod ec2;
pub mod json;
pub mod upload;

use crate::config::Config;
use crate::leaf::outcome::Failed;
use build::{publish_and_record, Published};
use nss_ec2_snapshot::fleet::Ec2Instance;
use std::time::Duration;
use upload::Publisher;

/// A fleet read in one sweep.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Every instance returned, all regions.
    pub instances: Vec<Ec2Instance>,
    /// API requests sent (pages, and the SDK's retries of them).
    pub requests: u32,
    /// Response bytes received.
    pub bytes: u64,
    /// How long the sweep took.
    pub elapsed: Duration,
}

/// A sweep's snapshot published locally, signed with the publisher's key in fleet mode, and
/// recorded: the one flow of `ec2cached run` and `refresh` (which then upload it with
/// [`Publisher::upload_swept`]).
pub fn publish_sweep(
    cfg: &Config,
    started: u64,
    swept: Result<Sweep, Failed>,
    publisher: Option<&Publisher>,
) -> Result<Published, Failed> {
    publish_and_record(cfg, started, swept, publisher.map(Publisher::key))
}

/// [`publish_sweep`] on a thread of tokio's blocking pool, for the daemon: the writers' lock may
/// be waited for (up to 10 s, another writer beside the daemon), and meanwhile the runtime goes
/// on serving SIGTERM and SIGHUP.
pub async fn publish_sweep_blocking(
    cfg: &Config,
    started: u64,
    swept: Result<Sweep, Failed>,
    publisher: Option<&Publisher>,
) -> Result<Published, Failed> {
    let cfg = cfg.clone();
    let key = publisher.map(|p| p.key().clone());
    tokio::task::spawn_blocking(move || publish_and_record(&cfg, started, swept, key.as_ref()))
        .await
        .unwrap_or_else(|e| {
            Err(Failed::new(
                crate::leaf::outcome::Reason::Publish,
                format!("the publish task failed: {e}"),
            ))
        })
}
