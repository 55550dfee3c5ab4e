//! cairn-init: the PID 1 of every cairn box.
//!
//! It mounts the API filesystems, supervises the role's services from a
//! TOML services file (dependency order, readiness, restart with backoff,
//! log rings, zombie reaping, cgroups), serves the D-Bus control API, keeps
//! the hardware watchdog fed and performs the orderly shutdown. The same
//! binary runs as PID 1 of a PID namespace in supervise-only mode for tests
//! and containers.
//!
//! Two binaries share this library: `cairn-early`, the initramfs stage that
//! sets up the verified root and the machine once ([`earlyboot`],
//! [`machine_setup`]), and `cairn-init`, PID 1 on the real root, which links
//! neither the site parser nor rtnetlink and so stays small.

pub mod abroot;
pub mod bless;
pub mod blockdev;
pub mod boot;
pub mod boothistory;
pub mod bootrecord;
pub mod cgroup;
pub mod cmdline;
pub mod config;
pub mod control_api;
pub mod datapart;
pub mod devctl;
pub mod dm;
pub mod earlyboot;
pub mod esp;
pub mod identity;
pub mod kmod;
pub mod logging;
pub mod logring;
pub mod loopdev;
pub mod machine_setup;
pub mod mounts;
pub mod network;
pub mod notify;
pub mod power;
pub mod runtime;
pub mod spawn;
pub mod supervisor;
pub mod switch_root;
pub mod sys;
pub mod users;
pub mod watchdog;
