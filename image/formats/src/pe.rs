//! Just enough of the PE/COFF format to place sections in an EFI stub and make objcopy's
//! output reproducible: read the section table, image base and alignment, and rewrite the
//! COFF timestamp and the optional header's checksum.
//!
//! ```text
//! 0x3c            u32  offset of "PE\0\0"
//! PE+4   COFF     u16 machine, u16 sections, u32 timestamp, u32 symtab, u32 symbols,
//!                 u16 optional header size, u16 characteristics
//! PE+24  optional u16 magic (0x10b PE32, 0x20b PE32+) ... +32 u32 section alignment,
//!                 +36 u32 file alignment, +64 u32 checksum; image base at +28 (u32, PE32)
//!                 or +24 (u64, PE32+)
//! then            40-byte section headers: name[8], u32 virtual size, u32 virtual address,
//!                 u32 raw size, u32 raw pointer, ...
//! ```

/// Why a file could not be read as PE.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeError {
    /// The file ends before a structure it must hold.
    #[error("truncated PE file: no room for the {what}")]
    Truncated {
        /// The structure that did not fit.
        what: &'static str,
    },
    /// No `MZ` at the start.
    #[error("not a PE file: no MZ signature")]
    NoMz,
    /// No `PE\0\0` where the DOS header points.
    #[error("not a PE file: no PE signature at offset {offset:#x}")]
    NoPe {
        /// Where the signature was expected.
        offset: usize,
    },
    /// An optional header magic other than PE32 or PE32+.
    #[error("unknown PE optional header magic {magic:#x}")]
    UnknownMagic {
        /// The magic found.
        magic: u16,
    },
}

/// One entry of the section table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Section name (up to 8 bytes, NULs trimmed).
    pub name: String,
    /// Size in memory.
    pub virtual_size: u32,
    /// Address relative to the image base.
    pub virtual_address: u32,
    /// Size in the file (file-aligned).
    pub raw_size: u32,
}

/// What [`parse`] reads from a PE image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeInfo {
    /// Preferred load address; objcopy's section VMAs include it.
    pub image_base: u64,
    /// Section alignment in memory.
    pub section_alignment: u32,
    /// Alignment of section data in the file.
    pub file_alignment: u32,
    /// COFF header timestamp.
    pub timestamp: u32,
    /// Optional header checksum.
    pub checksum: u32,
    /// The section table.
    pub sections: Vec<Section>,
    timestamp_offset: usize,
    checksum_offset: usize,
}

impl PeInfo {
    /// First address (relative to the image base) past every section.
    pub fn end_of_sections(&self) -> u64 {
        self.sections
            .iter()
            .map(|s| u64::from(s.virtual_address) + u64::from(s.virtual_size.max(s.raw_size)))
            .max()
            .unwrap_or(0)
    }

    /// The section called `name`, if any.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }
}

fn u16_at(data: &[u8], offset: usize, what: &'static str) -> Result<u16, PeError> {
    data.get(offset..offset + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or(PeError::Truncated { what })
}

fn u32_at(data: &[u8], offset: usize, what: &'static str) -> Result<u32, PeError> {
    data.get(offset..offset + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(PeError::Truncated { what })
}

fn u64_at(data: &[u8], offset: usize, what: &'static str) -> Result<u64, PeError> {
    let low = u32_at(data, offset, what)?;
    let high = u32_at(data, offset + 4, what)?;
    Ok(u64::from(low) | (u64::from(high) << 32))
}

/// Reads the headers and section table of a PE32 or PE32+ image.
pub fn parse(data: &[u8]) -> Result<PeInfo, PeError> {
    if data
        .get(0..2)
        .ok_or(PeError::Truncated { what: "DOS header" })?
        != b"MZ"
    {
        return Err(PeError::NoMz);
    }
    let pe = u32_at(data, 0x3c, "DOS header")? as usize;
    if data.get(pe..pe + 4).ok_or(PeError::Truncated {
        what: "PE signature",
    })? != b"PE\0\0"
    {
        return Err(PeError::NoPe { offset: pe });
    }
    let coff = pe + 4;
    let section_count = usize::from(u16_at(data, coff + 2, "COFF header")?);
    let timestamp = u32_at(data, coff + 4, "COFF header")?;
    let optional_size = usize::from(u16_at(data, coff + 16, "COFF header")?);
    let optional = coff + 20;
    let magic = u16_at(data, optional, "optional header")?;
    let image_base = match magic {
        0x10b => u64::from(u32_at(data, optional + 28, "optional header")?),
        0x20b => u64_at(data, optional + 24, "optional header")?,
        _ => return Err(PeError::UnknownMagic { magic }),
    };
    let section_alignment = u32_at(data, optional + 32, "optional header")?;
    let file_alignment = u32_at(data, optional + 36, "optional header")?;
    let checksum = u32_at(data, optional + 64, "optional header")?;
    let table = optional + optional_size;
    let mut sections = Vec::with_capacity(section_count);
    for index in 0..section_count {
        let at = table + 40 * index;
        let raw_name = data.get(at..at + 8).ok_or(PeError::Truncated {
            what: "section table",
        })?;
        let name_len = raw_name.iter().position(|&b| b == 0).unwrap_or(8);
        sections.push(Section {
            name: String::from_utf8_lossy(&raw_name[..name_len]).into_owned(),
            virtual_size: u32_at(data, at + 8, "section table")?,
            virtual_address: u32_at(data, at + 12, "section table")?,
            raw_size: u32_at(data, at + 16, "section table")?,
        });
    }
    Ok(PeInfo {
        image_base,
        section_alignment,
        file_alignment,
        timestamp,
        checksum,
        sections,
        timestamp_offset: coff + 4,
        checksum_offset: optional + 64,
    })
}

/// The PE image checksum (as Windows' `CheckSumMappedFile` computes it): 16-bit
/// one's-complement-style sum of the file with the checksum field taken as zero, plus the
/// file length.
pub fn checksum(data: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u64 = 0;
    for (index, pair) in data.chunks(2).enumerate() {
        let offset = index * 2;
        if offset >= checksum_offset && offset < checksum_offset + 4 {
            continue;
        }
        let word = u64::from(pair[0]) | pair.get(1).map_or(0, |&b| u64::from(b) << 8);
        sum += word;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    (sum as u32).wrapping_add(data.len() as u32)
}

/// Sets the COFF timestamp to `timestamp` and, if the image carries a checksum, refreshes
/// it. Returns the updated header information.
pub fn set_timestamp(data: &mut [u8], timestamp: u32) -> Result<PeInfo, PeError> {
    let info = parse(data)?;
    data[info.timestamp_offset..info.timestamp_offset + 4]
        .copy_from_slice(&timestamp.to_le_bytes());
    if info.checksum != 0 {
        let sum = checksum(data, info.checksum_offset);
        data[info.checksum_offset..info.checksum_offset + 4].copy_from_slice(&sum.to_le_bytes());
    }
    parse(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ image: DOS header, PE header, optional header of 0xf0 bytes and two
    /// sections.
    fn tiny_pe() -> Vec<u8> {
        let mut data = vec![0u8; 0x400];
        data[0..2].copy_from_slice(b"MZ");
        data[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        data[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        data[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        data[coff + 2..coff + 4].copy_from_slice(&2u16.to_le_bytes());
        data[coff + 4..coff + 8].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        data[coff + 16..coff + 18].copy_from_slice(&0xf0u16.to_le_bytes());
        let opt = coff + 20;
        data[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        data[opt + 24..opt + 32].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
        data[opt + 32..opt + 36].copy_from_slice(&0x1000u32.to_le_bytes());
        data[opt + 36..opt + 40].copy_from_slice(&0x200u32.to_le_bytes());
        data[opt + 64..opt + 68].copy_from_slice(&1u32.to_le_bytes());
        let table = opt + 0xf0;
        for (i, (name, size, va)) in [
            (b".text\0\0\0", 0x1234u32, 0x1000u32),
            (b".cmdline", 0x10, 0x3000),
        ]
        .iter()
        .enumerate()
        {
            let at = table + 40 * i;
            data[at..at + 8].copy_from_slice(*name);
            data[at + 8..at + 12].copy_from_slice(&size.to_le_bytes());
            data[at + 12..at + 16].copy_from_slice(&va.to_le_bytes());
            data[at + 16..at + 20].copy_from_slice(&0x200u32.to_le_bytes());
        }
        data
    }

    #[test]
    fn reads_headers_and_sections() {
        let info = parse(&tiny_pe()).unwrap();
        assert_eq!(info.image_base, 0x1_0000_0000);
        assert_eq!(info.section_alignment, 0x1000);
        assert_eq!(info.file_alignment, 0x200);
        assert_eq!(info.timestamp, 0x1234_5678);
        assert_eq!(info.sections.len(), 2);
        assert_eq!(
            info.section(".cmdline").map(|s| s.virtual_address),
            Some(0x3000)
        );
        assert_eq!(info.end_of_sections(), 0x3200);
    }

    #[test]
    fn rejects_what_is_not_pe() {
        assert_eq!(parse(b"M"), Err(PeError::Truncated { what: "DOS header" }));
        assert_eq!(parse(&[0u8; 0x100]), Err(PeError::NoMz));
        let mut data = tiny_pe();
        data[0x80] = b'X';
        assert_eq!(parse(&data), Err(PeError::NoPe { offset: 0x80 }));
        let mut data = tiny_pe();
        data[0x84 + 20] = 0x07;
        assert!(matches!(parse(&data), Err(PeError::UnknownMagic { .. })));
        assert!(matches!(
            parse(&tiny_pe()[..0x1a0]),
            Err(PeError::Truncated { .. })
        ));
    }

    #[test]
    fn timestamp_is_rewritten_and_checksum_refreshed() {
        let mut data = tiny_pe();
        let info = set_timestamp(&mut data, 0).unwrap();
        assert_eq!(info.timestamp, 0);
        assert_eq!(info.checksum, checksum(&data, 0x84 + 20 + 64));
        assert_ne!(info.checksum, 1);
        // The checksum field itself does not take part in the sum.
        let before = checksum(&data, 0x84 + 20 + 64);
        data[0x84 + 20 + 64] ^= 0xff;
        assert_eq!(checksum(&data, 0x84 + 20 + 64), before);
    }

    #[test]
    fn checksum_folds_carries_and_adds_the_length() {
        // Words 0xffff + 0x0002 = 0x10001 → folded 0x0002; plus length 4 (field outside).
        assert_eq!(checksum(&[0xff, 0xff, 0x02, 0x00], 100), 0x0002 + 4);
        // Odd length: the last byte is the low half of a word.
        assert_eq!(checksum(&[0x01, 0x00, 0x05], 100), 1 + 5 + 3);
    }
}
