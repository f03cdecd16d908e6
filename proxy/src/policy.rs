//! Per-realm policy: which client principals (AS-REQ `cname`) and which
//! service principals (AS-REQ and TGS-REQ `sname`) may be asked for.
//!
//! Each list holds glob patterns ([`crate::glob`]). A pattern with an `@`
//! matches the whole `name@REALM`; one without matches the name alone
//! (the realm is the section's). Deny wins over allow; an empty allow
//! list allows every name. A TGS-REQ carries no client name in the clear
//! (it is in the encrypted authenticator), so the client lists apply to
//! AS-REQs only. When an allow list is set and the request lacks the name
//! it needs, the request is denied.

use crate::glob;
use std::fmt;

/// One realm's lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Client principals that may authenticate (empty: all).
    pub allow_clients: Vec<String>,
    /// Client principals that may not.
    pub deny_clients: Vec<String>,
    /// Service principals tickets may be asked for (empty: all).
    pub allow_services: Vec<String>,
    /// Service principals tickets may not be asked for.
    pub deny_services: Vec<String>,
}

/// Which rule refused a request, for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The list: `deny_clients`, `allow_services`, …
    pub list: &'static str,
    /// The pattern that matched (deny lists), or `None` when no pattern
    /// of an allow list did.
    pub pattern: Option<String>,
    /// Which name was judged: `cname` or `sname`.
    pub field: &'static str,
    /// The name judged (`None` when the request had none).
    pub name: Option<String>,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.pattern, &self.name) {
            (Some(p), _) => write!(f, "{} {p:?} matches the {}", self.list, self.field),
            (None, Some(_)) => write!(f, "no pattern of {} matches the {}", self.list, self.field),
            (None, None) => write!(
                f,
                "{} is set and the request has no {}",
                self.list, self.field
            ),
        }
    }
}

impl Policy {
    /// True when no list is set (every request passes, nothing is built).
    pub fn is_open(&self) -> bool {
        self.allow_clients.is_empty()
            && self.deny_clients.is_empty()
            && self.allow_services.is_empty()
            && self.deny_services.is_empty()
    }

    /// Checks every pattern: not empty, no control characters.
    pub fn validate(&self, realm: &str) -> Result<(), String> {
        let lists = [
            ("allow_clients", &self.allow_clients),
            ("deny_clients", &self.deny_clients),
            ("allow_services", &self.allow_services),
            ("deny_services", &self.deny_services),
        ];
        for (key, list) in lists {
            for p in list.iter() {
                if p.is_empty() || p.chars().any(char::is_control) {
                    return Err(format!(
                        "[realms.{realm:?}] {key}: {p:?} is not a principal pattern \
                         (empty, or holds control characters)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Judges a KDC request of realm `realm`: `as_req` for an AS-REQ,
    /// with the names as written by [`PrincipalName`]'s `Display`.
    ///
    /// [`PrincipalName`]: krb5_wss_proto::principal::PrincipalName
    pub fn check(
        &self,
        realm: &str,
        as_req: bool,
        cname: Option<&str>,
        sname: Option<&str>,
    ) -> Result<(), Denial> {
        if self.is_open() {
            return Ok(());
        }
        if as_req {
            judge(
                realm,
                "cname",
                cname,
                ("allow_clients", &self.allow_clients),
                ("deny_clients", &self.deny_clients),
            )?;
        }
        judge(
            realm,
            "sname",
            sname,
            ("allow_services", &self.allow_services),
            ("deny_services", &self.deny_services),
        )
    }
}

/// A name `name` (without realm) of `realm` against a pattern.
fn pattern_matches(pattern: &str, name: &str, realm: &str) -> bool {
    // An `@` not escaped with `\` (an enterprise name's `\@` is part of
    // the name) means the pattern names the realm too.
    let has_realm = pattern.contains('@')
        && pattern
            .char_indices()
            .any(|(i, c)| c == '@' && !pattern[..i].ends_with('\\'));
    if has_realm {
        let mut full = String::with_capacity(name.len() + 1 + realm.len());
        full.push_str(name);
        full.push('@');
        full.push_str(realm);
        glob::matches(pattern, &full)
    } else {
        glob::matches(pattern, name)
    }
}

fn judge(
    realm: &str,
    field: &'static str,
    name: Option<&str>,
    (allow_key, allow): (&'static str, &[String]),
    (deny_key, deny): (&'static str, &[String]),
) -> Result<(), Denial> {
    let denial = |list, pattern: Option<&String>| Denial {
        list,
        pattern: pattern.cloned(),
        field,
        name: name.map(str::to_string),
    };
    match name {
        Some(n) => {
            if let Some(p) = deny.iter().find(|p| pattern_matches(p, n, realm)) {
                return Err(denial(deny_key, Some(p)));
            }
            if !allow.is_empty() && !allow.iter().any(|p| pattern_matches(p, n, realm)) {
                return Err(denial(allow_key, None));
            }
        }
        None if !allow.is_empty() => return Err(denial(allow_key, None)),
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use krb5_wss_proto::kerberos::{check_kdc_request, KdcRequest, KdcRequestKind};
    use krb5_wss_proto::samples;

    trait Judge {
        fn judge_req(&self, realm: &str, req: &KdcRequest) -> Result<(), Denial>;
    }

    impl Judge for Policy {
        fn judge_req(&self, realm: &str, req: &KdcRequest) -> Result<(), Denial> {
            let cname = req.cname.as_ref().map(ToString::to_string);
            let sname = req.sname.as_ref().map(ToString::to_string);
            Policy::check(
                self,
                realm,
                req.kind == KdcRequestKind::AsReq,
                cname.as_deref(),
                sname.as_deref(),
            )
        }
    }

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn as_req(client: &str, sname: &[&str]) -> KdcRequest {
        check_kdc_request(&samples::as_req_for("EXAMPLE.COM", client, sname)).unwrap()
    }

    fn tgs_req(sname: &[&str]) -> KdcRequest {
        check_kdc_request(&samples::tgs_req_for("EXAMPLE.COM", sname)).unwrap()
    }

    #[test]
    fn open_policy_allows_everything() {
        let p = Policy::default();
        assert!(p.is_open());
        assert!(p
            .judge_req("EXAMPLE.COM", &as_req("a", &["krbtgt", "EXAMPLE.COM"]))
            .is_ok());
    }

    #[test]
    fn dmz_example() {
        let p = Policy {
            allow_services: list(&["krbtgt/EXAMPLE.COM", "postgres/db.example.com"]),
            ..Default::default()
        };
        let r = "EXAMPLE.COM";
        assert!(p.judge_req(r, &as_req("app", &["krbtgt", r])).is_ok());
        assert!(p
            .judge_req(r, &tgs_req(&["postgres", "db.example.com"]))
            .is_ok());
        let d = p
            .judge_req(r, &tgs_req(&["host", "db.example.com"]))
            .unwrap_err();
        assert_eq!((d.list, d.field), ("allow_services", "sname"));
        assert_eq!(d.name.as_deref(), Some("host/db.example.com"));
        assert!(d.to_string().contains("no pattern of allow_services"));
        // An AS-REQ straight for the service is allowed too (it is listed).
        assert!(p
            .judge_req(r, &as_req("app", &["postgres", "db.example.com"]))
            .is_ok());
        assert!(p
            .judge_req(r, &as_req("app", &["Postgres", "db.example.com"]))
            .is_err());
    }

    #[test]
    fn deny_wins_and_realm_forms() {
        let p = Policy {
            allow_clients: list(&["svc-*", "alice@EXAMPLE.COM"]),
            deny_clients: list(&["svc-bad"]),
            deny_services: list(&["kadmin/*"]),
            ..Default::default()
        };
        let r = "EXAMPLE.COM";
        let tgt = ["krbtgt", r];
        assert!(p.judge_req(r, &as_req("svc-web", &tgt)).is_ok());
        assert!(p.judge_req(r, &as_req("alice", &tgt)).is_ok());
        let d = p.judge_req(r, &as_req("svc-bad", &tgt)).unwrap_err();
        assert_eq!(d.list, "deny_clients");
        assert_eq!(d.pattern.as_deref(), Some("svc-bad"));
        assert_eq!(
            p.judge_req(r, &as_req("bob", &tgt)).unwrap_err().list,
            "allow_clients"
        );
        // alice@OTHER.ORG is not alice@EXAMPLE.COM.
        assert!(p.judge_req("OTHER.ORG", &as_req("alice", &tgt)).is_err());
        let d = p
            .judge_req(r, &as_req("svc-web", &["kadmin", "changepw"]))
            .unwrap_err();
        assert_eq!((d.list, d.field), ("deny_services", "sname"));
        // Client lists do not apply to a TGS-REQ (no cname in the clear).
        assert!(p.judge_req(r, &tgs_req(&["host", "x"])).is_ok());
        assert!(p.judge_req(r, &tgs_req(&["kadmin", "admin"])).is_err());
    }

    #[test]
    fn allow_list_needs_the_name() {
        let p = Policy {
            allow_clients: list(&["*"]),
            ..Default::default()
        };
        let mut req = as_req("a", &["krbtgt", "R"]);
        req.cname = None;
        let d = p.judge_req("R", &req).unwrap_err();
        assert!(d.name.is_none());
        assert!(d.to_string().contains("has no cname"), "{d}");
        // Deny lists only: a request without the name passes.
        let p = Policy {
            deny_clients: list(&["*"]),
            ..Default::default()
        };
        assert!(p.judge_req("R", &req).is_ok());
    }

    #[test]
    fn enterprise_names_keep_their_escaped_at() {
        let p = Policy {
            allow_clients: list(&["*\\@corp.example.com"]),
            ..Default::default()
        };
        assert!(p
            .judge_req("R", &as_req("u@corp.example.com", &["krbtgt", "R"]))
            .is_ok());
        assert!(p
            .judge_req("R", &as_req("u@evil.example", &["krbtgt", "R"]))
            .is_err());
    }

    #[test]
    fn patterns_are_validated() {
        let p = Policy {
            deny_services: list(&[""]),
            ..Default::default()
        };
        assert!(p.validate("R").unwrap_err().contains("deny_services"));
        let p = Policy {
            allow_clients: list(&["a\nb"]),
            ..Default::default()
        };
        assert!(p.validate("R").is_err());
    }
}
