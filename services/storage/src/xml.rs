//! Parsers for the gluster CLI's `--xml` output: peer status, volume info,
//! volume status and heal info. Free of I/O; unknown elements are ignored.

use std::collections::BTreeMap;

use roxmltree::{Document, Node};
use serde::Serialize;

/// Why an answer of the gluster CLI could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    /// Not XML at all.
    #[error("gluster printed no XML: {0}")]
    Syntax(String),
    /// XML without the `<cliOutput>` root.
    #[error("gluster's XML has no <cliOutput>")]
    NoCliOutput,
    /// The command failed (`opRet` not 0).
    #[error("gluster: {0}")]
    Failed(String),
}

/// A peer of this node's pool (`gluster peer status`: the others, not us).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peer {
    /// glusterd's UUID of the peer.
    pub uuid: String,
    /// Every name and address the pool knows the peer by.
    pub hostnames: Vec<String>,
    /// Whether this node's glusterd has a live connection to it.
    pub connected: bool,
    /// The peer state, e.g. `Peer in Cluster`, `Accepted peer request`.
    pub state: String,
}

impl Peer {
    /// Fully joined: in the cluster and connected.
    pub fn in_cluster(&self) -> bool {
        self.connected && self.state == "Peer in Cluster"
    }
}

/// One volume as `gluster volume info` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeInfo {
    /// Name.
    pub name: String,
    /// `Created`, `Started` or `Stopped`.
    pub status: String,
    /// `Replicate`, `Disperse`, `Distribute`, `Distributed-Replicate`, ...
    pub kind: String,
    /// Bricks as `host:path`, in brick order.
    pub bricks: Vec<String>,
    /// Options set on the volume (reconfigured ones).
    pub options: BTreeMap<String, String>,
}

/// One process of `gluster volume status`: a brick or a daemon (self-heal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessStatus {
    /// Brick host, or the daemon's name (`Self-heal Daemon`).
    pub hostname: String,
    /// Brick path, or the host for daemons.
    pub path: String,
    /// Online.
    pub online: bool,
    /// TCP port (bricks), when online.
    pub port: Option<u16>,
    /// Process id, when online.
    pub pid: Option<u32>,
}

/// Pending heal entries of one brick (`gluster volume heal <v> info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrickHeal {
    /// `host:path`.
    pub brick: String,
    /// `Connected`, `Transport endpoint is not connected`, ...
    pub status: String,
    /// Entries waiting for heal; `None` when the brick could not be asked.
    pub entries: Option<u64>,
}

fn parse(text: &str) -> Result<Document<'_>, XmlError> {
    let doc = Document::parse(text).map_err(|e| {
        let first = text.lines().next().unwrap_or_default();
        XmlError::Syntax(format!("{e} (first line: {first:?})"))
    })?;
    let root = doc.root_element();
    if !root.has_tag_name("cliOutput") {
        return Err(XmlError::NoCliOutput);
    }
    let ret = child_text(root, "opRet").unwrap_or("0");
    if ret != "0" {
        let err = child_text(root, "opErrstr")
            .filter(|s| !s.is_empty())
            .unwrap_or("the command failed without a message");
        return Err(XmlError::Failed(err.to_owned()));
    }
    Ok(doc)
}

/// Checks an answer that carries nothing but success or failure.
pub fn check(text: &str) -> Result<(), XmlError> {
    parse(text).map(|_| ())
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(name))
}

fn child_text<'a>(n: Node<'a, '_>, name: &str) -> Option<&'a str> {
    child(n, name).map(|c| c.text().unwrap_or("").trim())
}

fn descendants<'a, 'i>(n: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> {
    n.descendants().filter(move |c| c.has_tag_name(name))
}

/// `gluster --xml peer status` (or `pool list`, which adds `localhost`).
pub fn peers(text: &str) -> Result<Vec<Peer>, XmlError> {
    let doc = parse(text)?;
    let mut out = Vec::new();
    for p in descendants(doc.root_element(), "peer") {
        let mut hostnames: Vec<String> = child(p, "hostnames")
            .map(|h| {
                h.children()
                    .filter(|c| c.has_tag_name("hostname"))
                    .filter_map(|c| c.text().map(|t| t.trim().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(h) = child_text(p, "hostname")
            && !hostnames.iter().any(|x| x == h)
        {
            hostnames.insert(0, h.to_owned());
        }
        out.push(Peer {
            uuid: child_text(p, "uuid").unwrap_or_default().to_owned(),
            hostnames,
            connected: child_text(p, "connected") == Some("1"),
            state: child_text(p, "stateStr").unwrap_or_default().to_owned(),
        });
    }
    Ok(out)
}

/// `gluster --xml volume info`; no volumes gives an empty list.
pub fn volume_info(text: &str) -> Result<Vec<VolumeInfo>, XmlError> {
    let doc = match parse(text) {
        // Older releases answer "No volumes present" as an error.
        Err(XmlError::Failed(m)) if m.contains("No volumes present") => return Ok(Vec::new()),
        r => r?,
    };
    let mut out = Vec::new();
    for v in descendants(doc.root_element(), "volume") {
        let Some(name) = child_text(v, "name") else {
            continue;
        };
        let bricks = child(v, "bricks")
            .map(|b| {
                b.children()
                    .filter(|c| c.has_tag_name("brick"))
                    .filter_map(|c| {
                        child_text(c, "name")
                            .map(str::to_owned)
                            .or_else(|| c.text().map(|t| t.trim().to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let options = child(v, "options")
            .map(|o| {
                o.children()
                    .filter(|c| c.has_tag_name("option"))
                    .filter_map(|c| {
                        Some((
                            child_text(c, "name")?.to_owned(),
                            child_text(c, "value").unwrap_or_default().to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(VolumeInfo {
            name: name.to_owned(),
            status: child_text(v, "statusStr").unwrap_or_default().to_owned(),
            kind: child_text(v, "typeStr").unwrap_or_default().to_owned(),
            bricks,
            options,
        });
    }
    Ok(out)
}

/// `gluster --xml volume status <v>`: bricks and daemons.
pub fn volume_status(text: &str) -> Result<Vec<ProcessStatus>, XmlError> {
    let doc = parse(text)?;
    Ok(descendants(doc.root_element(), "node")
        .map(|n| {
            let num = |k: &str| {
                child_text(n, k)
                    .and_then(|t| t.parse::<i64>().ok())
                    .filter(|&v| v > 0)
            };
            ProcessStatus {
                hostname: child_text(n, "hostname").unwrap_or_default().to_owned(),
                path: child_text(n, "path").unwrap_or_default().to_owned(),
                online: child_text(n, "status") == Some("1"),
                port: num("port").and_then(|p| u16::try_from(p).ok()),
                pid: num("pid").and_then(|p| u32::try_from(p).ok()),
            }
        })
        .collect())
}

/// `gluster --xml volume heal <v> info`.
pub fn heal_info(text: &str) -> Result<Vec<BrickHeal>, XmlError> {
    let doc = parse(text)?;
    Ok(descendants(doc.root_element(), "brick")
        .map(|b| BrickHeal {
            brick: child_text(b, "name").unwrap_or_default().to_owned(),
            status: child_text(b, "status").unwrap_or_default().to_owned(),
            entries: child_text(b, "numberOfEntries").and_then(|t| t.parse().ok()),
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const PEERS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<cliOutput>
  <opRet>0</opRet>
  <opErrno>0</opErrno>
  <opErrstr/>
  <peerStatus>
    <peer>
      <uuid>5b0c1a5e-0001-4c3e-9a4e-000000000032</uuid>
      <hostname>192.0.2.32</hostname>
      <hostnames>
        <hostname>192.0.2.32</hostname>
      </hostnames>
      <connected>1</connected>
      <state>3</state>
      <stateStr>Peer in Cluster</stateStr>
    </peer>
    <peer>
      <uuid>5b0c1a5e-0001-4c3e-9a4e-000000000033</uuid>
      <hostname>192.0.2.33</hostname>
      <hostnames>
        <hostname>192.0.2.33</hostname>
        <hostname>st3</hostname>
      </hostnames>
      <connected>0</connected>
      <state>3</state>
      <stateStr>Peer in Cluster</stateStr>
    </peer>
  </peerStatus>
</cliOutput>"#;

    pub(crate) const INFO: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<cliOutput>
  <opRet>0</opRet><opErrno>0</opErrno><opErrstr/>
  <volInfo>
    <volumes>
      <volume>
        <name>gv0</name>
        <id>0d7e6b1c-1111-2222-3333-444455556666</id>
        <status>1</status>
        <statusStr>Started</statusStr>
        <brickCount>3</brickCount>
        <replicaCount>3</replicaCount>
        <type>2</type>
        <typeStr>Replicate</typeStr>
        <transport>0</transport>
        <bricks>
          <brick uuid="a">192.0.2.31:/var/lib/cairn/bricks/gv0/brick<name>192.0.2.31:/var/lib/cairn/bricks/gv0/brick</name><hostUuid>a</hostUuid><isArbiter>0</isArbiter></brick>
          <brick uuid="b">192.0.2.32:/var/lib/cairn/bricks/gv0/brick<name>192.0.2.32:/var/lib/cairn/bricks/gv0/brick</name><hostUuid>b</hostUuid><isArbiter>0</isArbiter></brick>
          <brick uuid="c">192.0.2.33:/var/lib/cairn/bricks/gv0/brick<name>192.0.2.33:/var/lib/cairn/bricks/gv0/brick</name><hostUuid>c</hostUuid><isArbiter>0</isArbiter></brick>
        </bricks>
        <optCount>2</optCount>
        <options>
          <option><name>cluster.heal-timeout</name><value>10</value></option>
          <option><name>transport.address-family</name><value>inet</value></option>
        </options>
      </volume>
      <count>1</count>
    </volumes>
  </volInfo>
</cliOutput>"#;

    #[test]
    fn peer_status_gives_names_connection_and_state() {
        let p = peers(PEERS).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].hostnames, vec!["192.0.2.32"]);
        assert!(p[0].in_cluster());
        assert_eq!(p[1].hostnames, vec!["192.0.2.33", "st3"]);
        assert!(!p[1].connected);
        assert!(!p[1].in_cluster());
    }

    #[test]
    fn volume_info_gives_bricks_status_and_options() {
        let v = volume_info(INFO).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name, "gv0");
        assert_eq!(v[0].status, "Started");
        assert_eq!(v[0].kind, "Replicate");
        assert_eq!(v[0].bricks[2], "192.0.2.33:/var/lib/cairn/bricks/gv0/brick");
        assert_eq!(v[0].options["cluster.heal-timeout"], "10");
        let none = "<cliOutput><opRet>0</opRet><opErrno>0</opErrno><opErrstr/><volInfo><volumes><count>0</count></volumes></volInfo></cliOutput>";
        assert_eq!(volume_info(none).unwrap(), Vec::new());
        let old = "<cliOutput><opRet>-1</opRet><opErrno>0</opErrno><opErrstr>No volumes present</opErrstr></cliOutput>";
        assert_eq!(volume_info(old).unwrap(), Vec::new());
    }

    #[test]
    fn failures_and_garbage_are_errors() {
        let failed = "<cliOutput><opRet>-1</opRet><opErrno>30800</opErrno><opErrstr>Another transaction is in progress for gv0.</opErrstr></cliOutput>";
        assert_eq!(
            peers(failed).unwrap_err(),
            XmlError::Failed("Another transaction is in progress for gv0.".into())
        );
        assert!(matches!(
            peers("Connection failed. Please check if gluster daemon is operational."),
            Err(XmlError::Syntax(_))
        ));
        assert_eq!(peers("<x/>").unwrap_err(), XmlError::NoCliOutput);
    }

    #[test]
    fn volume_status_and_heal_info_parse() {
        let st = r#"<cliOutput><opRet>0</opRet><opErrno>0</opErrno><opErrstr/><volStatus><volumes><volume>
<volName>gv0</volName><nodeCount>4</nodeCount>
<node><hostname>192.0.2.31</hostname><path>/var/lib/cairn/bricks/gv0/brick</path><peerid>a</peerid><status>1</status><port>49152</port><ports><tcp>49152</tcp><rdma>N/A</rdma></ports><pid>812</pid></node>
<node><hostname>192.0.2.32</hostname><path>/var/lib/cairn/bricks/gv0/brick</path><peerid>b</peerid><status>0</status><port>N/A</port><ports><tcp>N/A</tcp><rdma>N/A</rdma></ports><pid>-1</pid></node>
<node><hostname>Self-heal Daemon</hostname><path>localhost</path><peerid>a</peerid><status>1</status><port>N/A</port><ports><tcp>N/A</tcp><rdma>N/A</rdma></ports><pid>830</pid></node>
</volume></volumes></volStatus></cliOutput>"#;
        let s = volume_status(st).unwrap();
        assert_eq!(s.len(), 3);
        assert!(s[0].online && s[0].port == Some(49152) && s[0].pid == Some(812));
        assert!(!s[1].online && s[1].port.is_none() && s[1].pid.is_none());
        assert_eq!(s[2].hostname, "Self-heal Daemon");
        let heal = r#"<cliOutput><healInfo><bricks>
<brick hostUuid="a"><name>192.0.2.31:/var/lib/cairn/bricks/gv0/brick</name><status>Connected</status><numberOfEntries>4</numberOfEntries></brick>
<brick hostUuid="b"><name>192.0.2.32:/var/lib/cairn/bricks/gv0/brick</name><status>Transport endpoint is not connected</status><numberOfEntries>-</numberOfEntries></brick>
</bricks></healInfo><opRet>0</opRet><opErrno>0</opErrno><opErrstr/></cliOutput>"#;
        let h = heal_info(heal).unwrap();
        assert_eq!(h[0].entries, Some(4));
        assert_eq!(h[1].entries, None);
        assert_eq!(h[1].status, "Transport endpoint is not connected");
    }
}
