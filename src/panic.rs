//! Panics never reach the host program.
//!
//! Every `extern "C"` entry point (`ffi`) and every thread body the plugin
//! starts runs inside [`guard`], which turns a panic into an error value.
//! The library's panic hook ([`install_hook`]; our statically linked std
//! has its own, so the host's is untouched) keeps the message off the
//! host's stderr and hands it to [`guard`], which logs it once through the
//! plugin's logger (`KRB5_WSS_LOG`, `KRB5_TRACE`).

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the library's panic hook (once per process).
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let msg = match info.payload().downcast_ref::<&str>() {
                Some(s) => (*s).to_string(),
                None => info
                    .payload()
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "unknown cause".into()),
            };
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let _ = LAST.try_with(|l| {
                if let Ok(mut l) = l.try_borrow_mut() {
                    *l = Some(format!("{msg}{at}"));
                }
            });
        }));
    });
}

/// Runs `f`; a panic becomes `Err` with its message ("internal error in
/// WHAT: ..."), logged once.
pub fn guard<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Ok(v),
        Err(_) => {
            let cause = LAST
                .try_with(|l| l.try_borrow_mut().ok().and_then(|mut l| l.take()))
                .ok()
                .flatten()
                .unwrap_or_else(|| "a panic".into());
            let msg = format!("krb5-wss: internal error in {what}: {cause}");
            log::error!("{msg}");
            Err(msg)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;

    #[test]
    fn panic_becomes_an_error_with_its_message() {
        install_hook();
        let r: Result<(), String> = guard("a test", || panic!("boom {}", 7));
        let msg = r.unwrap_err();
        assert!(
            msg.contains("internal error in a test: boom 7 at src/panic.rs"),
            "{msg}"
        );
        assert_eq!(guard("ok", || 5), Ok(5));
    }
}
