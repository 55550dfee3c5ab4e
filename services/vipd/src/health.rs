//! Health-check state without I/O: fall/rise counting per check and the effective priority
//! they give an instance.
//!
//! A check starts *pending*: it counts as failing (so a box that just booted does not claim
//! the VIP at full priority before its proxy answers) until its first result, which decides
//! at once. After that a healthy check fails after `fall` consecutive failures and recovers
//! after `rise` consecutive successes.

use std::fmt;

/// Where a check stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// No result yet; counts as failing.
    Pending,
    /// Healthy.
    Ok,
    /// Failing, with the last failure's reason.
    Failing(String),
}

/// One check's counting state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckState {
    name: String,
    fall: u32,
    rise: u32,
    weight: u8,
    health: Health,
    /// Consecutive results that contradict the current health (failures while Ok,
    /// successes while Failing).
    streak: u32,
    /// The most recent failure reason, kept while a failing check counts successes.
    last_error: Option<String>,
}

impl CheckState {
    /// A pending check.
    pub fn new(name: &str, fall: u32, rise: u32, weight: u8) -> Self {
        Self {
            name: name.to_owned(),
            fall: fall.max(1),
            rise: rise.max(1),
            weight,
            health: Health::Pending,
            streak: 0,
            last_error: None,
        }
    }

    /// The check's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Current health.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Whether the check lowers the priority now (failing or pending).
    pub fn is_failing(&self) -> bool {
        !matches!(self.health, Health::Ok)
    }

    /// Priority drop while failing.
    pub fn weight(&self) -> u8 {
        self.weight
    }

    /// Records one probe result; returns whether [`CheckState::is_failing`] changed.
    pub fn record(&mut self, outcome: Result<(), String>) -> bool {
        let was_failing = self.is_failing();
        match (&self.health, outcome) {
            (Health::Pending, Ok(())) => {
                self.health = Health::Ok;
                self.streak = 0;
            }
            (Health::Pending, Err(reason)) => {
                self.health = Health::Failing(reason);
                self.streak = 0;
            }
            (Health::Ok, Ok(())) => self.streak = 0,
            (Health::Ok, Err(reason)) => {
                self.streak += 1;
                if self.streak >= self.fall {
                    self.health = Health::Failing(reason);
                    self.streak = 0;
                } else {
                    self.last_error = Some(reason);
                }
            }
            (Health::Failing(_), Ok(())) => {
                self.streak += 1;
                if self.streak >= self.rise {
                    self.health = Health::Ok;
                    self.streak = 0;
                    self.last_error = None;
                }
            }
            (Health::Failing(_), Err(reason)) => {
                self.health = Health::Failing(reason);
                self.streak = 0;
            }
        }
        was_failing != self.is_failing()
    }
}

impl fmt::Display for CheckState {
    /// `name=ok`, `name=failing (reason)` or `name=failing (not checked yet)`, as the
    /// control API reports checks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.health {
            Health::Pending => write!(f, "{}=failing (not checked yet)", self.name),
            Health::Ok => write!(f, "{}=ok", self.name),
            Health::Failing(reason) => write!(f, "{}=failing ({reason})", self.name),
        }
    }
}

/// The priority to run with: `configured` minus the weights of failing checks, clamped to
/// 1..=254 (a tracked instance never resigns by itself and never claims ownership); an
/// address owner (255) is never lowered.
pub fn effective_priority<'a>(
    configured: u8,
    checks: impl IntoIterator<Item = &'a CheckState>,
) -> u8 {
    if configured == 255 {
        return 255;
    }
    let drop: u32 = checks
        .into_iter()
        .filter(|c| c.is_failing())
        .map(|c| u32::from(c.weight))
        .sum();
    let p = u32::from(configured).saturating_sub(drop).clamp(1, 254);
    u8::try_from(p).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> Result<(), String> {
        Err(s.to_owned())
    }

    #[test]
    fn first_result_decides_then_fall_and_rise_count() {
        let mut c = CheckState::new("t", 2, 3, 10);
        assert!(c.is_failing());
        assert_eq!(c.to_string(), "t=failing (not checked yet)");
        assert!(c.record(Ok(())));
        assert_eq!(c.to_string(), "t=ok");
        // One failure is tolerated with fall = 2.
        assert!(!c.record(err("refused")));
        assert!(!c.is_failing());
        // A success resets the streak.
        assert!(!c.record(Ok(())));
        assert!(!c.record(err("refused")));
        assert!(!c.is_failing());
        assert!(c.record(err("timed out")));
        assert_eq!(c.to_string(), "t=failing (timed out)");
        // rise = 3: two successes are not enough, a failure restarts the count.
        assert!(!c.record(Ok(())));
        assert!(!c.record(Ok(())));
        assert!(!c.record(err("reset")));
        assert_eq!(c.to_string(), "t=failing (reset)");
        assert!(!c.record(Ok(())));
        assert!(!c.record(Ok(())));
        assert!(c.record(Ok(())));
        assert_eq!(c.health(), &Health::Ok);
    }

    #[test]
    fn pending_failure_fails_at_once() {
        let mut c = CheckState::new("t", 5, 5, 10);
        // Pending already counts as failing, so this is no change in is_failing.
        assert!(!c.record(err("no such service")));
        assert_eq!(c.health(), &Health::Failing("no such service".into()));
    }

    #[test]
    fn fall_and_rise_of_one_flip_immediately() {
        let mut c = CheckState::new("t", 1, 1, 10);
        assert!(c.record(Ok(())));
        assert!(c.record(err("x")));
        assert!(c.record(Ok(())));
    }

    #[test]
    fn priority_subtracts_failing_weights_and_clamps() {
        let mut a = CheckState::new("a", 1, 1, 30);
        let mut b = CheckState::new("b", 1, 1, 50);
        // Both pending: both count.
        assert_eq!(effective_priority(150, [&a, &b]), 70);
        a.record(Ok(()));
        assert_eq!(effective_priority(150, [&a, &b]), 100);
        b.record(Ok(()));
        assert_eq!(effective_priority(150, [&a, &b]), 150);
        b.record(err("down"));
        assert_eq!(effective_priority(40, [&a, &b]), 1, "never below 1");
        let big = CheckState::new("big", 1, 1, 255);
        assert_eq!(effective_priority(254, [&big]), 1);
        assert_eq!(
            effective_priority(255, [&big]),
            255,
            "owner is never lowered"
        );
        assert_eq!(effective_priority(200, []), 200);
        assert_eq!(effective_priority(1, [&big]), 1);
    }
}
