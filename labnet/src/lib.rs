//! Network-namespace labs for tests, benchmarks and `cairn lab`.
//!
//! A [`Lab`] is a switch namespace holding a bridge plus one namespace per node, each
//! wired to the bridge with a veth pair (`eth0` in the node), and tap devices for QEMU
//! VMs. It owns the namespaces and the processes started in them and removes everything
//! when dropped. Around it:
//!
//! - [`AddrWatch`]: which nodes hold an address (the VIP), continuously, from one
//!   rtnetlink socket per node; the [`Timeline`] answers overlap / vacancy questions.
//! - [`BridgeCapture`]: gratuitous ARPs and VRRP adverts entering the bridge, per sender.
//! - [`raw::send_ipv4`] with [`vrrp_wire::RawAdvert`]: malformed VRRP from a node.
//! - [`vrrpd`]: keepalived or cairn-vipd on a node from one [`vrrpd::Instance`].
//! - [`static_files`]: the lab's update repository over HTTP, optionally slowed down.
//! - the binaries `cairn-lab-responder` and `cairn-lab-probe`, and [`probe`] to read the
//!   probe's JSON lines back into outages and answers per node.
//!
//! Everything that touches the kernel needs root; the parsing and analysis modules
//! (`ifaddr`, `timeline`, `frames`, `vrrp_wire`, `probe`, `http`, `static_files`) are plain functions.

mod addrwatch;
mod capture;
pub mod cmd;
pub mod frames;
pub mod http;
pub mod ifaddr;
mod lab;
pub mod names;
pub mod netns;
pub mod probe;
pub mod process;
pub mod raw;
pub mod static_files;
pub mod timeline;
pub mod vrrp_wire;
pub mod vrrpd;

pub use addrwatch::{AddrWatch, WatchError};
pub use capture::{BridgeCapture, CaptureError, Captured};
pub use lab::{Lab, LabError, require_root};
pub use process::{LabProcess, ProcessError, Spawn};
pub use timeline::{AddrEvent, Overlap, Timeline, Vacancy};
