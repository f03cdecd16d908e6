//! Which upstream serves a request: the realm inside it, matched exactly
//! against the configured realms (or those found in DNS), each with the
//! plugin core's [`Upstream`] (pool, URL health, racing failover,
//! deadlines).

use std::collections::HashMap;
use std::sync::Arc;

use krb5_wss::discovery::{discover, DnsService};
use krb5_wss::upstream::{upstream_for, Target, Upstream};
use krb5_wss::url::WssUrl;
use krb5_wss_proto::Service;

use crate::config::Config;

/// Why a request has no upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    /// The relay does not serve the realm.
    UnknownRealm,
    /// The realm is served but has no URL (DNS named none) or its
    /// upstream cannot be made (trust anchors).
    Unavailable(String),
}

/// The realms' upstreams, built from one configuration.
pub struct Router {
    /// The configuration.
    pub config: Config,
    kdc: HashMap<String, Arc<Upstream>>,
    kpasswd: HashMap<String, Arc<Upstream>>,
}

impl Router {
    /// Builds the upstreams of every configured realm (checking the
    /// trust anchors).
    pub fn new(config: Config) -> Result<Router, String> {
        config.check_anchors()?;
        let mut kdc = HashMap::new();
        let mut kpasswd = HashMap::new();
        for (realm, urls) in &config.realms {
            let rc = config
                .options
                .realm_config(realm, urls.kdc.clone(), urls.kpasswd.clone());
            if !urls.kdc.is_empty() {
                let t = Target::new(&rc, Service::Kdc, urls.kdc.clone());
                kdc.insert(realm.clone(), upstream_for(&t)?);
            }
            if !urls.kpasswd.is_empty() {
                let t = Target::new(&rc, Service::Kpasswd, urls.kpasswd.clone());
                kpasswd.insert(realm.clone(), upstream_for(&t)?);
            }
        }
        Ok(Router {
            config,
            kdc,
            kpasswd,
        })
    }

    /// The upstream for `service` of `realm`.
    pub fn route(&self, service: Service, realm: &str) -> Result<Arc<Upstream>, NoRoute> {
        let table = match service {
            Service::Kdc => &self.kdc,
            Service::Kpasswd => &self.kpasswd,
        };
        if let Some(u) = table.get(realm) {
            return Ok(u.clone());
        }
        if self.config.realms.contains_key(realm) {
            return Err(NoRoute::Unavailable(format!(
                "realm {realm} has no {service} URL"
            )));
        }
        if self.config.discover.iter().any(|r| r == realm) {
            return self.discovered(service, realm);
        }
        Err(NoRoute::UnknownRealm)
    }

    /// A realm found in DNS (the core's discovery cache follows the
    /// records' TTLs).
    fn discovered(&self, service: Service, realm: &str) -> Result<Arc<Upstream>, NoRoute> {
        let resolver = krb5_wss::SystemResolver;
        let plaintext = self.config.options.allow_plaintext;
        let urls = |d: &krb5_wss::discovery::Discovered| -> Vec<WssUrl> {
            d.urls
                .iter()
                .map(|f| f.url.clone())
                .filter(|u| u.tls || plaintext)
                .collect()
        };
        let kerberos = discover(&resolver, realm, DnsService::Kerberos, true);
        let kdc = urls(&kerberos);
        let kpasswd = match service {
            Service::Kdc => Vec::new(),
            Service::Kpasswd => urls(&discover(&resolver, realm, DnsService::Kpasswd, true)),
        };
        let mut rc = self.config.options.realm_config(realm, kdc, kpasswd);
        rc.primary = kerberos
            .urls
            .iter()
            .filter(|f| f.primary)
            .map(|f| f.url.clone())
            .collect();
        let list = match service {
            Service::Kdc => rc.kdc.clone(),
            Service::Kpasswd => rc.kpasswd_urls(),
        };
        if list.is_empty() {
            return Err(NoRoute::Unavailable(format!(
                "DNS names no wss {service} URL for realm {realm}"
            )));
        }
        upstream_for(&Target::new(&rc, service, list)).map_err(NoRoute::Unavailable)
    }
}

impl Router {
    /// Closes the pooled connections of every configured realm (a reload:
    /// new connections verify with the new trust anchors).
    pub fn close_pooled(&self) -> usize {
        self.kdc
            .values()
            .chain(self.kpasswd.values())
            .map(|u| u.close_pooled())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::settings::Settings;

    #[test]
    fn realms_match_exactly() {
        let r = Router::new(
            Config::from_settings(&Settings {
                realm: vec!["A.TEST=wss://proxy.invalid/kdc".into()],
                ..Settings::default()
            })
            .unwrap(),
        )
        .unwrap();
        let kdc = r.route(Service::Kdc, "A.TEST").unwrap();
        assert_eq!(kdc.target().urls[0].to_string(), "wss://proxy.invalid/kdc");
        let pw = r.route(Service::Kpasswd, "A.TEST").unwrap();
        assert_eq!(
            pw.target().urls[0].to_string(),
            "wss://proxy.invalid/kpasswd"
        );
        assert_eq!(
            r.route(Service::Kdc, "a.test").err(),
            Some(NoRoute::UnknownRealm)
        );
        assert_eq!(
            r.route(Service::Kdc, "A.TEST.").err(),
            Some(NoRoute::UnknownRealm)
        );
        assert_eq!(
            r.route(Service::Kdc, "B.TEST").err(),
            Some(NoRoute::UnknownRealm)
        );
    }
}
