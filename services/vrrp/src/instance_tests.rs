use std::net::Ipv4Addr;

use super::*;
use crate::packet::Advertisement;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn config(priority: u8, primary_last: u8) -> InstanceConfig {
    InstanceConfig {
        vrid: 1,
        priority,
        interval_cs: 100,
        preempt: true,
        vips: vec![IpAddr::V4(VIP)],
        primary: addr(primary_last),
        announce_count: 1,
        announce_interval: Duration::from_millis(200),
        drain: Duration::ZERO,
    }
}

fn advert_from(last: u8, priority: u8, interval_cs: u16) -> Input {
    Input::Advert(Received {
        src: addr(last),
        dst: IpAddr::V4(crate::packet::MULTICAST_V4),
        advert: Advertisement {
            vrid: 1,
            priority,
            interval_cs,
            addresses: vec![IpAddr::V4(VIP)],
        },
    })
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn changed(from: State, to: State) -> Action {
    Action::StateChanged { from, to }
}

/// An instance started at `t0`, in Backup (priority < 255) or Master.
fn started(config: InstanceConfig, t0: Instant) -> Instance {
    let mut instance = Instance::new(config);
    instance.handle(Input::Startup, t0);
    instance
}

/// Drives a backup to Master by letting its Master_Down_Timer expire; returns the time.
fn make_master(instance: &mut Instance, t0: Instant) -> Instant {
    let at = instance.next_deadline().unwrap();
    assert!(at >= t0);
    instance.handle(Input::Timer, at);
    assert_eq!(instance.state(), State::Master);
    at
}

#[test]
fn timing_formulas_are_exact() {
    // Priority 100, 1 s: skew = 156/256 s = 609.375 ms; down = 3.609375 s.
    assert_eq!(skew_time(100, 100), Duration::from_micros(609_375));
    assert_eq!(
        master_down_interval(100, 100),
        Duration::from_micros(3_609_375)
    );
    // Priority 254, 10 ms: skew = 2/256 * 10 ms = 78.125 µs (not rounded to 0 cs).
    assert_eq!(skew_time(254, 1), Duration::from_nanos(78_125));
    // Priority 1, 4095 cs: skew = 255/256 * 40.95 s.
    assert_eq!(skew_time(1, 4095), Duration::from_nanos(40_790_039_062));
    assert_eq!(centiseconds(4095), Duration::from_millis(40_950));
}

#[test]
fn new_instance_is_initialize_without_deadline() {
    let instance = Instance::new(config(100, 1));
    assert_eq!(instance.state(), State::Initialize);
    assert_eq!(instance.next_deadline(), None);
    assert_eq!(instance.master(), None);
    assert_eq!(instance.priority(), 100);
    assert_eq!(instance.master_interval_cs(), 100);
}

#[test]
fn startup_owner_becomes_master() {
    let t0 = Instant::now();
    let mut cfg = config(255, 1);
    cfg.announce_count = 3;
    let mut instance = Instance::new(cfg);
    let actions = instance.handle(Input::Startup, t0);
    assert_eq!(
        actions,
        vec![
            Action::AddVips,
            Action::Announce,
            Action::SendAdvert { priority: 255 },
            changed(State::Initialize, State::Master),
        ]
    );
    assert_eq!(instance.state(), State::Master);
    assert_eq!(instance.master(), Some(addr(1)));
    // Announcement round 2 is due before the advert timer.
    assert_eq!(instance.next_deadline(), Some(t0 + ms(200)));
    assert_eq!(instance.counters().became_master, 1);
    assert_eq!(instance.counters().adverts_tx, 1);
    assert_eq!(instance.counters().announcements_tx, 1);
}

#[test]
fn startup_backup_arms_master_down_timer() {
    let t0 = Instant::now();
    let mut instance = Instance::new(config(100, 1));
    let actions = instance.handle(Input::Startup, t0);
    assert_eq!(actions, vec![changed(State::Initialize, State::Backup)]);
    assert_eq!(instance.state(), State::Backup);
    assert_eq!(
        instance.next_deadline(),
        Some(t0 + ms(3_609) + Duration::from_micros(375))
    );
    assert_eq!(instance.counters().became_backup, 1);
    // A second Startup does nothing.
    assert!(instance.handle(Input::Startup, t0 + ms(1)).is_empty());
}

#[test]
fn early_timer_does_nothing_and_due_timer_makes_master() {
    let t0 = Instant::now();
    let mut instance = started(config(100, 1), t0);
    let deadline = instance.next_deadline().unwrap();
    assert!(
        instance
            .handle(Input::Timer, deadline - Duration::from_nanos(1))
            .is_empty()
    );
    assert_eq!(instance.state(), State::Backup);
    let actions = instance.handle(Input::Timer, deadline);
    assert_eq!(
        actions,
        vec![
            Action::AddVips,
            Action::Announce,
            Action::SendAdvert { priority: 100 },
            changed(State::Backup, State::Master),
        ]
    );
    assert_eq!(instance.next_deadline(), Some(deadline + ms(1000)));
}

#[test]
fn master_sends_advert_each_interval() {
    let t0 = Instant::now();
    let mut instance = started(config(255, 1), t0);
    assert!(instance.handle(Input::Timer, t0 + ms(999)).is_empty());
    let actions = instance.handle(Input::Timer, t0 + ms(1000));
    assert_eq!(actions, vec![Action::SendAdvert { priority: 255 }]);
    assert_eq!(instance.next_deadline(), Some(t0 + ms(2000)));
    // Late timer: one advert, next one an interval from now (no burst to catch up).
    let actions = instance.handle(Input::Timer, t0 + ms(4500));
    assert_eq!(actions, vec![Action::SendAdvert { priority: 255 }]);
    assert_eq!(instance.next_deadline(), Some(t0 + ms(5500)));
    assert_eq!(instance.counters().adverts_tx, 3);
}

#[test]
fn announcements_repeat_then_stop() {
    let t0 = Instant::now();
    let mut cfg = config(255, 1);
    cfg.announce_count = 3;
    cfg.vips = vec![IpAddr::V4(VIP), addr(101)];
    let mut instance = started(cfg, t0);
    assert_eq!(
        instance.handle(Input::Timer, t0 + ms(200)),
        vec![Action::Announce]
    );
    assert_eq!(instance.next_deadline(), Some(t0 + ms(400)));
    assert_eq!(
        instance.handle(Input::Timer, t0 + ms(400)),
        vec![Action::Announce]
    );
    // Three rounds done: the next deadline is the advert timer.
    assert_eq!(instance.next_deadline(), Some(t0 + ms(1000)));
    assert_eq!(
        instance.handle(Input::Timer, t0 + ms(1000)),
        vec![Action::SendAdvert { priority: 255 }]
    );
    // Two VIPs per round, three rounds.
    assert_eq!(instance.counters().announcements_tx, 6);
}

#[test]
fn several_timers_due_at_once_are_all_handled() {
    let t0 = Instant::now();
    let mut cfg = config(255, 1);
    cfg.announce_count = 2;
    cfg.announce_interval = ms(1000);
    let mut instance = started(cfg, t0);
    let actions = instance.handle(Input::Timer, t0 + ms(1000));
    assert_eq!(
        actions,
        vec![Action::SendAdvert { priority: 255 }, Action::Announce]
    );
}

#[test]
fn announcements_stop_when_leaving_master() {
    let t0 = Instant::now();
    let mut cfg = config(100, 1);
    cfg.announce_count = 5;
    let mut instance = started(cfg, t0);
    let t1 = make_master(&mut instance, t0);
    let actions = instance.handle(advert_from(2, 200, 100), t1 + ms(10));
    assert_eq!(actions, vec![changed(State::Master, State::Backup)]);
    // The VIPs go RELEASE_LINGER later (no draining configured).
    let release = instance.next_deadline().unwrap();
    assert_eq!(release, t1 + ms(10) + RELEASE_LINGER);
    assert_eq!(
        instance.handle(Input::Timer, release),
        vec![Action::RemoveVips]
    );
    // Only the Master_Down_Timer remains: no Announce ever again while Backup.
    let down = instance.next_deadline().unwrap();
    assert_eq!(down, t1 + ms(10) + master_down_interval(100, 100));
    assert!(instance.handle(Input::Timer, t1 + ms(210)).is_empty());
}

#[test]
fn backup_learns_master_and_its_interval() {
    let t0 = Instant::now();
    let mut instance = started(config(100, 1), t0);
    let t1 = t0 + ms(500);
    assert!(instance.handle(advert_from(9, 200, 50), t1).is_empty());
    assert_eq!(instance.master(), Some(addr(9)));
    assert_eq!(instance.master_interval_cs(), 50);
    // 3 * 0.5 s + 156/256 * 0.5 s = 1.8046875 s
    assert_eq!(
        instance.next_deadline(),
        Some(t1 + Duration::from_nanos(1_804_687_500))
    );
    assert_eq!(instance.counters().adverts_rx, 1);
}

#[test]
fn backup_priority_zero_shortens_timer_to_skew() {
    let t0 = Instant::now();
    let mut instance = started(config(100, 1), t0);
    instance.handle(advert_from(9, 200, 100), t0);
    let t1 = t0 + ms(300);
    assert!(instance.handle(advert_from(9, 0, 100), t1).is_empty());
    assert_eq!(instance.next_deadline(), Some(t1 + skew_time(100, 100)));
    assert_eq!(instance.master(), None);
    assert_eq!(instance.counters().priority_zero_rx, 1);
    let actions = instance.handle(Input::Timer, t1 + skew_time(100, 100));
    assert_eq!(actions.last(), Some(&changed(State::Backup, State::Master)));
}

#[test]
fn preempting_backup_ignores_lower_master() {
    let t0 = Instant::now();
    let mut instance = started(config(150, 1), t0);
    let deadline = instance.next_deadline();
    // Lower-priority master: dropped, timer keeps running.
    assert!(
        instance
            .handle(advert_from(9, 100, 100), t0 + ms(500))
            .is_empty()
    );
    assert_eq!(instance.next_deadline(), deadline);
    assert_eq!(instance.master(), None);
    let actions = instance.handle(Input::Timer, deadline.unwrap());
    assert_eq!(actions.last(), Some(&changed(State::Backup, State::Master)));
}

#[test]
fn preempting_backup_accepts_equal_priority() {
    let t0 = Instant::now();
    let mut instance = started(config(150, 1), t0);
    instance.handle(advert_from(9, 150, 100), t0 + ms(500));
    assert_eq!(
        instance.next_deadline(),
        Some(t0 + ms(500) + master_down_interval(150, 100))
    );
}

#[test]
fn non_preempting_backup_accepts_lower_master() {
    let t0 = Instant::now();
    let mut cfg = config(150, 1);
    cfg.preempt = false;
    let mut instance = started(cfg, t0);
    instance.handle(advert_from(9, 100, 100), t0 + ms(500));
    assert_eq!(instance.master(), Some(addr(9)));
    assert_eq!(
        instance.next_deadline(),
        Some(t0 + ms(500) + master_down_interval(150, 100))
    );
}

#[test]
fn master_yields_to_higher_priority() {
    let t0 = Instant::now();
    let mut instance = started(config(100, 1), t0);
    let t1 = make_master(&mut instance, t0);
    let t2 = t1 + ms(100);
    let actions = instance.handle(advert_from(9, 101, 200), t2);
    assert_eq!(actions, vec![changed(State::Master, State::Backup)]);
    assert_eq!(instance.master(), Some(addr(9)));
    assert_eq!(instance.master_interval_cs(), 200);
    // The new master announced before its advert: keep the VIPs RELEASE_LINGER for packets
    // already on their way to us, then remove them.
    assert_eq!(instance.next_deadline(), Some(t2 + RELEASE_LINGER));
    assert_eq!(
        instance.handle(Input::Timer, t2 + RELEASE_LINGER),
        vec![Action::RemoveVips]
    );
    assert_eq!(
        instance.next_deadline(),
        Some(t2 + master_down_interval(100, 200))
    );
    assert_eq!(instance.counters().became_backup, 2);
}

#[test]
fn master_tie_break_on_equal_priority() {
    let t0 = Instant::now();
    // We are 192.0.2.5: an equal advert from .4 loses, from .6 wins.
    let mut instance = started(config(100, 5), t0);
    let t1 = make_master(&mut instance, t0);
    // The loser is told at once (advert + announcement), and we stay master.
    assert_eq!(
        instance.handle(advert_from(4, 100, 100), t1),
        vec![Action::SendAdvert { priority: 100 }, Action::Announce]
    );
    assert_eq!(instance.state(), State::Master);
    let actions = instance.handle(advert_from(6, 100, 100), t1);
    assert_eq!(actions.last(), Some(&changed(State::Master, State::Backup)));
}

#[test]
fn tie_break_compares_addresses_as_unsigned_integers() {
    // 192.0.2.200 > 192.0.2.100 and 10.0.0.1 < 192.0.2.1 numerically; 128.0.0.0 > 127.255.255.255
    // (a signed compare would get this one wrong).
    assert!(address_above(addr(200), addr(100)));
    assert!(!address_above(
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        addr(1)
    ));
    assert!(address_above(
        IpAddr::V4(Ipv4Addr::new(128, 0, 0, 0)),
        IpAddr::V4(Ipv4Addr::new(127, 255, 255, 255))
    ));
    assert!(address_above(
        "fe80::2".parse().unwrap(),
        "fe80::1".parse().unwrap()
    ));
    assert!(address_above(
        "ff00::".parse().unwrap(),
        "7fff::ffff".parse().unwrap()
    ));
}

#[test]
fn master_stays_master_over_lower_priority() {
    let t0 = Instant::now();
    let mut instance = started(config(100, 5), t0);
    let t1 = make_master(&mut instance, t0);
    let actions = instance.handle(advert_from(9, 99, 100), t1 + ms(10));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::StateChanged { .. }))
    );
    assert_eq!(instance.state(), State::Master);
    assert_eq!(
        instance.next_deadline(),
        Some(t1 + ms(10) + ms(1000)),
        "Adver_Timer restarted (one announcement round configured)"
    );
}

#[test]
fn master_answers_priority_zero_at_once() {
    let t0 = Instant::now();
    let mut instance = started(config(255, 5), t0);
    // The owner ignores every advert, including priority 0.
    assert!(
        instance
            .handle(advert_from(9, 0, 100), t0 + ms(10))
            .is_empty()
    );

    let mut instance = started(config(100, 5), t0);
    let t1 = make_master(&mut instance, t0);
    let t2 = t1 + ms(300);
    let actions = instance.handle(advert_from(9, 0, 100), t2);
    assert_eq!(actions, vec![Action::SendAdvert { priority: 100 }]);
    assert_eq!(instance.next_deadline(), Some(t2 + ms(1000)));
    assert_eq!(instance.state(), State::Master);
}

#[test]
fn owner_ignores_others_and_counts() {
    let t0 = Instant::now();
    let mut instance = started(config(255, 1), t0);
    assert!(instance.handle(advert_from(9, 255, 100), t0).is_empty());
    assert!(instance.handle(advert_from(9, 254, 100), t0).is_empty());
    assert_eq!(instance.state(), State::Master);
    assert_eq!(instance.counters().get(DropReason::OwnerIgnores), 2);
}

#[test]
fn own_looped_back_advert_is_ignored() {
    let t0 = Instant::now();
    let mut instance = started(config(100, 5), t0);
    make_master(&mut instance, t0);
    let before = instance.counters().clone();
    // From our own address with a priority that would otherwise make us yield.
    assert!(instance.handle(advert_from(5, 200, 100), t0).is_empty());
    assert_eq!(instance.state(), State::Master);
    assert_eq!(instance.counters(), &before);
}

#[test]
fn foreign_vrid_is_dropped_and_counted() {
    let t0 = Instant::now();
    let mut instance = started(config(100, 5), t0);
    let Input::Advert(mut received) = advert_from(9, 200, 100) else {
        unreachable!()
    };
    received.advert.vrid = 2;
    let deadline = instance.next_deadline();
    assert!(instance.handle(Input::Advert(received), t0).is_empty());
    assert_eq!(instance.next_deadline(), deadline);
    assert_eq!(instance.counters().get(DropReason::ForeignVrid), 1);
    assert_eq!(instance.counters().adverts_rx, 0);
}

#[test]
fn address_mismatch_is_counted_but_processed() {
    let t0 = Instant::now();
    let mut instance = started(config(100, 5), t0);
    let Input::Advert(mut received) = advert_from(9, 200, 100) else {
        unreachable!()
    };
    received.advert.addresses = vec![addr(77)];
    instance.handle(Input::Advert(received.clone()), t0 + ms(1));
    assert_eq!(instance.counters().get(DropReason::AddressMismatch), 1);
    assert_eq!(instance.master(), Some(addr(9)));
    // Same set in another order is no mismatch.
    let mut cfg = config(100, 5);
    cfg.vips = vec![addr(100), addr(101)];
    let mut instance = started(cfg, t0);
    received.advert.addresses = vec![addr(101), addr(100)];
    instance.handle(Input::Advert(received), t0 + ms(1));
    assert_eq!(instance.counters().get(DropReason::AddressMismatch), 0);
}

#[test]
fn initialize_ignores_adverts_and_timers() {
    let t0 = Instant::now();
    let mut instance = Instance::new(config(100, 5));
    assert!(instance.handle(advert_from(9, 200, 100), t0).is_empty());
    assert!(instance.handle(Input::Timer, t0 + ms(10_000)).is_empty());
    assert!(instance.handle(Input::Shutdown, t0).is_empty());
    assert_eq!(instance.counters(), &Counters::default());
}

#[test]
fn shutdown_master_resigns_and_releases_vips_once_the_successor_speaks() {
    let t0 = Instant::now();
    let mut instance = started(config(100, 5), t0);
    let t1 = make_master(&mut instance, t0);
    let actions = instance.handle(Input::Shutdown, t1);
    assert_eq!(
        actions,
        vec![
            Action::SendAdvert { priority: 0 },
            changed(State::Master, State::Initialize),
        ]
    );
    assert_eq!(instance.state(), State::Initialize);
    assert!(instance.is_releasing());
    assert_eq!(instance.master(), None);
    assert_eq!(instance.counters().priority_zero_tx, 1);
    // Bounded by Master_Down_Interval when nobody takes over.
    assert_eq!(
        instance.next_deadline(),
        Some(t1 + instance.master_down_interval())
    );
    // Another resigning router or a foreign VRID is not a successor.
    assert!(
        instance
            .handle(advert_from(9, 0, 100), t1 + ms(5))
            .is_empty()
    );
    assert_eq!(
        instance.next_deadline(),
        Some(t1 + instance.master_down_interval())
    );
    // The successor's first advert: keep the VIPs RELEASE_LINGER longer, then drop them.
    let heard = t1 + ms(60);
    assert!(instance.handle(advert_from(9, 50, 100), heard).is_empty());
    assert_eq!(instance.next_deadline(), Some(heard + RELEASE_LINGER));
    assert!(instance.handle(Input::Timer, heard + ms(10)).is_empty());
    assert_eq!(
        instance.handle(Input::Timer, heard + RELEASE_LINGER),
        vec![Action::RemoveVips]
    );
    assert!(!instance.is_releasing());
    assert_eq!(instance.next_deadline(), None);
    // Nothing after that.
    assert!(instance.handle(Input::Timer, t1 + ms(100_000)).is_empty());
    assert!(instance.handle(advert_from(9, 0, 100), t1).is_empty());
    assert!(instance.handle(Input::Shutdown, t1).is_empty());
}

#[test]
fn shutdown_without_successor_releases_after_master_down_interval() {
    let t0 = Instant::now();
    let mut instance = started(config(100, 5), t0);
    let t1 = make_master(&mut instance, t0);
    instance.handle(Input::Shutdown, t1);
    let end = t1 + instance.master_down_interval();
    assert!(instance.handle(Input::Timer, end - ms(1)).is_empty());
    assert_eq!(instance.handle(Input::Timer, end), vec![Action::RemoveVips]);
    assert!(!instance.is_releasing());
}

#[test]
fn second_shutdown_or_restart_ends_the_release_at_once() {
    let t0 = Instant::now();
    let mut instance = started(config(100, 5), t0);
    let t1 = make_master(&mut instance, t0);
    instance.handle(Input::Shutdown, t1);
    assert_eq!(
        instance.handle(Input::Shutdown, t1 + ms(1)),
        vec![Action::RemoveVips]
    );
    assert!(!instance.is_releasing());

    let mut instance = started(config(100, 5), t0);
    let t1 = make_master(&mut instance, t0);
    instance.handle(Input::Shutdown, t1);
    assert_eq!(
        instance.handle(Input::Startup, t1 + ms(1)),
        vec![
            Action::RemoveVips,
            changed(State::Initialize, State::Backup)
        ]
    );
    assert!(!instance.is_releasing());
}

#[test]
fn shutdown_backup_is_silent() {
    let t0 = Instant::now();
    let mut instance = started(config(100, 5), t0);
    assert_eq!(
        instance.handle(Input::Shutdown, t0),
        vec![changed(State::Backup, State::Initialize)]
    );
    assert_eq!(instance.next_deadline(), None);
    // Restart is possible.
    assert_eq!(
        instance.handle(Input::Startup, t0 + ms(5)),
        vec![changed(State::Initialize, State::Backup)]
    );
}

#[test]
fn resign_sends_priority_zero_and_backs_off() {
    let t0 = Instant::now();
    let mut instance = started(config(100, 5), t0);
    let t1 = make_master(&mut instance, t0);
    let actions = instance.resign(t1);
    // The VIPs stay until the successor has spoken.
    assert_eq!(
        actions,
        vec![
            Action::SendAdvert { priority: 0 },
            changed(State::Master, State::Backup),
        ]
    );
    assert!(instance.is_releasing());
    assert_eq!(
        instance.next_deadline(),
        Some(t1 + master_down_interval(100, 100))
    );
    // Not master: nothing to resign.
    assert!(instance.resign(t1).is_empty());
    // The successor's first advert: the VIPs go RELEASE_LINGER later.
    let t2 = t1 + ms(30);
    assert!(instance.handle(advert_from(9, 200, 100), t2).is_empty());
    assert_eq!(instance.next_deadline(), Some(t2 + RELEASE_LINGER));
    assert_eq!(
        instance.handle(Input::Timer, t2 + RELEASE_LINGER),
        vec![Action::RemoveVips]
    );
    assert!(!instance.is_releasing());
    assert_eq!(instance.state(), State::Backup);
}

#[test]
fn set_priority_on_master_sends_advert_at_once() {
    let t0 = Instant::now();
    let mut instance = started(config(100, 5), t0);
    let t1 = make_master(&mut instance, t0);
    let t2 = t1 + ms(400);
    assert_eq!(
        instance.handle(Input::SetPriority(80), t2),
        vec![Action::SendAdvert { priority: 80 }]
    );
    assert_eq!(instance.priority(), 80);
    assert_eq!(instance.next_deadline(), Some(t2 + ms(1000)));
    // Same priority again: nothing.
    assert!(instance.handle(Input::SetPriority(80), t2).is_empty());
    // Clamped to 1..=254.
    instance.handle(Input::SetPriority(0), t2);
    assert_eq!(instance.priority(), 1);
    instance.handle(Input::SetPriority(255), t2);
    assert_eq!(instance.priority(), 254);
}

#[test]
fn set_priority_on_backup_changes_skew_silently() {
    let t0 = Instant::now();
    let mut instance = started(config(100, 5), t0);
    assert!(instance.handle(Input::SetPriority(200), t0).is_empty());
    instance.handle(advert_from(9, 250, 100), t0 + ms(10));
    assert_eq!(
        instance.next_deadline(),
        Some(t0 + ms(10) + master_down_interval(200, 100))
    );
}

#[test]
fn owner_ignores_set_priority() {
    let t0 = Instant::now();
    let mut instance = started(config(255, 5), t0);
    assert!(instance.handle(Input::SetPriority(10), t0).is_empty());
    assert_eq!(instance.priority(), 255);
}

#[test]
fn lowered_master_loses_to_preempting_backup() {
    // A master drops to 80 through health tracking; a preempting backup at 100 now drops its
    // adverts and takes over after Master_Down_Interval.
    let t0 = Instant::now();
    let mut master = started(config(120, 5), t0);
    let t1 = make_master(&mut master, t0);
    let mut backup = started(config(100, 6), t1);
    backup.handle(advert_from(5, 120, 100), t1);
    let t2 = t1 + ms(100);
    let actions = master.handle(Input::SetPriority(80), t2);
    assert_eq!(actions, vec![Action::SendAdvert { priority: 80 }]);
    assert!(backup.handle(advert_from(5, 80, 100), t2).is_empty());
    let takeover = backup.next_deadline().unwrap();
    assert_eq!(takeover, t1 + master_down_interval(100, 100));
    let actions = backup.handle(Input::Timer, takeover);
    assert_eq!(actions[2], Action::SendAdvert { priority: 100 });
    // The old master yields to the higher advert.
    let actions = master.handle(advert_from(6, 100, 100), takeover);
    assert_eq!(actions.last(), Some(&changed(State::Master, State::Backup)));
}

#[test]
fn skew_orders_backups_by_priority() {
    let t0 = Instant::now();
    let mut high = started(config(200, 2), t0);
    let mut low = started(config(100, 3), t0);
    high.handle(advert_from(9, 250, 100), t0);
    low.handle(advert_from(9, 250, 100), t0);
    assert!(high.next_deadline().unwrap() < low.next_deadline().unwrap());
    let gap = low.next_deadline().unwrap() - high.next_deadline().unwrap();
    assert_eq!(gap, skew_time(100, 100) - skew_time(200, 100));
}

#[test]
fn master_driven_to_the_floor_resigns_at_once() {
    let t0 = Instant::now();
    let mut instance = started(config(150, 5), t0);
    let t1 = make_master(&mut instance, t0);
    // A small drop is announced, not a resignation.
    assert_eq!(
        instance.handle(Input::SetPriority(120), t1),
        vec![Action::SendAdvert { priority: 120 }]
    );
    assert_eq!(instance.state(), State::Master);
    // Unfit: priority 0, Backup with a fresh Master_Down_Timer at priority 1, the VIPs kept
    // until a successor speaks.
    let t2 = t1 + ms(50);
    assert_eq!(
        instance.handle(Input::SetPriority(UNFIT_PRIORITY), t2),
        vec![
            Action::SendAdvert { priority: 0 },
            changed(State::Master, State::Backup),
        ]
    );
    assert!(instance.is_releasing());
    assert_eq!(instance.priority(), UNFIT_PRIORITY);
    assert_eq!(
        instance.next_deadline(),
        Some(t2 + master_down_interval(UNFIT_PRIORITY, 100))
    );
    // Alone on the link, it serves again (badly) rather than leave the VIP vacant.
    let back = instance.next_deadline().unwrap();
    let actions = instance.handle(Input::Timer, back);
    assert!(actions.contains(&Action::AddVips));
    assert!(
        !actions.contains(&Action::RemoveVips),
        "the VIPs were never vacant"
    );
    assert!(!instance.is_releasing());
    assert_eq!(instance.state(), State::Master);
    // Already at the floor: nothing more.
    assert!(
        instance
            .handle(Input::SetPriority(UNFIT_PRIORITY), back)
            .is_empty()
    );
}

/// `config` with draining on.
fn draining(priority: u8, primary_last: u8) -> InstanceConfig {
    InstanceConfig {
        drain: ms(2000),
        ..config(priority, primary_last)
    }
}

#[test]
fn a_backup_taking_over_from_a_resigning_master_drains_to_it() {
    let t0 = Instant::now();
    let mut instance = started(draining(100, 1), t0);
    instance.handle(advert_from(9, 200, 100), t0 + ms(100));
    instance.handle(advert_from(9, 0, 100), t0 + ms(200));
    let at = instance.next_deadline().unwrap();
    assert_eq!(at, t0 + ms(200) + instance.skew_time());
    let actions = instance.handle(Input::Timer, at);
    assert_eq!(
        actions[..3],
        [
            Action::AddVips,
            Action::StartDrain { to: addr(9) },
            Action::Announce
        ]
    );
    assert_eq!(instance.draining_to(), Some(addr(9)));
    // The drain ends after `drain`, with the adverts going on.
    let end = at + ms(2000);
    let actions = instance.handle(Input::Timer, end);
    assert!(actions.contains(&Action::StopDrain), "{actions:?}");
    assert_eq!(instance.draining_to(), None);
    assert!(
        !instance
            .handle(Input::Timer, end + ms(3000))
            .contains(&Action::StopDrain)
    );
}

#[test]
fn a_preempting_backup_drains_to_the_lower_master_and_it_parks() {
    let t0 = Instant::now();
    // We (200) preempt a master at 100 that keeps advertising.
    let mut high = started(draining(200, 1), t0);
    let mut t = t0;
    while high.state() == State::Backup {
        t += ms(1000);
        high.handle(advert_from(9, 100, 100), t);
        if let Some(at) = high.next_deadline().filter(|&at| at <= t + ms(1000)) {
            let actions = high.handle(Input::Timer, at);
            assert!(actions.contains(&Action::StartDrain { to: addr(9) }));
        }
    }
    // The lower master hears us: VIPs for RELEASE_LINGER, parked for `drain`, then gone.
    let mut low = started(draining(100, 9), t0);
    let t1 = make_master(&mut low, t0);
    let t2 = t1 + ms(500);
    assert_eq!(
        low.handle(advert_from(1, 200, 100), t2),
        vec![changed(State::Master, State::Backup)]
    );
    assert_eq!(
        low.handle(Input::Timer, t2 + RELEASE_LINGER),
        vec![Action::ParkVips]
    );
    assert!(low.is_parked() && low.is_releasing());
    assert_eq!(low.next_deadline(), Some(t2 + RELEASE_LINGER + ms(2000)));
    assert_eq!(
        low.handle(Input::Timer, t2 + RELEASE_LINGER + ms(2000)),
        vec![Action::RemoveVips]
    );
    assert!(!low.is_parked() && !low.is_releasing());
}

#[test]
fn a_master_that_went_quiet_is_not_drained_to() {
    let t0 = Instant::now();
    let mut instance = started(draining(100, 1), t0);
    instance.handle(advert_from(9, 200, 100), t0 + ms(100));
    // No advert for Master_Down_Interval: the master is dead.
    let at = instance.next_deadline().unwrap();
    let actions = instance.handle(Input::Timer, at);
    assert_eq!(instance.state(), State::Master);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::StartDrain { .. })),
        "{actions:?}"
    );
}

#[test]
fn parked_vips_go_at_a_second_shutdown_and_come_back_on_takeover() {
    let t0 = Instant::now();
    let mut instance = started(draining(100, 1), t0);
    let t1 = make_master(&mut instance, t0);
    instance.handle(Input::Shutdown, t1);
    instance.handle(advert_from(9, 100, 100), t1 + ms(50));
    assert_eq!(
        instance.handle(Input::Timer, t1 + ms(50) + RELEASE_LINGER),
        vec![Action::ParkVips]
    );
    assert!(instance.is_releasing(), "the daemon waits for the drain");
    assert_eq!(
        instance.handle(Input::Shutdown, t1 + ms(200)),
        vec![Action::RemoveVips]
    );
    assert!(!instance.is_releasing());

    // Resigned (maintenance) and parked, then master again: the VIPs come back.
    let mut instance = started(draining(100, 1), t0);
    let t1 = make_master(&mut instance, t0);
    instance.handle(Input::SetPriority(UNFIT_PRIORITY), t1);
    instance.handle(advert_from(9, 100, 100), t1 + ms(50));
    instance.handle(Input::Timer, t1 + ms(50) + RELEASE_LINGER);
    assert!(instance.is_parked());
    // The successor dies; we take over and hold the VIPs again.
    let at = instance.next_deadline().unwrap();
    let at = if at < t1 + ms(3000) {
        // The park timer ends first.
        assert_eq!(instance.handle(Input::Timer, at), vec![Action::RemoveVips]);
        instance.next_deadline().unwrap()
    } else {
        at
    };
    let actions = instance.handle(Input::Timer, at);
    assert_eq!(actions[0], Action::AddVips);
    assert!(!instance.is_parked());
}

#[test]
fn a_master_hearing_a_lower_priority_master_reasserts_and_reannounces() {
    let t0 = Instant::now();
    let mut cfg = config(200, 1);
    cfg.announce_count = 3;
    let mut instance = started(cfg, t0);
    let t1 = make_master(&mut instance, t0);
    // Rounds of the takeover done.
    instance.handle(Input::Timer, t1 + ms(200));
    instance.handle(Input::Timer, t1 + ms(400));
    let t2 = t1 + ms(500);
    let actions = instance.handle(advert_from(9, 100, 100), t2);
    assert_eq!(
        actions,
        vec![Action::SendAdvert { priority: 200 }, Action::Announce]
    );
    assert_eq!(instance.state(), State::Master);
    // The remaining rounds follow.
    assert_eq!(instance.next_deadline(), Some(t2 + ms(200)));
    assert_eq!(
        instance.handle(Input::Timer, t2 + ms(200)),
        vec![Action::Announce]
    );
}
