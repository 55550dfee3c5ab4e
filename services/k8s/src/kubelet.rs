//! `cairn-k8s kubelet` and `cairn-k8s join`: the kubelet service and the
//! operator's way to hand a box its join credentials.
//!
//! With a kubelet in the image (the site named one) the service waits until
//! the box can authenticate to the API server — a client certificate from an
//! earlier bootstrap, or a bootstrap token and the cluster CA written by
//! `cairnctl k8s join` — and then becomes the kubelet with the files the
//! builder rendered. Without one it says so and exits 0, so the box is an
//! honest runtime-only node and never pretends to be a full one.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The rendered KubeletConfiguration.
pub const CONFIG: &str = "/etc/kubernetes/kubelet-config.yaml";
/// The rendered bootstrap kubeconfig.
pub const BOOTSTRAP_KUBECONFIG: &str = "/etc/kubernetes/bootstrap-kubelet.conf";
/// The kubeconfig the kubelet writes after bootstrapping (data partition).
pub const KUBECONFIG: &str = "/var/lib/kubelet/kubeconfig";
/// What the console says without a kubelet.
pub const NOT_CONFIGURED: &str = "kubelet: not configured (the site names no [k8s] kubelet): this box runs the container runtime only";

/// Errors of `join`: bad credentials or a failed write.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The token is not a bootstrap token.
    #[error(
        "--token: {0:?} is not a bootstrap token (`<id>.<secret>`: 6 and 16 characters of [a-z0-9])"
    )]
    Token(String),
    /// The CA is not a PEM certificate.
    #[error("--ca-cert: {0}")]
    Ca(String),
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Whether `t` has the form of a bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`).
pub fn is_bootstrap_token(t: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    t.split_once('.')
        .is_some_and(|(id, secret)| ok(id, 6) && ok(secret, 16))
}

/// Checks that `pem` holds at least one certificate and nothing but PEM
/// certificate blocks; returns it with a final newline.
pub fn check_ca_pem(pem: &str) -> Result<String, JoinError> {
    let mut certs = 0;
    let mut inside = false;
    for line in pem.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        match (inside, line) {
            (false, "-----BEGIN CERTIFICATE-----") => inside = true,
            (true, "-----END CERTIFICATE-----") => {
                inside = false;
                certs += 1;
            }
            (true, l)
                if l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) => {}
            (false, l) => {
                return Err(JoinError::Ca(format!(
                    "not a PEM certificate: unexpected line {l:?} outside a CERTIFICATE block"
                )));
            }
            (true, _) => {
                return Err(JoinError::Ca(
                    "not a PEM certificate: a line inside the CERTIFICATE block is not base64"
                        .into(),
                ));
            }
        }
    }
    if inside {
        return Err(JoinError::Ca(
            "the CERTIFICATE block has no END line".into(),
        ));
    }
    if certs == 0 {
        return Err(JoinError::Ca(
            "no `-----BEGIN CERTIFICATE-----` block: give the cluster CA's PEM text".into(),
        ));
    }
    let mut out = pem.trim_end().to_owned();
    out.push('\n');
    Ok(out)
}

/// Writes `text` to `path` atomically (temporary file, fsync, rename) with `mode`.
fn write_atomic(path: &Path, text: &str, mode: u32) -> Result<(), JoinError> {
    let io = |source| JoinError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Stores the join credentials: the token (mode 0600) and the CA (0644),
/// in a directory only root can enter. Validates both first, so a bad
/// argument changes nothing.
pub fn join(token_file: &Path, ca_file: &Path, token: &str, ca_pem: &str) -> Result<(), JoinError> {
    let token = token.trim();
    if !is_bootstrap_token(token) {
        return Err(JoinError::Token(token.to_owned()));
    }
    let ca = check_ca_pem(ca_pem)?;
    write_atomic(ca_file, &ca, 0o644)?;
    write_atomic(token_file, &format!("{token}\n"), 0o600)
}

/// What the kubelet can authenticate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// It bootstrapped before: its own kubeconfig and client certificate.
    Bootstrapped,
    /// A bootstrap token and the CA are there (`cairnctl k8s join`).
    Token,
    /// Neither: the kubelet cannot join yet.
    Missing,
}

/// Which credentials are on the data partition.
pub fn credentials(kubeconfig: &Path, token_file: &Path, ca_file: &Path) -> Credentials {
    if kubeconfig.is_file() {
        Credentials::Bootstrapped
    } else if token_file.is_file() && ca_file.is_file() {
        Credentials::Token
    } else {
        Credentials::Missing
    }
}

/// `(major, minor)` from `kubelet --version` output (`Kubernetes v1.20.2`).
pub fn parse_version(out: &str) -> Option<(u32, u32)> {
    let v = out.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The kubelet's arguments for node `node` at `ip`, for kubelet `version`.
/// The CRI socket is given as a flag (every version has it; the config
/// field only exists from 1.27 on), and kubelets before 1.24, which still
/// carry dockershim, are told to use a remote runtime.
pub fn args(node: &str, ip: Option<IpAddr>, version: Option<(u32, u32)>) -> Vec<String> {
    let mut a = vec![
        format!("--config={CONFIG}"),
        format!("--bootstrap-kubeconfig={BOOTSTRAP_KUBECONFIG}"),
        format!("--kubeconfig={KUBECONFIG}"),
        format!("--hostname-override={node}"),
    ];
    if let Some(ip) = ip {
        a.push(format!("--node-ip={ip}"));
    }
    if version.is_some_and(|v| v < (1, 24)) {
        a.push("--container-runtime=remote".to_owned());
    }
    a.push(format!(
        "--container-runtime-endpoint=unix://{}",
        crate::CRI_SOCKET
    ));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2Fpcm4=\nAAAA+/==\n-----END CERTIFICATE-----\n";

    #[test]
    fn args_name_the_rendered_files_the_node_and_the_cri_socket() {
        let a = args("k1", "192.0.2.41".parse().ok(), Some((1, 30)));
        assert_eq!(
            a,
            [
                "--config=/etc/kubernetes/kubelet-config.yaml",
                "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
                "--kubeconfig=/var/lib/kubelet/kubeconfig",
                "--hostname-override=k1",
                "--node-ip=192.0.2.41",
                "--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
            ]
        );
    }

    #[test]
    fn kubelets_before_1_24_are_told_to_use_a_remote_runtime() {
        let a = args("k1", None, Some((1, 20)));
        assert!(
            a.contains(&"--container-runtime=remote".to_owned()),
            "{a:?}"
        );
        assert!(
            !args("k1", None, Some((1, 24))).contains(&"--container-runtime=remote".to_owned())
        );
        // An unreadable version gets the modern flags.
        assert!(!args("k1", None, None).contains(&"--container-runtime=remote".to_owned()));
    }

    #[test]
    fn versions_are_read_from_kubelet_output() {
        assert_eq!(parse_version("Kubernetes v1.20.2\n"), Some((1, 20)));
        assert_eq!(parse_version("Kubernetes v1.31.0-rc.1"), Some((1, 31)));
        assert_eq!(
            parse_version("Kubernetes v1.20.5+really1.20.2"),
            Some((1, 20))
        );
        assert_eq!(parse_version("kubelet"), None);
        assert_eq!(parse_version("Kubernetes vX.Y"), None);
    }

    #[test]
    fn tokens_have_the_bootstrap_form() {
        assert!(is_bootstrap_token("abcdef.0123456789abcdef"));
        for bad in [
            "",
            "abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
            "ABCDEF.0123456789abcdef",
            "abcdef.0123456789abcdef.x",
            "abc-ef.0123456789abcdef",
        ] {
            assert!(!is_bootstrap_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_ca_must_be_pem_certificates() {
        assert_eq!(check_ca_pem(CA.trim_end()).unwrap(), CA);
        assert!(check_ca_pem(&format!("{CA}{CA}")).is_ok());
        let e = check_ca_pem("").unwrap_err().to_string();
        assert!(e.contains("no `-----BEGIN CERTIFICATE-----` block"), "{e}");
        let e =
            check_ca_pem("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("outside a CERTIFICATE block"), "{e}");
        let e = check_ca_pem("-----BEGIN CERTIFICATE-----\nAA AA\n-----END CERTIFICATE-----")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not base64"), "{e}");
        let e = check_ca_pem("-----BEGIN CERTIFICATE-----\nAAAA\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no END line"), "{e}");
    }

    #[test]
    fn join_writes_both_files_privately_and_a_bad_argument_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("k8s/bootstrap-token");
        let ca = dir.path().join("k8s/ca.crt");
        let kc = dir.path().join("kubeconfig");
        assert_eq!(credentials(&kc, &token, &ca), Credentials::Missing);

        let e = join(&token, &ca, "nope", CA).unwrap_err().to_string();
        assert!(e.starts_with("--token: \"nope\""), "{e}");
        let e = join(&token, &ca, "abcdef.0123456789abcdef", "x")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--ca-cert: "), "{e}");
        assert!(!token.exists() && !ca.exists());

        join(&token, &ca, " abcdef.0123456789abcdef\n", CA).unwrap();
        assert_eq!(
            std::fs::read_to_string(&token).unwrap(),
            "abcdef.0123456789abcdef\n"
        );
        assert_eq!(std::fs::read_to_string(&ca).unwrap(), CA);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&token), 0o600);
        assert_eq!(mode(&ca), 0o644);
        assert_eq!(mode(token.parent().unwrap()), 0o700);
        assert_eq!(credentials(&kc, &token, &ca), Credentials::Token);
        std::fs::write(&kc, "x").unwrap();
        assert_eq!(credentials(&kc, &token, &ca), Credentials::Bootstrapped);
    }
}
