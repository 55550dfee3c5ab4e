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
                    became_master_at: None,
                    last_sent: None,
                })
                .collect(),
            in_flight: Vec::new(),
            max_holders: 0,
            vacant_ticks: 0,
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
                Action::AddVips => self.routers[i].holds_vips = true,
                Action::RemoveVips => self.routers[i].holds_vips = false,
                Action::Announce => {}
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
