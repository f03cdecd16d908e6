//! `krb5-wss-proxy convert-kdcproxy FILE`: reads a kdcproxy configuration
//! (`/etc/kdcproxy.conf`, INI as Python's configparser reads it) and
//! prints the equivalent `[realms]` of this proxy's TOML, naming on
//! standard error (and in comments) what it cannot honour.
//!
//! kdcproxy's semantics (kdcproxy 1.1): a realm's servers are its
//! section's `kerberos =` / `kpasswd =` URL lists; else, with `[global]
//! configs = mit`, the realm's `kdc` / `kpasswd_server` + `admin_server`
//! in the system krb5.conf; else, when `use_dns` holds for the realm (its
//! section, then a matching wildcard section, then `[global]`, default
//! true), DNS SRV records. Sections `[*SUFFIX]` declare `SUFFIX` and its
//! sub-realms (for DNS only). `dns_realm_discovery = true` (look up any
//! realm a client names) is refused: it is CVE-2025-59088's server-side
//! request forgery.

use crate::addr::{self, ServerAddr, KDC_PORT, KPASSWD_PORT};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest file read (kdcproxy.conf, each krb5.conf file).
const MAX_FILE: u64 = 1024 * 1024;
/// Deepest `include` nesting and most files read for krb5.conf.
const MAX_INCLUDE_DEPTH: usize = 8;
const MAX_PROFILE_FILES: usize = 256;

/// The conversion: TOML text and the notes on what was not honoured.
#[derive(Debug, Default)]
pub struct Converted {
    /// The `[realms]` sections (TOML), with the notes as comments on top.
    pub toml: String,
    /// What the conversion could not honour, one sentence each.
    pub notes: Vec<String>,
}

/// One INI section: keys (lower case) to values.
type Section = BTreeMap<String, String>;

/// Reads `text` as configparser does (strict: no duplicate sections or
/// keys), naming `file` and the line in errors.
fn parse_ini(file: &str, text: &str) -> Result<Vec<(String, Section)>, String> {
    let mut sections: Vec<(String, Section)> = Vec::new();
    let mut last_key: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            if trimmed.is_empty() {
                last_key = None;
            }
            continue;
        }
        let indented = raw.starts_with([' ', '\t']);
        if indented {
            // A continuation line of the previous value.
            if let (Some(key), Some((_, section))) = (&last_key, sections.last_mut()) {
                if let Some(v) = section.get_mut(key) {
                    v.push('\n');
                    v.push_str(trimmed);
                    continue;
                }
            }
        }
        if let Some(name) = trimmed.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| format!("{file}:{line}: section header without ']'"))?;
            if sections.iter().any(|(s, _)| s == name) {
                return Err(format!("{file}:{line}: section [{name}] appears twice"));
            }
            if name == "DEFAULT" {
                return Err(format!(
                    "{file}:{line}: [DEFAULT] (values inherited by every section) is not supported"
                ));
            }
            sections.push((name.to_string(), Section::new()));
            last_key = None;
            continue;
        }
        let Some((_, section)) = sections.last_mut() else {
            return Err(format!("{file}:{line}: a value before any [section]"));
        };
        let at = trimmed
            .find(['=', ':'])
            .ok_or_else(|| format!("{file}:{line}: expected KEY = VALUE"))?;
        let key = trimmed[..at].trim().to_ascii_lowercase();
        let value = trimmed[at + 1..].trim().to_string();
        if section.insert(key.clone(), value).is_some() {
            return Err(format!("{file}:{line}: {key} appears twice in its section"));
        }
        last_key = Some(key);
    }
    Ok(sections)
}

/// configparser's booleans.
fn boolean(file: &str, section: &str, key: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        _ => Err(format!(
            "{file}: [{section}] {key} = {v:?} is not a boolean (true/false, yes/no, on/off, 1/0)"
        )),
    }
}

/// The servers of one realm in this proxy's terms.
#[derive(Debug, Default, Clone)]
struct Servers {
    kdc: Vec<String>,
    kpasswd: Vec<String>,
    udp: bool,
    /// KDC URLs that allow UDP (`kerberos://`, `+udp`, a bare address).
    kdc_udp_allowed: usize,
    /// `kerberos+tcp://` URLs.
    kdc_tcp_only: usize,
}

/// Turns kdcproxy URLs (or krb5.conf `host[:port]` values, `mit`) into
/// `host:port` servers of `list`, noting what is not honoured.
fn add_urls(
    realm: &str,
    origin: &str,
    values: &[String],
    kpasswd: bool,
    out: &mut Servers,
    notes: &mut Vec<String>,
) {
    for url in values {
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => (
                if kpasswd { "kpasswd" } else { "kerberos" }.to_string(),
                url.as_str(),
            ),
        };
        let (service, transport) = match scheme.split_once('+') {
            Some((s, t)) => (s.to_string(), Some(t.to_string())),
            None => (scheme.clone(), None),
        };
        let port = match service.as_str() {
            "kerberos" => KDC_PORT,
            "kpasswd" => KPASSWD_PORT,
            _ => {
                notes.push(format!(
                    "realm {realm}: {origin} {url:?}: scheme {scheme}:// is not a KDC address \
                     (kdcproxy skips it too): left out"
                ));
                continue;
            }
        };
        let hostport = rest.trim_end_matches('/');
        let server = match addr::parse_server(hostport, port) {
            Ok(s) => s,
            Err(e) => {
                notes.push(format!("realm {realm}: {origin} {url:?}: {e}: left out"));
                continue;
            }
        };
        match transport.as_deref() {
            None if !kpasswd => out.kdc_udp_allowed += 1,
            Some("tcp") if !kpasswd => out.kdc_tcp_only += 1,
            None | Some("tcp") => {}
            Some("udp") if !kpasswd => {
                out.udp = true;
                out.kdc_udp_allowed += 1;
                notes.push(format!(
                    "realm {realm}: {url:?} is UDP only in kdcproxy; here the realm has udp = true \
                     (UDP first, then TCP)"
                ));
            }
            Some("udp") => notes.push(format!(
                "realm {realm}: {url:?}: kpasswd is always asked over TCP here"
            )),
            Some(t) => {
                notes.push(format!(
                    "realm {realm}: {origin} {url:?}: transport +{t} is not tcp or udp \
                     (kdcproxy skips it too): left out"
                ));
                continue;
            }
        }
        let list = if kpasswd {
            &mut out.kpasswd
        } else {
            &mut out.kdc
        };
        let text = show(&server);
        if !list.contains(&text) {
            list.push(text);
        }
    }
}

fn show(s: &ServerAddr) -> String {
    s.to_string()
}

/// Reads kdcproxy's configuration at `path` (and, for `configs = mit`,
/// the krb5.conf files `krb5_conf`) and converts it.
pub fn convert(path: &Path, krb5_conf: &[PathBuf]) -> Result<Converted, String> {
    let file = path.display().to_string();
    let text = crate::config::read_bounded(path, MAX_FILE)?;
    let sections = parse_ini(&file, &text)?;
    let mut notes = Vec::new();
    let global = sections
        .iter()
        .find(|(n, _)| n == "global")
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    let param = |section: &Section, sname: &str, key: &str| -> Result<Option<bool>, String> {
        section
            .get(key)
            .map(|v| boolean(&file, sname, key, v))
            .transpose()
    };
    if param(&global, "global", "dns_realm_discovery")? == Some(true) {
        return Err(format!(
            "{file}: [global] dns_realm_discovery = true is refused: it makes the proxy look up \
             in DNS any realm a client names and connect where the answer points, the \
             server-side request forgery of CVE-2025-59088. Declare the realms (or a wildcard \
             section) instead"
        ));
    }
    let global_dns = param(&global, "global", "use_dns")?.unwrap_or(true);
    for (key, _) in global.iter() {
        if !matches!(
            key.as_str(),
            "configs" | "use_dns" | "dns_realm_discovery" | "silence_port_warn"
        ) {
            notes.push(format!("[global] {key}: not a kdcproxy setting: ignored"));
        }
    }
    let mit = match global.get("configs").map(String::as_str) {
        None | Some("") => None,
        Some("mit") => Some(read_profile_realms(krb5_conf)?),
        Some(other) => {
            return Err(format!(
                "{file}: [global] configs = {other}: only \"mit\" (the system krb5.conf) is known"
            ))
        }
    };

    // Wildcard sections: their use_dns (else [global]'s).
    let mut wildcards: Vec<(String, bool)> = Vec::new();
    for (name, s) in &sections {
        if let Some(suffix) = name.strip_prefix('*') {
            let dns = param(s, name, "use_dns")?.unwrap_or(global_dns);
            if suffix.is_empty() || suffix.starts_with('.') || suffix.contains('*') {
                notes.push(format!(
                    "[{name}]: matches no realm in kdcproxy (a wildcard is [*SUFFIX], e.g. \
                     [*EXAMPLE.COM]): left out"
                ));
                continue;
            }
            for key in ["kerberos", "kpasswd"] {
                if s.contains_key(key) {
                    notes.push(format!(
                        "[{name}] {key}: kdcproxy ignores server lists in wildcard sections: ignored"
                    ));
                }
            }
            wildcards.push((suffix.to_string(), dns));
        }
    }
    let use_dns = |realm: &str, section: Option<&Section>| -> Result<bool, String> {
        if let Some(v) = section
            .map(|s| param(s, realm, "use_dns"))
            .transpose()?
            .flatten()
        {
            return Ok(v);
        }
        // The longest matching wildcard, as kdcproxy walks labels from the left.
        let labels: Vec<&str> = realm.split('.').collect();
        for i in 0..labels.len() {
            let suffix = labels[i..].join(".");
            if let Some((_, dns)) = wildcards.iter().find(|(s, _)| *s == suffix) {
                return Ok(*dns);
            }
        }
        Ok(global_dns)
    };

    // Realms: kdcproxy's sections, then krb5.conf's.
    let mut names: Vec<String> = sections
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| n != "global" && !n.starts_with('*'))
        .collect();
    if let Some(m) = &mit {
        for r in m.keys() {
            if !names.contains(r) {
                names.push(r.clone());
            }
        }
    }
    let mut out = String::new();
    let mut realms = Vec::new();
    for realm in &names {
        if let Err(e) = addr::check_realm(realm) {
            notes.push(format!("realm {realm:?}: {e}: left out"));
            continue;
        }
        let section = sections.iter().find(|(n, _)| n == realm).map(|(_, s)| s);
        let mut s = Servers::default();
        let list = |key: &str| -> Vec<String> {
            section
                .and_then(|sec| sec.get(key))
                .map(|v| v.split_whitespace().map(String::from).collect())
                .unwrap_or_default()
        };
        let (kerberos, kpasswd) = (list("kerberos"), list("kpasswd"));
        add_urls(realm, "kerberos", &kerberos, false, &mut s, &mut notes);
        add_urls(realm, "kpasswd", &kpasswd, true, &mut s, &mut notes);
        let from_mit = mit.as_ref().and_then(|m| m.get(realm));
        if kerberos.is_empty() {
            if let Some(m) = from_mit {
                add_urls(realm, "krb5.conf kdc", &m.kdc, false, &mut s, &mut notes);
            }
        }
        if kpasswd.is_empty() {
            if let Some(m) = from_mit {
                add_urls(
                    realm,
                    "krb5.conf kpasswd_server",
                    &m.kpasswd,
                    true,
                    &mut s,
                    &mut notes,
                );
                // admin_server: its host, on port 464 (kdcproxy drops the port).
                let admin: Vec<String> =
                    m.admin.iter().map(|a| strip_port(a).to_string()).collect();
                add_urls(
                    realm,
                    "krb5.conf admin_server",
                    &admin,
                    true,
                    &mut s,
                    &mut notes,
                );
            }
        }
        let dns = use_dns(realm, section)?;
        let kdc_dns = s.kdc.is_empty() && dns;
        let kpasswd_dns = s.kpasswd.is_empty() && dns;
        if s.kdc.is_empty() && s.kpasswd.is_empty() && !dns {
            notes.push(format!(
                "realm {realm}: no servers (none listed, use_dns = false): left out"
            ));
            continue;
        }
        realms.push(realm.clone());
        out.push_str(&format!("\n[realms.{}]\n", toml_string(realm)));
        write_list(&mut out, "kdc", &s.kdc, kdc_dns);
        write_list(&mut out, "kpasswd", &s.kpasswd, kpasswd_dns);
        if s.udp {
            out.push_str("udp = true\n");
        } else if s.kdc_tcp_only > 0 && s.kdc_udp_allowed == 0 {
            // kdcproxy never asks these KDCs over UDP; nor will this proxy.
            out.push_str("udp = false\n");
        }
    }
    for (suffix, dns) in &wildcards {
        if !dns {
            notes.push(format!(
                "[*{suffix}]: use_dns = false, so it declares realms without servers: left out"
            ));
            continue;
        }
        out.push_str(&format!(
            "\n[realms.{}]\nkdc = \"dns\"\nkpasswd = \"dns\"\n",
            toml_string(&format!("*.{suffix}"))
        ));
    }
    let silence = param(&global, "global", "silence_port_warn")?.unwrap_or(false)
        || sections.iter().any(|(n, s)| {
            s.get("silence_port_warn")
                .is_some_and(|v| boolean(&file, n, "x", v).unwrap_or(false))
        });
    let any_dns = out.contains("= \"dns\"");
    if silence && any_dns {
        notes.push(
            "silence_port_warn: kdcproxy only logs SRV records with non-standard ports; here \
             they are refused unless [discovery] allow_ports lists the port"
                .to_string(),
        );
    }
    if realms.is_empty() && wildcards.iter().all(|(_, d)| !d) {
        return Err(format!("{file}: no realm with servers to convert"));
    }
    let mut toml = format!(
        "# Converted from {file} by krb5-wss-proxy convert-kdcproxy.\n\
         # Add [server] (listen, cert, key); realms as kdcproxy served them:\n"
    );
    for n in &notes {
        toml.push_str(&format!("# note: {n}\n"));
    }
    if any_dns {
        toml.push_str(
            "# Realms with \"dns\" find their servers in DNS; each address found must pass\n\
             # [discovery]'s allow-list (docs/proxy.md \"KDC discovery\").\n",
        );
    }
    toml.push_str(&out);
    Ok(Converted { toml, notes })
}

fn write_list(out: &mut String, key: &str, list: &[String], dns: bool) {
    if dns {
        out.push_str(&format!("{key} = \"dns\"\n"));
    } else if !list.is_empty() {
        let items: Vec<String> = list.iter().map(|s| toml_string(s)).collect();
        out.push_str(&format!("{key} = [{}]\n", items.join(", ")));
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `host:port` → `host` (IPv6 in brackets kept whole).
fn strip_port(v: &str) -> &str {
    let v = v.split_once("://").map_or(v, |(_, r)| r);
    if v.starts_with('[') {
        return v.split_once(']').map_or(v, |(h, _)| &v[..h.len() + 1]);
    }
    if v.matches(':').count() == 1 {
        return v.split_once(':').map_or(v, |(h, _)| h);
    }
    v
}

/// A realm's relations in krb5.conf that name servers.
#[derive(Debug, Default, Clone)]
struct ProfileRealm {
    kdc: Vec<String>,
    kpasswd: Vec<String>,
    admin: Vec<String>,
}

/// The krb5.conf files libkrb5 reads: `$KRB5_CONFIG` (colon-separated),
/// else /etc/krb5.conf.
pub fn default_krb5_conf() -> Vec<PathBuf> {
    match std::env::var_os("KRB5_CONFIG") {
        Some(v) => std::env::split_paths(&v).collect(),
        None => vec![PathBuf::from("/etc/krb5.conf")],
    }
}

/// The `[realms]` of the profile made of `files` (a missing one is
/// skipped, as libkrb5 does), with `include` and `includedir` followed.
fn read_profile_realms(files: &[PathBuf]) -> Result<BTreeMap<String, ProfileRealm>, String> {
    let mut realms = BTreeMap::new();
    let mut count = 0;
    let mut any = false;
    for f in files {
        if f.exists() {
            any = true;
            read_profile_file(f, 0, &mut count, &mut realms)?;
        }
    }
    if !any {
        return Err(format!(
            "configs = mit: no krb5.conf found (looked for {})",
            files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(realms)
}

fn read_profile_file(
    path: &Path,
    depth: usize,
    count: &mut usize,
    realms: &mut BTreeMap<String, ProfileRealm>,
) -> Result<(), String> {
    *count += 1;
    if depth > MAX_INCLUDE_DEPTH || *count > MAX_PROFILE_FILES {
        return Err(format!(
            "{}: includes nested deeper than {MAX_INCLUDE_DEPTH} or more than \
             {MAX_PROFILE_FILES} files",
            path.display()
        ));
    }
    let name = path.display().to_string();
    let text = crate::config::read_bounded(path, MAX_FILE)?;
    let mut section = String::new();
    // Inside [realms]: the realm being read and the brace depth.
    let mut realm: Option<String> = None;
    let mut braces = 0usize;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if braces == 0 {
            if let Some(p) = line.strip_prefix("includedir") {
                if p.starts_with([' ', '\t']) {
                    let dir = Path::new(p.trim());
                    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
                        .map_err(|e| {
                            format!("{name}:{}: includedir {}: {e}", n + 1, dir.display())
                        })?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.is_file() && included_name(p))
                        .collect();
                    entries.sort();
                    for e in entries {
                        read_profile_file(&e, depth + 1, count, realms)?;
                    }
                    continue;
                }
            }
            if let Some(p) = line.strip_prefix("include") {
                if p.starts_with([' ', '\t']) {
                    read_profile_file(Path::new(p.trim()), depth + 1, count, realms)
                        .map_err(|e| format!("{name}:{}: include: {e}", n + 1))?;
                    continue;
                }
            }
            if let Some(s) = line.strip_prefix('[') {
                section = s.split(']').next().unwrap_or_default().trim().to_string();
                continue;
            }
        }
        let opens = line.ends_with('{');
        if line.starts_with('}') {
            braces = braces.saturating_sub(1);
            if braces == 0 {
                realm = None;
            }
            continue;
        }
        if section != "realms" {
            if opens {
                braces += 1;
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if opens {
            if braces == 0 {
                realm = Some(key.to_string());
                realms.entry(key.to_string()).or_default();
            }
            braces += 1;
            continue;
        }
        if braces != 1 {
            continue;
        }
        let Some(r) = realm.as_ref().and_then(|r| realms.get_mut(r)) else {
            continue;
        };
        let value = value.trim_matches('"').to_string();
        match key {
            "kdc" => r.kdc.push(value),
            "kpasswd_server" => r.kpasswd.push(value),
            "admin_server" => r.admin.push(value),
            _ => {}
        }
    }
    Ok(())
}

/// libkrb5's rule for `includedir` entries: names of letters, digits, `-`
/// and `_` only, or ending in `.conf`; never starting with `.`.
fn included_name(p: &Path) -> bool {
    let Some(n) = p.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !n.starts_with('.')
        && (n.ends_with(".conf")
            || n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kdcproxy-conf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn freeipa_layout_through_krb5_conf_includes() {
        let d = tmp("ipa");
        std::fs::create_dir_all(d.join("krb5.conf.d")).unwrap();
        write(
            &d.join("krb5.conf.d"),
            "extra.conf",
            "[realms]\n OTHER.ORG = {\n  kdc = kdc.other.org\n }\n",
        );
        write(
            &d.join("krb5.conf.d"),
            ".hidden",
            "[realms]\n H = {\n kdc = h\n }\n",
        );
        let krb5 = write(
            &d,
            "krb5.conf",
            &format!(
                "includedir {}/krb5.conf.d/\n[libdefaults]\n default_realm = IPA.TEST\n\
                 [realms]\n IPA.TEST = {{\n  kdc = ipa1.ipa.test:88\n  kdc = ipa2.ipa.test\n  \
                 admin_server = ipa1.ipa.test:749\n  auth_to_local = {{\n   kdc = nope\n  }}\n  \
                 kpasswd_server = ipa1.ipa.test:464\n  pkinit_anchors = FILE:/etc/ipa/ca.crt\n }}\n\
                 [domain_realm]\n .ipa.test = IPA.TEST\n",
                d.display()
            ),
        );
        let conf = write(
            &d,
            "kdcproxy.conf",
            "[global]\nconfigs = mit\nuse_dns = false\n\n",
        );
        let c = convert(&conf, &[krb5]).unwrap();
        assert!(
            c.toml.contains(
                "[realms.\"IPA.TEST\"]\nkdc = [\"ipa1.ipa.test:88\", \"ipa2.ipa.test:88\"]\n\
                 kpasswd = [\"ipa1.ipa.test:464\"]\n"
            ),
            "{}",
            c.toml
        );
        assert!(
            c.toml
                .contains("[realms.\"OTHER.ORG\"]\nkdc = [\"kdc.other.org:88\"]\n"),
            "{}",
            c.toml
        );
        assert!(
            !c.toml.contains("nope") && !c.toml.contains("\"H\""),
            "{}",
            c.toml
        );
        assert!(!c.toml.contains("dns"), "{}", c.toml);
    }

    #[test]
    fn kerberos_tcp_urls_only_make_a_tcp_only_realm() {
        let d = tmp("tcponly");
        let conf = write(
            &d,
            "kdcproxy.conf",
            "[global]\nsilence_port_warn = true\n\n\
             [T.ORG]\nkerberos = kerberos+tcp://kdc1.t.org kerberos+tcp://kdc2.t.org\n\n\
             [M.ORG]\nkerberos = kerberos+tcp://kdc1.m.org kerberos://kdc2.m.org\n",
        );
        let c = convert(&conf, &[]).unwrap();
        let t = &c.toml;
        let section = |name: &str| {
            t.split(&format!("[realms.\"{name}\"]\n"))
                .nth(1)
                .and_then(|rest| rest.split("\n[").next())
                .unwrap_or_default()
                .to_string()
        };
        let tcp = section("T.ORG");
        assert!(
            tcp.starts_with("kdc = [\"kdc1.t.org:88\", \"kdc2.t.org:88\"]\n"),
            "{t}"
        );
        assert!(tcp.contains("udp = false\n"), "{t}");
        // One URL that allows UDP: the default (UDP first, then TCP).
        let mixed = section("M.ORG");
        assert!(
            mixed.starts_with("kdc = [\"kdc1.m.org:88\", \"kdc2.m.org:88\"]\n"),
            "{t}"
        );
        assert!(!mixed.contains("udp"), "{t}");
    }

    #[test]
    fn urls_wildcards_and_use_dns() {
        let d = tmp("urls");
        let conf = write(
            &d,
            "kdcproxy.conf",
            "[global]\nsilence_port_warn = true\n\n\
             [A.ORG]\nkerberos = kerberos+tcp://kdc1.a.org:88 kerberos://[2001:db8::1]\n  kerberos+udp://kdc2.a.org:1088\n\
             kpasswd = kpasswd+tcp://kdc1.a.org kpasswd+udp://kdc2.a.org:4464 https://x/KdcProxy\n\n\
             [B.ORG]\n\n[C.ORG]\nuse_dns = no\n\n[*AD.EXAMPLE]\n\n[*NODNS.EXAMPLE]\nuse_dns = off\n\n\
             [CHILD.NODNS.EXAMPLE]\n\n[*.WRONG]\n",
        );
        let c = convert(&conf, &[]).unwrap();
        let t = &c.toml;
        assert!(
            t.contains(
                "[realms.\"A.ORG\"]\nkdc = [\"kdc1.a.org:88\", \"[2001:db8::1]:88\", \"kdc2.a.org:1088\"]\n\
                 kpasswd = [\"kdc1.a.org:464\", \"kdc2.a.org:4464\"]\nudp = true\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("[realms.\"B.ORG\"]\nkdc = \"dns\"\nkpasswd = \"dns\"\n"),
            "{t}"
        );
        assert!(!t.contains("C.ORG\"]"), "{t}");
        assert!(!t.contains("[realms.\"CHILD.NODNS"), "{t}");
        assert!(
            t.contains("[realms.\"*.AD.EXAMPLE\"]\nkdc = \"dns\"\nkpasswd = \"dns\"\n"),
            "{t}"
        );
        assert!(
            !t.contains("NODNS.EXAMPLE\"]") && !t.contains("WRONG\"]"),
            "{t}"
        );
        let notes = c.notes.join("\n");
        for want in [
            "https://x/KdcProxy",
            "UDP only",
            "kpasswd is always asked over TCP",
            "C.ORG: no servers",
            "[*.WRONG]: matches no realm",
            "[*NODNS.EXAMPLE]: use_dns = false",
            "silence_port_warn",
        ] {
            assert!(notes.contains(want), "{want}: {notes}");
            assert!(t.contains(want), "{want} not in the TOML comments");
        }
    }

    #[test]
    fn refusals_and_errors_name_the_file() {
        let d = tmp("bad");
        for (text, want) in [
            ("[global]\ndns_realm_discovery = true\n", "CVE-2025-59088"),
            ("[global]\nuse_dns = maybe\n", "not a boolean"),
            ("[global]\nconfigs = heimdal\n", "only \"mit\""),
            ("[A]\nkerberos = k\n[A]\n", "appears twice"),
            ("kerberos = k\n", "before any [section]"),
            ("[DEFAULT]\nuse_dns = false\n", "[DEFAULT]"),
            ("[global]\nuse_dns = false\n", "no realm with servers"),
            ("[global]\nconfigs = mit\n", "no krb5.conf found"),
        ] {
            let conf = write(&d, "kdcproxy.conf", text);
            let err = convert(&conf, &[d.join("missing-krb5.conf")]).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
            assert!(
                err.contains("kdcproxy.conf") || want == "no krb5.conf found",
                "{err}"
            );
        }
        assert!(convert(&d.join("nope.conf"), &[])
            .unwrap_err()
            .contains("nope.conf"));
    }

    #[test]
    fn the_output_is_a_valid_configuration() {
        let d = tmp("valid");
        let conf = write(
            &d,
            "kdcproxy.conf",
            "[A.ORG]\nkerberos = kerberos://k:88\n[B.ORG]\n[*C.ORG]\n",
        );
        let c = convert(&conf, &[]).unwrap();
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nplaintext = true\n{}",
            c.toml
        );
        let file = crate::config::tests_parse(&text).unwrap();
        assert!(file.realm("A.ORG").is_some() && file.realm("X.C.ORG").is_some());
        assert!(file.realms["B.ORG"].dns.kdc);
    }

    #[test]
    fn ports_are_stripped_from_admin_servers() {
        assert_eq!(strip_port("kdc:749"), "kdc");
        assert_eq!(strip_port("[::1]:749"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("kdc"), "kdc");
    }
}
