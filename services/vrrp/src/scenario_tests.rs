//! Several instances wired through an in-memory LAN: every advert reaches the other live
//! instances after a fixed delay; time advances in 1 ms ticks.

use std::net::Ipv4Addr;

use super::*;
use crate::packet::{Advertisement, MULTICAST_V4};

const TICK: Duration = Duration::from_millis(1);
const DELAY: Duration = Duration::from_millis(5);

struct Router {
    instance: Instance,
    alive: bool,
    holds_vips: bool,
    /// VIPs parked: local, not announced (the connections here still work).
    parked: bool,
    /// Forwarding stray segments to this previous holder.
    draining_to: Option<IpAddr>,
    /// When this router last became master.
    became_master_at: Option<Instant>,
    /// When it last sent an advert.
    last_sent: Option<Instant>,
}

struct Lan {
    t0: Instant,
    now: Instant,
    routers: Vec<Router>,
    /// (delivery time, receiver, packet), in send order.
    in_flight: Vec<(Instant, usize, Received)>,
    /// Highest number of VIP holders seen at any instant after the first master appeared.
    max_holders: usize,
    /// Ticks with no live VIP holder after the first master appeared.
    vacant_ticks: u32,
    /// The router clients send VIP traffic to: the last one that announced the VIPs.
    arp_owner: Option<usize>,
    /// Client connections: (server, until); one opens every 10 ms, each lasts 300 ms.
    connections: Vec<(usize, Instant)>,
    /// Connections that found nobody to serve them at some tick.
    broken: u32,
    /// Connections opened.
    opened: u32,
}

fn config(priority: u8, preempt: bool) -> InstanceConfig {
    InstanceConfig {
        vrid: 42,
        priority,
        interval_cs: 100,
        preempt,
        vips: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))],
        // Distinct primaries: .<priority> keeps it readable.
        primary: IpAddr::V4(Ipv4Addr::new(192, 0, 2, priority)),
        announce_count: 2,
        announce_interval: Duration::from_millis(100),
        drain: Duration::ZERO,
    }
}

impl Lan {
    fn new(configs: Vec<InstanceConfig>) -> Self {
        let t0 = Instant::now();
        Self {
            t0,
            now: t0,
            routers: configs
                .into_iter()
                .map(|c| Router {
                    instance: Instance::new(c),
                    alive: false,
                    holds_vips: false,
                    parked: false,
                    draining_to: None,
                    became_master_at: None,
                    last_sent: None,
                })
                .collect(),
            in_flight: Vec::new(),
            max_holders: 0,
            vacant_ticks: 0,
            arp_owner: None,
            connections: Vec::new(),
            broken: 0,
            opened: 0,
        }
    }

    fn start(&mut self, i: usize) {
        self.routers[i].alive = true;
        let actions = self.routers[i].instance.handle(Input::Startup, self.now);
        self.apply(i, actions);
    }

    /// The router stops dead: no more adverts, no more processing.
    fn kill(&mut self, i: usize) {
        self.routers[i].alive = false;
    }

    fn input(&mut self, i: usize, input: Input) {
        let actions = self.routers[i].instance.handle(input, self.now);
        self.apply(i, actions);
    }

    fn apply(&mut self, i: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => {
                    self.routers[i].last_sent = Some(self.now);
                    let config = self.routers[i].instance.config().clone();
                    let received = Received {
                        src: config.primary,
                        dst: IpAddr::V4(MULTICAST_V4),
                        advert: Advertisement {
                            vrid: config.vrid,
                            priority,
                            interval_cs: config.interval_cs,
                            addresses: config.vips.clone(),
                        },
                    };
                    for j in 0..self.routers.len() {
                        if j != i {
                            self.in_flight.push((self.now + DELAY, j, received.clone()));
                        }
                    }
                }
                Action::AddVips => {
                    self.routers[i].holds_vips = true;
                    self.routers[i].parked = false;
                }
                Action::RemoveVips => {
                    self.routers[i].holds_vips = false;
                    self.routers[i].parked = false;
                }
                Action::ParkVips => {
                    self.routers[i].holds_vips = false;
                    self.routers[i].parked = true;
                }
                Action::StartDrain { to } => self.routers[i].draining_to = Some(to),
                Action::StopDrain => self.routers[i].draining_to = None,
                Action::Announce => self.arp_owner = Some(i),
                Action::StateChanged { to, .. } => {
                    if to == State::Master {
                        self.routers[i].became_master_at = Some(self.now);
                    }
                }
            }
        }
    }

    /// Runs until `until` (relative to the start), one tick at a time.
    fn run_until(&mut self, until: Duration) {
        while self.now < self.t0 + until {
            self.now += TICK;
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) =
                self.in_flight.drain(..).partition(|(at, _, _)| *at <= now);
            self.in_flight = later;
            for (_, j, received) in due {
                if self.routers[j].alive {
                    self.input(j, Input::Advert(received));
                }
            }
            for i in 0..self.routers.len() {
                if !self.routers[i].alive {
                    continue;
                }
                if self.routers[i]
                    .instance
                    .next_deadline()
                    .is_some_and(|d| d <= now)
                {
                    self.input(i, Input::Timer);
                }
                // A timer handled late must never leave a deadline in the past unhandled
                // for more than one tick.
                if let Some(d) = self.routers[i].instance.next_deadline() {
                    assert!(d + TICK > now, "router {i} has a stale deadline");
                }
            }
            let holders = self
                .routers
                .iter()
                .filter(|r| r.alive && r.holds_vips)
                .count();
            self.max_holders = self.max_holders.max(holders);
            if holders == 0 && self.max_holders > 0 {
                self.vacant_ticks += 1;
            }
            self.serve_connections();
        }
    }

    /// Clients open a connection every 10 ms to whoever the VIP's ARP entry names (if it
    /// holds the VIPs); every open connection's next segment goes there too and works if
    /// that router is its server, or drains to it, and the server still has the VIPs
    /// (held or parked). A connection that fails once is broken (reset) and dropped.
    fn serve_connections(&mut self) {
        let now = self.now;
        let Some(owner) = self.arp_owner else {
            return;
        };
        let routers = &self.routers;
        let serves = |server: usize| {
            let s = &routers[server];
            let o = &routers[owner];
            s.alive
                && (s.holds_vips || s.parked)
                && o.alive
                && (owner == server || o.draining_to == Some(s.instance.config().primary))
        };
        let (mut kept, mut broken) = (Vec::new(), 0);
        for &(server, until) in &self.connections {
            if until <= now {
                continue;
            }
            if serves(server) {
                kept.push((server, until));
            } else {
                broken += 1;
            }
        }
        self.connections = kept;
        self.broken += broken;
        let since = now.saturating_duration_since(self.t0).as_millis();
        if since % 10 == 0 && routers[owner].alive && routers[owner].holds_vips {
            self.connections
                .push((owner, now + Duration::from_millis(300)));
            self.opened += 1;
        }
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.routers.len())
            .filter(|&i| self.routers[i].alive && self.routers[i].instance.state() == State::Master)
            .collect()
    }
}

#[test]
fn three_routers_elect_the_highest_priority() {
    let mut lan = Lan::new(vec![
        config(100, true),
        config(200, true),
        config(150, true),
    ]);
    for i in 0..3 {
        lan.start(i);
    }
    lan.run_until(Duration::from_secs(20));
    assert_eq!(lan.masters(), vec![1]);
    assert_eq!(lan.max_holders, 1, "never two VIP holders at once");
    // Exactly one election, no flapping.
    let elections: u64 = lan
        .routers
        .iter()
        .map(|r| r.instance.counters().became_master)
        .sum();
    assert_eq!(elections, 1);
    // The first master took over at Master_Down_Interval of priority 200.
    assert_eq!(
        lan.routers[1].became_master_at,
        Some(lan.t0 + master_down_interval(200, 100).div_ceil_ticks())
    );
    for i in [0, 2] {
        assert_eq!(
            lan.routers[i].instance.master(),
            Some(config(200, true).primary)
        );
        assert_eq!(lan.routers[i].instance.state(), State::Backup);
    }
}

/// Rounds a duration up to whole ticks (the simulation fires timers on tick boundaries).
trait DivCeilTicks {
    fn div_ceil_ticks(self) -> Duration;
}

impl DivCeilTicks for Duration {
    fn div_ceil_ticks(self) -> Duration {
        let nanos = self.as_nanos();
        let tick = TICK.as_nanos();
        let ticks = nanos.div_ceil(tick);
        Duration::from_nanos(u64::try_from(ticks * tick).unwrap())
    }
}

#[test]
fn dead_master_is_replaced_within_master_down_interval() {
    let mut lan = Lan::new(vec![
        config(100, true),
        config(200, true),
        config(150, true),
    ]);
    for i in 0..3 {
        lan.start(i);
    }
    lan.run_until(Duration::from_secs(10));
    assert_eq!(lan.masters(), vec![1]);
    lan.kill(1);
    let last_advert = lan.routers[1].last_sent.unwrap();
    lan.run_until(Duration::from_secs(20));
    assert_eq!(lan.masters(), vec![2], "priority 150 takes over");
    let took_over = lan.routers[2].became_master_at.unwrap();
    let bound = last_advert + DELAY + master_down_interval(150, 100) + TICK;
    assert!(
        took_over <= bound,
        "took over {:?} after the last advert, bound {:?}",
        took_over - last_advert,
        bound - last_advert
    );
    // And not before three intervals of silence.
    assert!(took_over >= last_advert + DELAY + Duration::from_secs(3));
    assert_eq!(lan.routers[0].instance.state(), State::Backup);
    assert_eq!(
        lan.routers[0].instance.master(),
        Some(config(150, true).primary)
    );
}

fn late_joiner(preempt: bool) -> Lan {
    let mut lan = Lan::new(vec![
        config(100, true),
        config(150, true),
        config(200, preempt),
    ]);
    lan.start(0);
    lan.start(1);
    lan.run_until(Duration::from_secs(10));
    assert_eq!(lan.masters(), vec![1]);
    lan.start(2);
    lan.run_until(Duration::from_secs(20));
    lan
}

#[test]
fn higher_priority_joiner_preempts() {
    let lan = late_joiner(true);
    assert_eq!(lan.masters(), vec![2]);
    let joined = lan.t0 + Duration::from_secs(10);
    let took_over = lan.routers[2].became_master_at.unwrap();
    // It ignored the lower master's adverts and let its first Master_Down_Timer run out.
    assert!(took_over <= joined + master_down_interval(200, 100) + TICK);
    assert_eq!(lan.routers[1].instance.state(), State::Backup);
    // The old master holds the VIPs until the new master's advert reaches it (one DELAY),
    // then exactly one holder remains.
    assert!(lan.max_holders <= 2);
    assert_eq!(lan.routers.iter().filter(|r| r.holds_vips).count(), 1);
    assert!(lan.routers[2].holds_vips);
}

#[test]
fn higher_priority_joiner_without_preempt_stays_backup() {
    let lan = late_joiner(false);
    assert_eq!(lan.masters(), vec![1]);
    assert_eq!(lan.routers[2].instance.state(), State::Backup);
    assert_eq!(lan.routers[2].instance.counters().became_master, 0);
    assert_eq!(lan.max_holders, 1);
}

#[test]
fn resigning_master_hands_over_within_skew_time() {
    let mut lan = Lan::new(vec![
        config(100, true),
        config(200, true),
        config(150, true),
    ]);
    for i in 0..3 {
        lan.start(i);
    }
    lan.run_until(Duration::from_secs(10));
    assert_eq!(lan.masters(), vec![1]);
    let resigned = lan.now;
    lan.input(1, Input::Shutdown);
    // The resigning master keeps the VIP until its successor speaks, so the VIP is never
    // vacant during a graceful handover.
    assert!(lan.routers[1].holds_vips);
    let vacant_before = lan.vacant_ticks;
    lan.run_until(Duration::from_secs(15));
    assert_eq!(lan.masters(), vec![2]);
    let took_over = lan.routers[2].became_master_at.unwrap();
    let bound = resigned + DELAY + skew_time(150, 100) + TICK;
    assert!(
        took_over <= bound,
        "handover took {:?}, bound {:?}",
        took_over - resigned,
        bound - resigned
    );
    assert!(!lan.routers[1].holds_vips, "released after the linger");
    assert!(!lan.routers[1].instance.is_releasing());
    assert_eq!(lan.vacant_ticks, vacant_before, "the VIP was never vacant");
    // Two holders only during the linger after the successor's first advert.
    assert_eq!(lan.max_holders, 2);
    // The lower backup (longer skew) heard the new master first and stayed put.
    assert_eq!(lan.routers[0].instance.counters().became_master, 0);
}

#[test]
fn resign_without_shutdown_hands_over_and_stays_backup() {
    let mut lan = Lan::new(vec![config(150, true), config(200, false)]);
    lan.start(0);
    lan.start(1);
    lan.run_until(Duration::from_secs(10));
    assert_eq!(lan.masters(), vec![1]);
    let actions = lan.routers[1].instance.resign(lan.now);
    lan.apply(1, actions);
    lan.run_until(Duration::from_secs(20));
    // The non-preempting former master accepts the new, lower master.
    assert_eq!(lan.masters(), vec![0]);
    assert_eq!(lan.routers[1].instance.state(), State::Backup);
    assert!(!lan.routers[1].holds_vips, "released after the linger");
    // Two holders only during the linger after the successor's first advert; never none.
    assert_eq!(lan.max_holders, 2);
    assert_eq!(lan.vacant_ticks, 0, "the VIP was never vacant");
}

/// Two routers, 1 s adverts, draining on or off; master A (200) goes through every planned
/// move: a maintenance resignation (priority 1), its return (it preempts B), an orderly
/// shutdown. Returns (connections opened, broken).
fn planned_moves(drain: Duration) -> (u32, u32) {
    let mut a = config(200, true);
    let mut b = config(100, true);
    a.drain = drain;
    b.drain = drain;
    let mut lan = Lan::new(vec![a, b]);
    lan.start(0);
    lan.start(1);
    lan.run_until(Duration::from_secs(5));
    assert_eq!(lan.masters(), vec![0]);
    lan.input(0, Input::SetPriority(UNFIT_PRIORITY));
    lan.run_until(Duration::from_secs(10));
    assert_eq!(lan.masters(), vec![1], "B took over from the resigning A");
    lan.input(0, Input::SetPriority(200));
    lan.run_until(Duration::from_secs(15));
    assert_eq!(lan.masters(), vec![0], "A preempted B");
    lan.input(0, Input::Shutdown);
    lan.run_until(Duration::from_secs(20));
    assert_eq!(lan.masters(), vec![1], "B took over from the stopped A");
    assert!(!lan.routers[0].parked && !lan.routers[0].holds_vips);
    assert!(lan.routers.iter().all(|r| r.draining_to.is_none()));
    (lan.opened, lan.broken)
}

#[test]
fn planned_moves_keep_every_connection_when_draining() {
    let (opened, broken) = planned_moves(Duration::from_secs(2));
    assert!(opened > 1500, "{opened} connections opened");
    assert_eq!(broken, 0, "of {opened}");
}

#[test]
fn planned_moves_reset_connections_in_flight_without_draining() {
    // The same moves without draining: every connection open at a move is reset (about 30
    // per move: 300 ms of connections opened every 10 ms).
    let (opened, broken) = planned_moves(Duration::ZERO);
    assert!(opened > 1500, "{opened} connections opened");
    assert!(broken >= 3 * 25, "{broken} of {opened} broken");
}

#[test]
fn a_dead_master_is_not_drained_to() {
    let mut a = config(200, true);
    let mut b = config(100, true);
    a.drain = Duration::from_secs(2);
    b.drain = Duration::from_secs(2);
    let mut lan = Lan::new(vec![a, b]);
    lan.start(0);
    lan.start(1);
    lan.run_until(Duration::from_secs(5));
    lan.kill(0);
    lan.run_until(Duration::from_secs(10));
    assert_eq!(lan.masters(), vec![1]);
    assert_eq!(lan.routers[1].draining_to, None);
}
