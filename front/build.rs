//! Link settings of the front module: soname krb5_wss.so, never unloaded
//! (`-z nodelete`), and `--no-undefined`, so that every symbol must resolve
//! against libkrb5 and libc at link time. The panic handler (src/lib.rs)
//! calls a symbol that exists nowhere: a panic path the optimiser keeps is
//! a link error, not a latent abort in someone's sshd.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    // libkrb5's directory, as pkg-config reports it (-L...), if it has one.
    if let Ok(out) = Command::new("pkg-config")
        .args(["--libs-only-L", "krb5"])
        .output()
    {
        if out.status.success() {
            for flag in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Some(dir) = flag.strip_prefix("-L") {
                    println!("cargo:rustc-link-search=native={dir}");
                }
            }
        }
    }
    println!("cargo:rustc-link-lib=dylib=krb5");
    println!("cargo:rustc-link-lib=dylib=c");
    for arg in [
        "-Wl,-soname,krb5_wss.so",
        "-Wl,-z,nodelete",
        "-Wl,--no-undefined",
    ] {
        println!("cargo:rustc-cdylib-link-arg={arg}");
    }
}
