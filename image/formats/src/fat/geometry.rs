//! Where the parts of a FAT volume go: reserved sectors, the two FATs, the FAT16 root
//! directory and the data clusters, for a volume of a given size.

use super::{FatError, FatKind, SECTOR_SIZE};

/// Clusters a FAT16 volume must have at least (fewer makes it FAT12).
pub const FAT16_MIN_CLUSTERS: u32 = 4085;
/// Clusters a FAT16 volume may have at most.
pub const FAT16_MAX_CLUSTERS: u32 = 65_524;
/// Clusters a FAT32 volume must have at least.
pub const FAT32_MIN_CLUSTERS: u32 = 65_525;
/// Clusters a FAT32 volume may have at most (28-bit entries minus reserved values).
pub const FAT32_MAX_CLUSTERS: u32 = 0x0FFF_FFF5 - 2;
/// Root directory entries of a FAT16 volume.
pub const FAT16_ROOT_ENTRIES: u32 = 512;
/// Number of FATs (the second is a mirror, as every tool writes it).
pub const FAT_COUNT: u32 = 2;

/// The computed layout of a FAT volume, in sectors of [`SECTOR_SIZE`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// FAT16 or FAT32.
    pub kind: FatKind,
    /// Total sectors of the volume.
    pub total_sectors: u32,
    /// Sectors per cluster (a power of two).
    pub sectors_per_cluster: u32,
    /// Sectors before the first FAT (boot sector, FSInfo, backups).
    pub reserved_sectors: u32,
    /// Sectors of one FAT.
    pub fat_sectors: u32,
    /// Sectors of the fixed FAT16 root directory (0 on FAT32).
    pub root_dir_sectors: u32,
    /// Number of data clusters (numbered from 2).
    pub clusters: u32,
}

impl Geometry {
    /// Lays out a volume of `size_bytes` with the FAT type [`FatKind::for_size`] picks and
    /// the conventional cluster size for it, adjusted until the cluster count is legal for
    /// that type.
    pub fn for_size(size_bytes: u64) -> Result<Geometry, FatError> {
        let bad = || FatError::BadSize { size: size_bytes };
        if size_bytes % SECTOR_SIZE != 0 {
            return Err(bad());
        }
        let total_sectors = u32::try_from(size_bytes / SECTOR_SIZE).map_err(|_| bad())?;
        let kind = FatKind::for_size(size_bytes);
        let (reserved_sectors, root_dir_sectors, min, max) = match kind {
            FatKind::Fat16 => (
                4,
                FAT16_ROOT_ENTRIES * 32 / SECTOR_SIZE as u32,
                FAT16_MIN_CLUSTERS,
                FAT16_MAX_CLUSTERS,
            ),
            FatKind::Fat32 => (32, 0, FAT32_MIN_CLUSTERS, FAT32_MAX_CLUSTERS),
        };
        let mut cluster_bytes = conventional_cluster_bytes(kind, size_bytes);
        loop {
            let sectors_per_cluster = (cluster_bytes / SECTOR_SIZE) as u32;
            let geometry = layout(
                kind,
                total_sectors,
                sectors_per_cluster,
                reserved_sectors,
                root_dir_sectors,
            )
            .ok_or_else(bad)?;
            if geometry.clusters < min && cluster_bytes > SECTOR_SIZE {
                cluster_bytes /= 2;
            } else if geometry.clusters > max && cluster_bytes < 32 * 1024 {
                cluster_bytes *= 2;
            } else if (min..=max).contains(&geometry.clusters) {
                return Ok(geometry);
            } else {
                return Err(bad());
            }
        }
    }

    /// Bytes per cluster.
    pub fn cluster_bytes(&self) -> u64 {
        u64::from(self.sectors_per_cluster) * SECTOR_SIZE
    }

    /// Byte offset of FAT number `index` (0 or 1).
    pub fn fat_offset(&self, index: u32) -> u64 {
        u64::from(self.reserved_sectors + index * self.fat_sectors) * SECTOR_SIZE
    }

    /// Byte offset of the FAT16 root directory region.
    pub fn root_dir_offset(&self) -> u64 {
        self.fat_offset(FAT_COUNT)
    }

    /// Byte offset of data cluster `cluster` (the first is number 2).
    pub fn cluster_offset(&self, cluster: u32) -> u64 {
        let data_start = self.root_dir_offset() + u64::from(self.root_dir_sectors) * SECTOR_SIZE;
        data_start + u64::from(cluster - 2) * self.cluster_bytes()
    }
}

/// The cluster size Microsoft's and dosfstools' defaults use for a volume of this size.
fn conventional_cluster_bytes(kind: FatKind, size_bytes: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    match kind {
        FatKind::Fat16 if size_bytes <= 16 * MIB => 1024,
        FatKind::Fat16 => 2048,
        FatKind::Fat32 if size_bytes <= 260 * MIB => 512,
        FatKind::Fat32 if size_bytes <= 8192 * MIB => 4096,
        FatKind::Fat32 if size_bytes <= 16384 * MIB => 8192,
        FatKind::Fat32 if size_bytes <= 32768 * MIB => 16384,
        FatKind::Fat32 => 32768,
    }
}

/// Sizes the FATs for a cluster size: the smallest FAT that covers every cluster the
/// remaining space holds, found by iterating to a fixed point.
fn layout(
    kind: FatKind,
    total_sectors: u32,
    sectors_per_cluster: u32,
    reserved_sectors: u32,
    root_dir_sectors: u32,
) -> Option<Geometry> {
    let entry_bytes: u64 = match kind {
        FatKind::Fat16 => 2,
        FatKind::Fat32 => 4,
    };
    let mut fat_sectors = 1u32;
    loop {
        let overhead = reserved_sectors
            .checked_add(root_dir_sectors)?
            .checked_add(FAT_COUNT.checked_mul(fat_sectors)?)?;
        let data_sectors = total_sectors.checked_sub(overhead)?;
        let clusters = data_sectors / sectors_per_cluster;
        let needed = ((u64::from(clusters) + 2) * entry_bytes).div_ceil(SECTOR_SIZE);
        let needed = u32::try_from(needed).ok()?;
        if needed <= fat_sectors {
            return Some(Geometry {
                kind,
                total_sectors,
                sectors_per_cluster,
                reserved_sectors,
                fat_sectors,
                root_dir_sectors,
                clusters,
            });
        }
        fat_sectors = needed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn esp_sizes_are_fat32_with_legal_cluster_counts() {
        for size in [
            64 * MIB,
            100 * MIB,
            260 * MIB,
            261 * MIB,
            512 * MIB,
            4096 * MIB,
        ] {
            let g = Geometry::for_size(size).unwrap();
            assert_eq!(g.kind, FatKind::Fat32, "{size}");
            assert!(
                (FAT32_MIN_CLUSTERS..=FAT32_MAX_CLUSTERS).contains(&g.clusters),
                "{size}: {g:?}"
            );
            // The FAT covers every cluster, and the clusters fit the volume.
            assert!(u64::from(g.fat_sectors) * 512 / 4 >= u64::from(g.clusters) + 2);
            assert!(g.cluster_offset(g.clusters + 2) <= size, "{size}: {g:?}");
        }
        assert_eq!(Geometry::for_size(64 * MIB).unwrap().sectors_per_cluster, 1);
        assert_eq!(
            Geometry::for_size(512 * MIB).unwrap().sectors_per_cluster,
            8
        );
    }

    #[test]
    fn small_sizes_are_fat16() {
        for size in [3 * MIB, 8 * MIB, 32 * MIB, 63 * MIB] {
            let g = Geometry::for_size(size).unwrap();
            assert_eq!(g.kind, FatKind::Fat16, "{size}");
            assert!((FAT16_MIN_CLUSTERS..=FAT16_MAX_CLUSTERS).contains(&g.clusters));
            assert_eq!(g.root_dir_sectors, 32);
        }
    }

    #[test]
    fn rejects_sizes_without_a_legal_layout() {
        for size in [0, 1000, MIB, 2 * MIB + 1, 4 << 40] {
            assert!(
                matches!(Geometry::for_size(size), Err(FatError::BadSize { size: s }) if s == size),
                "{size}"
            );
        }
    }
}
