//! Debian packages for image builds: fetch with apt into a project cache, extract, ELF library
//! closure, kernel module closure.
//!
//! Nothing here touches the build host's dpkg state: packages are downloaded with apt's own tools
//! into a cache directory the caller owns, unpacked into staging directories the caller owns, and
//! every path inside a staging root is resolved under that root, never on the host.
//!
//! - [`apt`]: resolve package specs to exact versions, compute a dependency closure, fetch `.deb`
//!   files into the cache (verified against apt's signed index, reused when already present).
//! - [`deb`]: list and extract a `.deb`'s data archive.
//! - [`elf`]: the shared-library closure of ELF binaries inside a staging root.
//! - [`kmod`]: kernel module names to an ordered list of `.ko` files, dependencies first.
//! - [`kernel`]: find `vmlinuz` and the kernel version in an extracted kernel package.
//! - [`rootpath`]: symlink resolution confined to a staging root.

pub mod apt;
pub mod deb;
pub mod elf;
pub mod kernel;
pub mod kmod;
pub mod rootpath;
