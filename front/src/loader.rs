//! Finding and loading the core, `krb5-wss/krb5_wss_core.so` next to this
//! module, once per process (`sys::core` runs [`load`] under pthread_once).

use core::fmt::Write;

use crate::elf::bytes_needed;
use crate::msg::{Bytes, Msg};
use crate::sys::{self, Core, File, Library};

/// Room for a path (PATH_MAX) and for a cause naming one plus the loader's
/// message.
pub const PATH_CAP: usize = 4096;
pub const CAUSE_CAP: usize = PATH_CAP + 1024;

/// The core's place, relative to the directory of this module.
const CORE_RELATIVE: &str = "krb5-wss/krb5_wss_core.so";

/// What the first use of the core found. Built in place in a static (its
/// buffers are large: moving them around would cost code and stack).
pub struct Loaded {
    core: Option<Core>,
    /// The core's path, once known.
    path: Msg<PATH_CAP>,
    /// Why the core cannot be used, naming its path and the loader's error.
    cause: Msg<CAUSE_CAP>,
}

impl Loaded {
    pub const fn new() -> Self {
        Loaded {
            core: None,
            path: Msg::new(),
            cause: Msg::new(),
        }
    }

    /// The core, or why there is none.
    pub fn core(&self) -> Result<&Core, &Msg<CAUSE_CAP>> {
        self.core.as_ref().ok_or(&self.cause)
    }

    pub fn path(&self) -> &Msg<PATH_CAP> {
        &self.path
    }
}

/// Symbols a core must export (with the types of include/krb5_wss.h and
/// <krb5/locate_plugin.h>).
pub struct Symbols {
    pub service_locator: sys::Symbol,
    pub send_hook: sys::Symbol,
    pub recv_hook: sys::Symbol,
    pub install_hooks: sys::Symbol,
    pub version: sys::Symbol,
}

/// Loads the core into `out` (a fresh [`Loaded`]), or says why not.
pub fn load(out: &mut Loaded) {
    if out.cause.as_bytes().is_empty() && out.core.is_none() {
        out.core = try_load(&mut out.path, &mut out.cause);
    }
}

fn try_load(path: &mut Msg<PATH_CAP>, cause: &mut Msg<CAUSE_CAP>) -> Option<Core> {
    let Some(me) = sys::own_path() else {
        let _ = write!(
            cause,
            "cannot find where krb5_wss.so was loaded from (dladdr)"
        );
        return None;
    };
    let me = me.to_bytes();
    // Only an absolute path: a relative one would be resolved against the
    // current directory, which in a setuid program is the caller's.
    let dir = match me.iter().rposition(|&b| b == b'/') {
        Some(slash) if me.first() == Some(&b'/') => me.get(..slash).unwrap_or(&[]),
        _ => {
            let _ = write!(
                cause,
                "krb5_wss.so was loaded as \"{}\", not by an absolute path: not loading the core relative to it",
                Bytes(me)
            );
            return None;
        }
    };
    path.push(dir);
    path.push(b"/");
    path.push(CORE_RELATIVE.as_bytes());
    if !path.complete() {
        let _ = write!(cause, "the core's path is too long: {}...", path);
        return None;
    }
    if let Some(file) = File::open(path.as_cstr()) {
        if let (Some(size), Some(need)) = (file.size(), bytes_needed(&file)) {
            if need > size {
                let _ = write!(
                    cause,
                    "the core {path} is truncated ({size} bytes; its segments end at byte {need}): \
                     not loading it, the dynamic loader would crash the process"
                );
                return None;
            }
        }
    }
    // A file that cannot be opened, or is not ELF: dlopen says why.
    let lib = match Library::open(path.as_cstr()) {
        Ok(lib) => lib,
        Err(()) => {
            let _ = write!(cause, "cannot load the core {}: ", path);
            sys::append_dlerror(cause);
            return None;
        }
    };
    let mut sym = |name: &core::ffi::CStr| match lib.symbol(name) {
        Ok(s) => Some(s),
        Err(()) => {
            let _ = write!(cause, "{} is not a krb5-wss core: ", path);
            sys::append_dlerror(cause);
            None
        }
    };
    let symbols = Symbols {
        service_locator: sym(c"service_locator")?,
        send_hook: sym(c"krb5_wss_send_hook")?,
        recv_hook: sym(c"krb5_wss_recv_hook")?,
        install_hooks: sym(c"krb5_wss_install_hooks")?,
        version: sym(c"krb5_wss_version")?,
    };
    match Core::new(&symbols) {
        Some(core) => Some(core),
        None => {
            let _ = write!(
                cause,
                "{} is not a krb5-wss core: its service_locator table is incomplete",
                path
            );
            None
        }
    }
}
