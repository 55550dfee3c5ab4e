//! Everything of a FAT volume except the file contents, computed in memory: the directory
//! tree, contiguous cluster allocation in sorted pre-order, the FAT, directory clusters,
//! boot sector and FSInfo sector. No I/O, so it is unit-tested directly.

use std::collections::{BTreeMap, BTreeSet};

use super::geometry::{FAT16_ROOT_ENTRIES, Geometry};
use super::names::{self, ShortName};
use super::{FatError, FatKind, SECTOR_SIZE};
use crate::dos_time::DosDateTime;

const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;

/// A file placed in the volume: which input, where its bytes go, how many.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedFile {
    /// Index into the input list given to [`plan`].
    pub input: usize,
    /// Byte offset of the file's first cluster in the volume (0 for an empty file).
    pub offset: u64,
    /// File size in bytes.
    pub size: u64,
}

/// The computed volume, ready to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The volume geometry.
    pub geometry: Geometry,
    /// Sector 0 (and the FAT32 backup at sector 6).
    pub boot_sector: Vec<u8>,
    /// FAT32 FSInfo sector (sector 1, backup at 7); empty on FAT16.
    pub fs_info: Vec<u8>,
    /// The used prefix of one FAT; the rest of the FAT is zero.
    pub fat: Vec<u8>,
    /// Directory contents with their byte offsets, root first.
    pub directories: Vec<(u64, Vec<u8>)>,
    /// Where each non-empty input file goes.
    pub files: Vec<PlacedFile>,
    /// Clusters in use.
    pub used_clusters: u32,
}

/// An entry in the directory tree.
#[derive(Clone, Copy, Debug)]
enum Child {
    Dir(usize),
    File(usize),
}

#[derive(Debug)]
struct Dir {
    parent: Option<usize>,
    /// Children by lower-cased name (FAT names ignore case), with the name as given.
    children: BTreeMap<String, (String, Child)>,
    first_cluster: u32,
    clusters: u32,
}

/// Builds the directory tree from `(path, size)` inputs; paths are already validated.
fn tree(inputs: &[(String, u64)]) -> Result<Vec<Dir>, FatError> {
    let mut dirs = vec![Dir {
        parent: None,
        children: BTreeMap::new(),
        first_cluster: 0,
        clusters: 0,
    }];
    for (input, (path, _)) in inputs.iter().enumerate() {
        let parts: Vec<&str> = path.split('/').collect();
        let Some((name, parents)) = parts.split_last() else {
            continue;
        };
        let mut current = 0;
        for (depth, part) in parents.iter().enumerate() {
            let key = part.to_ascii_lowercase();
            match dirs[current].children.get(&key) {
                Some((_, Child::Dir(index))) => current = *index,
                Some((_, Child::File(_))) => {
                    return Err(FatError::FileIsDirectory {
                        path: parts[..=depth].join("/"),
                    });
                }
                None => {
                    let index = dirs.len();
                    dirs.push(Dir {
                        parent: Some(current),
                        children: BTreeMap::new(),
                        first_cluster: 0,
                        clusters: 0,
                    });
                    dirs[current]
                        .children
                        .insert(key, (part.to_string(), Child::Dir(index)));
                    current = index;
                }
            }
        }
        let key = name.to_ascii_lowercase();
        match dirs[current].children.get(&key) {
            Some((_, Child::File(_))) => {
                return Err(FatError::DuplicatePath { path: path.clone() });
            }
            Some((_, Child::Dir(_))) => {
                return Err(FatError::FileIsDirectory { path: path.clone() });
            }
            None => {
                dirs[current]
                    .children
                    .insert(key, (name.to_string(), Child::File(input)));
            }
        }
    }
    Ok(dirs)
}

/// Short names for every child of every directory, in child order.
fn short_names(dirs: &[Dir]) -> Result<Vec<Vec<names::EncodedName>>, FatError> {
    dirs.iter()
        .map(|dir| {
            let mut taken = BTreeSet::new();
            dir.children
                .values()
                .map(|(name, _)| {
                    let encoded = names::encode(name, &taken).ok_or_else(|| FatError::BadPath {
                        path: name.clone(),
                        reason: "no free short name left for it",
                    })?;
                    taken.insert(encoded.short);
                    Ok(encoded)
                })
                .collect()
        })
        .collect()
}

fn dos_date(t: &DosDateTime) -> u16 {
    ((t.year - 1980) << 9) | (t.month << 5) | t.day
}

fn dos_time(t: &DosDateTime) -> u16 {
    (t.hour << 11) | (t.minute << 5) | (t.second / 2)
}

fn short_entry(
    name: &ShortName,
    attrs: u8,
    cluster: u32,
    size: u32,
    time: &DosDateTime,
) -> [u8; 32] {
    let mut entry = [0u8; 32];
    entry[0..11].copy_from_slice(name);
    entry[11] = attrs;
    let (date, clock) = (dos_date(time).to_le_bytes(), dos_time(time).to_le_bytes());
    entry[14..16].copy_from_slice(&clock); // created
    entry[16..18].copy_from_slice(&date);
    entry[18..20].copy_from_slice(&date); // accessed
    entry[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    entry[22..24].copy_from_slice(&clock); // modified
    entry[24..26].copy_from_slice(&date);
    entry[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    entry[28..32].copy_from_slice(&size.to_le_bytes());
    entry
}

/// Computes the whole volume for `inputs` (`(path, size)`, paths validated, sizes known).
pub fn plan(
    geometry: Geometry,
    inputs: &[(String, u64)],
    label: ShortName,
    volume_id: u32,
    time: DosDateTime,
) -> Result<Plan, FatError> {
    for (path, size) in inputs {
        if *size > u64::from(u32::MAX) {
            return Err(FatError::FileTooLarge {
                path: path.clone(),
                size: *size,
            });
        }
    }
    let mut dirs = tree(inputs)?;
    let names = short_names(&dirs)?;
    let cluster_bytes = geometry.cluster_bytes();
    let is_fat32 = geometry.kind == FatKind::Fat32;

    // Directory sizes: `.` and `..` (or the volume label in the root) plus each child.
    for (index, dir) in dirs.iter_mut().enumerate() {
        let slots: usize = 2 + dir
            .children
            .values()
            .zip(&names[index])
            .map(|((name, _), encoded)| encoded.slots(name))
            .sum::<usize>()
            - usize::from(index == 0);
        if index == 0 && !is_fat32 && slots > FAT16_ROOT_ENTRIES as usize {
            return Err(FatError::TooManyRootEntries {
                entries: slots,
                max: FAT16_ROOT_ENTRIES as usize,
            });
        }
        let clusters = (slots as u64 * 32).div_ceil(cluster_bytes);
        dir.clusters = u32::try_from(clusters).unwrap_or(u32::MAX);
    }

    // Contiguous allocation, directory by directory in sorted depth-first order: all of a
    // directory's children (files and subdirectory clusters), then each subdirectory's.
    let mut chains: Vec<(u32, u32)> = Vec::new();
    let mut file_clusters: BTreeMap<usize, u32> = BTreeMap::new();
    let mut next: u64 = 2;
    let mut allocate = |count: u64, chains: &mut Vec<(u32, u32)>| -> u32 {
        let first = next;
        next += count;
        if count > 0 {
            chains.push((first as u32, count as u32));
            first as u32
        } else {
            0
        }
    };
    if is_fat32 {
        dirs[0].first_cluster = allocate(u64::from(dirs[0].clusters), &mut chains);
    }
    let mut stack = vec![0usize];
    while let Some(index) = stack.pop() {
        let children: Vec<Child> = dirs[index].children.values().map(|(_, c)| *c).collect();
        let mut subdirs = Vec::new();
        for child in children {
            match child {
                Child::File(input) => {
                    let count = inputs[input].1.div_ceil(cluster_bytes);
                    file_clusters.insert(input, allocate(count, &mut chains));
                }
                Child::Dir(sub) => {
                    dirs[sub].first_cluster = allocate(u64::from(dirs[sub].clusters), &mut chains);
                    subdirs.push(sub);
                }
            }
        }
        // Visit subdirectories in sorted order (the stack pops the last pushed first).
        stack.extend(subdirs.into_iter().rev());
    }
    let used = next - 2;
    if used > u64::from(geometry.clusters) {
        return Err(FatError::NoSpace {
            needed: used * cluster_bytes,
            available: u64::from(geometry.clusters) * cluster_bytes,
        });
    }

    let fat = encode_fat(&geometry, &chains, next as u32);
    let directories = encode_directories(
        &geometry,
        &dirs,
        &names,
        inputs,
        &file_clusters,
        label,
        &time,
    );
    let files = file_clusters
        .iter()
        .filter(|(_, first)| **first != 0)
        .map(|(&input, &first)| PlacedFile {
            input,
            offset: geometry.cluster_offset(first),
            size: inputs[input].1,
        })
        .collect();
    let used_clusters = used as u32;
    Ok(Plan {
        geometry,
        boot_sector: encode_boot_sector(&geometry, label, volume_id),
        fs_info: if is_fat32 {
            encode_fs_info(geometry.clusters - used_clusters, used_clusters + 2)
        } else {
            Vec::new()
        },
        fat,
        directories,
        files,
        used_clusters,
    })
}

/// The FAT entries for clusters `0..end`: media and clean-shutdown markers, then each chain
/// pointing to its next cluster and ending in end-of-chain.
fn encode_fat(geometry: &Geometry, chains: &[(u32, u32)], end: u32) -> Vec<u8> {
    let (eoc, media) = match geometry.kind {
        FatKind::Fat16 => (0xFFFFu32, 0xFFF8u32),
        FatKind::Fat32 => (0x0FFF_FFFF, 0x0FFF_FFF8),
    };
    let mut entries = vec![0u32; end as usize];
    entries[0] = media;
    entries[1] = eoc;
    for &(first, count) in chains {
        for cluster in first..first + count - 1 {
            entries[cluster as usize] = cluster + 1;
        }
        entries[(first + count - 1) as usize] = eoc;
    }
    match geometry.kind {
        FatKind::Fat16 => entries
            .iter()
            .flat_map(|&e| (e as u16).to_le_bytes())
            .collect(),
        FatKind::Fat32 => entries.iter().flat_map(|&e| e.to_le_bytes()).collect(),
    }
}

fn encode_directories(
    geometry: &Geometry,
    dirs: &[Dir],
    names: &[Vec<names::EncodedName>],
    inputs: &[(String, u64)],
    file_clusters: &BTreeMap<usize, u32>,
    label: ShortName,
    time: &DosDateTime,
) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::with_capacity(dirs.len());
    for (index, dir) in dirs.iter().enumerate() {
        let mut bytes: Vec<u8> = Vec::new();
        match dir.parent {
            None => bytes.extend(short_entry(&label, ATTR_VOLUME_ID, 0, 0, time)),
            Some(parent) => {
                let mut dot = [b' '; 11];
                dot[0] = b'.';
                bytes.extend(short_entry(
                    &dot,
                    ATTR_DIRECTORY,
                    dir.first_cluster,
                    0,
                    time,
                ));
                dot[1] = b'.';
                // `..` of a first-level directory points at cluster 0, even on FAT32.
                let up = if parent == 0 {
                    0
                } else {
                    dirs[parent].first_cluster
                };
                bytes.extend(short_entry(&dot, ATTR_DIRECTORY, up, 0, time));
            }
        }
        for ((name, child), encoded) in dir.children.values().zip(&names[index]) {
            if encoded.needs_long {
                for entry in names::lfn_entries(name, &encoded.short) {
                    bytes.extend(entry);
                }
            }
            let entry = match child {
                Child::Dir(sub) => short_entry(
                    &encoded.short,
                    ATTR_DIRECTORY,
                    dirs[*sub].first_cluster,
                    0,
                    time,
                ),
                Child::File(input) => short_entry(
                    &encoded.short,
                    ATTR_ARCHIVE,
                    file_clusters.get(input).copied().unwrap_or(0),
                    inputs[*input].1 as u32,
                    time,
                ),
            };
            bytes.extend(entry);
        }
        let offset = if index == 0 && geometry.kind == FatKind::Fat16 {
            geometry.root_dir_offset()
        } else {
            geometry.cluster_offset(dir.first_cluster)
        };
        out.push((offset, bytes));
    }
    out
}

/// Boot code for the (never used) BIOS path: `int 18h` ("no bootable disk"), then halt.
const BOOT_CODE: [u8; 5] = [0xCD, 0x18, 0xF4, 0xEB, 0xFD];

fn encode_boot_sector(g: &Geometry, label: ShortName, volume_id: u32) -> Vec<u8> {
    let mut s = vec![0u8; SECTOR_SIZE as usize];
    let is_fat32 = g.kind == FatKind::Fat32;
    let (ext, code) = if is_fat32 { (64, 90) } else { (36, 62) };
    s[0..3].copy_from_slice(&[0xEB, (code - 2) as u8, 0x90]);
    s[3..11].copy_from_slice(b"MSWIN4.1");
    s[11..13].copy_from_slice(&(SECTOR_SIZE as u16).to_le_bytes());
    s[13] = g.sectors_per_cluster as u8;
    s[14..16].copy_from_slice(&(g.reserved_sectors as u16).to_le_bytes());
    s[16] = super::geometry::FAT_COUNT as u8;
    if !is_fat32 {
        s[17..19].copy_from_slice(&(FAT16_ROOT_ENTRIES as u16).to_le_bytes());
        if let Ok(small) = u16::try_from(g.total_sectors) {
            s[19..21].copy_from_slice(&small.to_le_bytes());
        }
        s[22..24].copy_from_slice(&(g.fat_sectors as u16).to_le_bytes());
    }
    s[21] = 0xF8; // fixed disk
    s[24..26].copy_from_slice(&32u16.to_le_bytes()); // sectors per track
    s[26..28].copy_from_slice(&64u16.to_le_bytes()); // heads
    if is_fat32 || g.total_sectors > u32::from(u16::MAX) {
        s[32..36].copy_from_slice(&g.total_sectors.to_le_bytes());
    }
    if is_fat32 {
        s[36..40].copy_from_slice(&g.fat_sectors.to_le_bytes());
        s[44..48].copy_from_slice(&2u32.to_le_bytes()); // root directory cluster
        s[48..50].copy_from_slice(&1u16.to_le_bytes()); // FSInfo sector
        s[50..52].copy_from_slice(&6u16.to_le_bytes()); // backup boot sector
    }
    s[ext] = 0x80; // drive number
    s[ext + 2] = 0x29; // extended boot signature: id, label and type follow
    s[ext + 3..ext + 7].copy_from_slice(&volume_id.to_le_bytes());
    s[ext + 7..ext + 18].copy_from_slice(&label);
    s[ext + 18..ext + 26].copy_from_slice(if is_fat32 { b"FAT32   " } else { b"FAT16   " });
    s[code..code + BOOT_CODE.len()].copy_from_slice(&BOOT_CODE);
    s[510] = 0x55;
    s[511] = 0xAA;
    s
}

fn encode_fs_info(free_clusters: u32, next_free: u32) -> Vec<u8> {
    let mut s = vec![0u8; SECTOR_SIZE as usize];
    s[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    s[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    s[488..492].copy_from_slice(&free_clusters.to_le_bytes());
    s[492..496].copy_from_slice(&next_free.to_le_bytes());
    s[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn inputs(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(p, s)| (p.to_string(), *s)).collect()
    }

    fn plan_for(size: u64, list: &[(&str, u64)]) -> Result<Plan, FatError> {
        plan(
            Geometry::for_size(size).unwrap(),
            &inputs(list),
            *b"ESP        ",
            0x1234_5678,
            DosDateTime::MIN,
        )
    }

    #[test]
    fn allocates_contiguously_in_sorted_pre_order() {
        // 64 MiB FAT32: 512-byte clusters. Root takes cluster 2.
        let plan = plan_for(64 * MIB, &[("b.txt", 1000), ("A/x", 1), ("A/y", 0)]).unwrap();
        let g = plan.geometry;
        // Order: root (2); its children A (3) and b.txt (4..5); then A's child A/x (6).
        let offsets: Vec<(usize, u64)> = plan.files.iter().map(|f| (f.input, f.offset)).collect();
        assert_eq!(
            offsets,
            [(0, g.cluster_offset(4)), (1, g.cluster_offset(6))]
        );
        assert_eq!(plan.used_clusters, 5);
        assert_eq!(plan.directories[0].0, g.cluster_offset(2));
        assert_eq!(plan.directories[1].0, g.cluster_offset(3));
        let entry = |i: usize| u32::from_le_bytes(plan.fat[4 * i..4 * i + 4].try_into().unwrap());
        assert_eq!(entry(0), 0x0FFF_FFF8);
        assert_eq!(entry(2), 0x0FFF_FFFF);
        assert_eq!(entry(4), 5);
        assert_eq!(entry(5), 0x0FFF_FFFF);
        assert_eq!(entry(6), 0x0FFF_FFFF);
        assert_eq!(plan.fat.len(), 7 * 4);
    }

    #[test]
    fn directories_start_with_dot_entries_without_long_names() {
        let plan = plan_for(64 * MIB, &[("EFI/BOOT/BOOTX64.EFI", 10)]).unwrap();
        let efi = &plan.directories[1].1;
        assert_eq!(&efi[0..11], b".          ");
        assert_eq!(&efi[32..43], b"..         ");
        assert_eq!(
            u16::from_le_bytes([efi[32 + 26], efi[32 + 27]]),
            0,
            "`..` of a top dir is 0"
        );
        assert_eq!(&efi[64..75], b"BOOT       ");
        let boot = &plan.directories[2].1;
        assert_eq!(
            u16::from_le_bytes([boot[32 + 26], boot[32 + 27]]),
            3,
            "`..` is EFI's cluster"
        );
        // Root: volume label first.
        assert_eq!(&plan.directories[0].1[0..11], b"ESP        ");
        assert_eq!(plan.directories[0].1[11], ATTR_VOLUME_ID);
    }

    #[test]
    fn fat16_root_lives_in_its_fixed_region() {
        let plan = plan_for(8 * MIB, &[("loader/loader.conf", 20)]).unwrap();
        assert_eq!(plan.geometry.kind, FatKind::Fat16);
        assert_eq!(plan.directories[0].0, plan.geometry.root_dir_offset());
        assert!(plan.fs_info.is_empty());
        assert_eq!(&plan.boot_sector[54..62], b"FAT16   ");
        let too_many: Vec<(String, u64)> = (0..300).map(|i| (format!("file-{i}.txt"), 0)).collect();
        let refs: Vec<(&str, u64)> = too_many.iter().map(|(p, s)| (p.as_str(), *s)).collect();
        assert!(matches!(
            plan_for(8 * MIB, &refs),
            Err(FatError::TooManyRootEntries { max: 512, .. })
        ));
    }

    #[test]
    fn reports_conflicts_and_lack_of_space() {
        assert!(matches!(
            plan_for(64 * MIB, &[("a", 1), ("A", 2)]),
            Err(FatError::DuplicatePath { path }) if path == "A"
        ));
        assert!(matches!(
            plan_for(64 * MIB, &[("a", 1), ("a/b", 2)]),
            Err(FatError::FileIsDirectory { path }) if path == "a"
        ));
        assert!(matches!(
            plan_for(64 * MIB, &[("a/b", 1), ("a", 2)]),
            Err(FatError::FileIsDirectory { path }) if path == "a"
        ));
        assert!(matches!(
            plan_for(64 * MIB, &[("big", 65 * MIB)]),
            Err(FatError::NoSpace { .. })
        ));
        assert!(matches!(
            plan_for(64 * MIB, &[("huge", 5 << 30)]),
            Err(FatError::FileTooLarge { path, .. }) if path == "huge"
        ));
    }

    #[test]
    fn boot_sector_and_fs_info_describe_the_volume() {
        let plan = plan_for(64 * MIB, &[("x", 1)]).unwrap();
        let b = &plan.boot_sector;
        assert_eq!(&b[510..], &[0x55, 0xAA]);
        assert_eq!(&b[82..90], b"FAT32   ");
        assert_eq!(&b[67..71], &0x1234_5678u32.to_le_bytes());
        assert_eq!(&b[71..82], b"ESP        ");
        assert_eq!(b[0], 0xEB);
        assert_eq!(usize::from(b[1]) + 2, 90);
        let free = u32::from_le_bytes(plan.fs_info[488..492].try_into().unwrap());
        assert_eq!(free, plan.geometry.clusters - 2);
    }
}
