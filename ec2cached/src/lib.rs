//! `ec2cached`: polls the EC2 API and publishes the snapshot `libnss_ec2.so.2` answers from.
//!
//! The binary (`main.rs`) is a thin command line over these modules.

pub mod config;
pub mod daemon;
pub mod dns;
pub mod explain;
pub mod export;
pub mod facts;
pub mod fleet;
pub mod keys;
pub mod metrics;
pub mod module;
pub mod publish;
pub mod s3;
pub mod source;
pub mod status;

/// Folds any text (an SDK error chain, a parser message) onto one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
