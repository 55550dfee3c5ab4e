//! The test control plane's PKI, made with the `openssl` CLI: a CA, the
//! apiserver's serving certificate, the service-account key pair and an
//! admin client certificate (`O=system:masters`). ECDSA P-256 keys
//! throughout: fast to make, and what kubelets use too.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The first address of the service range: the `kubernetes` Service's
/// ClusterIP, which the apiserver's certificate must name.
pub const SERVICE_RANGE: &str = "203.0.113.0/24";

/// The `kubernetes` Service's address in [`SERVICE_RANGE`].
pub const KUBERNETES_SERVICE_IP: &str = "203.0.113.1";

/// Paths of the files [`generate`] writes.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate (PEM).
    pub ca_crt: PathBuf,
    /// The CA key; the controller manager signs node certificates with it.
    pub ca_key: PathBuf,
    /// The apiserver's serving certificate.
    pub apiserver_crt: PathBuf,
    /// Its key.
    pub apiserver_key: PathBuf,
    /// The service-account signing key.
    pub sa_key: PathBuf,
    /// Its public half, which the apiserver verifies tokens with.
    pub sa_pub: PathBuf,
    /// The admin client certificate (`CN=cairn-admin, O=system:masters`).
    pub admin_crt: PathBuf,
    /// Its key.
    pub admin_key: PathBuf,
}

/// The subjectAltName of the apiserver's certificate for `addr`.
pub fn apiserver_sans(addr: IpAddr) -> String {
    format!(
        "IP:{addr},IP:{KUBERNETES_SERVICE_IP},DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    )
}

/// Writes the PKI into `dir` (which must exist) for an apiserver at `addr`.
pub fn generate(dir: &Path, addr: IpAddr) -> Result<Pki, String> {
    let p = |n: &str| dir.join(n);
    let pki = Pki {
        ca_crt: p("ca.crt"),
        ca_key: p("ca.key"),
        apiserver_crt: p("apiserver.crt"),
        apiserver_key: p("apiserver.key"),
        sa_key: p("sa.key"),
        sa_pub: p("sa.pub"),
        admin_crt: p("admin.crt"),
        admin_key: p("admin.key"),
    };
    let req_cnf = p("openssl-req.cnf");
    write(
        &req_cnf,
        "[req]\ndistinguished_name = dn\n[dn]\n[v3_ca]\n\
         basicConstraints = critical,CA:TRUE\n\
         keyUsage = critical,keyCertSign,cRLSign,digitalSignature\n\
         subjectKeyIdentifier = hash\n",
    )?;
    for key in [&pki.ca_key, &pki.apiserver_key, &pki.sa_key, &pki.admin_key] {
        ec_key(key)?;
    }
    openssl(
        "CA certificate",
        &[
            "req",
            "-x509",
            "-new",
            "-sha256",
            "-days",
            "3650",
            "-subj",
            "/CN=cairn-lab-ca",
            "-config",
            s(&req_cnf),
            "-extensions",
            "v3_ca",
            "-key",
            s(&pki.ca_key),
            "-out",
            s(&pki.ca_crt),
        ],
    )?;
    openssl(
        "service-account public key",
        &[
            "pkey",
            "-in",
            s(&pki.sa_key),
            "-pubout",
            "-out",
            s(&pki.sa_pub),
        ],
    )?;
    leaf(
        &pki,
        &req_cnf,
        "apiserver",
        "/CN=kube-apiserver",
        &format!(
            "basicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = {}\n",
            apiserver_sans(addr)
        ),
        &pki.apiserver_key,
        &pki.apiserver_crt,
    )?;
    leaf(
        &pki,
        &req_cnf,
        "admin",
        "/O=system:masters/CN=cairn-admin",
        "basicConstraints = critical,CA:FALSE\n\
         keyUsage = critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage = clientAuth\n",
        &pki.admin_key,
        &pki.admin_crt,
    )?;
    Ok(pki)
}

/// A PKCS#10 request (PEM) for a kubelet client certificate of node
/// `node`: `CN=system:node:<node>, O=system:nodes`, with a new P-256 key
/// written to `key`.
pub fn node_client_request(node: &str, key: &Path, req_cnf: &Path) -> Result<String, String> {
    ec_key(key)?;
    let o = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-config",
            s(req_cnf),
            "-key",
            s(key),
            "-subj",
        ])
        .arg(format!("/O=system:nodes/CN=system:node:{node}"))
        .output()
        .map_err(|e| format!("cannot run openssl (openssl package): {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "openssl req for node {node}: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The minimal request config [`generate`] wrote into `dir`.
pub fn req_config(dir: &Path) -> PathBuf {
    dir.join("openssl-req.cnf")
}

/// A certificate signed by the CA: key `key` (already made), subject `subj`,
/// extensions `ext` (openssl config lines).
fn leaf(
    pki: &Pki,
    req_cnf: &Path,
    name: &str,
    subj: &str,
    ext: &str,
    key: &Path,
    crt: &Path,
) -> Result<(), String> {
    let dir = crt.parent().unwrap_or(Path::new("."));
    let csr = dir.join(format!("{name}.csr"));
    let ext_file = dir.join(format!("{name}.ext"));
    write(&ext_file, ext)?;
    openssl(
        &format!("{name} request"),
        &[
            "req",
            "-new",
            "-config",
            s(req_cnf),
            "-subj",
            subj,
            "-key",
            s(key),
            "-out",
            s(&csr),
        ],
    )?;
    openssl(
        &format!("{name} certificate"),
        &[
            "x509",
            "-req",
            "-sha256",
            "-days",
            "365",
            "-in",
            s(&csr),
            "-CA",
            s(&pki.ca_crt),
            "-CAkey",
            s(&pki.ca_key),
            "-CAcreateserial",
            "-CAserial",
            s(&dir.join("ca.srl")),
            "-extfile",
            s(&ext_file),
            "-out",
            s(crt),
        ],
    )
}

fn ec_key(path: &Path) -> Result<(), String> {
    openssl(
        "P-256 key",
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            s(path),
        ],
    )
}

/// Runs `openssl args`; the error names `what` and carries openssl's stderr.
fn openssl(what: &str, args: &[&str]) -> Result<(), String> {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run openssl (openssl package) for the {what}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {} (the {what}) failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// A path as a command argument (the test directories are UTF-8).
fn s(p: &Path) -> &str {
    p.to_str().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apiserver_certificate_names_its_address_and_the_service() {
        assert_eq!(
            apiserver_sans("192.0.2.250".parse().unwrap()),
            "IP:192.0.2.250,IP:203.0.113.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
        );
    }

    /// Runs openssl (no root needed): the certificates chain to the CA and
    /// carry the subjects and names the control plane relies on.
    #[test]
    fn openssl_makes_a_pki_that_verifies() {
        let dir = std::env::temp_dir().join(format!("cairn-k8s-pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pki = generate(&dir, "192.0.2.250".parse().unwrap()).unwrap();
        let text = |crt: &Path| {
            let o = Command::new("openssl")
                .args(["x509", "-noout", "-text", "-in", s(crt)])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let api = text(&pki.apiserver_crt);
        assert!(api.contains("IP Address:192.0.2.250"), "{api}");
        assert!(api.contains("IP Address:203.0.113.1"), "{api}");
        assert!(api.contains("DNS:kubernetes.default.svc"), "{api}");
        assert!(api.contains("TLS Web Server Authentication"), "{api}");
        let admin = text(&pki.admin_crt);
        assert!(
            admin.contains("O = system:masters, CN = cairn-admin"),
            "{admin}"
        );
        assert!(text(&pki.ca_crt).contains("CA:TRUE"));
        for crt in [&pki.apiserver_crt, &pki.admin_crt] {
            let o = Command::new("openssl")
                .args(["verify", "-CAfile", s(&pki.ca_crt), s(crt)])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let req = node_client_request("t1", &dir.join("t1.key"), &req_config(&dir)).unwrap();
        assert!(
            req.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
            "{req}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
