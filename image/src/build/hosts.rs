//! `/etc/hosts` and `/etc/nsswitch.conf` for roles whose programs resolve
//! names (Gluster's self-heal daemon fetches its volume file from
//! `localhost`). Rendered from the site alone, so every box of a role carries
//! the same bytes.

use cairn_site::Site;

/// Where the name-service switch configuration goes.
pub const NSSWITCH_PATH: &str = "/etc/nsswitch.conf";

/// Files before DNS: without this file glibc asks DNS first and gives up on
/// `localhost` when no resolver answers.
pub const NSSWITCH: &str = "passwd: files\ngroup: files\nhosts: files dns\n";

/// `localhost` for both families, then every node of the site with each of
/// its addresses, as `<addr> <name>[.<domain>] <name>`, in site order.
pub fn render(site: &Site) -> String {
    let mut out = String::from("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n");
    for n in &site.nodes {
        for a in &n.addresses {
            match &site.cluster.domain {
                Some(d) => out.push_str(&format!("{} {}.{d} {}\n", a.addr, n.name, n.name)),
                None => out.push_str(&format!("{} {}\n", a.addr, n.name)),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_storage_example_gives_localhost_and_every_node() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let site = cairn_site::load_site(&root.join("examples/storage-site.toml")).unwrap();
        assert_eq!(
            render(&site),
            "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n\
             192.0.2.31 st1.cairn.test st1\n\
             192.0.2.32 st2.cairn.test st2\n\
             192.0.2.33 st3.cairn.test st3\n"
        );
    }
}
