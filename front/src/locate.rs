//! The locate decision: "not mine" for realms that are not krb5-wss's,
//! the core's answer for those that are, and an error (never "not mine")
//! when the core cannot give one.

use core::ffi::CStr;
use core::fmt::{self, Write};

use krb5_wss_owner::{ownership, Ownership};

use crate::loader::CAUSE_CAP;
use crate::msg::{Bytes, Msg};
use crate::sys::{self, Context, ErrorCode, LookupCall, KDC_UNREACH, NO_HANDLE, OP_NOTSUPP};

/// Room for "krb5-wss: realm REALM: CAUSE".
const MESSAGE_CAP: usize = CAUSE_CAP + 512;

pub fn lookup(ctx: Context, realm: &CStr, call: &LookupCall) -> ErrorCode {
    // The profile is released before anything else happens.
    let own = match ctx.profile() {
        Some(profile) => ownership(&profile, realm),
        None => Ownership::NotOurs,
    };
    if own == Ownership::NotOurs {
        return NO_HANDLE;
    }
    // Ours (a wss URL in krb5.conf) or opted in to wss DNS discovery: from
    // here on only the core may decide, and without it the lookup fails.
    let Some(loaded) = sys::loaded() else {
        return fail(ctx, realm, format_args!("{}", Cause(None)));
    };
    match loaded.core() {
        Err(cause) => fail(ctx, realm, format_args!("{}", Cause(Some(cause)))),
        Ok(core) => match core.lookup(ctx, realm, call) {
            Ok(code) => code,
            Err(code) => fail(
                ctx,
                realm,
                format_args!(
                    "the core {} failed to initialise (its locate init returned {code})",
                    loaded.path()
                ),
            ),
        },
    }
}

fn fail(ctx: Context, realm: &CStr, cause: fmt::Arguments<'_>) -> ErrorCode {
    let mut m: Msg<MESSAGE_CAP> = Msg::new();
    let _ = write!(m, "krb5-wss: realm {}: {}", Bytes(realm.to_bytes()), cause);
    ctx.set_error(KDC_UNREACH, m.as_cstr());
    KDC_UNREACH
}

/// krb5_wss_install_hooks without a core: KRB5_PLUGIN_OP_NOTSUPP, with a
/// message naming the cause.
pub fn no_core(ctx: Context, cause: Option<&Msg<CAUSE_CAP>>) -> ErrorCode {
    let mut m: Msg<MESSAGE_CAP> = Msg::new();
    let _ = write!(m, "krb5-wss: {}", Cause(cause));
    ctx.set_error(OP_NOTSUPP, m.as_cstr());
    OP_NOTSUPP
}

/// Why there is no core, never empty.
struct Cause<'a>(Option<&'a Msg<CAUSE_CAP>>);

impl fmt::Display for Cause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(cause) if !cause.as_bytes().is_empty() => cause.fmt(f),
            _ => f.write_str("the core could not be loaded (pthread_once failed)"),
        }
    }
}
