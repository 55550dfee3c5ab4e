//! The texts the test control plane writes: the admin kubeconfig, the
//! bootstrap-token Secret, the kubeadm-style RBAC for TLS bootstrapping and a
//! node client CSR object. Pure functions, no I/O.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// The apiserver's secure port.
pub const API_PORT: u16 = 6443;

/// The extra group a cairn bootstrap token authenticates into (besides
/// `system:bootstrappers`).
pub const BOOTSTRAP_GROUP: &str = "system:bootstrappers:cairn";

/// `https://<addr>:6443`, IPv6 addresses in brackets.
pub fn server_url(addr: IpAddr) -> String {
    format!("https://{}", SocketAddr::new(addr, API_PORT))
}

/// A bootstrap token (`<id>.<secret>`, id 6 and secret 16 characters of
/// `[a-z0-9]`) from 22 random bytes.
pub fn token_from(random: &[u8; 22]) -> (String, String) {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let pick = |b: &u8| ALPHABET[usize::from(*b) % ALPHABET.len()] as char;
    let id = random[..6].iter().map(pick).collect();
    let secret = random[6..].iter().map(pick).collect();
    (id, secret)
}

/// A kubeconfig for `server` with CA file `ca` and the client certificate
/// `cert`/`key` (files, by absolute path).
pub fn kubeconfig(server: &str, ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: cairn-lab
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: admin@cairn-lab
  context:
    cluster: cairn-lab
    user: admin
current-context: admin@cairn-lab
",
        ca = ca.display(),
        cert = cert.display(),
        key = key.display()
    )
}

/// A kubeconfig with nothing in it: kubectl given `--server`, `--token` and
/// `--certificate-authority` on the command line then uses nothing else.
pub const EMPTY_KUBECONFIG: &str = "apiVersion: v1\nkind: Config\n";

/// The Secret `bootstrap-token-<id>` in kube-system, usable for
/// authentication and for signing the cluster-info ConfigMap.
pub fn bootstrap_token_secret(id: &str, secret: &str) -> String {
    format!(
        "apiVersion: v1
kind: Secret
metadata:
  name: bootstrap-token-{id}
  namespace: kube-system
type: bootstrap.kubernetes.io/token
stringData:
  description: cairn lab bootstrap token
  token-id: {id}
  token-secret: {secret}
  usage-bootstrap-authentication: \"true\"
  usage-bootstrap-signing: \"true\"
  auth-extra-groups: {BOOTSTRAP_GROUP}
"
    )
}

/// The bindings a kubeadm cluster has for TLS bootstrapping: bootstrappers
/// may create CSRs and have their first node client CSR approved
/// automatically; nodes have their renewals approved.
pub fn bootstrap_rbac() -> String {
    [
        (
            "cairn:kubelet-bootstrap",
            "system:node-bootstrapper",
            "system:bootstrappers",
        ),
        (
            "cairn:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "system:bootstrappers",
        ),
        (
            "cairn:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:nodes",
        ),
    ]
    .iter()
    .map(|(name, role, group)| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {name}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {role}
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: {group}
"
        )
    })
    .collect::<Vec<_>>()
    .join("---\n")
}

/// A CertificateSigningRequest `name` for a kubelet client certificate
/// (signer `kubernetes.io/kube-apiserver-client-kubelet`) carrying the PEM
/// PKCS#10 request `csr_pem`.
pub fn node_client_csr(name: &str, csr_pem: &str) -> String {
    format!(
        "apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: {name}
spec:
  request: {}
  signerName: kubernetes.io/kube-apiserver-client-kubelet
  usages:
  - digital signature
  - key encipherment
  - client auth
",
        base64(csr_pem.as_bytes())
    )
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_bootstrap_token_shape() {
        let mut r = [0u8; 22];
        for (i, b) in r.iter_mut().enumerate() {
            *b = (i * 37 + 250) as u8;
        }
        let (id, secret) = token_from(&r);
        assert_eq!(id.len(), 6);
        assert_eq!(secret.len(), 16);
        let ok = |s: &str| {
            s.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        };
        assert!(ok(&id) && ok(&secret), "{id}.{secret}");
        assert_eq!(token_from(&[0; 22]).0, "aaaaaa");
        assert_eq!(token_from(&[35; 22]).1, "9".repeat(16));
    }

    #[test]
    fn server_urls_bracket_ipv6() {
        assert_eq!(
            server_url("192.0.2.250".parse().unwrap()),
            "https://192.0.2.250:6443"
        );
        assert_eq!(
            server_url("2001:db8::fa".parse().unwrap()),
            "https://[2001:db8::fa]:6443"
        );
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc, "{plain:?}");
        }
    }

    #[test]
    fn the_token_secret_and_rbac_name_what_bootstrapping_needs() {
        let s = bootstrap_token_secret("abcdef", "0123456789abcdef");
        for want in [
            "name: bootstrap-token-abcdef",
            "namespace: kube-system",
            "type: bootstrap.kubernetes.io/token",
            "token-id: abcdef",
            "token-secret: 0123456789abcdef",
            "usage-bootstrap-authentication: \"true\"",
            "auth-extra-groups: system:bootstrappers:cairn",
        ] {
            assert!(s.contains(want), "{want:?} missing from\n{s}");
        }
        let r = bootstrap_rbac();
        assert_eq!(r.matches("kind: ClusterRoleBinding").count(), 3);
        assert!(r.contains("name: system:node-bootstrapper"));
        assert!(r.contains("certificatesigningrequests:selfnodeclient\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: Group\n  name: system:nodes"));
    }

    #[test]
    fn kubeconfig_and_csr_texts() {
        let k = kubeconfig(
            "https://192.0.2.250:6443",
            Path::new("/d/ca.crt"),
            Path::new("/d/admin.crt"),
            Path::new("/d/admin.key"),
        );
        assert!(
            k.contains("server: https://192.0.2.250:6443\n    certificate-authority: /d/ca.crt")
        );
        assert!(k.contains("client-key: /d/admin.key"));
        let c = node_client_csr("t1", "PEM");
        assert!(c.contains("request: UEVN\n"));
        assert!(c.contains("signerName: kubernetes.io/kube-apiserver-client-kubelet"));
    }
}
