//! Reading what the dynamic loader reads from an ELF program or library: its interpreter
//! (`PT_INTERP`), the libraries it needs (`DT_NEEDED`), where to look for them (`DT_RUNPATH`,
//! `DT_RPATH`), its `DT_SONAME`, and its class and machine (a library of another class or
//! machine is skipped by the loader, so it is here too).
//!
//! The dynamic section is found the way the loader finds it: through the `PT_DYNAMIC` program
//! header, its string table through `DT_STRTAB`'s address mapped by the `PT_LOAD` segments, so
//! stripped files without section headers are read too. Never panics, whatever the bytes.

use object::elf::{
    FileHeader32, FileHeader64, DT_NEEDED, DT_NULL, DT_RPATH, DT_RUNPATH, DT_SONAME, DT_STRSZ,
    DT_STRTAB, PT_LOAD,
};
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::{Endianness, FileKind};

/// What the loader needs to know about an ELF file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfInfo {
    /// 64-bit (`ELFCLASS64`) rather than 32-bit.
    pub class64: bool,
    /// `e_machine`, e.g. 62 for x86-64.
    pub machine: u16,
    /// The `PT_INTERP` path, e.g. `/lib64/ld-linux-x86-64.so.2`.
    pub interpreter: Option<String>,
    /// `DT_NEEDED`, in order.
    pub needed: Vec<String>,
    /// `DT_RPATH`, split at `:`.
    pub rpath: Vec<String>,
    /// `DT_RUNPATH`, split at `:`.
    pub runpath: Vec<String>,
    pub soname: Option<String>,
    /// Has a `PT_DYNAMIC` segment.
    pub dynamic: bool,
}

/// The class and machine of an ELF file, from its first 20 bytes; `None` when it is not ELF.
pub fn elf_kind(head: &[u8]) -> Option<(bool, u16)> {
    if head.len() < 20 || !head.starts_with(b"\x7fELF") {
        return None;
    }
    let class64 = match head[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let machine = match head[5] {
        1 => u16::from_le_bytes([head[18], head[19]]),
        2 => u16::from_be_bytes([head[18], head[19]]),
        _ => return None,
    };
    Some((class64, machine))
}

/// Parses an ELF file. The error says what is wrong, for a message about the file.
pub fn parse_elf(data: &[u8]) -> Result<ElfInfo, String> {
    match FileKind::parse(data) {
        Ok(FileKind::Elf32) => parse::<FileHeader32<Endianness>>(data, false),
        Ok(FileKind::Elf64) => parse::<FileHeader64<Endianness>>(data, true),
        Ok(other) => Err(format!("it is a {other:?} file, not ELF")),
        Err(_) if data.starts_with(b"#!") => Err(
            "it is a script (#!): give the interpreter's binary, and the script in the includes"
                .into(),
        ),
        Err(_) => Err("it is not an ELF file".into()),
    }
}

fn parse<H: FileHeader<Endian = Endianness>>(
    data: &[u8],
    class64: bool,
) -> Result<ElfInfo, String> {
    let header = H::parse(data).map_err(|e| format!("bad ELF header: {e}"))?;
    let endian = header
        .endian()
        .map_err(|e| format!("bad ELF header: {e}"))?;
    let segments = header
        .program_headers(endian, data)
        .map_err(|e| format!("bad program headers: {e}"))?;
    let mut info = ElfInfo {
        class64,
        machine: header.e_machine(endian),
        ..ElfInfo::default()
    };
    let mut dynamic = None;
    for segment in segments {
        if let Some(interp) = segment
            .interpreter(endian, data)
            .map_err(|e| format!("bad PT_INTERP: {e}"))?
        {
            info.interpreter = Some(String::from_utf8_lossy(interp).into_owned());
        }
        if let Some(entries) = segment
            .dynamic(endian, data)
            .map_err(|e| format!("bad PT_DYNAMIC: {e}"))?
        {
            dynamic = Some(entries);
        }
    }
    let Some(entries) = dynamic else {
        return Ok(info);
    };
    info.dynamic = true;
    let mut strtab = None;
    let mut strsz = None;
    let mut strings: Vec<(i64, u64)> = Vec::new();
    for entry in entries {
        let tag: i64 = entry.d_tag(endian).into();
        let value: u64 = entry.d_val(endian).into();
        match tag {
            DT_NULL => break,
            DT_STRTAB => strtab = Some(value),
            DT_STRSZ => strsz = Some(value),
            DT_NEEDED | DT_RPATH | DT_RUNPATH | DT_SONAME => strings.push((tag, value)),
            _ => {}
        }
    }
    if strings.is_empty() {
        return Ok(info);
    }
    let (Some(address), Some(size)) = (strtab, strsz) else {
        return Err("the dynamic section has no DT_STRTAB / DT_STRSZ".into());
    };
    let table = segments
        .iter()
        .filter(|s| s.p_type(endian) == PT_LOAD)
        .find_map(|s| s.data_range(endian, data, address, size).ok().flatten())
        .ok_or("the dynamic string table (DT_STRTAB) is not in any loaded segment")?;
    let string = |offset: u64| -> Result<String, String> {
        let start = usize::try_from(offset)
            .ok()
            .filter(|&o| o < table.len())
            .ok_or("a dynamic string is outside the string table")?;
        let rest = &table[start..];
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or("a dynamic string is not terminated")?;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    };
    let split = |s: String| -> Vec<String> {
        s.split(':')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    };
    for (tag, offset) in strings {
        let value = string(offset)?;
        match tag {
            DT_NEEDED => info.needed.push(value),
            DT_RPATH => info.rpath.extend(split(value)),
            DT_RUNPATH => info.runpath.extend(split(value)),
            DT_SONAME => info.soname = Some(value),
            _ => {}
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_test_binary() {
        // The test binary itself: a dynamically linked program on Linux.
        let path = std::env::current_exe().unwrap();
        let data = std::fs::read(&path).unwrap();
        let info = parse_elf(&data).unwrap();
        assert!(info.dynamic, "{info:?}");
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            let interp = info.interpreter.as_deref().unwrap_or_default();
            assert!(interp.contains("ld-linux"), "{info:?}");
            assert!(
                info.needed.iter().any(|n| n.starts_with("libc.so")),
                "{info:?}"
            );
        }
        assert_eq!(elf_kind(&data), Some((info.class64, info.machine)));
        assert_eq!(info.class64, cfg!(target_pointer_width = "64"));
    }

    #[test]
    fn reads_a_library() {
        let candidates = [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/aarch64-linux-gnu/libc.so.6",
            "/lib64/libc.so.6",
            "/usr/lib/libc.so.6",
        ];
        let Some(path) = candidates
            .iter()
            .find(|p| std::path::Path::new(p).is_file())
        else {
            eprintln!("no glibc libc.so.6 on this machine: skipping");
            return;
        };
        let info = parse_elf(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(info.soname.as_deref(), Some("libc.so.6"));
        assert!(
            info.needed.iter().any(|n| n.starts_with("ld-linux")),
            "{info:?}"
        );
    }

    #[test]
    fn garbage_and_truncations_are_errors_not_panics() {
        assert!(parse_elf(b"").unwrap_err().contains("not an ELF"));
        assert!(parse_elf(b"#!/bin/sh\necho hi\n")
            .unwrap_err()
            .contains("script"));
        assert!(parse_elf(&[0u8; 100]).is_err());
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // Every truncation, and bytes flipped here and there, must be handled.
        let mut lengths: Vec<usize> = (0..256).collect();
        lengths.extend((0..64).map(|i| data.len() * i / 64));
        for length in lengths {
            let _ = parse_elf(&data[..length.min(data.len())]);
        }
        let mut corrupt = data[..data.len().min(1 << 20)].to_vec();
        for i in (0..corrupt.len()).step_by(4093).take(256) {
            corrupt[i] ^= 0xff;
            let _ = parse_elf(&corrupt);
        }
    }

    #[test]
    fn elf_kind_reads_class_and_machine() {
        let mut head = [0u8; 20];
        head[..4].copy_from_slice(b"\x7fELF");
        head[4] = 2;
        head[5] = 1;
        head[18] = 62;
        assert_eq!(elf_kind(&head), Some((true, 62)));
        head[5] = 2;
        head[18] = 0;
        head[19] = 183;
        assert_eq!(elf_kind(&head), Some((true, 183)));
        assert_eq!(elf_kind(b"\x7fELF"), None);
        assert_eq!(elf_kind(&[0u8; 20]), None);
    }
}
