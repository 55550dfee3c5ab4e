//! The glue between the state machine and the world: feeds an [`Input`] to an instance and
//! carries out the [`Action`]s it answers with through the [`Effects`] trait, logging every
//! state change with its reason.
//!
//! The daemon's effects talk to sockets and netlink ([`crate::runtime`]); the tests'
//! effects record calls. Effect failures are logged and never stop the instance: a VIP that
//! could not be added is retried on the next transition, an advert that could not be sent is
//! sent again one interval later.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use cairn_netlink::IpNet;
use cairn_vrrp::packet::{MULTICAST_V4, MULTICAST_V6};
use cairn_vrrp::{Action, Advertisement, Input, Instance, State};

/// Where an instance's effects go: everything resolved at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Instance name (logs).
    pub name: String,
    /// Virtual router id.
    pub vrid: u8,
    /// Interface index the instance runs on.
    pub ifindex: u32,
    /// MAC announcements carry: the interface's, or the virtual MAC with `use_vmac`.
    pub announce_mac: [u8; 6],
    /// Source of adverts: the interface's primary address (IPv6: its link-local address).
    pub primary: IpAddr,
    /// The IPv6 link-local address announcements come from (IPv6 instances).
    pub link_local: Option<Ipv6Addr>,
    /// The virtual addresses with prefixes.
    pub vips: Vec<IpNet>,
    /// Unicast advert destinations; empty: the VRRP multicast group.
    pub unicast_peers: Vec<IpAddr>,
    /// The macvlan link carrying the virtual MAC, if `use_vmac`.
    pub vmac_link: Option<u32>,
}

impl Target {
    /// The link the VIPs live on.
    pub fn vip_link(&self) -> u32 {
        self.vmac_link.unwrap_or(self.ifindex)
    }

    /// Where adverts go.
    pub fn advert_destinations(&self) -> Vec<IpAddr> {
        if !self.unicast_peers.is_empty() {
            self.unicast_peers.clone()
        } else if self.primary.is_ipv6() {
            vec![IpAddr::V6(MULTICAST_V6)]
        } else {
            vec![IpAddr::V4(MULTICAST_V4)]
        }
    }
}

/// What the glue needs from the world. Each method reports failure as text for the log.
pub trait Effects {
    /// Adds the addresses to link `index`, and takes away parked copies (already present
    /// counts as done).
    fn add_vips(&mut self, index: u32, vips: &[IpNet]) -> Result<(), String>;
    /// Removes the addresses from link `index` and parked copies (already gone counts as
    /// done).
    fn remove_vips(&mut self, index: u32, vips: &[IpNet]) -> Result<(), String>;
    /// Parks the addresses: local (on the loopback) but no longer on link `index`, so the
    /// box stops answering ARP / ND for them while its connections keep working.
    fn park_vips(&mut self, index: u32, vips: &[IpNet]) -> Result<(), String>;
    /// Instance `name` drains: segments for `vips` that arrive on `ifindex` and belong to no
    /// connection of ours (not SYNs) go to the previous holder `to`.
    fn start_drain(
        &mut self,
        name: &str,
        ifindex: u32,
        to: IpAddr,
        vips: &[IpNet],
    ) -> Result<(), String>;
    /// Instance `name` stops draining.
    fn stop_drain(&mut self, name: &str) -> Result<(), String>;
    /// Sets link `index` up or down (the virtual-MAC macvlan).
    fn set_link_up(&mut self, index: u32, up: bool) -> Result<(), String>;
    /// Sends a VRRP payload on the instance's interface from `src` to `dst`.
    fn send_advert(
        &mut self,
        ifindex: u32,
        src: IpAddr,
        dst: IpAddr,
        payload: &[u8],
    ) -> Result<(), String>;
    /// Sends a complete Ethernet frame (gratuitous ARP) out of `ifindex`.
    fn send_arp(&mut self, ifindex: u32, frame: &[u8]) -> Result<(), String>;
    /// Sends an ICMPv6 message (unsolicited NA) to ff02::1 out of `ifindex` from `src`.
    fn send_na(&mut self, ifindex: u32, src: Ipv6Addr, message: &[u8]) -> Result<(), String>;
}

/// Lower-case state name as logs and the control API show it.
pub fn state_name(state: State) -> &'static str {
    match state {
        State::Initialize => "initialize",
        State::Backup => "backup",
        State::Master => "master",
    }
}

/// Why a state change happened, from the input that caused it.
fn reason(input: &Input, to: State, was: Option<IpAddr>, priority: u8) -> String {
    let was = |s: String| match was {
        Some(a) => format!("{s}, was {a}"),
        None => s,
    };
    match input {
        Input::Startup if to == State::Master => "startup as address owner".to_owned(),
        Input::Startup => "startup".to_owned(),
        Input::Shutdown => "shutdown".to_owned(),
        Input::Timer => was("master down timer".to_owned()),
        Input::Advert(r) if r.advert.priority == 0 => {
            format!("{} resigned (priority 0)", r.src)
        }
        Input::Advert(r) if to == State::Backup => format!(
            "advert from {} with priority {} (ours {priority})",
            r.src, r.advert.priority
        ),
        Input::Advert(r) => format!("advert from {}", r.src),
        Input::SetPriority(p) => was(format!("priority now {p}")),
    }
}

/// Feeds `input` to `instance` at `now` and carries out the answer; returns whether the
/// state changed.
pub fn feed(
    target: &Target,
    instance: &mut Instance,
    input: Input,
    now: Instant,
    effects: &mut dyn Effects,
) -> bool {
    let was = instance.master();
    let actions = instance.handle(input.clone(), now);
    let mut changed = false;
    for action in &actions {
        if let Action::StateChanged { from, to } = action {
            changed = true;
            tracing::info!(
                "instance {} vrid {}: {} -> {} ({})",
                target.name,
                target.vrid,
                state_name(*from),
                state_name(*to),
                reason(
                    &input,
                    *to,
                    was.filter(|_| *from == State::Backup),
                    instance.priority()
                )
            );
        }
    }
    carry_out(target, instance, &actions, effects);
    changed
}

/// Carries out `actions` in order.
pub fn carry_out(
    target: &Target,
    instance: &Instance,
    actions: &[Action],
    effects: &mut dyn Effects,
) {
    for action in actions {
        match action {
            Action::SendAdvert { priority } => {
                let advert = Advertisement {
                    vrid: target.vrid,
                    priority: *priority,
                    interval_cs: instance.config().interval_cs,
                    addresses: target.vips.iter().map(|v| v.addr()).collect(),
                };
                for dst in target.advert_destinations() {
                    let payload = advert.encode(target.primary, dst);
                    if let Err(e) =
                        effects.send_advert(target.ifindex, target.primary, dst, &payload)
                    {
                        tracing::warn!(
                            "instance {}: cannot send advert to {dst}: {e}",
                            target.name
                        );
                    }
                }
            }
            Action::AddVips => {
                if let Some(link) = target.vmac_link {
                    if let Err(e) = effects.set_link_up(link, true) {
                        tracing::error!(
                            "instance {}: cannot set the virtual MAC link up: {e}",
                            target.name
                        );
                    }
                }
                if let Err(e) = effects.add_vips(target.vip_link(), &target.vips) {
                    tracing::error!("instance {}: cannot add virtual IPs: {e}", target.name);
                }
            }
            Action::RemoveVips => {
                if let Err(e) = effects.remove_vips(target.vip_link(), &target.vips) {
                    tracing::error!("instance {}: cannot remove virtual IPs: {e}", target.name);
                }
                if let Some(link) = target.vmac_link {
                    if let Err(e) = effects.set_link_up(link, false) {
                        tracing::error!(
                            "instance {}: cannot set the virtual MAC link down: {e}",
                            target.name
                        );
                    }
                }
            }
            Action::ParkVips => {
                if let Err(e) = effects.park_vips(target.vip_link(), &target.vips) {
                    tracing::error!("instance {}: cannot park virtual IPs: {e}", target.name);
                }
                if let Some(link) = target.vmac_link {
                    if let Err(e) = effects.set_link_up(link, false) {
                        tracing::error!(
                            "instance {}: cannot set the virtual MAC link down: {e}",
                            target.name
                        );
                    }
                }
                tracing::info!(
                    "instance {}: virtual IPs parked: connections here keep working for the drain",
                    target.name
                );
            }
            Action::StartDrain { to } => {
                match effects.start_drain(&target.name, target.ifindex, *to, &target.vips) {
                    Ok(()) => tracing::info!(
                        "instance {}: draining to {to}: its connections' segments go there",
                        target.name
                    ),
                    Err(e) => tracing::warn!(
                        "instance {}: cannot drain to {to} (its connections will be reset): {e}",
                        target.name
                    ),
                }
            }
            Action::StopDrain => {
                if let Err(e) = effects.stop_drain(&target.name) {
                    tracing::warn!("instance {}: cannot stop draining: {e}", target.name);
                }
            }
            Action::Announce => announce(target, effects),
            Action::StateChanged { .. } => {}
        }
    }
}

/// One round of gratuitous ARP / unsolicited NA for every VIP, out of the parent interface.
fn announce(target: &Target, effects: &mut dyn Effects) {
    for vip in &target.vips {
        let result = match vip.addr() {
            IpAddr::V4(ip) => effects.send_arp(
                target.ifindex,
                &cairn_vrrp::announce::gratuitous_arp(target.announce_mac, ip),
            ),
            IpAddr::V6(ip) => match target.link_local {
                Some(src) => effects.send_na(
                    target.ifindex,
                    src,
                    &cairn_vrrp::announce::unsolicited_na(target.announce_mac, ip, src),
                ),
                None => Err("the interface has no IPv6 link-local address".to_owned()),
            },
        };
        if let Err(e) = result {
            tracing::warn!(
                "instance {}: cannot announce {}: {e}",
                target.name,
                vip.addr()
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use cairn_vrrp::{InstanceConfig, Received};

    /// One recorded effect.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        Add(u32, Vec<IpNet>),
        Remove(u32, Vec<IpNet>),
        Park(u32, Vec<IpNet>),
        Drain(String, u32, IpAddr),
        StopDrain(String),
        Up(u32, bool),
        Advert {
            ifindex: u32,
            src: IpAddr,
            dst: IpAddr,
            payload: Vec<u8>,
        },
        Arp(u32, Vec<u8>),
        Na(u32, Ipv6Addr, Vec<u8>),
    }

    /// Effects that record calls; `fail` makes every call fail (after recording).
    #[derive(Debug, Default)]
    pub struct Recorder {
        pub calls: Vec<Call>,
        pub fail: bool,
    }

    impl Recorder {
        fn result(&self) -> Result<(), String> {
            if self.fail {
                Err("refused".into())
            } else {
                Ok(())
            }
        }
    }

    impl Effects for Recorder {
        fn add_vips(&mut self, index: u32, vips: &[IpNet]) -> Result<(), String> {
            self.calls.push(Call::Add(index, vips.to_vec()));
            self.result()
        }
        fn remove_vips(&mut self, index: u32, vips: &[IpNet]) -> Result<(), String> {
            self.calls.push(Call::Remove(index, vips.to_vec()));
            self.result()
        }
        fn park_vips(&mut self, index: u32, vips: &[IpNet]) -> Result<(), String> {
            self.calls.push(Call::Park(index, vips.to_vec()));
            self.result()
        }
        fn start_drain(
            &mut self,
            name: &str,
            ifindex: u32,
            to: IpAddr,
            _vips: &[IpNet],
        ) -> Result<(), String> {
            self.calls.push(Call::Drain(name.to_owned(), ifindex, to));
            self.result()
        }
        fn stop_drain(&mut self, name: &str) -> Result<(), String> {
            self.calls.push(Call::StopDrain(name.to_owned()));
            self.result()
        }
        fn set_link_up(&mut self, index: u32, up: bool) -> Result<(), String> {
            self.calls.push(Call::Up(index, up));
            self.result()
        }
        fn send_advert(
            &mut self,
            ifindex: u32,
            src: IpAddr,
            dst: IpAddr,
            payload: &[u8],
        ) -> Result<(), String> {
            self.calls.push(Call::Advert {
                ifindex,
                src,
                dst,
                payload: payload.to_vec(),
            });
            self.result()
        }
        fn send_arp(&mut self, ifindex: u32, frame: &[u8]) -> Result<(), String> {
            self.calls.push(Call::Arp(ifindex, frame.to_vec()));
            self.result()
        }
        fn send_na(&mut self, ifindex: u32, src: Ipv6Addr, message: &[u8]) -> Result<(), String> {
            self.calls.push(Call::Na(ifindex, src, message.to_vec()));
            self.result()
        }
    }

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x11];

    pub fn target_v4() -> Target {
        Target {
            name: "web".into(),
            vrid: 51,
            ifindex: 2,
            announce_mac: MAC,
            primary: "192.0.2.11".parse().unwrap(),
            link_local: None,
            vips: vec![
                "192.0.2.100/24".parse().unwrap(),
                "192.0.2.101/24".parse().unwrap(),
            ],
            unicast_peers: vec![],
            vmac_link: None,
        }
    }

    pub fn instance_for(target: &Target, priority: u8) -> Instance {
        Instance::new(InstanceConfig {
            vrid: target.vrid,
            priority,
            interval_cs: 10,
            preempt: true,
            vips: target.vips.iter().map(|v| v.addr()).collect(),
            primary: target.primary,
            announce_count: 2,
            announce_interval: Duration::from_millis(200),
            drain: Duration::ZERO,
        })
    }

    fn advert(target: &Target, priority: u8) -> Advertisement {
        Advertisement {
            vrid: target.vrid,
            priority,
            interval_cs: 10,
            addresses: target.vips.iter().map(|v| v.addr()).collect(),
        }
    }

    #[test]
    fn destinations_multicast_or_unicast() {
        let mut t = target_v4();
        assert_eq!(t.advert_destinations(), vec![IpAddr::V4(MULTICAST_V4)]);
        t.unicast_peers = vec!["192.0.2.12".parse().unwrap(), "192.0.2.13".parse().unwrap()];
        assert_eq!(t.advert_destinations(), t.unicast_peers);
        t.primary = "fe80::1".parse().unwrap();
        t.unicast_peers.clear();
        assert_eq!(t.advert_destinations(), vec![IpAddr::V6(MULTICAST_V6)]);
        assert_eq!(t.vip_link(), 2);
        t.vmac_link = Some(9);
        assert_eq!(t.vip_link(), 9);
    }

    #[test]
    fn actions_map_to_effects_in_order() {
        let t = target_v4();
        let inst = instance_for(&t, 100);
        let mut fx = Recorder::default();
        carry_out(
            &t,
            &inst,
            &[
                Action::StateChanged {
                    from: State::Backup,
                    to: State::Master,
                },
                Action::SendAdvert { priority: 100 },
                Action::AddVips,
                Action::Announce,
                Action::StartDrain {
                    to: "192.0.2.12".parse().unwrap(),
                },
                Action::StopDrain,
                Action::ParkVips,
                Action::RemoveVips,
            ],
            &mut fx,
        );
        let dst = IpAddr::V4(MULTICAST_V4);
        let payload = advert(&t, 100).encode(t.primary, dst);
        let arp = |ip: &str| cairn_vrrp::announce::gratuitous_arp(MAC, ip.parse().unwrap());
        assert_eq!(
            fx.calls,
            vec![
                Call::Advert {
                    ifindex: 2,
                    src: t.primary,
                    dst,
                    payload
                },
                Call::Add(2, t.vips.clone()),
                Call::Arp(2, arp("192.0.2.100")),
                Call::Arp(2, arp("192.0.2.101")),
                Call::Drain("web".into(), 2, "192.0.2.12".parse().unwrap()),
                Call::StopDrain("web".into()),
                Call::Park(2, t.vips.clone()),
                Call::Remove(2, t.vips.clone()),
            ]
        );
    }

    #[test]
    fn unicast_adverts_go_to_every_peer_with_their_own_checksum() {
        let mut t = target_v4();
        t.unicast_peers = vec!["192.0.2.12".parse().unwrap(), "192.0.2.13".parse().unwrap()];
        let inst = instance_for(&t, 100);
        let mut fx = Recorder::default();
        carry_out(&t, &inst, &[Action::SendAdvert { priority: 0 }], &mut fx);
        let expected: Vec<Call> = t
            .unicast_peers
            .iter()
            .map(|&dst| Call::Advert {
                ifindex: 2,
                src: t.primary,
                dst,
                payload: advert(&t, 0).encode(t.primary, dst),
            })
            .collect();
        assert_eq!(fx.calls, expected);
    }

    #[test]
    fn vmac_link_goes_up_with_vips_and_down_after() {
        let mut t = target_v4();
        t.vmac_link = Some(7);
        t.announce_mac = [0, 0, 0x5e, 0, 1, 51];
        let inst = instance_for(&t, 100);
        let mut fx = Recorder::default();
        carry_out(
            &t,
            &inst,
            &[Action::AddVips, Action::Announce, Action::RemoveVips],
            &mut fx,
        );
        let arp =
            cairn_vrrp::announce::gratuitous_arp(t.announce_mac, Ipv4Addr::new(192, 0, 2, 100));
        assert_eq!(fx.calls[0], Call::Up(7, true));
        assert_eq!(fx.calls[1], Call::Add(7, t.vips.clone()));
        // Announcements leave through the parent, carrying the virtual MAC.
        assert_eq!(fx.calls[2], Call::Arp(2, arp));
        assert_eq!(fx.calls[4], Call::Remove(7, t.vips.clone()));
        assert_eq!(fx.calls[5], Call::Up(7, false));
        assert_eq!(fx.calls.len(), 6);
    }

    #[test]
    fn ipv6_announces_unsolicited_na_from_the_link_local() {
        let ll: Ipv6Addr = "fe80::5054:ff:fe00:11".parse().unwrap();
        let t = Target {
            primary: IpAddr::V6(ll),
            link_local: Some(ll),
            vips: vec!["2001:db8::100/64".parse().unwrap()],
            ..target_v4()
        };
        let inst = instance_for(&t, 100);
        let mut fx = Recorder::default();
        carry_out(&t, &inst, &[Action::Announce], &mut fx);
        let vip: Ipv6Addr = "2001:db8::100".parse().unwrap();
        assert_eq!(
            fx.calls,
            vec![Call::Na(
                2,
                ll,
                cairn_vrrp::announce::unsolicited_na(MAC, vip, ll)
            )]
        );
        // Without a link-local address nothing is sent (and nothing panics).
        let t = Target {
            link_local: None,
            ..t
        };
        let mut fx = Recorder::default();
        carry_out(&t, &inst, &[Action::Announce], &mut fx);
        assert!(fx.calls.is_empty());
    }

    #[test]
    fn failing_effects_do_not_stop_the_rest() {
        let t = target_v4();
        let inst = instance_for(&t, 100);
        let mut fx = Recorder {
            fail: true,
            ..Recorder::default()
        };
        carry_out(
            &t,
            &inst,
            &[Action::AddVips, Action::SendAdvert { priority: 100 }],
            &mut fx,
        );
        assert_eq!(fx.calls.len(), 2);
        assert!(matches!(fx.calls[1], Call::Advert { .. }));
    }

    #[test]
    fn lone_instance_becomes_master_and_resigns_on_shutdown() {
        let t = target_v4();
        let mut inst = instance_for(&t, 100);
        let mut fx = Recorder::default();
        let t0 = Instant::now();
        assert!(feed(&t, &mut inst, Input::Startup, t0, &mut fx));
        assert_eq!(inst.state(), State::Backup);
        assert!(
            fx.calls.is_empty(),
            "a backup sends nothing: {:?}",
            fx.calls
        );
        let deadline = inst.next_deadline().unwrap();
        // Master_Down_Interval = 3 * 100 ms + skew (< 100 ms).
        assert!(deadline > t0 + Duration::from_millis(300));
        assert!(deadline <= t0 + Duration::from_millis(400));
        assert!(feed(&t, &mut inst, Input::Timer, deadline, &mut fx));
        assert_eq!(inst.state(), State::Master);
        assert!(fx.calls.contains(&Call::Add(2, t.vips.clone())));
        assert!(fx.calls.iter().any(|c| matches!(c, Call::Advert { .. })));
        assert!(fx.calls.iter().any(|c| matches!(c, Call::Arp(2, _))));
        fx.calls.clear();
        assert!(feed(&t, &mut inst, Input::Shutdown, deadline, &mut fx));
        let dst = IpAddr::V4(MULTICAST_V4);
        assert!(fx.calls.contains(&Call::Advert {
            ifindex: 2,
            src: t.primary,
            dst,
            payload: advert(&t, 0).encode(t.primary, dst),
        }));
        // The VIPs stay until the successor speaks or Master_Down_Interval passes.
        assert!(!fx.calls.contains(&Call::Remove(2, t.vips.clone())));
        assert!(inst.is_releasing());
        let release = inst.next_deadline().unwrap();
        feed(&t, &mut inst, Input::Timer, release, &mut fx);
        assert!(fx.calls.contains(&Call::Remove(2, t.vips.clone())));
    }

    #[test]
    fn higher_priority_advert_demotes_master_and_removes_vips() {
        let t = target_v4();
        let mut inst = instance_for(&t, 100);
        let mut fx = Recorder::default();
        let t0 = Instant::now();
        feed(&t, &mut inst, Input::Startup, t0, &mut fx);
        let d = inst.next_deadline().unwrap();
        feed(&t, &mut inst, Input::Timer, d, &mut fx);
        assert_eq!(inst.state(), State::Master);
        fx.calls.clear();
        let from: IpAddr = "192.0.2.12".parse().unwrap();
        let rx = Received {
            src: from,
            dst: IpAddr::V4(MULTICAST_V4),
            advert: advert(&t, 200),
        };
        assert!(feed(&t, &mut inst, Input::Advert(rx), d, &mut fx));
        assert_eq!(inst.state(), State::Backup);
        assert_eq!(inst.master(), Some(from));
        // The VIPs stay for the release linger (the new master announced them already).
        assert!(fx.calls.is_empty(), "{:?}", fx.calls);
        let linger = d + cairn_vrrp::instance::RELEASE_LINGER;
        feed(&t, &mut inst, Input::Timer, linger, &mut fx);
        assert_eq!(fx.calls, vec![Call::Remove(2, t.vips.clone())]);
    }

    #[test]
    fn reasons_read_well() {
        let src: IpAddr = "192.0.2.12".parse().unwrap();
        let was = Some("192.0.2.11".parse().unwrap());
        assert_eq!(
            reason(&Input::Timer, State::Master, was, 100),
            "master down timer, was 192.0.2.11"
        );
        assert_eq!(
            reason(&Input::Timer, State::Master, None, 100),
            "master down timer"
        );
        let rx = |p: u8| {
            Input::Advert(Received {
                src,
                dst: IpAddr::V4(MULTICAST_V4),
                advert: Advertisement {
                    vrid: 1,
                    priority: p,
                    interval_cs: 100,
                    addresses: vec![],
                },
            })
        };
        assert_eq!(
            reason(&rx(0), State::Master, None, 100),
            "192.0.2.12 resigned (priority 0)"
        );
        assert_eq!(
            reason(&rx(200), State::Backup, None, 100),
            "advert from 192.0.2.12 with priority 200 (ours 100)"
        );
        assert_eq!(
            reason(&Input::Startup, State::Master, None, 255),
            "startup as address owner"
        );
        assert_eq!(
            reason(&Input::Shutdown, State::Initialize, None, 100),
            "shutdown"
        );
        assert_eq!(
            reason(&Input::SetPriority(1), State::Backup, None, 1),
            "priority now 1"
        );
    }
}
