//! Deterministic writers for disk image formats: GPT, FAT (ESP), cpio newc, UKI.
//!
//! Same inputs, same bytes: nothing here reads a clock or a random number generator.
//! Anything that must look unique (disk and partition GUIDs, FAT volume ids) is derived
//! from a caller-supplied seed with SHA-256, and timestamps come from the caller
//! (SOURCE_DATE_EPOCH).

pub mod cpio;
pub mod crc32;
pub mod dos_time;
pub mod fat;
pub mod gpt;
pub mod guid;
pub mod pe;
pub mod source;
pub mod sparse;
pub mod uki;

pub use guid::{Guid, GuidError};
pub use source::FileSource;
