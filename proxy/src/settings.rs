//! One definition per setting.
//!
//! Each section of settings (`[server]`, `[limits]`, `[throttle]`) is one
//! [`settings!`] block: a line per setting gives its TOML key, its value
//! kind, its default and its description (the doc comment). From that one
//! line come the struct field and its `Default`, the TOML key (unknown keys
//! are errors), the command-line flag and its `--help` text with the
//! default, and the row of docs/proxy.md's settings table (a test renders
//! the table and compares it with the file). Nothing else repeats a key, a
//! default or a description.
//!
//! A value is taken from, in order: the default, the file's section, the
//! command line (which replaces the file's value; a repeatable flag's
//! values replace the file's whole list).

use crate::addr;
use crate::client::IpNet;
use crate::logfmt::LogFormat;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use toml::{Spanned, Value};

/// Longest duration accepted anywhere.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// How a setting's flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `--flag VALUE`, the last one given wins.
    Value,
    /// `--flag VALUE`, repeatable; the values given replace the file's list.
    List,
    /// `--flag` alone; it sets the setting to this value.
    Switch(bool),
}

/// How one kind of value is read from text and TOML, and written.
pub trait Kind {
    /// The value's type in the running proxy.
    type T;
    /// The placeholder in `--help` (`SIZE`, `N`, …).
    const VALUE_NAME: &'static str;
    /// How the flag takes it.
    const FORM: Form = Form::Value;
    /// Parses one command-line value.
    fn from_text(s: &str) -> Result<Self::T, String>;
    /// Parses a file value.
    fn from_toml(v: &Value) -> Result<Self::T, String>;
    /// Writes a value as `--help` and the docs show it.
    fn show(v: &Self::T) -> String;
    /// Parses every value of a repeatable flag (others: the last).
    fn from_texts(all: &[String]) -> Result<Self::T, String> {
        match all.last() {
            Some(s) => Self::from_text(s),
            None => Err("no value given".into()),
        }
    }
}

/// One setting, as `--help`, the TOML reader and the docs see it.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    /// The TOML section (`server`, `limits`, `throttle`).
    pub section: &'static str,
    /// The TOML key.
    pub key: &'static str,
    /// The long flag, without `--`.
    pub flag: &'static str,
    /// The placeholder of its value.
    pub value_name: &'static str,
    /// How the flag takes its value.
    pub form: Form,
    /// The description (from the doc comment).
    pub help: &'static str,
    /// Checks one command-line value (so clap names a bad one).
    pub check: fn(&str) -> Result<(), String>,
}

/// Checks a value of kind `K` without keeping it.
pub fn check<K: Kind>(s: &str) -> Result<(), String> {
    K::from_text(s).map(drop)
}

/// A section of settings made by [`settings!`].
pub trait Table: Default {
    /// Its definitions, in the order `--help` and the docs list them.
    fn defs() -> &'static [Def];
    /// Sets `key` from command-line text(s).
    fn set_texts(&mut self, key: &str, texts: &[String]) -> Result<(), String>;
    /// Sets `key` from a file value.
    fn set_toml(&mut self, key: &str, v: &Value) -> Result<(), String>;
    /// The current value of `key`, as the docs write it.
    fn show(&self, key: &str) -> Option<String>;

    /// Sets every key of the file's section; an unknown key is an error
    /// naming its line and the known keys.
    fn apply_file(&mut self, section: &Section, text: &str) -> Result<(), String> {
        let defs = Self::defs();
        let name = defs.first().map_or("", |d| d.section);
        for (key, value) in section {
            let line = line_of(text, value.span().start);
            if !defs.iter().any(|d| d.key == key) {
                let known: Vec<&str> = defs.iter().map(|d| d.key).collect();
                return Err(format!(
                    "line {line}: [{name}] {key}: unknown key (known: {})",
                    known.join(", ")
                ));
            }
            self.set_toml(key, value.get_ref())
                .map_err(|e| format!("line {line}: [{name}] {key}: {e}"))?;
        }
        Ok(())
    }

    /// Sets every key given on the command line.
    fn apply_cli(&mut self, given: &Given) -> Result<(), String> {
        for d in Self::defs() {
            if let Some(texts) = given.0.get(d.flag) {
                self.set_texts(d.key, texts)
                    .map_err(|e| format!("--{} {}: {e}", d.flag, texts.join(" ")))?;
            }
        }
        Ok(())
    }
}

/// A TOML section as read: each key's value with its place in the file.
pub type Section = BTreeMap<String, Spanned<Value>>;

/// Where a byte offset of `text` is, as "line N".
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The settings given on the command line: each flag's raw values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Given(pub BTreeMap<String, Vec<String>>);

/// A section's definitions, each with its default as the docs write it.
pub fn described<T: Table>() -> Vec<(&'static Def, String)> {
    let d = T::default();
    T::defs()
        .iter()
        .map(|def| (def, d.show(def.key).unwrap_or_default()))
        .collect()
}

/// Adds one argument per definition to `cmd`, its help ending with its
/// default.
pub fn augment(mut cmd: Command, tables: &[Vec<(&'static Def, String)>]) -> Command {
    for (d, default) in tables.iter().flatten() {
        let check = d.check;
        let mut arg = Arg::new(d.flag)
            .long(d.flag)
            .help(format!("{} [default: {default}]", d.help));
        arg = match d.form {
            Form::Switch(_) => arg.action(ArgAction::SetTrue),
            Form::Value | Form::List => arg
                .value_name(d.value_name)
                .action(if d.form == Form::List {
                    ArgAction::Append
                } else {
                    ArgAction::Set
                })
                .value_parser(move |s: &str| check(s).map(|()| s.to_string())),
        };
        cmd = cmd.arg(arg);
    }
    cmd
}

/// The values given on the command line for the definitions.
pub fn collect(m: &ArgMatches, tables: &[Vec<(&'static Def, String)>]) -> Given {
    let mut given = Given::default();
    for (d, _) in tables.iter().flatten() {
        if m.value_source(d.flag) != Some(ValueSource::CommandLine) {
            continue;
        }
        let values = match d.form {
            Form::Switch(v) => vec![v.to_string()],
            Form::Value | Form::List => m
                .get_many::<String>(d.flag)
                .map(|vs| vs.cloned().collect())
                .unwrap_or_default(),
        };
        given.0.insert(d.flag.to_string(), values);
    }
    given
}

#[cfg(test)]
/// The flag as the docs table writes it: `--flag VALUE`.
pub fn flag_usage(d: &Def) -> String {
    match d.form {
        Form::Switch(_) => format!("--{}", d.flag),
        Form::Value | Form::List => format!("--{} {}", d.flag, d.value_name),
    }
}

#[cfg(test)]
/// The rows of docs/proxy.md's settings table for a section's defaults.
pub fn docs_rows<T: Table>() -> Vec<String> {
    described::<T>()
        .into_iter()
        .map(|(def, default)| {
            format!(
                "| `{}` | `[{}] {}` | {default} | {} |",
                flag_usage(def),
                def.section,
                def.key,
                def.help
            )
        })
        .collect()
}

/// Defines one section of settings: a struct with its `Default` and its
/// [`Table`]. Each setting is `/// description` then
/// `key: Kind = default` and, where the flag is not the key with `-` for
/// `_` (after the section's prefix), `=> "flag"`.
#[macro_export]
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident in $section:literal, flags $prefix:literal {
            $(
                $(#[doc = $doc:expr])*
                $key:ident : $kind:ty = $default:expr $(=> $flag:literal)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            $(
                $(#[doc = $doc])*
                pub $key: <$kind as $crate::settings::Kind>::T,
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $key: $default, )* }
            }
        }

        impl $crate::settings::Table for $name {
            fn defs() -> &'static [$crate::settings::Def] {
                const DEFS: &[$crate::settings::Def] = &[$(
                    $crate::settings::Def {
                        section: $section,
                        key: stringify!($key),
                        flag: $crate::settings::pick_flag(&[$($flag)?], {
                            const S: &str = concat!($prefix, stringify!($key));
                            const B: [u8; S.len()] = $crate::settings::dashes(S);
                            match std::str::from_utf8(&B) {
                                Ok(f) => f,
                                Err(_) => S,
                            }
                        }),
                        value_name: <$kind as $crate::settings::Kind>::VALUE_NAME,
                        form: <$kind as $crate::settings::Kind>::FORM,
                        help: $crate::settings::trim_doc(concat!($($doc),*)),
                        check: $crate::settings::check::<$kind>,
                    },
                )*];
                DEFS
            }

            fn set_texts(&mut self, key: &str, texts: &[String]) -> Result<(), String> {
                match key {
                    $( stringify!($key) => {
                        self.$key = <$kind as $crate::settings::Kind>::from_texts(texts)?;
                    } )*
                    _ => return Err(format!("unknown setting {key}")),
                }
                Ok(())
            }

            fn set_toml(&mut self, key: &str, v: &toml::Value) -> Result<(), String> {
                match key {
                    $( stringify!($key) => {
                        self.$key = <$kind as $crate::settings::Kind>::from_toml(v)?;
                    } )*
                    _ => return Err(format!("unknown setting {key}")),
                }
                Ok(())
            }

            fn show(&self, key: &str) -> Option<String> {
                match key {
                    $( stringify!($key) => Some(<$kind as $crate::settings::Kind>::show(&self.$key)), )*
                    _ => None,
                }
            }
        }
    };
}

/// `s` with `-` for `_`, at compile time (a derived flag).
#[allow(clippy::indexing_slicing)] // i < N and i < s.len(), by the loop's condition
pub const fn dashes<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N && i < b.len() {
        out[i] = if b[i] == b'_' { b'-' } else { b[i] };
        i += 1;
    }
    out
}

/// The flag of a setting: the one written, else the derived one.
pub const fn pick_flag(written: &[&'static str], derived: &'static str) -> &'static str {
    match written {
        [f, ..] => f,
        [] => derived,
    }
}

/// A doc comment's text without its leading space.
pub const fn trim_doc(s: &'static str) -> &'static str {
    match s.as_bytes() {
        [b' ', rest @ ..] => match std::str::from_utf8(rest) {
            Ok(t) => t,
            Err(_) => s,
        },
        _ => s,
    }
}

fn int(v: &Value) -> Result<i64, String> {
    v.as_integer()
        .ok_or_else(|| format!("expected an integer, found {}", v.type_str()))
}

fn text(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| format!("expected a string, found {}", v.type_str()))
}

fn show_list<T: ToString>(v: &[T]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.iter().map(T::to_string).collect::<Vec<_>>().join(", ")
    }
}

/// A byte count: `131072`, `128KiB`, `1M` (binary multiples).
pub struct Bytes;
impl Kind for Bytes {
    type T = usize;
    const VALUE_NAME: &'static str = "SIZE";
    fn from_text(s: &str) -> Result<usize, String> {
        parse_size(s)
    }
    fn from_toml(v: &Value) -> Result<usize, String> {
        match v {
            Value::String(s) => parse_size(s),
            v => {
                let i = int(v)?;
                usize::try_from(i).map_err(|_| format!("{i} is not a byte count"))
            }
        }
    }
    fn show(v: &usize) -> String {
        match *v {
            n if n != 0 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
            n if n != 0 && n % 1024 == 0 => format!("{}KiB", n >> 10),
            n => n.to_string(),
        }
    }
}

/// A count or rate held as `N` (`usize` or `u32`).
pub struct Whole<N>(std::marker::PhantomData<N>);
/// A count (`usize`).
pub type Count = Whole<usize>;
/// A count (`u32`).
pub type Count32 = Whole<u32>;

impl<N> Kind for Whole<N>
where
    N: std::str::FromStr + TryFrom<i64> + ToString + Bounded,
{
    type T = N;
    const VALUE_NAME: &'static str = "N";
    fn from_text(s: &str) -> Result<N, String> {
        s.trim().parse().map_err(|_| {
            format!(
                "{s:?} is not a whole number from 0 to {}",
                N::MAX.to_string()
            )
        })
    }
    fn from_toml(v: &Value) -> Result<N, String> {
        let i = int(v)?;
        N::try_from(i)
            .map_err(|_| format!("{i} is not a whole number from 0 to {}", N::MAX.to_string()))
    }
    fn show(v: &N) -> String {
        v.to_string()
    }
}

/// The largest value of a [`Whole`] number type, for its error message.
pub trait Bounded {
    /// It.
    const MAX: Self;
}
impl Bounded for usize {
    const MAX: usize = usize::MAX;
}
impl Bounded for u32 {
    const MAX: u32 = u32::MAX;
}

/// A duration: seconds (`10`, `2.5`) or with `ms`, `s` or `m`.
pub struct Secs;
impl Kind for Secs {
    type T = Duration;
    const VALUE_NAME: &'static str = "DURATION";
    fn from_text(s: &str) -> Result<Duration, String> {
        parse_duration(s)
    }
    fn from_toml(v: &Value) -> Result<Duration, String> {
        match v {
            Value::String(s) => parse_duration(s),
            Value::Integer(i) => seconds(*i as f64).map_err(|e| format!("{i}: {e}")),
            Value::Float(f) => seconds(*f).map_err(|e| format!("{f}: {e}")),
            v => Err(format!(
                "expected a duration (seconds, or a string like \"500ms\"), found {}",
                v.type_str()
            )),
        }
    }
    fn show(v: &Duration) -> String {
        let ms = v.as_millis();
        match ms {
            ms if ms % 60_000 == 0 && ms != 0 => format!("{}m", ms / 60_000),
            ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
            ms => format!("{ms}ms"),
        }
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{s:?}: expected true or false")),
    }
}

/// A boolean. `S` says how its flag takes it: 0 as a value
/// (`--flag false`, [`Bool`]), 1 alone turning it on ([`On`],
/// `--plaintext`), -1 alone turning it off ([`Off`], `--no-kkdcp`).
pub struct Boolean<const S: i8>;
/// `--flag true|false`.
pub type Bool = Boolean<0>;
/// `--flag` turns it on.
pub type On = Boolean<1>;
/// `--flag` turns it off.
pub type Off = Boolean<-1>;

impl<const S: i8> Kind for Boolean<S> {
    type T = bool;
    const VALUE_NAME: &'static str = if S == 0 { "BOOL" } else { "" };
    const FORM: Form = match S {
        0 => Form::Value,
        1 => Form::Switch(true),
        _ => Form::Switch(false),
    };
    fn from_text(s: &str) -> Result<bool, String> {
        parse_bool(s)
    }
    fn from_toml(v: &Value) -> Result<bool, String> {
        v.as_bool()
            .ok_or_else(|| format!("expected true or false, found {}", v.type_str()))
    }
    fn show(v: &bool) -> String {
        v.to_string()
    }
}

/// A file path (`None`: not set). Relative paths in the file are taken
/// relative to the file's directory (by the caller).
pub struct FilePath;
impl Kind for FilePath {
    type T = Option<PathBuf>;
    const VALUE_NAME: &'static str = "FILE";
    fn from_text(s: &str) -> Result<Option<PathBuf>, String> {
        if s.is_empty() {
            return Err("empty path".into());
        }
        Ok(Some(PathBuf::from(s)))
    }
    fn from_toml(v: &Value) -> Result<Option<PathBuf>, String> {
        Self::from_text(text(v)?)
    }
    fn show(v: &Option<PathBuf>) -> String {
        v.as_ref()
            .map_or_else(|| "none".into(), |p| p.display().to_string())
    }
}

/// A URL or other text (`None`: not set).
pub struct Url;
impl Kind for Url {
    type T = Option<String>;
    const VALUE_NAME: &'static str = "URL";
    fn from_text(s: &str) -> Result<Option<String>, String> {
        Ok(Some(s.to_string()))
    }
    fn from_toml(v: &Value) -> Result<Option<String>, String> {
        Ok(Some(text(v)?.to_string()))
    }
    fn show(v: &Option<String>) -> String {
        v.clone().unwrap_or_else(|| "none".into())
    }
}

/// One listen address (`None`: off).
pub struct Listen;
impl Kind for Listen {
    type T = Option<SocketAddr>;
    const VALUE_NAME: &'static str = "IP:PORT";
    fn from_text(s: &str) -> Result<Option<SocketAddr>, String> {
        addr::parse_listen(s).map(Some)
    }
    fn from_toml(v: &Value) -> Result<Option<SocketAddr>, String> {
        Self::from_text(text(v)?)
    }
    fn show(v: &Option<SocketAddr>) -> String {
        v.map_or_else(|| "none".into(), |a| a.to_string())
    }
}

/// A URL path on the listener.
pub struct UrlPath;
impl Kind for UrlPath {
    type T = String;
    const VALUE_NAME: &'static str = "PATH";
    fn from_text(s: &str) -> Result<String, String> {
        let plain = s.len() <= 256
            && s.starts_with('/')
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~')
            });
        if plain {
            Ok(s.to_string())
        } else {
            Err(format!(
                "{s:?}: must start with '/' and hold only letters, digits and / - _ . ~"
            ))
        }
    }
    fn from_toml(v: &Value) -> Result<String, String> {
        Self::from_text(text(v)?)
    }
    fn show(v: &String) -> String {
        v.clone()
    }
}

/// A repeatable setting: a list of `I`'s items (the flag given once or
/// more replaces the file's whole list).
pub struct ListOf<I>(std::marker::PhantomData<I>);

/// One item of a [`ListOf`].
pub trait Item {
    /// The item's type.
    type T: ToString;
    /// Its placeholder in `--help`.
    const VALUE_NAME: &'static str;
    /// Parses one item.
    fn parse(s: &str) -> Result<Self::T, String>;
    /// Reads one item of the file's list (a string, unless the item says).
    fn from_toml(v: &Value) -> Result<Self::T, String> {
        text(v).and_then(Self::parse)
    }
}

impl<I: Item> Kind for ListOf<I> {
    type T = Vec<I::T>;
    const VALUE_NAME: &'static str = I::VALUE_NAME;
    const FORM: Form = Form::List;
    fn from_text(s: &str) -> Result<Vec<I::T>, String> {
        I::parse(s).map(|i| vec![i])
    }
    fn from_texts(all: &[String]) -> Result<Vec<I::T>, String> {
        all.iter().map(|s| I::parse(s)).collect()
    }
    fn from_toml(v: &Value) -> Result<Vec<I::T>, String> {
        v.as_array()
            .ok_or_else(|| format!("expected a list, found {}", v.type_str()))?
            .iter()
            .map(I::from_toml)
            .collect()
    }
    fn show(v: &Vec<I::T>) -> String {
        show_list(v)
    }
}

/// A listen address: `IPv4:PORT` or `[IPv6]:PORT`.
pub struct ListenItem;
impl Item for ListenItem {
    type T = SocketAddr;
    const VALUE_NAME: &'static str = "IP:PORT";
    fn parse(s: &str) -> Result<SocketAddr, String> {
        addr::parse_listen(s)
    }
}
/// Listen addresses.
pub type Listens = ListOf<ListenItem>;

/// An allowed origin, normalized.
pub struct OriginItem;
impl Item for OriginItem {
    type T = String;
    const VALUE_NAME: &'static str = "ORIGIN";
    fn parse(s: &str) -> Result<String, String> {
        normalize_origin(s)
    }
}
/// Allowed origins.
pub type Origins = ListOf<OriginItem>;

/// An address or network (`IP` or `IP/PREFIX`).
pub struct NetItem;
impl Item for NetItem {
    type T = IpNet;
    const VALUE_NAME: &'static str = "CIDR";
    fn parse(s: &str) -> Result<IpNet, String> {
        IpNet::parse(s)
    }
}
/// Addresses or networks.
pub type Nets = ListOf<NetItem>;

/// `text` or `json`.
pub struct Format;
impl Kind for Format {
    type T = LogFormat;
    const VALUE_NAME: &'static str = "FORMAT";
    fn from_text(s: &str) -> Result<LogFormat, String> {
        LogFormat::parse(s)
    }
    fn from_toml(v: &Value) -> Result<LogFormat, String> {
        LogFormat::parse(text(v)?)
    }
    fn show(v: &LogFormat) -> String {
        v.name().to_string()
    }
}

/// Normalizes an allowed origin: `*`, `null`, or `scheme://host[:port]`
/// (lower case, no path).
pub fn normalize_origin(o: &str) -> Result<String, String> {
    let lower = o.trim().trim_end_matches('/').to_ascii_lowercase();
    if lower == "*" || lower == "null" {
        return Ok(lower);
    }
    let ok = match lower.split_once("://") {
        Some((scheme, host)) => {
            !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
                && !host.is_empty()
                && host.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
                })
        }
        None => false,
    };
    if ok {
        Ok(lower)
    } else {
        Err(format!(
            "allowed origin {o:?}: expected scheme://host[:port] (e.g. https://app.example.com), null or *"
        ))
    }
}

/// Parses a byte count: `131072`, `128KiB`, `128K`, `1MiB`, `1M`
/// (K and M are binary multiples; case-insensitive).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (digits, mult) = [("kib", 1024), ("k", 1024), ("mib", 1 << 20), ("m", 1 << 20)]
        .iter()
        .find_map(|(suffix, m)| lower.strip_suffix(suffix).map(|d| (d.trim(), *m)))
        .unwrap_or((lower.as_str(), 1));
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (bytes, or a number with K/KiB/M/MiB)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a duration: a number of seconds (`10`, `2.5`) or a number with a
/// unit: `ms`, `s`, `m` (`500ms`, `10s`, `2m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim().to_ascii_lowercase();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t.as_str(), 1.0)
    };
    let v: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (seconds, or a number with ms/s/m)"))?;
    seconds(v * scale).map_err(|e| format!("{s:?}: {e}"))
}

/// Converts a number of seconds, refusing negative, non-finite and absurd
/// values.
pub fn seconds(v: f64) -> Result<Duration, String> {
    if !v.is_finite() || v < 0.0 || v > MAX_TIMEOUT.as_secs_f64() {
        return Err("must be between 0 and 24 hours".into());
    }
    Ok(Duration::from_secs_f64(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("131072").unwrap(), 131072);
        assert_eq!(parse_size("128KiB").unwrap(), 131072);
        assert_eq!(parse_size("128k").unwrap(), 131072);
        assert_eq!(parse_size("1 MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("2M").unwrap(), 2 << 20);
        for bad in ["", "-1", "1.5K", "12 bytes", "K"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        for n in [1, 1000, 1024, 131072, 1 << 20, 3 << 20, 1025] {
            assert_eq!(parse_size(&Bytes::show(&n)).unwrap(), n);
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2.5").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "-1", "ten", "1h", "inf", "NaN", "100000000"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        for ms in [1, 500, 1000, 2500, 60_000, 300_000, 90_000] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&Secs::show(&d)).unwrap(), d);
        }
    }

    #[test]
    fn derived_and_written_flags() {
        assert_eq!(pick_flag(&[], "max_x"), "max_x");
        assert_eq!(pick_flag(&["throttle"], "throttle-enabled"), "throttle");
        assert_eq!(trim_doc(" Text."), "Text.");
        assert_eq!(&dashes::<7>("a_b_c_d"), b"a-b-c-d");
    }
}
