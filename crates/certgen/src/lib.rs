//! A private certificate authority for the services' mutual TLS: one CA, and one certificate
//! per service that it presents both as a server and as a client.
//!
//! A service's identity is the SPIFFE-style URI in its certificate's subject alternative names,
//! `spiffe://observable-rust/<service>` ([`spiffe_id`]); the servers authorise callers by it.
//! The DNS names and addresses in the same certificate are the ones the service is reached by
//! (compose service names, Kubernetes Service names, loopback for `make run`).
//!
//! Rotation: delete the directory and run `certgen` again (every service reads its files at
//! start-up, so restart them); the CA's key is never written down at all.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// The trust domain of every identity this CA issues.
pub const TRUST_DOMAIN: &str = "observable-rust";
/// The services that get a certificate.
pub const SERVICES: [&str; 3] = ["gateway", "auth", "user"];
/// The CA's certificate file name. The output directory holds one folder per service, with
/// [`CA_FILE`], [`CERT_FILE`] and [`KEY_FILE`] in it: what that service (and only it) mounts.
pub const CA_FILE: &str = "ca.pem";
/// A service's certificate file name, in its folder.
pub const CERT_FILE: &str = "cert.pem";
/// A service's private key file name, in its folder.
pub const KEY_FILE: &str = "key.pem";
/// How long certificates are valid: long enough for a demo, short enough to be rotated.
const VALIDITY_DAYS: i64 = 365;

/// The identity a service's certificate carries.
pub fn spiffe_id(service: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/{service}")
}

/// A certificate and its private key, PEM-encoded.
pub struct Issued {
    /// The certificate.
    pub cert: String,
    /// The private key. Never printed.
    pub key: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A certificate authority held in memory.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    // A day of slack backwards for clocks that disagree a little.
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
}

impl Ca {
    /// A new CA with a fresh key.
    pub fn new() -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{TRUST_DOMAIN} internal CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { issuer })
    }

    /// The CA's certificate, which every service trusts.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `service`, reachable as `service`, its Kubernetes Service names and
    /// loopback; usable to serve and to call.
    pub fn issue(&self, service: &str) -> Result<Issued, rcgen::Error> {
        let dns = [
            service.to_owned(),
            format!("{service}.{TRUST_DOMAIN}.svc"),
            format!("{service}.{TRUST_DOMAIN}.svc.cluster.local"),
            "localhost".to_owned(),
        ];
        let mut params = CertificateParams::new(dns.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, service);
        params
            .subject_alt_names
            .push(SanType::URI(spiffe_id(service).try_into()?));
        for ip in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            params.subject_alt_names.push(SanType::IpAddress(ip));
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// Writes a new CA and a certificate for each of [`SERVICES`] into `dir/<service>/` (with a
/// copy of the CA's certificate in each, so a service needs to be given its own folder only),
/// unless they are all there already (then nothing changes: running services keep trusting
/// each other). Returns whether it wrote. Keys are readable by their owner only; the CA's key
/// is not written anywhere, so rotating means a new set.
pub fn write_missing(dir: &Path) -> Result<bool, Box<dyn std::error::Error>> {
    let complete = SERVICES.iter().all(|service| {
        [CA_FILE, CERT_FILE, KEY_FILE]
            .iter()
            .all(|file| dir.join(service).join(file).is_file())
    });
    if complete {
        return Ok(false);
    }
    let ca = Ca::new()?;
    for service in SERVICES {
        let folder = dir.join(service);
        std::fs::create_dir_all(&folder)?;
        let issued = ca.issue(service)?;
        std::fs::write(folder.join(CA_FILE), ca.pem())?;
        std::fs::write(folder.join(CERT_FILE), &issued.cert)?;
        write_private(&folder.join(KEY_FILE), &issued.key)?;
    }
    Ok(true)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_certificate_names_its_identity_and_addresses_and_is_signed_by_the_ca() {
        let ca = Ca::new().unwrap();
        let issued = ca.issue("auth").unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(issued.cert.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        for expected in [
            "URI(spiffe://observable-rust/auth)",
            "DNSName(auth)",
            "DNSName(auth.observable-rust.svc)",
            "IPAddress(7f:00:00:01)",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} not in {names:?}"
            );
        }
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca.pem().as_bytes()).unwrap();
        let ca_cert = ca_pem.parse_x509().unwrap();
        assert!(ca_cert.is_ca());
        assert_eq!(cert.issuer(), ca_cert.subject());
        assert!(cert.validity().is_valid());
        assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn write_missing_writes_once_and_keeps_keys_private() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_missing(dir.path()).unwrap());
        let before = std::fs::read_to_string(dir.path().join("auth/cert.pem")).unwrap();
        assert!(
            !write_missing(dir.path()).unwrap(),
            "a complete set is left alone"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("auth/cert.pem")).unwrap(),
            before
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("user/key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        // A missing file means a new set: certificates of one CA only.
        std::fs::remove_file(dir.path().join("gateway/key.pem")).unwrap();
        assert!(write_missing(dir.path()).unwrap());
        assert_ne!(
            std::fs::read_to_string(dir.path().join("auth/cert.pem")).unwrap(),
            before
        );
        // Each folder holds one service's key and the common CA, nothing else.
        let files = std::fs::read_dir(dir.path().join("user")).unwrap().count();
        assert_eq!(files, 3);
        assert_eq!(
            std::fs::read(dir.path().join("user/ca.pem")).unwrap(),
            std::fs::read(dir.path().join("auth/ca.pem")).unwrap()
        );
    }
}
