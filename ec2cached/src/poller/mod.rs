//! The poller: sweeps EC2 ([`ec2`], or a describe-instances file: [`json`]), builds and signs the
//! snapshot and hands it to the writer ([`build`]), and uploads it to S3 in fleet mode
//! ([`upload`]).

pub mod build;
pub mod ec2;
pub mod json;
pub mod upload;

use nss_ec2_snapshot::fleet::Ec2Instance;
use std::time::Duration;

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
