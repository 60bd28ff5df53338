//! Roles and machine bindings read from a verified client certificate
//! (mutual TLS).
//!
//! A certificate names its roles with URI subject alternative names:
//! `jr:agent` (an agent that may write as any machine),
//! `jr:agent:<machine-id>` (an agent bound to that machine id) and
//! `jr:reader`. Certificates without such SANs may use the subject
//! instead: an organizational unit (OU) `agent` or `reader` gives the
//! role, and for an agent a common name (CN) of 32 hex digits binds it to
//! that machine id. Several URI SANs give several roles; two different
//! machine ids in one certificate are refused.

use super::{Principal, Role};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The URI SAN prefix of journal-router roles.
pub const URI_PREFIX: &str = "jr:";

/// What the certificate grants, or why it grants nothing.
pub fn principal(der: &[u8]) -> Result<Principal, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("the client certificate cannot be parsed: {e}"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .find_map(|a| a.as_str().ok())
        .map(str::to_owned);
    let name = format!("certificate CN={}", cn.as_deref().unwrap_or("(none)"));
    let mut roles = Vec::new();
    let mut machine_id: Option<String> = None;
    let mut bind = |m: &str, roles: &mut Vec<Role>| -> Result<(), String> {
        if !jr_agent::config::is_id128(m) {
            return Err(format!(
                "{name}: {URI_PREFIX}agent:{m} does not name a machine id (32 hex digits)"
            ));
        }
        let m = m.to_ascii_lowercase();
        match &machine_id {
            Some(old) if *old != m => {
                return Err(format!("{name} binds two machine ids, {old} and {m}"))
            }
            _ => machine_id = Some(m),
        }
        push(roles, Role::Agent);
        Ok(())
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for g in &san.value.general_names {
            let GeneralName::URI(uri) = g else { continue };
            let Some(rest) = uri.strip_prefix(URI_PREFIX) else {
                continue;
            };
            match rest.split_once(':') {
                None if rest == "agent" => push(&mut roles, Role::Agent),
                None if rest == "reader" => push(&mut roles, Role::Reader),
                Some(("agent", m)) => bind(m, &mut roles)?,
                _ => return Err(format!("{name}: unknown role URI {uri:?}")),
            }
        }
    }
    if roles.is_empty() {
        for ou in cert
            .subject()
            .iter_organizational_unit()
            .filter_map(|a| a.as_str().ok())
        {
            match ou {
                "agent" => {
                    push(&mut roles, Role::Agent);
                    if let Some(cn) = cn.as_deref().filter(|c| jr_agent::config::is_id128(c)) {
                        bind(cn, &mut roles)?;
                    }
                }
                "reader" => push(&mut roles, Role::Reader),
                _ => {}
            }
        }
    }
    if roles.is_empty() {
        return Err(format!(
            "{name} names no role: give it a URI SAN {URI_PREFIX}agent, \
             {URI_PREFIX}agent:<machine-id> or {URI_PREFIX}reader (or OU=agent / OU=reader)"
        ));
    }
    Ok(Principal {
        name,
        roles,
        machine_id,
    })
}

fn push(roles: &mut Vec<Role>, r: Role) {
    if !roles.contains(&r) {
        roles.push(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn cert(cn: &str, ou: Option<&str>, uris: &[&str]) -> Vec<u8> {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        if let Some(ou) = ou {
            dn.push(DnType::OrganizationalUnitName, ou);
        }
        p.distinguished_name = dn;
        p.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().unwrap()))
            .collect();
        let key = KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    const M: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn uri_sans_give_roles_and_bindings() {
        let p = principal(&cert("web-1", None, &[&format!("jr:agent:{M}")])).unwrap();
        assert_eq!(p.roles, vec![Role::Agent]);
        assert_eq!(p.machine_id.as_deref(), Some(M));
        assert_eq!(p.name, "certificate CN=web-1");
        let p = principal(&cert("ops", None, &["jr:reader", "jr:agent"])).unwrap();
        assert_eq!(p.roles, vec![Role::Reader, Role::Agent]);
        assert_eq!(p.machine_id, None);
        let e = principal(&cert("x", None, &["jr:admin"])).unwrap_err();
        assert!(e.contains("jr:admin"), "{e}");
        let e = principal(&cert("x", None, &["jr:agent:zz"])).unwrap_err();
        assert!(e.contains("32 hex"), "{e}");
    }

    #[test]
    fn subject_is_the_fallback() {
        let p = principal(&cert(M, Some("agent"), &[])).unwrap();
        assert_eq!(p.roles, vec![Role::Agent]);
        assert_eq!(p.machine_id.as_deref(), Some(M));
        let p = principal(&cert("ops", Some("reader"), &[])).unwrap();
        assert_eq!(p.roles, vec![Role::Reader]);
        let e = principal(&cert("nobody", None, &["https://example.net"])).unwrap_err();
        assert!(e.contains("names no role") && e.contains("nobody"), "{e}");
    }
}
