//! The one home of the snapshot that `ec2cached` writes and `libnss_ec2.so.2` reads.
//!
//! * [`fleet`] turns a list of EC2 instances into the names of the contract
//!   (`G.D`, `S.G.D`, `N.G.D`, `N.S.G.D`, `I.D`): label rules, ready/live filtering,
//!   launch order, collisions. Pure code, used by the daemon only.
//! * [`format`] encodes that table into a flat, little-endian file and reads it back in place
//!   from a byte slice (a shared read-only mapping in the NSS module) with every offset
//!   bounds-checked and every loop capped, so a corrupt or hostile file gives a wrong answer at
//!   worst and never undefined behaviour. Opening costs O(1): no pass over the whole file.
//!
//! * [`signed`] places and finds the Ed25519 signature of a published snapshot (fleet mode)
//!   in a trailer that readers of names never look at.
//!
//! See `docs/snapshot-format.md` for the byte layout and why it was chosen.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod fleet;
pub mod format;
mod hash;
pub mod signed;

pub use format::{
    Answer, Corrupt, Family, Find, Header, Instance, InstanceRef, Kind, Meta, Name, Snapshot, Table,
};
pub use hash::normalize_query;
