//! Build script for the plugin.
//!
//! - bindgen: Rust declarations for the installed MIT krb5 headers (the
//!   locate-plugin ABI, the context/profile calls the plugin makes), found
//!   through `pkg-config krb5`, written to `$OUT_DIR/krb5_sys.rs`.
//! - cbindgen: the C header for the functions this library exports, written
//!   to `include/krb5_wss.h` (checked in; rewritten only when it changes, and
//!   a test fails when the checked-in copy is stale).
//! - link flags: libkrb5 from pkg-config, and `-z nodelete` so the plugin is
//!   never unmapped while one of its threads may still run.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn pkg_config(args: &[&str]) -> String {
    match Command::new("pkg-config").args(args).arg("krb5").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => panic!(
            "pkg-config {args:?} krb5 failed: {} (install libkrb5-dev)",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("cannot run pkg-config: {e} (install pkg-config and libkrb5-dev)"),
    }
}

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/sys.h");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=src/ffi.rs");

    // Link against libkrb5 as pkg-config describes it.
    for flag in pkg_config(&["--libs"]).split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
    }
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // Installed as <plugindir>/krb5-wss/krb5_wss_core.so and loaded by the
    // C front module (front/krb5_wss.c), never linked against directly.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,krb5_wss_core.so");
    // res_nquery & co. (in libc itself since glibc 2.34; libresolv before).
    println!("cargo:rustc-link-lib=dylib=resolv");

    // bindgen against the installed headers.
    let mut builder = bindgen::Builder::default()
        .header(manifest.join("src/sys.h").to_string_lossy())
        .allowlist_type("krb5plugin_service_locate_ftable")
        .allowlist_type("locate_service_type")
        .allowlist_function("krb5_get_profile")
        .allowlist_function("krb5_set_error_message")
        .allowlist_function("krb5_get_error_message")
        .allowlist_function("krb5_free_error_message")
        .allowlist_function("krb5_init_context")
        .allowlist_function("krb5_free_context")
        .allowlist_function("krb5_copy_data")
        .allowlist_function("krb5_set_kdc_send_hook")
        .allowlist_function("krb5_set_kdc_recv_hook")
        .allowlist_type("krb5_data")
        .allowlist_function("profile_get_values")
        .allowlist_function("profile_free_list")
        .allowlist_function("profile_release")
        // The system resolver, for DNS discovery (as libkrb5 itself uses it).
        .allowlist_type("__res_state")
        .allowlist_function("__res_ninit")
        .allowlist_function("__res_nclose")
        .allowlist_function("res_nquery")
        .allowlist_function("__res_nquery")
        .allowlist_var("KRB5_PLUGIN_NO_HANDLE")
        .allowlist_var("KRB5_KDC_UNREACH")
        .allowlist_var("KRB5_CONFIG_BADFORMAT")
        .allowlist_var("KRB5_REALM_CANT_RESOLVE")
        .allowlist_var("KRB5_PLUGIN_OP_NOTSUPP")
        // struct sockaddr comes from libc, not from a second binding.
        .blocklist_type("sockaddr")
        .raw_line("use libc::sockaddr;")
        // C may pass any int: a Rust enum would be UB for unknown values.
        .newtype_enum("locate_service_type")
        .layout_tests(false)
        .generate_comments(false);
    let cflags = pkg_config(&["--cflags"]);
    builder = builder.clang_args(cflags.split_whitespace());
    let bindings = builder.generate().unwrap_or_else(|e| {
        panic!("bindgen failed on src/sys.h: {e} (install libclang-dev and libkrb5-dev)")
    });
    bindings
        .write_to_file(out.join("krb5_sys.rs"))
        .unwrap_or_else(|e| panic!("cannot write bindings: {e}"));

    write_c_header(&manifest);
}

/// Runs cbindgen and rewrites include/krb5_wss.h only if it changed.
fn write_c_header(manifest: &Path) {
    let config = cbindgen::Config::from_file(manifest.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("cbindgen.toml: {e}"));
    let mut buf = Vec::new();
    match cbindgen::Builder::new()
        .with_crate(manifest)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            bindings.write(&mut buf);
        }
        Err(e) => {
            // A half-edited tree must not break the build of the library
            // itself; the staleness test reports the header instead.
            println!("cargo:warning=cbindgen could not generate the header: {e}");
            return;
        }
    }
    let path = manifest.join("include/krb5_wss.h");
    if fs::read(&path).ok().as_deref() != Some(&buf[..]) {
        if let Err(e) = fs::write(&path, &buf) {
            println!("cargo:warning=cannot write {}: {e}", path.display());
        }
    }
}
