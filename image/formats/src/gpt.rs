//! GPT disk images: protective MBR, primary header and 128-entry array, partitions aligned
//! to 1 MiB, backup entry array and header at the end of the disk.
//!
//! The layout and the header bytes are computed without I/O ([`plan`], [`encode`]);
//! [`write_disk`] then writes them and the partition contents into a fresh sparse file,
//! seeking over everything that stays zero, so a 1 GiB disk with small contents is quick.
//! The disk GUID and each partition's unique GUID are derived from a caller-supplied seed
//! (and the partition name), so the same inputs always give the same bytes.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::crc32::crc32;
use crate::guid::Guid;
use crate::sparse::{SparseCopyError, copy_sparse};

/// Logical sector size the images are laid out for.
pub const SECTOR_SIZE: u64 = 512;
/// Partition start alignment (1 MiB), what partitioning tools use and flash media like.
pub const ALIGNMENT: u64 = 1 << 20;
/// Number of entries in the partition entry array (the usual, and minimum, 128).
pub const ENTRY_COUNT: u32 = 128;
/// Size of one partition entry in bytes.
pub const ENTRY_SIZE: u32 = 128;
/// Longest partition name GPT can hold, in UTF-16 code units.
pub const MAX_NAME_UNITS: usize = 36;

/// Sectors taken by the partition entry array (128 × 128 bytes = 32 sectors).
const ENTRY_ARRAY_SECTORS: u64 = (ENTRY_COUNT as u64 * ENTRY_SIZE as u64) / SECTOR_SIZE;
/// Size of the GPT header that its CRC covers.
const HEADER_SIZE: u32 = 92;

/// Type GUID of an EFI System Partition (c12a7328-f81f-11d2-ba4b-00a0c93ec93b).
pub const EFI_SYSTEM_PARTITION: Guid = Guid::from_fields(
    0xc12a7328,
    0xf81f,
    0x11d2,
    [0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b],
);
/// Type GUID of a Linux root partition for x86-64 (4f68bce3-e8cd-4db1-96e7-fbcaf984b709),
/// from the Discoverable Partitions Specification.
pub const LINUX_ROOT_X86_64: Guid = Guid::from_fields(
    0x4f68bce3,
    0xe8cd,
    0x4db1,
    [0x96, 0xe7, 0xfb, 0xca, 0xf9, 0x84, 0xb7, 0x09],
);
/// Type GUID of a dm-verity hash partition for an x86-64 root
/// (2c7357ed-ebd2-46d9-aec1-23d437ec2bf5), for when the hash tree gets its own partition.
pub const LINUX_ROOT_X86_64_VERITY: Guid = Guid::from_fields(
    0x2c7357ed,
    0xebd2,
    0x46d9,
    [0xae, 0xc1, 0x23, 0xd4, 0x37, 0xec, 0x2b, 0xf5],
);
/// Type GUID of a generic Linux data partition (0fc63daf-8483-4772-8e79-3d69d8477de4).
pub const LINUX_DATA: Guid = Guid::from_fields(
    0x0fc63daf,
    0x8483,
    0x4772,
    [0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4],
);

/// One partition to put on the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// GPT partition name (e.g. "esp", "root-a", "root-b", "data"); unique on the disk,
    /// at most 36 UTF-16 code units. Also feeds the partition's unique GUID.
    pub name: String,
    /// Partition type GUID, e.g. [`EFI_SYSTEM_PARTITION`].
    pub type_guid: Guid,
    /// Partition size in bytes; rounded up to whole sectors.
    pub size_bytes: u64,
    /// File copied to the start of the partition; must fit in `size_bytes`. `None` leaves
    /// the partition zero-filled.
    pub content: Option<PathBuf>,
}

impl Partition {
    /// An empty (zero-filled) partition.
    pub fn new(name: impl Into<String>, type_guid: Guid, size_bytes: u64) -> Partition {
        Partition {
            name: name.into(),
            type_guid,
            size_bytes,
            content: None,
        }
    }

    /// The same partition with `path` copied into it.
    pub fn with_content(mut self, path: impl Into<PathBuf>) -> Partition {
        self.content = Some(path.into());
        self
    }
}

/// Where one partition ended up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLayout {
    /// Partition number as the kernel counts it (1-based entry index).
    pub number: u32,
    /// GPT partition name.
    pub name: String,
    /// Partition type GUID.
    pub type_guid: Guid,
    /// Unique partition GUID (the PARTUUID on a kernel command line).
    pub unique_guid: Guid,
    /// First sector of the partition.
    pub first_lba: u64,
    /// Last sector of the partition (inclusive, as GPT stores it).
    pub last_lba: u64,
}

impl PartitionLayout {
    /// Byte offset of the partition from the start of the disk.
    pub fn offset_bytes(&self) -> u64 {
        self.first_lba * SECTOR_SIZE
    }

    /// Partition size in bytes.
    pub fn size_bytes(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR_SIZE
    }
}

/// The computed disk layout, returned so the builder can put PARTUUIDs on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Disk GUID stored in both GPT headers.
    pub disk_guid: Guid,
    /// Total disk size in bytes (a multiple of [`SECTOR_SIZE`]).
    pub total_size: u64,
    /// The partitions, in entry order.
    pub partitions: Vec<PartitionLayout>,
}

impl Layout {
    /// Number of sectors on the disk.
    pub fn total_lbas(&self) -> u64 {
        self.total_size / SECTOR_SIZE
    }

    /// The partition called `name`, if any.
    pub fn partition(&self, name: &str) -> Option<&PartitionLayout> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// Last sector a partition may use (just before the backup entry array).
    pub fn last_usable_lba(&self) -> u64 {
        self.total_lbas() - 2 - ENTRY_ARRAY_SECTORS
    }
}

/// The fixed bytes of a GPT disk, computed by [`encode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedTables {
    /// Sector 0: protective MBR.
    pub protective_mbr: Vec<u8>,
    /// Sector 1: primary GPT header.
    pub primary_header: Vec<u8>,
    /// Partition entry array (written at sector 2 and again before the backup header).
    pub entries: Vec<u8>,
    /// Last sector: backup GPT header.
    pub backup_header: Vec<u8>,
}

/// What can go wrong while planning or writing a GPT disk.
#[derive(Debug, thiserror::Error)]
pub enum GptError {
    /// More partitions than the entry array holds.
    #[error("{count} partitions given, a GPT entry array holds at most {ENTRY_COUNT}")]
    TooManyPartitions {
        /// Number of partitions requested.
        count: usize,
    },
    /// A partition has an empty name.
    #[error("partition {number} has an empty name")]
    EmptyName {
        /// 1-based partition number.
        number: u32,
    },
    /// A partition name does not fit the 36 UTF-16 code units of a GPT entry.
    #[error(
        "partition name `{name}` is {units} UTF-16 code units long, GPT allows {MAX_NAME_UNITS}"
    )]
    NameTooLong {
        /// The name.
        name: String,
        /// Its length in UTF-16 code units.
        units: usize,
    },
    /// Two partitions share a name (names also feed the unique GUIDs).
    #[error("partition name `{name}` is used twice")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// A partition of size zero.
    #[error("partition `{name}` has size 0")]
    ZeroSize {
        /// The partition name.
        name: String,
    },
    /// Sizes add up past what 64-bit byte offsets hold.
    #[error("partition `{name}` does not fit in a 64-bit disk size")]
    Overflow {
        /// The partition name.
        name: String,
    },
    /// The requested disk size is not a whole number of sectors.
    #[error("disk size {size} is not a multiple of {SECTOR_SIZE} bytes")]
    UnalignedDiskSize {
        /// The requested size.
        size: u64,
    },
    /// The requested disk size cannot hold the partitions and the backup GPT.
    #[error(
        "disk size {requested} is too small: the partitions and backup GPT need {needed} bytes"
    )]
    DiskTooSmall {
        /// The requested size.
        requested: u64,
        /// The minimum size for this layout.
        needed: u64,
    },
    /// A content file could not be opened or inspected.
    #[error("cannot read content `{path}` for partition `{name}`: {source}")]
    ReadContent {
        /// The partition name.
        name: String,
        /// The content file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A content file is larger than its partition.
    #[error(
        "content `{path}` for partition `{name}` is {content_size} bytes, the partition holds {partition_size}"
    )]
    ContentTooLarge {
        /// The partition name.
        name: String,
        /// The content file.
        path: PathBuf,
        /// Bytes in the content file.
        content_size: u64,
        /// Bytes in the partition.
        partition_size: u64,
    },
    /// Writing the disk image failed.
    #[error("cannot write disk image `{path}`: {source}")]
    Write {
        /// The disk image.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

fn align_up(value: u64, alignment: u64) -> Option<u64> {
    value.div_ceil(alignment).checked_mul(alignment)
}

/// Computes the layout without touching the disk: partitions in order, each starting on a
/// 1 MiB boundary, sizes rounded up to whole sectors, GUIDs derived from `disk_seed`.
/// With `total_size` `None` the disk is the smallest 1 MiB multiple that also holds the
/// backup GPT.
pub fn plan(
    partitions: &[Partition],
    disk_seed: &[u8],
    total_size: Option<u64>,
) -> Result<Layout, GptError> {
    if partitions.len() > ENTRY_COUNT as usize {
        return Err(GptError::TooManyPartitions {
            count: partitions.len(),
        });
    }
    let mut planned: Vec<PartitionLayout> = Vec::with_capacity(partitions.len());
    let mut next_free = ALIGNMENT;
    for (index, partition) in partitions.iter().enumerate() {
        let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let name = &partition.name;
        let overflow = || GptError::Overflow { name: name.clone() };
        if name.is_empty() {
            return Err(GptError::EmptyName { number });
        }
        let units = name.encode_utf16().count();
        if units > MAX_NAME_UNITS {
            return Err(GptError::NameTooLong {
                name: name.clone(),
                units,
            });
        }
        if planned.iter().any(|p| &p.name == name) {
            return Err(GptError::DuplicateName { name: name.clone() });
        }
        if partition.size_bytes == 0 {
            return Err(GptError::ZeroSize { name: name.clone() });
        }
        let start = align_up(next_free, ALIGNMENT).ok_or_else(overflow)?;
        let size = align_up(partition.size_bytes, SECTOR_SIZE).ok_or_else(overflow)?;
        let end = start.checked_add(size).ok_or_else(overflow)?;
        planned.push(PartitionLayout {
            number,
            name: name.clone(),
            type_guid: partition.type_guid,
            unique_guid: Guid::derive("cairn-gpt-partition", &[disk_seed, name.as_bytes()]),
            first_lba: start / SECTOR_SIZE,
            last_lba: end / SECTOR_SIZE - 1,
        });
        next_free = end;
    }
    let backup_bytes = (1 + ENTRY_ARRAY_SECTORS) * SECTOR_SIZE;
    let needed = next_free
        .checked_add(backup_bytes)
        .and_then(|n| align_up(n, ALIGNMENT))
        .ok_or_else(|| GptError::Overflow {
            name: partitions
                .last()
                .map(|p| p.name.clone())
                .unwrap_or_default(),
        })?;
    let total_size = match total_size {
        None => needed,
        Some(size) if size % SECTOR_SIZE != 0 => {
            return Err(GptError::UnalignedDiskSize { size });
        }
        Some(size) if size < next_free + backup_bytes => {
            return Err(GptError::DiskTooSmall {
                requested: size,
                needed: next_free + backup_bytes,
            });
        }
        Some(size) => size,
    };
    Ok(Layout {
        disk_guid: Guid::derive("cairn-gpt-disk", &[disk_seed]),
        total_size,
        partitions: planned,
    })
}

/// Encodes the protective MBR, both GPT headers and the entry array for `layout`, with
/// their CRC32s.
pub fn encode(layout: &Layout) -> EncodedTables {
    let total_lbas = layout.total_lbas();
    let last_lba = total_lbas - 1;

    let mut entries = vec![0u8; (ENTRY_COUNT * ENTRY_SIZE) as usize];
    for (entry, partition) in entries
        .chunks_exact_mut(ENTRY_SIZE as usize)
        .zip(&layout.partitions)
    {
        entry[0..16].copy_from_slice(&partition.type_guid.to_bytes_le());
        entry[16..32].copy_from_slice(&partition.unique_guid.to_bytes_le());
        entry[32..40].copy_from_slice(&partition.first_lba.to_le_bytes());
        entry[40..48].copy_from_slice(&partition.last_lba.to_le_bytes());
        // 48..56: attributes, none.
        for (slot, unit) in entry[56..128]
            .chunks_exact_mut(2)
            .zip(partition.name.encode_utf16())
        {
            slot.copy_from_slice(&unit.to_le_bytes());
        }
    }
    let entries_crc = crc32(&entries);

    let header = |my_lba: u64, alternate_lba: u64, entries_lba: u64| {
        let mut sector = vec![0u8; SECTOR_SIZE as usize];
        sector[0..8].copy_from_slice(b"EFI PART");
        sector[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        sector[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        // 16..20: header CRC, filled below; 20..24 reserved.
        sector[24..32].copy_from_slice(&my_lba.to_le_bytes());
        sector[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
        sector[40..48].copy_from_slice(&(2 + ENTRY_ARRAY_SECTORS).to_le_bytes());
        sector[48..56].copy_from_slice(&layout.last_usable_lba().to_le_bytes());
        sector[56..72].copy_from_slice(&layout.disk_guid.to_bytes_le());
        sector[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        sector[80..84].copy_from_slice(&ENTRY_COUNT.to_le_bytes());
        sector[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        sector[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let header_crc = crc32(&sector[..HEADER_SIZE as usize]);
        sector[16..20].copy_from_slice(&header_crc.to_le_bytes());
        sector
    };

    let mut mbr = vec![0u8; SECTOR_SIZE as usize];
    let record = &mut mbr[446..462];
    record[0] = 0x00; // not bootable
    record[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    record[4] = 0xEE; // GPT protective
    record[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]); // CHS not representable
    record[8..12].copy_from_slice(&1u32.to_le_bytes());
    let covered = u32::try_from(total_lbas - 1).unwrap_or(u32::MAX);
    record[12..16].copy_from_slice(&covered.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;

    EncodedTables {
        protective_mbr: mbr,
        primary_header: header(1, last_lba, 2),
        entries,
        backup_header: header(last_lba, 1, last_lba - ENTRY_ARRAY_SECTORS),
    }
}

/// Writes a GPT disk image to `path` (replacing it) and returns its layout.
///
/// Content files are checked before anything is written: each must exist and fit its
/// partition, or the error names the partition. On a failed write the partial image is
/// removed.
pub fn write_disk(
    path: &Path,
    partitions: &[Partition],
    disk_seed: &[u8],
    total_size: Option<u64>,
) -> Result<Layout, GptError> {
    let layout = plan(partitions, disk_seed, total_size)?;
    let mut contents = Vec::new();
    for (partition, placed) in partitions.iter().zip(&layout.partitions) {
        if let Some(content) = &partition.content {
            let read_error = |source| GptError::ReadContent {
                name: partition.name.clone(),
                path: content.clone(),
                source,
            };
            let file = File::open(content).map_err(read_error)?;
            let content_size = file.metadata().map_err(read_error)?.len();
            if content_size > placed.size_bytes() {
                return Err(GptError::ContentTooLarge {
                    name: partition.name.clone(),
                    path: content.clone(),
                    content_size,
                    partition_size: placed.size_bytes(),
                });
            }
            contents.push((file, partition, placed));
        }
    }
    let tables = encode(&layout);
    let result = write_tables_and_contents(path, &layout, &tables, contents);
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result.map(|()| layout)
}

fn write_tables_and_contents(
    path: &Path,
    layout: &Layout,
    tables: &EncodedTables,
    contents: Vec<(File, &Partition, &PartitionLayout)>,
) -> Result<(), GptError> {
    let write_error = |source| GptError::Write {
        path: path.to_owned(),
        source,
    };
    // A fresh file of the full size reads as zeros everywhere: only non-zero data is written.
    let mut disk = File::create(path).map_err(write_error)?;
    disk.set_len(layout.total_size).map_err(write_error)?;
    let last_lba = layout.total_lbas() - 1;
    let at = |lba: u64| SeekFrom::Start(lba * SECTOR_SIZE);
    let put = |disk: &mut File, lba: u64, bytes: &[u8]| -> io::Result<()> {
        disk.seek(at(lba))?;
        disk.write_all(bytes)
    };
    put(&mut disk, 0, &tables.protective_mbr).map_err(write_error)?;
    put(&mut disk, 1, &tables.primary_header).map_err(write_error)?;
    put(&mut disk, 2, &tables.entries).map_err(write_error)?;
    for (mut file, partition, placed) in contents {
        copy_sparse(
            &mut file,
            &mut disk,
            placed.offset_bytes(),
            placed.size_bytes(),
        )
        .map_err(|error| match error {
            SparseCopyError::Read(source) => GptError::ReadContent {
                name: partition.name.clone(),
                path: partition.content.clone().unwrap_or_default(),
                source,
            },
            SparseCopyError::Write(source) => write_error(source),
            SparseCopyError::TooLong { copied, .. } => GptError::ContentTooLarge {
                name: partition.name.clone(),
                path: partition.content.clone().unwrap_or_default(),
                content_size: copied,
                partition_size: placed.size_bytes(),
            },
        })?;
    }
    put(&mut disk, last_lba - ENTRY_ARRAY_SECTORS, &tables.entries).map_err(write_error)?;
    put(&mut disk, last_lba, &tables.backup_header).map_err(write_error)?;
    disk.flush().map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn standard() -> Vec<Partition> {
        vec![
            Partition::new("esp", EFI_SYSTEM_PARTITION, 64 * MIB),
            Partition::new("root-a", LINUX_ROOT_X86_64, 100 * MIB + 1),
            Partition::new("root-b", LINUX_ROOT_X86_64, 100 * MIB),
            Partition::new("data", LINUX_DATA, 16 * MIB),
        ]
    }

    #[test]
    fn partitions_start_on_mib_boundaries_in_order() {
        let layout = plan(&standard(), b"seed", None).unwrap();
        let starts: Vec<u64> = layout.partitions.iter().map(|p| p.first_lba).collect();
        assert_eq!(starts, [2048, 2048 * 65, 2048 * 166, 2048 * 266]);
        for p in &layout.partitions {
            assert_eq!(p.offset_bytes() % MIB, 0, "{}", p.name);
        }
        let root_a = &layout.partitions[1];
        assert_eq!(root_a.size_bytes(), 100 * MIB + 512, "rounded to sectors");
        assert_eq!(root_a.number, 2);
        // 1 MiB lead-in + 64 + 101 (root-a rounded up) + 100 + 16 + 1 MiB for the backup GPT.
        assert_eq!(layout.total_size, 283 * MIB);
        assert_eq!(layout.last_usable_lba(), 283 * 2048 - 34);
    }

    #[test]
    fn guids_follow_the_seed_and_name() {
        let a = plan(&standard(), b"seed", None).unwrap();
        let b = plan(&standard(), b"seed", None).unwrap();
        let c = plan(&standard(), b"other", None).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.disk_guid, c.disk_guid);
        assert_ne!(a.partitions[1].unique_guid, c.partitions[1].unique_guid);
        assert_ne!(a.partitions[1].unique_guid, a.partitions[2].unique_guid);
        assert_ne!(a.disk_guid, a.partitions[0].unique_guid);
    }

    #[test]
    fn rejects_bad_partition_lists() {
        let mut dup = standard();
        dup[2].name = "root-a".into();
        assert!(matches!(
            plan(&dup, b"s", None),
            Err(GptError::DuplicateName { name }) if name == "root-a"
        ));
        let mut long = standard();
        long[0].name = "x".repeat(37);
        assert!(matches!(
            plan(&long, b"s", None),
            Err(GptError::NameTooLong { units: 37, .. })
        ));
        let mut empty = standard();
        empty[3].name.clear();
        assert!(matches!(
            plan(&empty, b"s", None),
            Err(GptError::EmptyName { number: 4 })
        ));
        let mut zero = standard();
        zero[3].size_bytes = 0;
        assert!(matches!(
            plan(&zero, b"s", None),
            Err(GptError::ZeroSize { name }) if name == "data"
        ));
        let many: Vec<Partition> = (0..129)
            .map(|i| Partition::new(format!("p{i}"), LINUX_DATA, MIB))
            .collect();
        assert!(matches!(
            plan(&many, b"s", None),
            Err(GptError::TooManyPartitions { count: 129 })
        ));
        let huge = [Partition::new("huge", LINUX_DATA, u64::MAX)];
        assert!(matches!(
            plan(&huge, b"s", None),
            Err(GptError::Overflow { name }) if name == "huge"
        ));
    }

    #[test]
    fn checks_the_requested_disk_size() {
        let parts = [Partition::new("data", LINUX_DATA, MIB)];
        assert!(matches!(
            plan(&parts, b"s", Some(4 * MIB + 1)),
            Err(GptError::UnalignedDiskSize { .. })
        ));
        assert!(matches!(
            plan(&parts, b"s", Some(2 * MIB)),
            Err(GptError::DiskTooSmall { requested, needed })
                if requested == 2 * MIB && needed == 2 * MIB + 33 * 512
        ));
        let exact = plan(&parts, b"s", Some(2 * MIB + 33 * 512));
        assert!(
            matches!(&exact, Ok(l) if l.last_usable_lba() == l.partitions[0].last_lba),
            "{exact:?}"
        );
    }

    #[test]
    fn headers_carry_valid_crcs_and_point_at_each_other() {
        let layout = plan(&standard(), b"seed", None).unwrap();
        let tables = encode(&layout);
        let last = layout.total_lbas() - 1;
        let u64_at = |b: &[u8], o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let u32_at = |b: &[u8], o: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[o..o + 4]);
            u32::from_le_bytes(a)
        };
        for (header, mine, other, entries_at) in [
            (&tables.primary_header, 1, last, 2),
            (&tables.backup_header, last, 1, last - 32),
        ] {
            assert_eq!(&header[0..8], b"EFI PART");
            let mut zeroed = header[..92].to_vec();
            zeroed[16..20].fill(0);
            assert_eq!(u32_at(header, 16), crc32(&zeroed));
            assert_eq!(u64_at(header, 24), mine);
            assert_eq!(u64_at(header, 32), other);
            assert_eq!(u64_at(header, 72), entries_at);
            assert_eq!(u32_at(header, 88), crc32(&tables.entries));
            assert!(header[92..].iter().all(|&b| b == 0));
        }
        assert_eq!(&tables.protective_mbr[510..], &[0x55, 0xAA]);
        assert_eq!(tables.protective_mbr[450], 0xEE);
        assert_eq!(u32_at(&tables.protective_mbr, 458), (last) as u32);
        // Second entry: root-a, name in UTF-16LE.
        let entry = &tables.entries[128..256];
        assert_eq!(&entry[0..16], &LINUX_ROOT_X86_64.to_bytes_le());
        assert_eq!(&entry[56..68], b"r\0o\0o\0t\0-\0a\0");
        assert_eq!(u64_at(entry, 32), layout.partitions[1].first_lba);
        assert!(tables.entries[4 * 128..].iter().all(|&b| b == 0));
    }
}
