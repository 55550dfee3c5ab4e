//! Unified Kernel Images: systemd-boot's EFI stub with the kernel, initrd, command line
//! and os-release added as PE sections, the way `ukify` does it (systemd 252 has no
//! ukify, so this drives `objcopy`).
//!
//! The new sections are placed one after another past the stub's own sections, each at
//! the next page-aligned address ([`plan_sections`]), rather than at hard-coded addresses.
//! objcopy stamps the current time into the PE header; [`build_uki`] resets it to the
//! stub's own timestamp (and refreshes the checksum) so the output is reproducible.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pe::{self, PeError, PeInfo};

/// systemd-boot's x86-64 stub as Debian's systemd-boot-efi package installs it.
pub const DEFAULT_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
/// Smallest alignment used for the added sections (one page).
pub const MIN_SECTION_ALIGNMENT: u64 = 4096;

/// A section to add and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedSection {
    /// Section name, e.g. `.linux`.
    pub name: &'static str,
    /// Address relative to the image base.
    pub rva: u64,
    /// Size in bytes.
    pub size: u64,
}

/// What can go wrong while assembling a UKI.
#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    /// An input file does not exist or is not a regular file.
    #[error("{what} `{path}` does not exist or is not a regular file")]
    MissingInput {
        /// Which input: "stub", "kernel" or "initrd".
        what: &'static str,
        /// The path given.
        path: PathBuf,
    },
    /// An input file could not be read.
    #[error("cannot read {what} `{path}`: {source}")]
    ReadInput {
        /// Which input.
        what: &'static str,
        /// The path given.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A text section would be empty.
    #[error("the {section} section would be empty")]
    EmptySection {
        /// The section name.
        section: &'static str,
    },
    /// The stub is not a PE image.
    #[error("stub `{path}` is not a usable PE image: {source}")]
    BadStub {
        /// The stub.
        path: PathBuf,
        /// What is wrong with it.
        source: PeError,
    },
    /// The sections do not fit the 32-bit address space of a PE image.
    #[error("section {section} does not fit below 4 GiB in the image")]
    TooLarge {
        /// The section that overflowed.
        section: &'static str,
    },
    /// Temporary files for the text sections could not be written.
    #[error("cannot write temporary section files: {0}")]
    TempFiles(#[source] io::Error),
    /// objcopy could not be run.
    #[error("cannot run objcopy (Debian package binutils): {0}")]
    SpawnObjcopy(#[source] io::Error),
    /// objcopy ran and failed.
    #[error("objcopy failed ({status}): {stderr}")]
    Objcopy {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The output could not be read back, patched or moved into place.
    #[error("cannot write UKI `{path}`: {source}")]
    Output {
        /// The output path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// objcopy's output is not the PE image expected.
    #[error("objcopy's output `{path}` is not as planned: {reason}")]
    Verify {
        /// The output path.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
}

fn align_up(value: u64, alignment: u64) -> u64 {
    value.div_ceil(alignment) * alignment
}

/// Places `sections` (name, size) one after another past the stub's last section, each at
/// the next multiple of the larger of the stub's section alignment and one page.
pub fn plan_sections(
    stub: &PeInfo,
    sections: &[(&'static str, u64)],
) -> Result<Vec<PlacedSection>, UkiError> {
    let alignment = u64::from(stub.section_alignment).max(MIN_SECTION_ALIGNMENT);
    let mut next = align_up(stub.end_of_sections(), alignment);
    let mut placed = Vec::with_capacity(sections.len());
    for &(name, size) in sections {
        let end = next
            .checked_add(size)
            .filter(|&end| end <= u64::from(u32::MAX));
        let Some(end) = end else {
            return Err(UkiError::TooLarge { section: name });
        };
        placed.push(PlacedSection {
            name,
            rva: next,
            size,
        });
        next = align_up(end, alignment);
    }
    Ok(placed)
}

fn input_size(what: &'static str, path: &Path) -> Result<u64, UkiError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(meta.len()),
        Ok(_) => Err(UkiError::MissingInput {
            what,
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(UkiError::MissingInput {
            what,
            path: path.to_owned(),
        }),
        Err(source) => Err(UkiError::ReadInput {
            what,
            path: path.to_owned(),
            source,
        }),
    }
}

/// Builds a UKI at `out` from the systemd-boot `stub`, a `kernel` (bzImage), an `initrd`,
/// the kernel command line and an os-release text (`.osrel`, which systemd-boot shows in
/// its menu). The command line is stored exactly as given. The output is written next to
/// `out` and renamed into place, so a failure leaves no partial UKI.
pub fn build_uki(
    stub: &Path,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    os_release: &str,
    out: &Path,
) -> Result<(), UkiError> {
    input_size("stub", stub)?;
    let kernel_size = input_size("kernel", kernel)?;
    let initrd_size = input_size("initrd", initrd)?;
    if cmdline.is_empty() {
        return Err(UkiError::EmptySection {
            section: ".cmdline",
        });
    }
    if os_release.is_empty() {
        return Err(UkiError::EmptySection { section: ".osrel" });
    }
    let stub_bytes = fs::read(stub).map_err(|source| UkiError::ReadInput {
        what: "stub",
        path: stub.to_owned(),
        source,
    })?;
    let stub_info = pe::parse(&stub_bytes).map_err(|source| UkiError::BadStub {
        path: stub.to_owned(),
        source,
    })?;
    let placed = plan_sections(
        &stub_info,
        &[
            (".osrel", os_release.len() as u64),
            (".cmdline", cmdline.len() as u64),
            (".linux", kernel_size),
            (".initrd", initrd_size),
        ],
    )?;

    let temp = tempfile::tempdir().map_err(UkiError::TempFiles)?;
    let osrel_file = temp.path().join("osrel");
    let cmdline_file = temp.path().join("cmdline");
    fs::write(&osrel_file, os_release).map_err(UkiError::TempFiles)?;
    fs::write(&cmdline_file, cmdline).map_err(UkiError::TempFiles)?;
    let contents: [&Path; 4] = [&osrel_file, &cmdline_file, kernel, initrd];

    let partial = partial_path(out);
    let result = run_objcopy(stub, &placed, &contents, stub_info.image_base, &partial)
        .and_then(|()| finish(&partial, out, &placed, stub_info.timestamp));
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

/// `out` with `.partial` appended to its file name, in the same directory.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

fn run_objcopy(
    stub: &Path,
    placed: &[PlacedSection],
    contents: &[&Path],
    image_base: u64,
    target: &Path,
) -> Result<(), UkiError> {
    let mut command = Command::new("objcopy");
    for (section, content) in placed.iter().zip(contents) {
        let mut add = std::ffi::OsString::from(format!("{}=", section.name));
        add.push(content.as_os_str());
        command.arg("--add-section").arg(add);
        command.arg("--change-section-vma").arg(format!(
            "{}={:#x}",
            section.name,
            image_base + section.rva
        ));
    }
    command.arg(stub).arg(target);
    let output = command.output().map_err(UkiError::SpawnObjcopy)?;
    if !output.status.success() {
        return Err(UkiError::Objcopy {
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Checks objcopy's output against the plan, resets its timestamp and moves it to `out`.
fn finish(
    partial: &Path,
    out: &Path,
    placed: &[PlacedSection],
    timestamp: u32,
) -> Result<(), UkiError> {
    let output_error = |source| UkiError::Output {
        path: out.to_owned(),
        source,
    };
    let verify = |reason: String| UkiError::Verify {
        path: partial.to_owned(),
        reason,
    };
    let mut data = fs::read(partial).map_err(output_error)?;
    let info = pe::set_timestamp(&mut data, timestamp).map_err(|e| verify(e.to_string()))?;
    for section in placed {
        let found = info
            .section(section.name)
            .ok_or_else(|| verify(format!("section {} is missing", section.name)))?;
        if u64::from(found.virtual_address) != section.rva
            || u64::from(found.virtual_size) != section.size
        {
            return Err(verify(format!(
                "section {} is at {:#x} with size {}, planned {:#x} with size {}",
                section.name, found.virtual_address, found.virtual_size, section.rva, section.size
            )));
        }
    }
    fs::write(partial, &data).map_err(output_error)?;
    fs::rename(partial, out).map_err(output_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stub_info(alignment: u32, sections: &[(u32, u32)]) -> PeInfo {
        let mut data = vec![0u8; 0x400];
        data[0..2].copy_from_slice(b"MZ");
        data[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        data[0x80..0x84].copy_from_slice(b"PE\0\0");
        data[0x86..0x88].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        data[0x94..0x96].copy_from_slice(&0xf0u16.to_le_bytes());
        data[0x98..0x9a].copy_from_slice(&0x20bu16.to_le_bytes());
        data[0x98 + 32..0x98 + 36].copy_from_slice(&alignment.to_le_bytes());
        for (i, (va, size)) in sections.iter().enumerate() {
            let at = 0x98 + 0xf0 + 40 * i;
            data[at..at + 5].copy_from_slice(b".text");
            data[at + 8..at + 12].copy_from_slice(&size.to_le_bytes());
            data[at + 12..at + 16].copy_from_slice(&va.to_le_bytes());
        }
        pe::parse(&data).unwrap()
    }

    #[test]
    fn sections_follow_the_stub_page_aligned() {
        // Like systemd 252's stub: SectionAlignment 0x200, last section ends at 0x19134.
        let stub = stub_info(0x200, &[(0x4000, 0xbff0), (0x19100, 0x34)]);
        let placed = plan_sections(
            &stub,
            &[
                (".osrel", 300),
                (".cmdline", 14),
                (".linux", 0x1000),
                (".initrd", 5),
            ],
        )
        .unwrap();
        let rvas: Vec<u64> = placed.iter().map(|p| p.rva).collect();
        assert_eq!(rvas, [0x1a000, 0x1b000, 0x1c000, 0x1d000]);
    }

    #[test]
    fn a_larger_stub_alignment_is_kept() {
        let stub = stub_info(0x10000, &[(0x1000, 0x10)]);
        let placed = plan_sections(&stub, &[(".osrel", 1), (".linux", 0x10001)]).unwrap();
        assert_eq!(placed[0].rva, 0x10000);
        assert_eq!(placed[1].rva, 0x20000);
    }

    #[test]
    fn sections_past_4_gib_are_refused() {
        let stub = stub_info(0x1000, &[(0x1000, 0x10)]);
        assert!(matches!(
            plan_sections(&stub, &[(".linux", 1 << 31), (".initrd", 1 << 31)]),
            Err(UkiError::TooLarge { section: ".initrd" })
        ));
    }

    #[test]
    fn partial_output_sits_beside_the_target() {
        assert_eq!(
            partial_path(Path::new("/out/EFI/Linux/cairn-1+3.efi")),
            Path::new("/out/EFI/Linux/cairn-1+3.efi.partial")
        );
    }
}
