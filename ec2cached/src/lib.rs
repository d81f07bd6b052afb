//! `ec2cached`: polls the EC2 API and publishes the snapshot `libnss_ec2.so.2` answers from.
//!
//! One room per role; imports go down only (README "Layout"):
//!
//! * [`daemon`]: the run loop; starts the roles a config asks for.
//! * the roles: [`poller`] (EC2 sweep, `--from-file`, building and signing, upload),
//!   [`follower`] (check, verdict, install from S3), [`dns`] (the DNS stub's sockets and
//!   loops, over the mapped snapshot);
//! * [`reports`]: status, metrics, facts, explain, export: they read, never run a role;
//! * [`writer`]: the one writer of the local snapshot (lock and install);
//! * [`config`]: `/etc/ec2cached.toml`, checked;
//! * [`leaf`]: clock, files, the status ledger, outcome labels, AWS plumbing and error text,
//!   keys, the S3 object, the installed module. A leaf imports only other leaves.
//!
//! The binary (`main.rs`) is a thin command line over these.

pub mod config;
pub mod daemon;
pub mod dns;
pub mod follower;
pub mod leaf;
pub mod poller;
pub mod reports;
pub mod writer;
