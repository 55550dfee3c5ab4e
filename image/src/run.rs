//! `cairn run`: boot a build in QEMU.

use std::path::Path;

use anyhow::Result;

/// Boots the build in `dir`.
pub fn run(_dir: &Path, _pxe: bool, _node: Option<&str>, _timeout: u64) -> Result<()> {
    anyhow::bail!("cairn run is being assembled")
}
