//! One virtual router: the Initialize / Backup / Master state machine of RFC 5798 section 6.4.
//!
//! The caller feeds [`Input`]s with the current monotonic time and carries out the
//! [`Action`]s returned, in order. [`Instance::next_deadline`] says when to call
//! [`Instance::handle`] with [`Input::Timer`] next.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::counters::Counters;
use crate::packet::Received;

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
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Start the instance (Initialize → Backup or Master).
    Startup,
    /// Orderly stop: a master resigns with priority 0 (→ Initialize).
    Shutdown,
    /// A validated advertisement for our VRID.
    Advert(Received),
    /// Time passed; the caller calls this at or after [`Instance::next_deadline`].
    Timer,
    /// Health tracking changed the effective priority (configured priority minus failing
    /// weights, clamped to 1..=254; never applied to an owner at 255).
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
    /// Remove the virtual addresses from the interface.
    RemoveVips,
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

/// One virtual router.
#[derive(Debug, Clone)]
pub struct Instance {
    config: InstanceConfig,
    counters: Counters,
}

impl Instance {
    /// A new instance in [`State::Initialize`].
    pub fn new(config: InstanceConfig) -> Self {
        Self {
            config,
            counters: Counters::default(),
        }
    }

    /// Feeds one input at time `now`; returns what to do.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let _ = (input, now);
        todo!()
    }

    /// When the next timer fires (advert timer, master-down timer or announcement round);
    /// `None` in Initialize.
    pub fn next_deadline(&self) -> Option<Instant> {
        todo!()
    }

    /// Current state.
    pub fn state(&self) -> State {
        todo!()
    }

    /// Effective priority (after health tracking).
    pub fn priority(&self) -> u8 {
        todo!()
    }

    /// The configuration.
    pub fn config(&self) -> &InstanceConfig {
        &self.config
    }

    /// Address of the current master as last seen (ourselves when Master), if any.
    pub fn master(&self) -> Option<IpAddr> {
        todo!()
    }

    /// The master's advertised interval we currently use for Master_Down_Interval.
    pub fn master_interval_cs(&self) -> u16 {
        todo!()
    }

    /// Counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counts a dropped packet (decode errors are counted by the daemon through this).
    pub fn count_drop(&mut self, reason: crate::DropReason) {
        *self.counters.dropped.entry(reason).or_default() += 1;
    }
}
