//! The storage role on the box: brick filesystems and a GlusterFS pool and
//! volumes formed from the site file (docs/storage.md).
//!
//! - [`xml`]: parsers for the gluster CLI's `--xml` answers.
//! - [`plan`]: what to ask glusterd next, free of I/O.
//! - [`magic`], [`disk`], [`prepare`]: is a disk empty, which disk the site
//!   means, and the per-boot preparation (format only when empty, mount).
//! - [`gluster`]: running the CLI; [`bootstrap`]: the loop the
//!   `storage-bootstrap` service runs; [`notify`]: status for cairn-init.
//! - [`health`]: `cairn-storage healthy`, cairn-vipd's check for holding the
//!   storage VIP.

pub mod bootstrap;
pub mod disk;
pub mod gluster;
pub mod health;
pub mod magic;
pub mod notify;
pub mod plan;
pub mod prepare;
pub mod xml;
