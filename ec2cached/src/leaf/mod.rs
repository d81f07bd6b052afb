//! Leaves: what every room uses and that uses no room. A leaf imports only other leaves (and
//! crates outside this one).

pub mod aws;
pub mod clock;
pub mod files;
pub mod keys;
pub mod ledger;
pub mod module;
pub mod outcome;
pub mod s3;
