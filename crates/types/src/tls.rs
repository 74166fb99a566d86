//! TLS protocol versions and cipher suites as Consul names them
//! (`tls_min_version = "TLSv1_3"`, `tls_cipher_suites`, the `mesh` config
//! entry's `TLSMinVersion` / `TLSMaxVersion` / `CipherSuites`), read into
//! what meshgate's TLS (rustls) can do: TLS 1.2 and 1.3, and the AEAD
//! suites with ECDHE key exchange.

use std::fmt;

/// A TLS version meshgate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "TLSv1_2",
            TlsVersion::Tls13 => "TLSv1_3",
        })
    }
}

/// What one TLS listener or client allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub min: TlsVersion,
    pub max: TlsVersion,
    /// The TLS 1.2 suites allowed (IANA names, in the order given); empty:
    /// every suite meshgate has. TLS 1.3 suites are not configurable (as in
    /// Consul).
    pub cipher_suites: Vec<String>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            min: TlsVersion::Tls12,
            max: TlsVersion::Tls13,
            cipher_suites: Vec::new(),
        }
    }
}

/// Consul's version names, as its error messages list them.
pub const VERSION_NAMES: &[&str] = &["TLS_AUTO", "TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3"];

/// Whose list of suites a setting is checked against, and named in errors:
/// the agent's (`tls_cipher_suites`) or the proxies' (Envoy's, the `mesh`
/// entry's `CipherSuites`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Agent,
    Proxy,
}

impl Flavor {
    fn known(self) -> &'static [&'static str] {
        match self {
            Flavor::Agent => &CONSUL_CIPHER_SUITES[..10],
            Flavor::Proxy => CONSUL_CIPHER_SUITES,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Flavor::Agent => "Consul Agent",
            Flavor::Proxy => "Envoy",
        }
    }
}

/// The TLS 1.2 suites Consul accepts: the first ten are its agent's list,
/// all fourteen Envoy's.
pub const CONSUL_CIPHER_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
];

/// The TLS 1.2 suites meshgate has: the first six above (no CBC, no RSA key
/// exchange).
pub const AVAILABLE_CIPHER_SUITES: &[&str] = CONSUL_CIPHER_SUITES.split_at(6).0;

/// A version name: `None` for the default (`""`, `TLS_AUTO`), `Err` for an
/// unknown name. `TLSv1_0` and `TLSv1_1` read as `Ok(Some(None))`: valid
/// names of versions meshgate does not speak. Consul's older names
/// (`tls12`, ...) are accepted too.
fn version(v: &str) -> Result<Option<Option<TlsVersion>>, String> {
    Ok(match v {
        "" | "TLS_AUTO" => None,
        "TLSv1_0" | "TLSv1_1" | "tls10" | "tls11" => Some(None),
        "TLSv1_2" | "tls12" => Some(Some(TlsVersion::Tls12)),
        "TLSv1_3" | "tls13" => Some(Some(TlsVersion::Tls13)),
        _ => {
            return Err(format!(
                "no matching TLS version found for {v}, please specify one of [{}]",
                VERSION_NAMES.join(", ")
            ));
        }
    })
}

/// The outcome of reading a TLS configuration: the settings, and what the
/// operator should be told (a version or suite meshgate does not have).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub settings: TlsSettings,
    pub warnings: Vec<String>,
}

/// Reads a minimum and maximum version (either may be empty) and the TLS
/// 1.2 cipher suites, checked against `flavor`'s list.
///
/// Errors, as Consul words them where it has the same rule: an unknown
/// version or suite name; suites with a TLS 1.3 minimum; a maximum below the
/// minimum. meshgate's own: a maximum below TLS 1.2, and a suite list none
/// of whose suites meshgate has (TLS 1.2 could never be agreed). A minimum
/// of `TLSv1_0`/`TLSv1_1` is TLS 1.2, and suites meshgate lacks are left out,
/// each with a warning.
pub fn parse(min: &str, max: &str, suites: &[String], flavor: Flavor) -> Result<Parsed, String> {
    let mut warnings = Vec::new();
    let min_v = version(min)?;
    let max_v = version(max)?;
    let mut settings = TlsSettings::default();
    match min_v {
        None => {}
        Some(None) => warnings.push(format!(
            "minimum TLS version {min}: meshgate speaks TLS 1.2 and 1.3 only, so TLS 1.2 is the minimum"
        )),
        Some(Some(v)) => settings.min = v,
    }
    match max_v {
        None => {}
        Some(None) => {
            return Err(format!(
                "maximum TLS version {max} leaves no version meshgate speaks (TLS 1.2 and 1.3)"
            ));
        }
        Some(Some(v)) => settings.max = v,
    }
    if settings.max < settings.min {
        return Err(format!(
            "configuring max version {max} less than the configured min version {min} is invalid"
        ));
    }
    if suites.is_empty() {
        return Ok(Parsed { settings, warnings });
    }
    if settings.min == TlsVersion::Tls13 {
        return Err("TLS 1.3 cipher suites are not configurable".into());
    }
    let unknown: Vec<&str> = suites
        .iter()
        .map(String::as_str)
        .filter(|s| !flavor.known().contains(s))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "no matching {} TLS cipher suite found for {}",
            flavor.name(),
            unknown.join(",")
        ));
    }
    let (have, lack): (Vec<&String>, Vec<&String>) = suites
        .iter()
        .partition(|s| AVAILABLE_CIPHER_SUITES.contains(&s.as_str()));
    if have.is_empty() {
        return Err(format!(
            "none of the cipher suites {} is available in meshgate, so TLS 1.2 could not be agreed; use one of {}",
            suites.join(","),
            AVAILABLE_CIPHER_SUITES.join(",")
        ));
    }
    if !lack.is_empty() {
        warnings.push(format!(
            "cipher suites {} are not available in meshgate (no CBC or RSA key exchange suites) and are left out",
            lack.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
        ));
    }
    settings.cipher_suites = have.into_iter().cloned().collect();
    Ok(Parsed { settings, warnings })
}

/// Like [`parse`] for the proxies, which must keep serving whatever a
/// stored entry says (one written before a rule existed, or restored from a
/// snapshot): what cannot be honoured is replaced by the closest safe
/// setting, with a warning — an unknown or too old maximum by TLS 1.2, a
/// maximum below the minimum by the minimum, suites with a TLS 1.3 minimum
/// or unknown suites left out, and a list with none of meshgate's suites
/// turns TLS 1.2 off (TLS 1.3 only) rather than allowing suites the operator
/// did not list.
pub fn parse_lenient(min: &str, max: &str, suites: &[String]) -> Parsed {
    if let Ok(p) = parse(min, max, suites, Flavor::Proxy) {
        return p;
    }
    let mut warnings = Vec::new();
    let mut s = TlsSettings::default();
    match version(min) {
        Ok(None) | Ok(Some(None)) => {}
        Ok(Some(Some(v))) => s.min = v,
        Err(e) => warnings.push(format!("{e}; using TLSv1_2")),
    }
    match version(max) {
        Ok(None) => {}
        Ok(Some(Some(v))) => s.max = v,
        Ok(Some(None)) => {
            warnings.push(format!(
                "maximum TLS version {max} is older than any meshgate speaks; using TLSv1_2"
            ));
            s.max = TlsVersion::Tls12;
        }
        Err(e) => warnings.push(format!("{e}; using TLSv1_3")),
    }
    if s.max < s.min {
        warnings.push(format!(
            "maximum TLS version {max} is below the minimum {min}; using {}",
            s.min
        ));
        s.max = s.min;
    }
    if !suites.is_empty() {
        let have: Vec<String> = suites
            .iter()
            .filter(|c| AVAILABLE_CIPHER_SUITES.contains(&c.as_str()))
            .cloned()
            .collect();
        if s.min == TlsVersion::Tls13 {
            warnings.push("cipher suites are ignored with a TLS 1.3 minimum".into());
        } else if have.is_empty() {
            warnings.push(format!(
                "none of the cipher suites {} is available in meshgate: TLS 1.2 is off",
                suites.join(",")
            ));
            s.min = TlsVersion::Tls13;
            s.max = TlsVersion::Tls13;
        } else {
            if have.len() < suites.len() {
                warnings.push("cipher suites meshgate does not have are left out".to_string());
            }
            s.cipher_suites = have;
        }
    }
    Parsed {
        settings: s,
        warnings,
    }
}

/// Splits an agent's `tls_cipher_suites` (comma-separated, Consul's form).
pub fn split_suites(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(min: &str, max: &str, suites: &[&str]) -> Result<Parsed, String> {
        let suites: Vec<String> = suites.iter().map(|s| s.to_string()).collect();
        parse(min, max, &suites, Flavor::Proxy)
    }

    #[test]
    fn versions() {
        let d = p("", "", &[]).unwrap();
        assert_eq!(d.settings, TlsSettings::default());
        assert!(d.warnings.is_empty());
        assert_eq!(p("TLS_AUTO", "TLS_AUTO", &[]).unwrap(), d);
        let s = p("TLSv1_3", "", &[]).unwrap().settings;
        assert_eq!((s.min, s.max), (TlsVersion::Tls13, TlsVersion::Tls13));
        let s = p("", "TLSv1_2", &[]).unwrap().settings;
        assert_eq!((s.min, s.max), (TlsVersion::Tls12, TlsVersion::Tls12));
        assert_eq!(p("tls13", "", &[]).unwrap().settings.min, TlsVersion::Tls13);
        let old = p("TLSv1_0", "", &[]).unwrap();
        assert_eq!(old.settings.min, TlsVersion::Tls12);
        assert!(
            old.warnings[0].contains("TLS 1.2 is the minimum"),
            "{old:?}"
        );
        assert_eq!(
            p("TLSv1_4", "", &[]).unwrap_err(),
            "no matching TLS version found for TLSv1_4, please specify one of [TLS_AUTO, TLSv1_0, TLSv1_1, TLSv1_2, TLSv1_3]"
        );
        assert!(
            p("", "TLSv1_1", &[])
                .unwrap_err()
                .contains("leaves no version")
        );
        assert_eq!(
            p("TLSv1_3", "TLSv1_2", &[]).unwrap_err(),
            "configuring max version TLSv1_2 less than the configured min version TLSv1_3 is invalid"
        );
    }

    #[test]
    fn suites() {
        let s = p(
            "TLSv1_2",
            "",
            &[
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
            ],
        )
        .unwrap();
        assert_eq!(
            s.settings.cipher_suites,
            vec!["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".to_string()]
        );
        assert!(
            s.warnings[0].contains("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
            "{s:?}"
        );
        assert_eq!(
            p("TLSv1_3", "", &["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]).unwrap_err(),
            "TLS 1.3 cipher suites are not configurable"
        );
        assert_eq!(
            p(
                "",
                "",
                &["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "X", "Y"]
            )
            .unwrap_err(),
            "no matching Envoy TLS cipher suite found for X,Y"
        );
        // The agent's list has no RSA key exchange suites (Consul's).
        let rsa = vec!["TLS_RSA_WITH_AES_128_GCM_SHA256".to_string()];
        assert_eq!(
            parse("", "", &rsa, Flavor::Agent).unwrap_err(),
            "no matching Consul Agent TLS cipher suite found for TLS_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert!(
            p("", "", &["TLS_RSA_WITH_AES_128_CBC_SHA"])
                .unwrap_err()
                .contains("could not be agreed")
        );
        assert_eq!(
            split_suites(" TLS_A , TLS_B,,"),
            vec!["TLS_A".to_string(), "TLS_B".to_string()]
        );
    }

    #[test]
    fn lenient_for_stored_entries() {
        let l = |min: &str, max: &str, suites: &[&str]| {
            let suites: Vec<String> = suites.iter().map(|s| s.to_string()).collect();
            parse_lenient(min, max, &suites)
        };
        let p = l("", "TLSv1_1", &[]);
        assert_eq!(
            (p.settings.min, p.settings.max),
            (TlsVersion::Tls12, TlsVersion::Tls12)
        );
        assert_eq!(p.warnings.len(), 1);
        let p = l("", "", &["TLS_RSA_WITH_AES_128_CBC_SHA"]);
        assert_eq!(p.settings.min, TlsVersion::Tls13, "TLS 1.2 off: {p:?}");
        let p = l("TLSv1_2", "", &["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]);
        assert!(p.warnings.is_empty());
        assert_eq!(p.settings.cipher_suites.len(), 1);
    }
}
