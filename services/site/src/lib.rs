//! The site file and hardware profile schemas, their validation, and node
//! identity by MAC.
//!
//! One site file describes a whole cluster; it is baked into every image so
//! each box can find its own entry at boot. The builder and cairn-init both
//! read it through this crate, so the two never disagree about its meaning.

pub mod error;
mod k8s;
mod net;
mod profile;
mod site;
mod storage;
mod update;
pub mod version_syntax;

pub use error::{FileError, FileErrors};
pub use k8s::{ApiEndpoint, K8sSection, KubeletBinary, overlaps, parse_api_endpoint};
pub use net::{IfAddr, Mac};
pub use profile::{DiskSizes, KernelSpec, Profile, load_profile};
pub use site::{
    Backend, Cluster, Frontend, FrontendMode, ImageSection, LbSection, Network, Node, Role, Site,
    load_site, parse_site,
};
pub use storage::{BRICKS_DIR, BrickDisk, StorageSection, Volume, VolumeType};
pub use update::{RebootPolicy, UpdateConfig};
