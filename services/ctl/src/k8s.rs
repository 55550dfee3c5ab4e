//! `cairnctl k8s check|status|join`: the k8s-node role's self-check, its
//! state, and the kubelet's join credentials.
//! The CRI client lives in the role's own program, `/usr/sbin/cairn-k8s`
//! (tonic and the CRI protobufs stay out of cairnctl, which every image
//! carries); cairnctl becomes that program with the same options, so its
//! output and exit status are the command's.

use std::os::unix::process::CommandExt;
use std::path::Path;

use clap::Subcommand;

/// Where the role puts its helper.
pub const PROGRAM: &str = "/usr/sbin/cairn-k8s";

/// `cairnctl k8s ...`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum K8sCommand {
    /// Drive containerd through the CRI as the kubelet would (pod sandbox with CNI and a
    /// host port, a container from the local pause image, its log), then remove it all.
    /// Exit 1 when a step fails.
    Check {
        /// Leave the pod running: host port 30080 answers "cairn-selfcheck".
        #[arg(long)]
        keep: bool,
        /// Only remove what an earlier `--keep` left.
        #[arg(long, conflicts_with = "keep")]
        clean: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show containerd's CRI status and version, runc's version, the CNI network, the
    /// pause image, pods and the kubelet's state. Exit 1 when the runtime is not ready.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give the kubelet what it joins the cluster with: a bootstrap token and the cluster's
    /// CA certificate, stored on the data partition (never in the image). The kubelet
    /// starts bootstrapping as soon as both are there.
    Join {
        /// The bootstrap token, `<id>.<secret>` (`kubeadm token create` prints one).
        #[arg(long)]
        token: String,
        /// The cluster CA certificate, PEM text (e.g. `--ca-cert "$(cat ca.crt)"`).
        #[arg(long, allow_hyphen_values = true)]
        ca_cert: String,
    },
}

/// The helper's arguments for a command.
pub fn args(cmd: &K8sCommand) -> Vec<String> {
    let flag = |on: bool, f: &'static str| on.then_some(f.to_owned());
    match cmd {
        // `=`: a PEM value starts with dashes.
        K8sCommand::Join { token, ca_cert } => vec![
            "join".to_owned(),
            format!("--token={token}"),
            format!("--ca-cert={ca_cert}"),
        ],
        &K8sCommand::Check { keep, clean, json } => std::iter::once("check".to_owned())
            .chain(flag(keep, "--keep"))
            .chain(flag(clean, "--clean"))
            .chain(flag(json, "--json"))
            .collect(),
        &K8sCommand::Status { json } => std::iter::once("status".to_owned())
            .chain(flag(json, "--json"))
            .collect(),
    }
}

/// Becomes `program` with the command's arguments; returns only on failure.
pub fn exec(program: &Path, cmd: &K8sCommand) -> anyhow::Error {
    if !program.is_file() {
        return anyhow::anyhow!(
            "{} is missing: `cairnctl k8s` works on k8s-node boxes only",
            program.display()
        );
    }
    let err = std::process::Command::new(program).args(args(cmd)).exec();
    anyhow::anyhow!("cannot run {}: {err}", program.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_map_to_the_helpers_arguments() {
        assert_eq!(
            args(&K8sCommand::Check {
                keep: true,
                clean: false,
                json: true
            }),
            ["check", "--keep", "--json"]
        );
        assert_eq!(args(&K8sCommand::Status { json: false }), ["status"]);
        assert_eq!(
            args(&K8sCommand::Join {
                token: "abcdef.0123456789abcdef".into(),
                ca_cert: "-----BEGIN".into()
            }),
            [
                "join",
                "--token=abcdef.0123456789abcdef",
                "--ca-cert=-----BEGIN"
            ]
        );
    }

    #[test]
    fn a_box_without_the_helper_says_so() {
        let e = exec(
            Path::new("/nonexistent/cairn-k8s"),
            &K8sCommand::Status { json: false },
        );
        assert!(
            e.to_string().contains("works on k8s-node boxes only"),
            "{e}"
        );
    }
}
