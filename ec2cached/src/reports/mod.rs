//! Reports: what `ec2cached status`, the metrics file, `facts`, `explain` and `export` say. They
//! read the config, the snapshot and the status ledger; they never run a role.

pub mod explain;
pub mod export;
pub mod facts;
pub mod metrics;
pub mod status;
