//! A/B update formats shared by the builder (`cairn build`, `cairn publish`)
//! and the box (`cairn-updated`, `cairn-init`). See `docs/update.md`.
//!
//! Everything here is pure: it works on bytes handed to it and never touches
//! files, the network or the clock, so the builder and the box agree on every
//! format and every decision can be unit-tested.

pub mod chunks;
pub mod entries;
mod hex;
pub mod index;
pub mod keys;
pub mod manifest;
pub mod version;
