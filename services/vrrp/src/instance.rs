//! One virtual router: the Initialize / Backup / Master state machine of RFC 5798 section 6.4.
//!
//! The caller feeds [`Input`]s with the current monotonic time and carries out the
//! [`Action`]s returned, in order. [`Instance::next_deadline`] says when to call
//! [`Instance::handle`] with [`Input::Timer`] next.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::counters::{Counters, DropReason};
use crate::packet::{MAX_INTERVAL_CS, Received};

/// States of RFC 5798.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started, or shut down.
    Initialize,
    /// Listening; takes over when the master goes quiet or resigns.
    Backup,
    /// Owns the virtual addresses and advertises.
    Master,
}

/// What an instance is configured with (validated by the daemon's config layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// Configured priority, 1..=255 (255: we own the addresses).
    pub priority: u8,
    /// Advertisement interval in centiseconds, 1..=4095.
    pub interval_cs: u16,
    /// Whether a higher-priority backup takes over from a lower-priority master.
    pub preempt: bool,
    /// Virtual addresses, one family, non-empty.
    pub vips: Vec<IpAddr>,
    /// Our primary address on the interface: the source of our adverts and the tie-break.
    pub primary: IpAddr,
    /// How many gratuitous ARP / NA rounds to send on becoming master (>= 1).
    pub announce_count: u32,
    /// Pause between announcement rounds.
    pub announce_interval: Duration,
    /// How long a planned move of the VIPs (a resignation, a shutdown, a preemption: the old
    /// holder is alive) keeps the connections established with the old holder working: it
    /// keeps the VIPs as local addresses it no longer announces ([`Action::ParkVips`]) and
    /// the new master hands it their segments ([`Action::StartDrain`]). Zero: no draining,
    /// the VIPs are removed and those connections are reset.
    pub drain: Duration,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Start the instance (Initialize → Backup or Master).
    Startup,
    /// Orderly stop: a master resigns with priority 0 (→ Initialize) but keeps its VIPs until
    /// the successor is heard (see [`Instance::is_releasing`]); a second `Shutdown` drops them
    /// at once.
    Shutdown,
    /// A validated advertisement for our VRID.
    Advert(Received),
    /// Time passed; the caller calls this at or after [`Instance::next_deadline`].
    Timer,
    /// Health tracking changed the effective priority (configured priority minus failing
    /// weights, clamped to 1..=254; never applied to an owner at 255). A master announces the
    /// new priority at once; one driven down to [`UNFIT_PRIORITY`] resigns instead.
    SetPriority(u8),
}

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement with this priority (0 when resigning).
    SendAdvert {
        /// Priority to put in the packet.
        priority: u8,
    },
    /// Add the virtual addresses to the interface.
    AddVips,
    /// Remove the virtual addresses: from the interface, and from where
    /// [`Action::ParkVips`] put them.
    RemoveVips,
    /// Stop holding the virtual addresses on the interface (no more ARP / ND answers for
    /// them) but keep them as local addresses, so the connections clients opened with us
    /// keep working while the new master hands us their segments. [`Action::AddVips`] or
    /// [`Action::RemoveVips`] follow.
    ParkVips,
    /// As the new master after a planned move: hand every segment for a VIP that belongs to
    /// a connection we do not know (not a SYN) to the previous holder `to`, which parked the
    /// VIPs and still has the socket. [`Action::StopDrain`] follows.
    StartDrain {
        /// The previous master's address (the source of its adverts).
        to: IpAddr,
    },
    /// Stop handing segments to the previous holder.
    StopDrain,
    /// Send one round of gratuitous ARP / unsolicited NA for every VIP.
    Announce,
    /// The state changed (for logs, counters already updated).
    StateChanged {
        /// Before.
        from: State,
        /// After.
        to: State,
    },
}

/// Priority of the address owner.
pub const OWNER_PRIORITY: u8 = 255;

/// Nanoseconds in one centisecond.
const NANOS_PER_CS: u64 = 10_000_000;

/// Skew_Time = ((256 - priority) * Master_Adver_Interval) / 256, exactly (to the nanosecond,
/// rounded down) rather than in whole centiseconds.
pub fn skew_time(priority: u8, master_adver_interval_cs: u16) -> Duration {
    let weight = 256 - u64::from(priority);
    Duration::from_nanos(weight * u64::from(master_adver_interval_cs) * NANOS_PER_CS / 256)
}

/// Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time.
pub fn master_down_interval(priority: u8, master_adver_interval_cs: u16) -> Duration {
    centiseconds(master_adver_interval_cs) * 3 + skew_time(priority, master_adver_interval_cs)
}

/// A centisecond count as a [`Duration`].
pub fn centiseconds(cs: u16) -> Duration {
    Duration::from_nanos(u64::from(cs) * NANOS_PER_CS)
}

/// One virtual router.
#[derive(Debug, Clone)]
pub struct Instance {
    config: InstanceConfig,
    counters: Counters,
    state: State,
    /// Effective priority: the configured one, or what health tracking set.
    priority: u8,
    /// Master_Adver_Interval: the interval the current master advertises (ours until learnt).
    master_adver_interval_cs: u16,
    /// Adver_Timer (Master only).
    adver_timer: Option<Instant>,
    /// Master_Down_Timer (Backup only).
    master_down_timer: Option<Instant>,
    /// Next announcement round (Master only) and how many rounds are left after it.
    announce_timer: Option<Instant>,
    announce_left: u32,
    /// Source of the last advert accepted from a master (Backup).
    master: Option<IpAddr>,
    /// After a master's Shutdown: when the VIPs are removed (Initialize only).
    release_timer: Option<Instant>,
    /// Whether the successor's advert was heard during the release.
    release_heard: bool,
    /// Source and arrival of the last advert from another router (any priority): tells a
    /// new master whether its predecessor is alive to drain to.
    last_heard: Option<(IpAddr, Instant)>,
    /// Master after a planned move: when forwarding to the previous holder stops.
    drain_timer: Option<Instant>,
    /// The previous holder being drained to.
    drain_to: Option<IpAddr>,
    /// Parked VIPs (Backup or Initialize): when they are removed.
    park_timer: Option<Instant>,
}

/// The effective priority health tracking sets when a check drives it to the floor: "cannot
/// serve". A master that falls to it resigns at once (see [`Input::SetPriority`]).
pub const UNFIT_PRIORITY: u8 = 1;

/// How long a resigned master keeps its VIPs after hearing its successor's first advert.
/// The successor sends that advert together with its gratuitous ARPs, so by then clients are
/// re-pointed; the linger covers packets already on the wire to our MAC, which would otherwise
/// be dropped (a lost SYN costs the client a 1 s retransmission timeout).
pub const RELEASE_LINGER: Duration = Duration::from_millis(50);

impl Instance {
    /// A new instance in [`State::Initialize`].
    pub fn new(config: InstanceConfig) -> Self {
        let priority = config.priority;
        let master_adver_interval_cs = config.interval_cs.max(1);
        Self {
            config,
            counters: Counters::default(),
            state: State::Initialize,
            priority,
            master_adver_interval_cs,
            adver_timer: None,
            master_down_timer: None,
            announce_timer: None,
            announce_left: 0,
            master: None,
            release_timer: None,
            release_heard: false,
            last_heard: None,
            drain_timer: None,
            drain_to: None,
            park_timer: None,
        }
    }

    /// Feeds one input at time `now`; returns what to do.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match input {
            Input::Startup => self.startup(now, &mut actions),
            Input::Shutdown => self.shutdown(now, &mut actions),
            Input::Advert(received) => self.advert(&received, now, &mut actions),
            Input::Timer => self.timers(now, &mut actions),
            Input::SetPriority(priority) => self.set_priority(priority, now, &mut actions),
        }
        actions
    }

    /// A master gives up its role without stopping: it sends a priority-0 advert (so the best
    /// backup takes over after its Skew_Time) and listens as Backup. Like a shutdown it keeps
    /// the VIPs until its successor's first advert plus [`RELEASE_LINGER`], so clients never
    /// find nobody at the VIP; with no other router it keeps them and becomes master again
    /// after Master_Down_Interval. Does nothing unless Master.
    pub fn resign(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.state == State::Master {
            self.resign_keeping_vips(now, &mut actions);
        }
        actions
    }

    /// When the next timer fires (advert timer, master-down timer, announcement round or the
    /// end of a release); `None` in Initialize once the VIPs are released.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.adver_timer,
            self.master_down_timer,
            self.announce_timer,
            self.release_timer,
            self.drain_timer,
            self.park_timer,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether a resigned master still holds its VIPs, waiting for its successor's advert
    /// (or, with no successor, for Master_Down_Interval), or still has them parked for the
    /// connections being drained; the daemon keeps running until this is false so clients
    /// never find nobody at the VIP and connections in flight finish.
    pub fn is_releasing(&self) -> bool {
        self.release_timer.is_some() || self.park_timer.is_some()
    }

    /// Whether the VIPs are parked (see [`Action::ParkVips`]).
    pub fn is_parked(&self) -> bool {
        self.park_timer.is_some()
    }

    /// The previous master this master drains to, while it does.
    pub fn draining_to(&self) -> Option<IpAddr> {
        self.drain_to
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Effective priority (after health tracking).
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// The configuration.
    pub fn config(&self) -> &InstanceConfig {
        &self.config
    }

    /// Address of the current master as last seen (ourselves when Master), if any.
    pub fn master(&self) -> Option<IpAddr> {
        match self.state {
            State::Master => Some(self.config.primary),
            State::Backup => self.master,
            State::Initialize => None,
        }
    }

    /// The master's advertised interval we currently use for Master_Down_Interval.
    pub fn master_interval_cs(&self) -> u16 {
        self.master_adver_interval_cs
    }

    /// Skew_Time for our current priority and Master_Adver_Interval.
    pub fn skew_time(&self) -> Duration {
        skew_time(self.priority, self.master_adver_interval_cs)
    }

    /// Master_Down_Interval for our current priority and Master_Adver_Interval.
    pub fn master_down_interval(&self) -> Duration {
        master_down_interval(self.priority, self.master_adver_interval_cs)
    }

    /// Counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counts a dropped packet (decode errors are counted by the daemon through this).
    pub fn count_drop(&mut self, reason: crate::DropReason) {
        self.counters.count_drop(reason);
    }

    /// Whether we own the addresses (configured priority 255).
    fn is_owner(&self) -> bool {
        self.config.priority == OWNER_PRIORITY
    }

    fn startup(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.state != State::Initialize {
            return;
        }
        if self.release_timer.take().is_some() | self.park_timer.take().is_some() {
            actions.push(Action::RemoveVips);
        }
        self.master_adver_interval_cs = self.config.interval_cs.max(1);
        self.master = None;
        if self.priority == OWNER_PRIORITY {
            self.become_master(now, actions);
        } else {
            self.become_backup(now, actions);
        }
    }

    fn shutdown(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let from = self.state;
        match from {
            State::Initialize => {
                // A second Shutdown while releasing or draining: drop the VIPs now.
                if self.release_timer.take().is_some() | self.park_timer.take().is_some() {
                    actions.push(Action::RemoveVips);
                }
                return;
            }
            State::Master => {
                self.stop_drain(actions);
                self.send(0, actions);
                // The best backup takes over after its Skew_Time (< one interval); give up
                // waiting for it after a whole Master_Down_Interval.
                self.release_timer = Some(now + self.master_down_interval());
                self.release_heard = false;
            }
            State::Backup => {}
        }
        self.stop_timers();
        self.master = None;
        self.state = State::Initialize;
        actions.push(Action::StateChanged {
            from,
            to: State::Initialize,
        });
    }

    fn advert(&mut self, received: &Received, now: Instant, actions: &mut Vec<Action>) {
        if received.advert.vrid == self.config.vrid && received.src != self.config.primary {
            self.last_heard = Some((received.src, now));
        }
        if self.state == State::Initialize {
            let successor = received.advert.vrid == self.config.vrid
                && received.advert.priority > 0
                && received.src != self.config.primary;
            if let Some(at) = self.release_timer
                && successor
                && !self.release_heard
            {
                self.release_heard = true;
                self.release_timer = Some(at.min(now + RELEASE_LINGER));
            }
            return;
        }
        let advert = &received.advert;
        if advert.vrid != self.config.vrid {
            self.count_drop(DropReason::ForeignVrid);
            return;
        }
        if received.src == self.config.primary {
            // Our own advert looped back by the multicast socket.
            return;
        }
        self.counters.adverts_rx += 1;
        if advert.priority == 0 {
            self.counters.priority_zero_rx += 1;
        }
        if !same_addresses(&advert.addresses, &self.config.vips) {
            self.count_drop(DropReason::AddressMismatch);
        }
        if self.is_owner() {
            self.count_drop(DropReason::OwnerIgnores);
            return;
        }
        match self.state {
            State::Initialize => {}
            State::Backup => {
                if let Some(at) = self.release_timer
                    && advert.priority > 0
                    && !self.release_heard
                {
                    // Our successor speaks: it holds the VIPs and has announced them.
                    self.release_heard = true;
                    self.release_timer = Some(at.min(now + RELEASE_LINGER));
                }
                if advert.priority == 0 {
                    // The master resigned: take over after Skew_Time unless a better backup
                    // speaks first.
                    self.master = None;
                    self.master_down_timer = Some(now + self.skew_time());
                } else if !self.config.preempt || advert.priority >= self.priority {
                    self.learn_master(received, now);
                }
                // Otherwise a lower-priority master while we preempt: let the timer run out.
            }
            State::Master => {
                if advert.priority == 0 {
                    // A resigning router: assert ourselves at once.
                    self.send(self.priority, actions);
                    self.adver_timer = Some(now + centiseconds(self.config.interval_cs.max(1)));
                } else if advert.priority > self.priority
                    || (advert.priority == self.priority
                        && address_above(received.src, self.config.primary))
                {
                    self.learn_master(received, now);
                    self.preempted(now, actions);
                } else {
                    // A lower-priority router that believes it is master (it missed our
                    // adverts: a partition, a starved box). It has announced the VIPs, so
                    // clients now send to it: assert ourselves at once, advert and a full
                    // announcement, rather than leave them there until their ARP entries
                    // age out (keepalived's `garp_lower_prio_repeat`).
                    self.send(self.priority, actions);
                    self.adver_timer = Some(now + centiseconds(self.config.interval_cs.max(1)));
                    self.announce_left = self.config.announce_count.max(1);
                    self.announce(now, actions);
                }
            }
        }
    }

    /// Accepts `received` as the current master's advert: learn its interval, restart
    /// Master_Down_Timer.
    fn learn_master(&mut self, received: &Received, now: Instant) {
        self.master_adver_interval_cs = received.advert.interval_cs.clamp(1, MAX_INTERVAL_CS);
        self.master = Some(received.src);
        self.master_down_timer = Some(now + self.master_down_interval());
    }

    fn timers(&mut self, now: Instant, actions: &mut Vec<Action>) {
        match self.state {
            State::Initialize => self.release_timers(now, actions),
            State::Backup => {
                if self.master_down_timer.is_some_and(|t| t <= now) {
                    self.become_master(now, actions);
                } else {
                    self.release_timers(now, actions);
                }
            }
            State::Master => {
                if self.drain_timer.is_some_and(|t| t <= now) {
                    self.stop_drain(actions);
                }
                if self.adver_timer.is_some_and(|t| t <= now) {
                    self.send(self.priority, actions);
                    self.adver_timer = Some(now + centiseconds(self.config.interval_cs.max(1)));
                }
                if self.announce_timer.is_some_and(|t| t <= now) {
                    self.announce(now, actions);
                }
            }
        }
    }

    /// The end of a release (the successor spoke, or nobody did) and of a parking.
    fn release_timers(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.release_timer.is_some_and(|t| t <= now) {
            self.release_timer = None;
            if self.release_heard && !self.config.drain.is_zero() {
                // The successor holds the VIPs and drains to us: keep serving the
                // connections already here.
                actions.push(Action::ParkVips);
                self.park_timer = Some(now + self.config.drain);
            } else {
                actions.push(Action::RemoveVips);
            }
        }
        if self.park_timer.is_some_and(|t| t <= now) {
            self.park_timer = None;
            actions.push(Action::RemoveVips);
        }
    }

    fn set_priority(&mut self, priority: u8, now: Instant, actions: &mut Vec<Action>) {
        if self.is_owner() {
            return;
        }
        let priority = priority.clamp(1, OWNER_PRIORITY - 1);
        if priority == self.priority {
            return;
        }
        let was = self.priority;
        self.priority = priority;
        if self.state == State::Master {
            if priority == UNFIT_PRIORITY && was > UNFIT_PRIORITY {
                // Health tracking says we cannot serve at all: resign now (priority 0, the
                // best backup takes over after its Skew_Time) instead of waiting for it to
                // outlast our adverts; alone on the link we are master again after
                // Master_Down_Interval.
                self.resign_keeping_vips(now, actions);
                return;
            }
            // Tell backups now rather than at the next Adver_Timer, so a preempting backup
            // that now outranks us stops restarting its Master_Down_Timer at once.
            self.send(priority, actions);
            self.adver_timer = Some(now + centiseconds(self.config.interval_cs.max(1)));
        }
    }

    fn become_master(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let from = self.state;
        self.stop_timers();
        // Still holding the VIPs from a resignation nobody took over, or parked: keep them.
        self.release_timer = None;
        self.park_timer = None;
        self.state = State::Master;
        self.counters.became_master += 1;
        // Addresses and the first gratuitous ARP / NA go out before the advert (RFC 5798
        // sends the advert first): a resigning master that hears this advert releases its
        // VIPs RELEASE_LINGER later, and by then the clients have been re-pointed already,
        // however long adding the addresses took.
        actions.push(Action::AddVips);
        // A predecessor heard within two intervals is alive (it resigned, or we preempt it):
        // it parks the VIPs, and we hand it the connections it still serves. One that went
        // quiet for Master_Down_Interval is dead: nothing to drain to.
        let alive_within = centiseconds(self.master_adver_interval_cs) * 2;
        if let Some((to, at)) = self.last_heard
            && !self.config.drain.is_zero()
            && now.saturating_duration_since(at) <= alive_within
        {
            actions.push(Action::StartDrain { to });
            self.drain_timer = Some(now + self.config.drain);
            self.drain_to = Some(to);
        }
        self.announce_left = self.config.announce_count.max(1);
        self.announce(now, actions);
        self.send(self.priority, actions);
        self.adver_timer = Some(now + centiseconds(self.config.interval_cs.max(1)));
        actions.push(Action::StateChanged {
            from,
            to: State::Master,
        });
    }

    /// Enters Backup with a fresh Master_Down_Timer (startup, resign).
    fn become_backup(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.master_down_timer = Some(now + self.master_down_interval());
        self.become_backup_keeping_timer(actions);
    }

    /// Master → Backup after a priority-0 advert, keeping the VIPs until the successor has
    /// spoken (plus [`RELEASE_LINGER`]) or Master_Down_Interval has passed.
    fn resign_keeping_vips(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let from = self.state;
        self.stop_drain(actions);
        self.send(0, actions);
        self.master = None;
        self.stop_timers();
        self.master_down_timer = Some(now + self.master_down_interval());
        self.release_timer = Some(now + self.master_down_interval());
        self.release_heard = false;
        self.state = State::Backup;
        self.counters.became_backup += 1;
        actions.push(Action::StateChanged {
            from,
            to: State::Backup,
        });
    }

    /// Master → Backup on hearing a better master (Master_Down_Timer set by the caller): it
    /// announced the VIPs before its advert, so keep them [`RELEASE_LINGER`] for packets
    /// already on the wire to us, then park them while it drains to us.
    fn preempted(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.stop_drain(actions);
        self.release_timer = Some(now + RELEASE_LINGER);
        self.release_heard = true;
        self.become_backup_keeping_timer(actions);
    }

    /// Enters Backup with the Master_Down_Timer already set by the caller.
    fn become_backup_keeping_timer(&mut self, actions: &mut Vec<Action>) {
        let from = self.state;
        self.adver_timer = None;
        self.announce_timer = None;
        self.announce_left = 0;
        self.state = State::Backup;
        self.counters.became_backup += 1;
        actions.push(Action::StateChanged {
            from,
            to: State::Backup,
        });
    }

    /// One announcement round; schedules the next while rounds are left.
    fn announce(&mut self, now: Instant, actions: &mut Vec<Action>) {
        actions.push(Action::Announce);
        let frames = u64::try_from(self.config.vips.len()).unwrap_or(u64::MAX);
        self.counters.announcements_tx = self.counters.announcements_tx.saturating_add(frames);
        self.announce_left = self.announce_left.saturating_sub(1);
        self.announce_timer = (self.announce_left > 0).then(|| now + self.config.announce_interval);
    }

    /// Ends forwarding to the previous holder, if on (leaving Master, or the drain is over).
    fn stop_drain(&mut self, actions: &mut Vec<Action>) {
        self.drain_to = None;
        if self.drain_timer.take().is_some() {
            actions.push(Action::StopDrain);
        }
    }

    fn send(&mut self, priority: u8, actions: &mut Vec<Action>) {
        self.counters.adverts_tx += 1;
        if priority == 0 {
            self.counters.priority_zero_tx += 1;
        }
        actions.push(Action::SendAdvert { priority });
    }

    fn stop_timers(&mut self) {
        self.adver_timer = None;
        self.master_down_timer = None;
        self.announce_timer = None;
        self.announce_left = 0;
    }
}

/// Whether two address lists hold the same addresses, in any order.
fn same_addresses(a: &[IpAddr], b: &[IpAddr]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

/// Whether `a` is above `b` compared as unsigned integers in network byte order (RFC 5798
/// 6.4.3 tie-break). Across families (never on one link's instance) IPv6 counts as above.
fn address_above(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => u32::from(a) > u32::from(b),
        (IpAddr::V6(a), IpAddr::V6(b)) => u128::from(a) > u128::from(b),
        (IpAddr::V6(_), IpAddr::V4(_)) => true,
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

#[cfg(test)]
#[path = "instance_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "scenario_tests.rs"]
mod scenario_tests;
