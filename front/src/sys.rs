//! The C boundary: every C declaration, every exported symbol and every
//! `unsafe` block of the front module. Declarations are written by hand
//! from <krb5/krb5.h>, <krb5/locate_plugin.h>, <profile.h>, <dlfcn.h> and
//! <pthread.h> (glibc, Linux); the exported functions have the signatures
//! of include/krb5_wss.h, which the core's build generates.

#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr::{self, NonNull};

use krb5_wss_owner::ProfileView;

use crate::elf::ReadAt;
use crate::loader::{self, Loaded, Symbols, CAUSE_CAP, PATH_CAP};
use crate::msg::Msg;

/// `krb5_error_code`.
pub type ErrorCode = i32;
/// KRB5_PLUGIN_NO_HANDLE: "not mine", libkrb5 carries on.
pub const NO_HANDLE: ErrorCode = -1765328135;
/// KRB5_KDC_UNREACH: "Cannot contact any KDC for realm".
pub const KDC_UNREACH: ErrorCode = -1765328228;
/// KRB5_PLUGIN_OP_NOTSUPP.
pub const OP_NOTSUPP: ErrorCode = -1765328134;
const EINVAL: ErrorCode = 22;

const O_RDONLY: c_int = 0;
const O_CLOEXEC: c_int = 0o2_000_000; // Linux (x86, ARM, RISC-V, ...)
const SEEK_END: c_int = 2;

const RTLD_NOW: c_int = 0x2;
const RTLD_LOCAL: c_int = 0;
const RTLD_NODELETE: c_int = 0x1000;

/// `int (*cbfunc)(void *, int, struct sockaddr *)`.
pub type Callback = unsafe extern "C" fn(*mut c_void, c_int, *mut c_void) -> c_int;
type InitFn = unsafe extern "C" fn(*mut c_void, *mut *mut c_void) -> ErrorCode;
type FiniFn = unsafe extern "C" fn(*mut c_void);
type LookupFn = unsafe extern "C" fn(
    *mut c_void,
    c_int,
    *const c_char,
    c_int,
    c_int,
    Option<Callback>,
    *mut c_void,
) -> ErrorCode;
// krb5_data and krb5_context are only passed through: plain pointers.
type SendFn = unsafe extern "C" fn(
    *mut c_void,
    *mut c_void,
    *const c_void,
    *const c_void,
    *mut *mut c_void,
    *mut *mut c_void,
) -> ErrorCode;
type RecvFn = unsafe extern "C" fn(
    *mut c_void,
    *mut c_void,
    ErrorCode,
    *const c_void,
    *const c_void,
    *const c_void,
    *mut *mut c_void,
) -> ErrorCode;
type InstallFn = unsafe extern "C" fn(*mut c_void) -> ErrorCode;
type VersionFn = unsafe extern "C" fn() -> *const c_char;

/// `krb5plugin_service_locate_ftable`.
#[repr(C)]
pub struct Ftable {
    minor_version: c_int,
    init: Option<InitFn>,
    fini: Option<FiniFn>,
    lookup: Option<LookupFn>,
}

/// glibc's `Dl_info`.
#[repr(C)]
struct DlInfo {
    dli_fname: *const c_char,
    dli_fbase: *mut c_void,
    dli_sname: *const c_char,
    dli_saddr: *mut c_void,
}

mod c {
    use super::*;

    extern "C" {
        pub fn krb5_get_profile(ctx: *mut c_void, profile: *mut *mut c_void) -> ErrorCode;
        pub fn profile_get_values(
            profile: *mut c_void,
            names: *const *const c_char,
            values: *mut *mut *mut c_char,
        ) -> ErrorCode;
        pub fn profile_free_list(list: *mut *mut c_char);
        pub fn profile_release(profile: *mut c_void);
        pub fn krb5_set_error_message(ctx: *mut c_void, code: ErrorCode, fmt: *const c_char, ...);
        pub fn dladdr(addr: *const c_void, info: *mut DlInfo) -> c_int;
        pub fn dlopen(path: *const c_char, flags: c_int) -> *mut c_void;
        pub fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void;
        pub fn dlerror() -> *const c_char;
        pub fn pthread_once(once: *mut c_int, init: extern "C" fn()) -> c_int;
        pub fn open(path: *const c_char, flags: c_int, ...) -> c_int;
        pub fn lseek(fd: c_int, offset: i64, whence: c_int) -> i64;
        pub fn pread(fd: c_int, buf: *mut c_void, count: usize, offset: i64) -> isize;
        pub fn close(fd: c_int) -> c_int;
        #[cfg(debug_assertions)]
        pub fn abort() -> !;
        /// Defined nowhere, on purpose: see [`super::panic_path_survived_optimisation`].
        #[cfg(not(debug_assertions))]
        pub fn krb5_wss_front_has_a_panic_path_see_front_src_lib_rs() -> !;
    }
}

/// Called by the release panic handler. The symbol does not exist, so the
/// link (`--no-undefined`) fails unless the optimiser removed every path
/// to a panic.
#[cfg(not(debug_assertions))]
pub fn panic_path_survived_optimisation() -> ! {
    // SAFETY: never runs: a build where this call remains does not link.
    unsafe { c::krb5_wss_front_has_a_panic_path_see_front_src_lib_rs() }
}

/// The debug builds' panic handler.
#[cfg(debug_assertions)]
pub fn abort() -> ! {
    // SAFETY: abort() takes no arguments and does not return.
    unsafe { c::abort() }
}

// ---------------------------------------------------------------------------
// libkrb5: contexts, profiles, error messages

/// A krb5_context libkrb5 handed to this module (non-null).
#[derive(Clone, Copy)]
pub struct Context(NonNull<c_void>);

impl Context {
    /// The context's profile (a copy, released on drop).
    pub fn profile(self) -> Option<Profile> {
        let mut p: *mut c_void = ptr::null_mut();
        // SAFETY: the context is live for the call libkrb5 made to us; p is
        // a valid out-pointer.
        let ret = unsafe { c::krb5_get_profile(self.0.as_ptr(), &mut p) };
        if ret != 0 {
            return None;
        }
        NonNull::new(p).map(Profile)
    }

    /// Sets the context's extended error message for `code`.
    pub fn set_error(self, code: ErrorCode, msg: &CStr) {
        // SAFETY: live context; the format is a literal "%s" and msg a
        // NUL-terminated string, both valid for the call (libkrb5 copies).
        unsafe { c::krb5_set_error_message(self.0.as_ptr(), code, c"%s".as_ptr(), msg.as_ptr()) };
    }
}

/// A profile handle from krb5_get_profile.
pub struct Profile(NonNull<c_void>);

impl Drop for Profile {
    fn drop(&mut self) {
        // SAFETY: the handle came from krb5_get_profile and is released once.
        unsafe { c::profile_release(self.0.as_ptr()) };
    }
}

impl ProfileView for Profile {
    fn for_each_value(
        &self,
        section: &CStr,
        name1: &CStr,
        name2: Option<&CStr>,
        f: &mut dyn FnMut(&[u8]),
    ) -> usize {
        let names: [*const c_char; 4] = [
            section.as_ptr(),
            name1.as_ptr(),
            name2.map_or(ptr::null(), CStr::as_ptr),
            ptr::null(),
        ];
        let mut values: *mut *mut c_char = ptr::null_mut();
        // SAFETY: a live profile; names is a NULL-terminated array of C
        // strings that outlive the call; values is a valid out-pointer.
        let ret = unsafe { c::profile_get_values(self.0.as_ptr(), names.as_ptr(), &mut values) };
        if ret != 0 || values.is_null() {
            return 0;
        }
        let mut n = 0;
        loop {
            // SAFETY: values is a NULL-terminated array from
            // profile_get_values; n never passes its terminator.
            let v = unsafe { *values.add(n) };
            if v.is_null() {
                break;
            }
            // SAFETY: each entry is a NUL-terminated string owned by the
            // list, alive until profile_free_list below.
            f(unsafe { CStr::from_ptr(v) }.to_bytes());
            n += 1;
        }
        // SAFETY: the list came from profile_get_values and is freed once.
        unsafe { c::profile_free_list(values) };
        n
    }
}

// ---------------------------------------------------------------------------
// The dynamic loader

/// Where the dynamic loader found this module (from dladdr on
/// `service_locator`); the string lives as long as the module (never
/// unloaded: `-z nodelete`).
pub fn own_path() -> Option<&'static CStr> {
    let mut info = DlInfo {
        dli_fname: ptr::null(),
        dli_fbase: ptr::null_mut(),
        dli_sname: ptr::null(),
        dli_saddr: ptr::null_mut(),
    };
    // SAFETY: the address is one of this module's symbols; info is a valid
    // out-pointer.
    let ok = unsafe { c::dladdr(ptr::addr_of!(service_locator).cast(), &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is the loader's NUL-terminated name of this
    // module, kept while the module is mapped, which is for ever.
    Some(unsafe { CStr::from_ptr(info.dli_fname) })
}

/// Appends dlerror()'s message (or "unknown error") to `m`.
pub fn append_dlerror<const N: usize>(m: &mut Msg<N>) {
    // SAFETY: dlerror takes no arguments; its result is NULL or a
    // NUL-terminated string valid until the next dl call on this thread,
    // and it is copied before any.
    let e = unsafe { c::dlerror() };
    if e.is_null() {
        m.push(b"unknown error");
    } else {
        // SAFETY: as above.
        m.push(unsafe { CStr::from_ptr(e) }.to_bytes());
    }
}

/// A file open for reading (closed on drop).
pub struct File(c_int);

impl File {
    pub fn open(path: &CStr) -> Option<File> {
        // SAFETY: path is a NUL-terminated string; the flags are valid and
        // need no mode argument.
        let fd = unsafe { c::open(path.as_ptr(), O_RDONLY | O_CLOEXEC) };
        (fd >= 0).then_some(File(fd))
    }

    /// The file's size (lseek to its end).
    pub fn size(&self) -> Option<u64> {
        // SAFETY: an open descriptor of ours; reading is done with pread,
        // so the file offset does not matter.
        let end = unsafe { c::lseek(self.0, 0, SEEK_END) };
        u64::try_from(end).ok()
    }
}

impl ReadAt for File {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Option<usize> {
        let offset = i64::try_from(offset).ok()?;
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let n = unsafe { c::pread(self.0, buf.as_mut_ptr().cast(), buf.len(), offset) };
        usize::try_from(n).ok()
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // SAFETY: our descriptor, closed once.
        unsafe { c::close(self.0) };
    }
}

/// A library loaded with RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE.
pub struct Library(NonNull<c_void>);

/// A non-null address from dlsym.
pub struct Symbol(NonNull<c_void>);

impl Library {
    /// dlopen; `Err` leaves the reason in dlerror().
    pub fn open(path: &CStr) -> Result<Library, ()> {
        // SAFETY: path is a NUL-terminated string; the flags are valid.
        let h = unsafe { c::dlopen(path.as_ptr(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) };
        NonNull::new(h).map(Library).ok_or(())
    }

    /// dlsym; `Err` (absent or NULL) leaves the reason in dlerror().
    pub fn symbol(&self, name: &CStr) -> Result<Symbol, ()> {
        // SAFETY: clear any stale error first, so the one read after a
        // failure is dlsym's.
        let _ = unsafe { c::dlerror() };
        // SAFETY: a handle from dlopen (never closed); name is a C string.
        let s = unsafe { c::dlsym(self.0.as_ptr(), name.as_ptr()) };
        NonNull::new(s).map(Symbol).ok_or(())
    }
}

// ---------------------------------------------------------------------------
// The core

/// The loaded core's entry points.
pub struct Core {
    init: InitFn,
    fini: FiniFn,
    lookup: LookupFn,
    send: SendFn,
    recv: RecvFn,
    install: InstallFn,
    version: VersionFn,
}

/// The arguments of one lookup that are passed through to the core.
pub struct LookupCall {
    svc: c_int,
    socktype: c_int,
    family: c_int,
    cbfunc: Option<Callback>,
    cbdata: *mut c_void,
}

impl Core {
    /// The core from its symbols; None when its locate table lacks a
    /// function or has another minor version.
    pub fn new(s: &Symbols) -> Option<Core> {
        // SAFETY: a krb5-wss core's `service_locator` is a
        // krb5plugin_service_locate_ftable (the same ABI this module
        // exports), in a library that is never unloaded.
        let table: &'static Ftable = unsafe { s.service_locator.0.cast::<Ftable>().as_ref() };
        let (Some(init), Some(fini), Some(lookup), 0) =
            (table.init, table.fini, table.lookup, table.minor_version)
        else {
            return None;
        };
        // SAFETY (all four): the core exports these functions with the
        // signatures of include/krb5_wss.h; the addresses come from dlsym on
        // a never-unloaded library, so they stay valid.
        let (send, recv, install, version) = unsafe {
            (
                core::mem::transmute::<*mut c_void, SendFn>(s.send_hook.0.as_ptr()),
                core::mem::transmute::<*mut c_void, RecvFn>(s.recv_hook.0.as_ptr()),
                core::mem::transmute::<*mut c_void, InstallFn>(s.install_hooks.0.as_ptr()),
                core::mem::transmute::<*mut c_void, VersionFn>(s.version.0.as_ptr()),
            )
        };
        Some(Core {
            init,
            fini,
            lookup,
            send,
            recv,
            install,
            version,
        })
    }

    /// init, lookup, fini on the core: `Ok` with lookup's result, `Err`
    /// with init's when init fails.
    pub fn lookup(
        &self,
        ctx: Context,
        realm: &CStr,
        call: &LookupCall,
    ) -> Result<ErrorCode, ErrorCode> {
        let mut blob: *mut c_void = ptr::null_mut();
        // SAFETY: the core's init, with libkrb5's live context and a valid
        // out-pointer, as libkrb5 itself would call it.
        let ret = unsafe { (self.init)(ctx.0.as_ptr(), &mut blob) };
        if ret != 0 {
            return Err(ret);
        }
        // SAFETY: the blob init made, and libkrb5's own arguments for this
        // lookup (the realm and the callback pair stay valid for the call).
        let ret = unsafe {
            (self.lookup)(
                blob,
                call.svc,
                realm.as_ptr(),
                call.socktype,
                call.family,
                call.cbfunc,
                call.cbdata,
            )
        };
        // SAFETY: fini once for the successful init above.
        unsafe { (self.fini)(blob) };
        Ok(ret)
    }
}

/// The core, loaded on first use (pthread_once) and kept for the process.
struct CoreCell {
    once: UnsafeCell<c_int>,
    value: UnsafeCell<Loaded>,
}

// SAFETY: `once` is only touched by pthread_once; `value` is written only
// inside the pthread_once routine, and read only after pthread_once has
// returned (which orders that write before every read).
unsafe impl Sync for CoreCell {}

static CORE: CoreCell = CoreCell {
    once: UnsafeCell::new(0), // PTHREAD_ONCE_INIT
    value: UnsafeCell::new(Loaded::new()),
};

extern "C" fn load_core_once() {
    // SAFETY: runs once, under pthread_once, before any read of the value;
    // no other reference to it exists yet.
    loader::load(unsafe { &mut *CORE.value.get() });
}

/// What loading the core (on the first call) found: the core or why it
/// cannot be used. None only if pthread_once fails (it cannot on Linux).
pub fn loaded() -> Option<&'static Loaded> {
    // SAFETY: a static pthread_once_t, initialised to PTHREAD_ONCE_INIT.
    let rc = unsafe { c::pthread_once(CORE.once.get(), load_core_once) };
    if rc != 0 {
        return None;
    }
    // SAFETY: pthread_once returned 0, so load_core_once has completed; the
    // value is never written again.
    Some(unsafe { &*CORE.value.get() })
}

/// The core, if it could be loaded.
fn core() -> Option<&'static Core> {
    loaded().and_then(|l| l.core().ok())
}

// ---------------------------------------------------------------------------
// Exports: the locate table and the functions of include/krb5_wss.h

/// The module table libkrb5 looks up in every plugin it loads.
#[no_mangle]
pub static service_locator: Ftable = Ftable {
    minor_version: 0,
    init: Some(front_init),
    fini: Some(front_fini),
    lookup: Some(front_lookup),
};

unsafe extern "C" fn front_init(ctx: *mut c_void, blob: *mut *mut c_void) -> ErrorCode {
    if blob.is_null() {
        return EINVAL;
    }
    // SAFETY: blob is libkrb5's non-null `void *` slot; the per-lookup
    // state is just the context.
    unsafe { *blob = ctx };
    0
}

unsafe extern "C" fn front_fini(_blob: *mut c_void) {}

unsafe extern "C" fn front_lookup(
    blob: *mut c_void,
    svc: c_int,
    realm: *const c_char,
    socktype: c_int,
    family: c_int,
    cbfunc: Option<Callback>,
    cbdata: *mut c_void,
) -> ErrorCode {
    let Some(ctx) = NonNull::new(blob) else {
        return NO_HANDLE;
    };
    if realm.is_null() {
        return NO_HANDLE;
    }
    // SAFETY: libkrb5 passes a NUL-terminated realm name valid for the call.
    let realm = unsafe { CStr::from_ptr(realm) };
    let call = LookupCall {
        svc,
        socktype,
        family,
        cbfunc,
        cbdata,
    };
    crate::locate::lookup(Context(ctx), realm, &call)
}

/// `krb5_wss_version`: the core's version string.
#[no_mangle]
pub extern "C" fn krb5_wss_version() -> *const c_char {
    match core() {
        // SAFETY: the core's krb5_wss_version takes nothing and returns a
        // static string.
        Some(c) => unsafe { (c.version)() },
        None => c"unknown (krb5-wss core not loaded)".as_ptr(),
    }
}

/// `krb5_wss_send_hook`: the core's; without a core, pass-through (0).
///
/// # Safety
/// As include/krb5_wss.h says: called as libkrb5 calls a pre-send hook.
#[no_mangle]
pub unsafe extern "C" fn krb5_wss_send_hook(
    context: *mut c_void,
    data: *mut c_void,
    realm: *const c_void,
    message: *const c_void,
    new_message_out: *mut *mut c_void,
    new_reply_out: *mut *mut c_void,
) -> ErrorCode {
    match core() {
        // SAFETY: the caller's arguments, passed unchanged to the function
        // of the same signature.
        Some(c) => unsafe {
            (c.send)(
                context,
                data,
                realm,
                message,
                new_message_out,
                new_reply_out,
            )
        },
        None => 0,
    }
}

/// `krb5_wss_recv_hook`: the core's; without a core, `code` unchanged.
///
/// # Safety
/// As include/krb5_wss.h says: called as libkrb5 calls a post-receive hook.
#[no_mangle]
pub unsafe extern "C" fn krb5_wss_recv_hook(
    context: *mut c_void,
    data: *mut c_void,
    code: ErrorCode,
    realm: *const c_void,
    message: *const c_void,
    reply: *const c_void,
    new_reply_out: *mut *mut c_void,
) -> ErrorCode {
    match core() {
        // SAFETY: as for the send hook.
        Some(c) => unsafe { (c.recv)(context, data, code, realm, message, reply, new_reply_out) },
        None => code,
    }
}

/// `krb5_wss_install_hooks`: the core's; without a core, an error
/// (KRB5_PLUGIN_OP_NOTSUPP) whose message names the cause.
///
/// # Safety
/// `context` must be a live krb5 context owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn krb5_wss_install_hooks(context: *mut c_void) -> ErrorCode {
    let Some(ctx) = NonNull::new(context) else {
        return EINVAL;
    };
    match loaded().map(Loaded::core) {
        // SAFETY: the caller's live context, passed on unchanged.
        Some(Ok(c)) => unsafe { (c.install)(context) },
        Some(Err(cause)) => crate::locate::no_core(Context(ctx), Some(cause)),
        None => crate::locate::no_core(Context(ctx), None),
    }
}

const _: () = assert!(CAUSE_CAP > PATH_CAP);
