//! `cairn build`: site + profile + role → disk image, PXE set and manifest.
//!
//! Inputs are validated completely before anything is written. The build
//! happens in a sibling temporary directory that replaces `--out` only when
//! every artifact is written, so a failed build leaves no partial output.

mod artifacts;
mod bundle;
pub mod dlopen;
pub mod haproxy;
pub mod hosts;
pub mod k8s;
pub mod manifest;
pub mod oci;
pub mod rootfs;
pub mod rootimg;
pub mod siteversion;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cairn_site::{Profile, Role, Site};

use crate::progress::{Progress, Style};
use crate::role::{RoleDef, RoleUser, SiteConfig, load_role};
use crate::signing::{self, Signer};

/// Where the builder finds its data and keeps its caches.
#[derive(Debug, Clone, clap::Args)]
pub struct Dirs {
    /// Hardware profiles directory (default: the source tree's `hardware-profiles/`).
    #[arg(long)]
    pub profiles_dir: Option<PathBuf>,
    /// Roles directory (default: the source tree's `image/roles/`).
    #[arg(long)]
    pub roles_dir: Option<PathBuf>,
    /// Package and build cache (default: $CAIRN_CACHE, else `.cache/` in the source tree).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Directory holding the static `cairn-init` and `cairnctl` to put in the
    /// image (default: build them from the source tree with cargo).
    #[arg(long)]
    pub box_bin: Option<PathBuf>,
}

/// The source tree this binary was built from.
pub fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

impl Dirs {
    fn profiles(&self) -> PathBuf {
        self.profiles_dir
            .clone()
            .unwrap_or_else(|| source_root().join("hardware-profiles"))
    }
    fn roles(&self) -> PathBuf {
        self.roles_dir
            .clone()
            .unwrap_or_else(|| source_root().join("image/roles"))
    }
    /// The cache directory.
    pub fn cache(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .or_else(|| std::env::var_os("CAIRN_CACHE").map(PathBuf::from))
            .unwrap_or_else(|| source_root().join(".cache"))
    }
}

/// One `cairn build` invocation.
#[derive(Debug, Clone)]
pub struct Request {
    /// Site file.
    pub site: PathBuf,
    /// Profile name.
    pub profile: String,
    /// Role name.
    pub role: String,
    /// Output directory.
    pub out: PathBuf,
    /// Data and cache directories.
    pub dirs: Dirs,
    /// `--version`: replaces `[image] version` of the site file.
    pub version: Option<String>,
    /// `--update-key`: the update signing key (else the site's `update.signing_key`).
    pub update_key: Option<PathBuf>,
}

/// Validated inputs of a build.
#[derive(Debug)]
pub struct Inputs {
    /// The site.
    pub site: Site,
    /// The site file's text, baked into the image as it is (with `--version`
    /// written into `[image] version`).
    pub site_text: String,
    /// The hardware profile.
    pub profile: Profile,
    /// The role asked for.
    pub role: Role,
    /// `base` plus, for other roles, the role's own definition.
    pub roles: Vec<RoleDef>,
    /// Files rendered from the site: (absolute path in the root, text).
    pub site_configs: Vec<(String, String)>,
    /// The k8s-node role's kubelet and pause image, checked (`site_configs = ["k8s"]`).
    pub k8s: Option<k8s::Payload>,
    /// The update signing key, when the site has `[update]` (the build then
    /// writes a signed bundle).
    pub signer: Option<Signer>,
}

impl Inputs {
    /// System users of every role, in role order.
    pub fn users(&self) -> impl Iterator<Item = &RoleUser> {
        self.roles.iter().flat_map(|r| r.users.iter())
    }

    /// Workspace programs every role needs beyond cairn-init and cairnctl.
    pub fn box_binaries(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .roles
            .iter()
            .flat_map(|r| r.box_binaries.iter().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Users every root has (written by `rootfs::config_files`).
const BUILTIN_USERS: &[(&str, u32)] = &[("root", 0), ("nobody", 65_534), ("nogroup", 65_534)];

/// Users of different roles must not collide with each other or the built-ins.
fn check_users(roles: &[RoleDef]) -> Result<()> {
    let mut seen: Vec<(&str, u32, &str)> = BUILTIN_USERS
        .iter()
        .map(|&(n, u)| (n, u, "the image itself"))
        .collect();
    for r in roles {
        for u in &r.users {
            if let Some((_, _, owner)) = seen.iter().find(|(n, id, _)| *n == u.name || *id == u.uid)
            {
                bail!(
                    "role {}: user {:?} (uid {}) collides with a user of {owner}",
                    r.name,
                    u.name,
                    u.uid
                );
            }
            seen.push((&u.name, u.uid, &r.name));
        }
    }
    Ok(())
}

/// Renders the files the roles ask for from the site.
fn render_site_configs(
    site: &Site,
    site_file: &Path,
    roles: &[RoleDef],
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for r in roles {
        for &c in &r.site_configs {
            let text = match c {
                SiteConfig::Haproxy => {
                    let user = roles
                        .iter()
                        .flat_map(|r| r.users.iter())
                        .find(|u| u.name == "haproxy")
                        .with_context(|| {
                            format!(
                                "role {}: renders haproxy.cfg but declares no `haproxy` [[user]]",
                                r.name
                            )
                        })?;
                    let run_as = haproxy::RunAs {
                        name: user.name.clone(),
                        uid: user.uid,
                    };
                    haproxy::render(site, &run_as)
                        .with_context(|| format!("{}", site_file.display()))?
                }
                SiteConfig::Hosts => {
                    out.push((hosts::NSSWITCH_PATH.to_owned(), hosts::NSSWITCH.to_owned()));
                    hosts::render(site)
                }
                SiteConfig::K8s => {
                    out.extend(k8s::render(site, site_file)?);
                    continue;
                }
            };
            out.push((c.path().to_owned(), text));
        }
    }
    Ok(out)
}

/// Loads and checks everything a build needs; nothing is written.
pub fn load_inputs(req: &Request) -> Result<Inputs> {
    let (site, site_text) = match &req.version {
        None => {
            let site = cairn_site::load_site(&req.site)?;
            let text = std::fs::read_to_string(&req.site)
                .with_context(|| format!("reading {}", req.site.display()))?;
            (site, text)
        }
        Some(v) => {
            cairn_update::version::validate(v).map_err(|e| anyhow::anyhow!("--version: {e}"))?;
            // Parse the file as it is first, so its own errors name it plainly.
            cairn_site::load_site(&req.site)?;
            let text = std::fs::read_to_string(&req.site)
                .with_context(|| format!("reading {}", req.site.display()))?;
            let text = siteversion::set_version(&text, v)
                .with_context(|| format!("{}: writing --version", req.site.display()))?;
            let site = cairn_site::parse_site(&text, &req.site)?;
            (site, text)
        }
    };
    let signer = match &site.update {
        None if req.update_key.is_some() => bail!(
            "--update-key: {} has no [update] section, so the build writes no update bundle to sign",
            req.site.display()
        ),
        None => None,
        Some(_) => {
            let base = req.site.parent().map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            });
            let path = signing::key_path(&site, &req.site, req.update_key.as_deref(), base)?;
            Some(signing::load(&site, &req.site, &path)?)
        }
    };
    let mut profile = cairn_site::load_profile(&req.dirs.profiles(), &req.profile)?;
    let role: Role = req
        .role
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--role: {e}"))?;
    let mut roles = vec![load_role(&req.dirs.roles(), "base")?];
    if role != Role::Base {
        roles.push(load_role(&req.dirs.roles(), role.as_str())?);
    }
    if site.boxes_with_role(role).next().is_none() {
        bail!(
            "{}: no node has role {role}: a box flashed with this image would match no node",
            req.site.display()
        );
    }
    check_users(&roles)?;
    raise_disk_sizes(&mut profile, &roles);
    let site_configs = render_site_configs(&site, &req.site, &roles)?;
    let k8s = if roles
        .iter()
        .any(|r| r.site_configs.contains(&SiteConfig::K8s))
    {
        Some(k8s::payload(&site, &req.site)?)
    } else {
        None
    };
    Ok(Inputs {
        site,
        site_text,
        profile,
        role,
        roles,
        site_configs,
        k8s,
        signer,
    })
}

/// Raises the profile's root slot and data partition to what the roles need
/// (`root_mib` / `data_mib` in role.toml): the role knows its payload (a
/// kubelet is ~100 MB), the profile only the hardware's disk.
fn raise_disk_sizes(profile: &mut cairn_site::Profile, roles: &[RoleDef]) {
    let d = &mut profile.disk;
    for r in roles {
        d.root_mib = d.root_mib.max(r.root_mib.unwrap_or(0));
        d.data_mib = d.data_mib.max(r.data_mib.unwrap_or(0));
    }
}

/// Removes the temporary build directory unless the build succeeded.
struct TempOut {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempOut {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Runs a build.
pub fn run(req: &Request, style: Style) -> Result<()> {
    let inputs = load_inputs(req)?;
    let out = &req.out;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .context("--out must name a directory")?;
    let mut tmp = TempOut {
        path: parent.join(format!(".{name}.tmp-{}", std::process::id())),
        keep: false,
    };
    let _ = std::fs::remove_dir_all(&tmp.path);
    std::fs::create_dir_all(&tmp.path)
        .with_context(|| format!("creating {}", tmp.path.display()))?;
    let mut progress = Progress::new(style, artifacts::steps(&inputs));
    let summary = artifacts::build(&inputs, &req.dirs, &tmp.path, &mut progress)?;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("removing old {}", out.display()))?;
    }
    std::fs::rename(&tmp.path, out)
        .with_context(|| format!("moving the build to {}", out.display()))?;
    tmp.keep = true;
    match style {
        Style::Json => println!(
            "{}",
            serde_json::json!({"event": "done", "out": out, "summary": summary})
        ),
        Style::Human => eprintln!(
            "built {} ({} for {}) in {:.1} s: {}",
            out.display(),
            inputs.role,
            inputs.profile.name,
            progress.elapsed_s(),
            summary
        ),
        Style::Quiet => {}
    }
    Ok(())
}
