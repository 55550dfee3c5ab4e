//! Blessing a boot-counted entry, free of I/O.
//!
//! After an update the box boots `EFI/Linux/cairn-<v>+<left>-<done>.efi`:
//! systemd-boot counts the try down before starting it and falls back to the
//! previous version once no tries are left. The new version proves itself
//! when every service has been ready, without a break, for `bless_after`;
//! then the entry is blessed (renamed without its counter) and stays. A
//! service giving up (its start limit, or a failure with `restart =
//! "never"`), a box that cannot even start its services, or the deadline
//! passing unblessed reboot the box instead, which costs the entry a try.
//!
//! The runtime feeds [`Blesser`] the services' health, give-ups and the
//! clock; it answers with a [`Decision`] and says when it next needs the
//! clock. An uncounted boot (blessed entry, PXE, tests) never decides anything.

/// Milliseconds on the runtime's monotonic clock.
pub type Ms = u64;

/// `bless_after_s` when the site has no `[update]` section.
pub const DEFAULT_BLESS_AFTER_S: u64 = 30;
/// `boot_deadline_s` when the site has no `[update]` section.
pub const DEFAULT_BOOT_DEADLINE_S: u64 = 300;
/// How long to wait before trying again when renaming the entry failed.
pub const RETRY_MS: Ms = 5_000;

/// The two times that matter, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Every service must be ready this long, continuously.
    pub bless_after_ms: Ms,
    /// A counted boot not blessed this long after the start reboots.
    pub deadline_ms: Ms,
}

impl Timing {
    /// From the site's `bless_after_s` and `boot_deadline_s`.
    pub fn from_secs(bless_after_s: u64, boot_deadline_s: u64) -> Timing {
        Timing {
            bless_after_ms: bless_after_s.saturating_mul(1000),
            deadline_ms: boot_deadline_s.saturating_mul(1000),
        }
    }
}

impl Default for Timing {
    fn default() -> Timing {
        Timing::from_secs(DEFAULT_BLESS_AFTER_S, DEFAULT_BOOT_DEADLINE_S)
    }
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Rename the booted entry to its blessed name and sync, then report
    /// through [`Blesser::blessing_done`].
    Bless,
    /// Reboot in an orderly way; the text says why (for the console).
    Reboot(String),
}

/// Where a boot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Not a counted boot: nothing to do, ever.
    Uncounted,
    /// Counted; waiting for the services to be healthy long enough.
    Watching,
    /// [`Decision::Bless`] was given; waiting for the rename's result.
    Blessing,
    /// Blessed: this version stays.
    Blessed,
    /// [`Decision::Reboot`] was given.
    Rebooting,
}

impl Stage {
    /// A short word for logs and the control API.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Uncounted => "uncounted",
            Stage::Watching => "watching",
            Stage::Blessing => "blessing",
            Stage::Blessed => "blessed",
            Stage::Rebooting => "rebooting",
        }
    }
}

/// The blessing state machine of one boot.
#[derive(Debug, Clone)]
pub struct Blesser {
    timing: Timing,
    stage: Stage,
    /// Deadline, absolute.
    deadline: Ms,
    /// Since when every service has been ready, if they are.
    healthy_since: Option<Ms>,
    /// No new Bless before this (after a failed rename).
    retry_at: Ms,
}

impl Blesser {
    /// A machine for a boot that is `counted` or not, started at `now`.
    pub fn new(counted: bool, timing: Timing, now: Ms) -> Blesser {
        Blesser {
            timing,
            stage: if counted {
                Stage::Watching
            } else {
                Stage::Uncounted
            },
            deadline: now.saturating_add(timing.deadline_ms),
            healthy_since: None,
            retry_at: 0,
        }
    }

    /// Where the boot stands.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Whether decisions are still pending (counted and not yet decided).
    fn deciding(&self) -> bool {
        matches!(self.stage, Stage::Watching | Stage::Blessing)
    }

    fn reboot(&mut self, reason: String) -> Option<Decision> {
        self.stage = Stage::Rebooting;
        Some(Decision::Reboot(reason))
    }

    /// The services are all ready (`true`) or not; call on every change
    /// (repeating the same value is harmless).
    pub fn on_health(&mut self, healthy: bool, now: Ms) -> Option<Decision> {
        if !self.deciding() {
            return None;
        }
        match (healthy, self.healthy_since) {
            (true, None) => self.healthy_since = Some(now),
            (false, Some(_)) => self.healthy_since = None,
            _ => {}
        }
        self.tick(now)
    }

    /// A service stopped trying on its own (`Action::GaveUp`).
    pub fn on_gave_up(&mut self, service: &str, reason: &str) -> Option<Decision> {
        if !self.deciding() {
            return None;
        }
        self.reboot(format!("service {service} gave up: {reason}"))
    }

    /// The box cannot run its services at all (it could not identify
    /// itself, its services file is broken): a counted boot reboots at once.
    pub fn on_fatal(&mut self, reason: &str) -> Option<Decision> {
        if !self.deciding() {
            return None;
        }
        self.reboot(reason.to_owned())
    }

    /// The clock: blesses once healthy long enough, reboots at the deadline.
    pub fn tick(&mut self, now: Ms) -> Option<Decision> {
        if self.stage != Stage::Watching {
            return None;
        }
        if let Some(since) = self.healthy_since {
            if now >= since.saturating_add(self.timing.bless_after_ms) && now >= self.retry_at {
                self.stage = Stage::Blessing;
                return Some(Decision::Bless);
            }
        }
        if now >= self.deadline {
            let why = if self.healthy_since.is_some() {
                "the entry could not be blessed"
            } else {
                "services not ready"
            };
            return self.reboot(format!(
                "not blessed within {} s ({why})",
                self.timing.deadline_ms / 1000
            ));
        }
        None
    }

    /// The result of carrying out [`Decision::Bless`]. On failure the
    /// machine keeps watching and tries again after [`RETRY_MS`]; the deadline
    /// still holds.
    pub fn blessing_done(&mut self, ok: bool, now: Ms) {
        if self.stage != Stage::Blessing {
            return;
        }
        if ok {
            self.stage = Stage::Blessed;
        } else {
            self.stage = Stage::Watching;
            self.retry_at = now.saturating_add(RETRY_MS);
        }
    }

    /// When [`Blesser::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Ms> {
        if self.stage != Stage::Watching {
            return None;
        }
        let bless = self.healthy_since.map(|s| {
            s.saturating_add(self.timing.bless_after_ms)
                .max(self.retry_at)
        });
        Some(bless.map_or(self.deadline, |b| b.min(self.deadline)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing::from_secs(30, 300)
    }

    #[test]
    fn healthy_long_enough_blesses_once() {
        let mut b = Blesser::new(true, timing(), 1_000);
        assert_eq!(b.stage(), Stage::Watching);
        assert_eq!(b.next_deadline(), Some(301_000), "only the deadline so far");
        assert_eq!(b.on_health(true, 5_000), None);
        assert_eq!(b.next_deadline(), Some(35_000));
        assert_eq!(b.tick(34_999), None);
        assert_eq!(b.tick(35_000), Some(Decision::Bless));
        assert_eq!(b.stage(), Stage::Blessing);
        assert_eq!(b.tick(36_000), None, "Bless is given once");
        assert_eq!(b.next_deadline(), None);
        b.blessing_done(true, 36_000);
        assert_eq!(b.stage(), Stage::Blessed);
        // Whatever happens afterwards, the version stays.
        assert_eq!(b.on_gave_up("x", "start limit hit"), None);
        assert_eq!(b.on_health(false, 40_000), None);
        assert_eq!(b.tick(1_000_000), None);
        assert_eq!(b.next_deadline(), None);
    }

    #[test]
    fn a_failure_restarts_the_window() {
        let mut b = Blesser::new(true, timing(), 0);
        b.on_health(true, 1_000);
        // A service crashed and is restarting at 20 s: not healthy any more.
        assert_eq!(b.on_health(false, 20_000), None);
        assert_eq!(b.tick(31_000), None, "the first window does not count");
        assert_eq!(b.next_deadline(), Some(300_000));
        b.on_health(true, 22_000);
        assert_eq!(
            b.on_health(true, 40_000),
            None,
            "repeating true keeps the start"
        );
        assert_eq!(b.tick(51_999), None);
        assert_eq!(b.on_health(true, 52_000), Some(Decision::Bless));
    }

    #[test]
    fn a_service_giving_up_reboots() {
        let mut b = Blesser::new(true, timing(), 0);
        b.on_health(true, 1_000);
        let d = b.on_gave_up("vipd", "start limit hit: 5 starts within 10000 ms");
        assert_eq!(
            d,
            Some(Decision::Reboot(
                "service vipd gave up: start limit hit: 5 starts within 10000 ms".into()
            ))
        );
        assert_eq!(b.stage(), Stage::Rebooting);
        assert_eq!(b.tick(100_000), None, "decided once");
        assert_eq!(b.on_gave_up("other", "x"), None);
        assert_eq!(b.next_deadline(), None);
    }

    #[test]
    fn the_deadline_reboots_an_unhealthy_boot() {
        let mut b = Blesser::new(true, timing(), 2_000);
        assert_eq!(b.tick(301_999), None);
        assert_eq!(
            b.tick(302_000),
            Some(Decision::Reboot(
                "not blessed within 300 s (services not ready)".into()
            ))
        );
        // Healthy only just before the deadline: not long enough.
        let mut b = Blesser::new(true, timing(), 0);
        b.on_health(true, 290_000);
        assert_eq!(b.next_deadline(), Some(300_000));
        assert!(matches!(b.tick(300_000), Some(Decision::Reboot(_))));
    }

    #[test]
    fn a_failed_rename_is_retried_until_the_deadline() {
        let mut b = Blesser::new(true, timing(), 0);
        b.on_health(true, 0);
        assert_eq!(b.tick(30_000), Some(Decision::Bless));
        b.blessing_done(false, 30_000);
        assert_eq!(b.stage(), Stage::Watching);
        assert_eq!(b.next_deadline(), Some(30_000 + RETRY_MS));
        assert_eq!(b.tick(31_000), None);
        assert_eq!(b.tick(30_000 + RETRY_MS), Some(Decision::Bless));
        b.blessing_done(false, 299_000);
        assert_eq!(
            b.tick(300_000),
            Some(Decision::Reboot(
                "not blessed within 300 s (the entry could not be blessed)".into()
            ))
        );
    }

    #[test]
    fn a_box_that_cannot_run_its_services_reboots_at_once() {
        let mut b = Blesser::new(true, timing(), 0);
        assert_eq!(
            b.on_fatal("this box could not identify itself"),
            Some(Decision::Reboot(
                "this box could not identify itself".into()
            ))
        );
        let mut u = Blesser::new(false, timing(), 0);
        assert_eq!(u.on_fatal("x"), None);
    }

    #[test]
    fn an_uncounted_boot_does_nothing() {
        let mut b = Blesser::new(false, timing(), 0);
        assert_eq!(b.stage(), Stage::Uncounted);
        assert_eq!(b.next_deadline(), None);
        assert_eq!(b.on_health(true, 0), None);
        assert_eq!(b.tick(1_000_000), None);
        assert_eq!(b.on_health(false, 1_000_001), None);
        assert_eq!(b.on_gave_up("x", "y"), None);
        assert_eq!(b.tick(u64::MAX), None);
        b.blessing_done(true, 5);
        assert_eq!(b.stage(), Stage::Uncounted);
    }

    #[test]
    fn zero_bless_after_blesses_as_soon_as_all_are_ready() {
        let mut b = Blesser::new(true, Timing::from_secs(0, 300), 0);
        assert_eq!(b.tick(10), None);
        assert_eq!(b.on_health(true, 10), Some(Decision::Bless));
        assert_eq!(Timing::default(), Timing::from_secs(30, 300));
    }
}
