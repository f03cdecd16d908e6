//! The command line: the realms' flags (`--realm`, `--kpasswd`, `--udp`),
//! `--config` and `--check-config` here, and one flag per setting of the
//! `[server]`, `[limits]` and `[throttle]` sections, made from their
//! definitions ([`crate::settings`]). Flags override the file.

use crate::addr::{self, ServerAddr, KDC_PORT, KPASSWD_PORT};
use crate::limits::Limits;
use crate::server_settings::ServerSettings;
use crate::settings::{self, Def, Given};
use crate::throttle;
use clap::{ArgMatches, Parser};
use std::path::PathBuf;

/// Subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print the TOML [realms] equivalent to a kdcproxy configuration
    /// (kdcproxy.conf), naming on standard error what cannot be honoured.
    /// Exit 1 on an error, or for dns_realm_discovery = true.
    ConvertKdcproxy {
        /// kdcproxy's configuration file, e.g. /etc/kdcproxy.conf.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// krb5.conf read for `configs = mit`; repeatable.
        /// [default: $KRB5_CONFIG, else /etc/krb5.conf]
        #[arg(long, value_name = "FILE")]
        krb5_conf: Vec<PathBuf>,
    },
}

/// Kerberos over WebSockets: accepts wss:// connections on /kdc and
/// /kpasswd and forwards each Kerberos request to the configured KDCs of
/// its realm.
#[derive(Debug, Parser, Default, Clone)]
#[command(
    name = "krb5-wss-proxy",
    version,
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    /// A subcommand instead of running the proxy.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// TOML configuration file; flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Check the configuration (and load the TLS certificate and key), print
    /// a summary and exit: 0 when it is valid, 1 when not. Nothing is bound.
    #[arg(long)]
    pub check_config: bool,

    /// A KDC of a realm; repeat to add realms, or further KDCs of a realm
    /// (tried in the order given). Port defaults to 88. REALM=dns finds the
    /// realm's KDCs in DNS (SRV records; see [discovery] in the config).
    #[arg(long = "realm", value_name = "REALM=HOST[:PORT]", value_parser = parse_kdc)]
    pub realms: Vec<(String, ServerAddr)>,

    /// A kpasswd server of a realm; repeatable like --realm. Port defaults
    /// to 464. REALM=dns finds them in DNS.
    #[arg(long = "kpasswd", value_name = "REALM=HOST[:PORT]", value_parser = parse_kpasswd)]
    pub kpasswd: Vec<(String, ServerAddr)>,

    /// Try the KDCs of REALM over UDP first (then TCP); repeatable. This
    /// is the default; the flag overrides a file's `udp = false`.
    #[arg(long, value_name = "REALM")]
    pub udp: Vec<String>,

    /// Ask the KDCs of REALM over TCP only; repeatable.
    /// [default: UDP first, then TCP]
    #[arg(long, value_name = "REALM")]
    pub tcp_only: Vec<String>,

    /// The settings given as flags.
    #[command(flatten)]
    pub given: Given,
}

/// Every section's definitions with their defaults, in `--help`'s order.
pub fn tables() -> Vec<Vec<(&'static Def, String)>> {
    vec![
        settings::described::<ServerSettings>(),
        settings::described::<Limits>(),
        settings::described::<throttle::Settings>(),
        settings::described::<crate::discovery::Rules>(),
    ]
}

impl clap::FromArgMatches for Given {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(settings::collect(m, &tables()))
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = settings::collect(m, &tables());
        Ok(())
    }
}

impl clap::Args for Given {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        settings::augment(cmd, &tables())
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        settings::augment(cmd, &tables())
    }
}

fn parse_kdc(s: &str) -> Result<(String, ServerAddr), String> {
    addr::parse_realm_server(s, KDC_PORT)
}

fn parse_kpasswd(s: &str) -> Result<(String, ServerAddr), String> {
    addr::parse_realm_server(s, KPASSWD_PORT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("krb5-wss-proxy").chain(args.iter().copied()))
    }

    fn given<'a>(a: &'a Args, flag: &str) -> Vec<&'a str> {
        a.given
            .0
            .get(flag)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    #[test]
    fn command_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn the_documented_command_line() {
        let a = parse(&[
            "--listen",
            "127.0.0.1:8443",
            "--cert",
            "cert.pem",
            "--key",
            "key.pem",
            "--realm",
            "EXAMPLE.COM=kdc.example.com:88",
            "--kpasswd",
            "EXAMPLE.COM=kdc.example.com:464",
        ])
        .unwrap();
        assert_eq!(given(&a, "listen"), ["127.0.0.1:8443"]);
        assert_eq!(given(&a, "cert"), ["cert.pem"]);
        assert_eq!(a.realms.len(), 1);
        assert_eq!(a.realms[0].0, "EXAMPLE.COM");
        assert_eq!(a.realms[0].1.to_string(), "kdc.example.com:88");
        assert_eq!(a.kpasswd[0].1.to_string(), "kdc.example.com:464");
        assert!(given(&a, "plaintext").is_empty());
    }

    #[test]
    fn repeatable_flags_switches_and_default_ports() {
        let a = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "[::1]:0",
            "--realm",
            "A.ORG=kdc1",
            "--realm",
            "A.ORG=[2001:db8::1]",
            "--kpasswd",
            "A.ORG=kdc1",
            "--plaintext",
            "--no-kkdcp",
            "--udp",
            "A.ORG",
        ])
        .unwrap();
        assert_eq!(given(&a, "listen"), ["127.0.0.1:0", "[::1]:0"]);
        let kdcs: Vec<String> = a.realms.iter().map(|(_, s)| s.to_string()).collect();
        assert_eq!(kdcs, ["kdc1:88", "[2001:db8::1]:88"]);
        assert_eq!(a.kpasswd[0].1.to_string(), "kdc1:464");
        assert_eq!(given(&a, "plaintext"), ["true"]);
        assert_eq!(given(&a, "no-kkdcp"), ["false"]);
        assert_eq!(a.udp, ["A.ORG"]);
    }

    #[test]
    fn every_setting_has_its_flag() {
        let help = Args::command().render_long_help().to_string();
        for (d, default) in tables().iter().flatten() {
            assert!(help.contains(&format!("--{}", d.flag)), "{}", d.flag);
            assert!(!d.help.is_empty(), "{} has no description", d.key);
            assert!(help.contains(&format!("[default: {default}]")), "{}", d.key);
        }
        let a = parse(&["--max-record-size", "64KiB", "--throttle", "false"]).unwrap();
        assert_eq!(given(&a, "max-record-size"), ["64KiB"]);
        assert_eq!(given(&a, "throttle"), ["false"]);
    }

    #[test]
    fn bad_values_are_named_with_their_flag() {
        let err = parse(&["--realm", "EXAMPLE.COM"]).unwrap_err().to_string();
        assert!(err.contains("--realm"), "{err}");
        assert!(err.contains("EXAMPLE.COM"), "{err}");
        let err = parse(&["--kpasswd", "R=kdc:99999"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--kpasswd") && err.contains("99999"), "{err}");
        for (flag, bad) in [
            ("--listen", "localhost:1"),
            ("--max-record-size", "12 bytes"),
            ("--idle-timeout", "forever"),
            ("--throttle", "maybe"),
            ("--trust-forwarded-for", "example.com"),
            ("--kkdcp-path", "kdcproxy"),
        ] {
            let err = parse(&[flag, bad]).unwrap_err().to_string();
            assert!(err.contains(flag) && err.contains(bad), "{flag}: {err}");
        }
    }
}
