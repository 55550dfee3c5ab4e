//! cairn-updated: the box's A/B update agent (see docs/update.md, "On the box").
//!
//! - [`osrelease`]: what image runs (role, version, profile);
//! - [`slots`]: the root partitions (found in sysfs) and the booted slot;
//! - [`esp`]: the boot entries on the ESP;
//! - [`state`]: `state.json` (serial, failed versions, slot contents);
//! - [`http`]: a small HTTP/1.1 GET client;
//! - [`apply`]: one check, from the index to the installed UKI, and rollback detection;
//! - [`downgrade`]: the I/O-free verdict on a downgrade under way;
//! - [`gate`]: the I/O-free reboot decision;
//! - [`agent`]: the worker thread and the `org.cairn.Update1` backend;
//! - [`console`]: the `update: ...` lines.

pub mod agent;
pub mod apply;
pub mod console;
pub mod downgrade;
pub mod esp;
pub mod gate;
pub mod http;
pub mod osrelease;
pub mod priority;
pub mod slots;
pub mod state;
