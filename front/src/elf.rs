//! A truncation check run before `dlopen`: glibc maps an ELF object's
//! segments without comparing them with the file's size, and touching a
//! page past the end of the file kills the process with SIGBUS. So a core
//! cut short (a full disk, an interrupted copy or package install) would
//! crash every program that looks up a wss realm, instead of failing with
//! a message. Everything else (not ELF, wrong machine, missing symbols) is
//! left to the dynamic loader, which reports it properly.

/// Reads bytes at an offset; the number read, or None on error.
pub trait ReadAt {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Option<usize>;
}

/// Bytes the file must hold for its program headers and every loadable
/// segment; None when it is not an ELF file this check understands (then
/// the dynamic loader decides).
pub fn bytes_needed(file: &dyn ReadAt) -> Option<u64> {
    let mut ident = [0u8; 64];
    let n = file.read_at(0, &mut ident)?;
    let header = ident.get(..n)?;
    if header.get(..4)? != b"\x7fELF" {
        return None;
    }
    let layout = Layout::of(*header.get(4)?, *header.get(5)?)?;
    let phoff = layout.word(header, layout.e_phoff)?;
    let phentsize = u64::from(layout.half(header, layout.e_phentsize)?);
    let phnum = layout.half(header, layout.e_phnum)?;
    if phentsize < layout.phdr_size {
        return None;
    }
    let mut need = phoff.checked_add(phentsize.checked_mul(u64::from(phnum))?)?;
    let mut phdr = [0u8; 56];
    let phdr = phdr.get_mut(..usize::try_from(layout.phdr_size).ok()?)?;
    for i in 0..u64::from(phnum) {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if file.read_at(at, phdr)? != phdr.len() {
            // The program headers themselves are cut off.
            return Some(need);
        }
        if layout.u32(phdr, 0)? == PT_LOAD {
            let offset = layout.word(phdr, layout.p_offset)?;
            let filesz = layout.word(phdr, layout.p_filesz)?;
            need = need.max(offset.checked_add(filesz)?);
        }
    }
    Some(need)
}

const PT_LOAD: u32 = 1;

/// Field offsets of one ELF class and byte order.
struct Layout {
    wide: bool,
    big_endian: bool,
    e_phoff: usize,
    e_phentsize: usize,
    e_phnum: usize,
    phdr_size: u64,
    p_offset: usize,
    p_filesz: usize,
}

impl Layout {
    fn of(class: u8, data: u8) -> Option<Layout> {
        let big_endian = match data {
            1 => false,
            2 => true,
            _ => return None,
        };
        match class {
            1 => Some(Layout {
                wide: false,
                big_endian,
                e_phoff: 28,
                e_phentsize: 42,
                e_phnum: 44,
                phdr_size: 32,
                p_offset: 4,
                p_filesz: 16,
            }),
            2 => Some(Layout {
                wide: true,
                big_endian,
                e_phoff: 32,
                e_phentsize: 54,
                e_phnum: 56,
                phdr_size: 56,
                p_offset: 8,
                p_filesz: 32,
            }),
            _ => None,
        }
    }

    fn bytes<const N: usize>(&self, b: &[u8], at: usize) -> Option<[u8; N]> {
        b.get(at..at.checked_add(N)?)?.try_into().ok()
    }

    fn half(&self, b: &[u8], at: usize) -> Option<u16> {
        let v = self.bytes::<2>(b, at)?;
        Some(if self.big_endian {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        })
    }

    fn u32(&self, b: &[u8], at: usize) -> Option<u32> {
        let v = self.bytes::<4>(b, at)?;
        Some(if self.big_endian {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        })
    }

    /// An address-sized field (Elf32_Off / Elf64_Off, p_filesz).
    fn word(&self, b: &[u8], at: usize) -> Option<u64> {
        if !self.wide {
            return self.u32(b, at).map(u64::from);
        }
        let v = self.bytes::<8>(b, at)?;
        Some(if self.big_endian {
            u64::from_be_bytes(v)
        } else {
            u64::from_le_bytes(v)
        })
    }
}
