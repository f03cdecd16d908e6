//! Messages and paths built in fixed buffers, without allocation.

use core::ffi::CStr;
use core::fmt;

/// Text of at most `N - 1` bytes plus a terminating NUL; longer text is
/// cut (never an error). NUL bytes written into it become `?`, so it is
/// always one valid C string.
pub struct Msg<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> Msg<N> {
    pub const fn new() -> Self {
        Msg {
            buf: [0; N],
            len: 0,
            truncated: false,
        }
    }

    /// Appends raw bytes (a C string's contents need not be UTF-8).
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            // Room for b and the terminating NUL.
            if self.len.saturating_add(1) >= N {
                self.truncated = true;
                return;
            }
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = if b == 0 { b'?' } else { b };
                self.len += 1;
            }
        }
    }

    /// False when something did not fit.
    pub fn complete(&self) -> bool {
        !self.truncated
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// The text as a C string (the byte after the text is always NUL).
    pub fn as_cstr(&self) -> &CStr {
        let with_nul = self.buf.get(..self.len.saturating_add(1)).unwrap_or(&[]);
        CStr::from_bytes_until_nul(with_nul).unwrap_or(c"krb5-wss: (message lost)")
    }
}

impl<const N: usize> fmt::Write for Msg<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

impl<const N: usize> fmt::Display for Msg<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Bytes(self.as_bytes()).fmt(f)
    }
}

/// Displays bytes from C (realm names, paths, loader messages): valid UTF-8
/// as is, anything else as U+FFFD.
pub struct Bytes<'a>(pub &'a [u8]);

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{fffd}")?;
            }
        }
        Ok(())
    }
}
