//! Who held an address when: timestamped add/remove events and the questions tests ask of
//! them (no I/O). Built by [`crate::AddrWatch`].

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// One change: `node` gained (`present`) or lost an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrEvent {
    /// When the observer learnt of it.
    pub at: Instant,
    /// The node (lab node name, not the namespace).
    pub node: String,
    /// The address.
    pub addr: IpAddr,
    /// Gained (`true`) or lost.
    pub present: bool,
}

/// An interval in which two or more nodes held the address at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// When the second holder appeared.
    pub start: Instant,
    /// When only one (or none) was left, or the end of the window asked about.
    pub end: Instant,
    /// Every node that held it during the interval.
    pub holders: BTreeSet<String>,
}

impl Overlap {
    /// Its length.
    pub fn duration(&self) -> Duration {
        self.end.saturating_duration_since(self.start)
    }
}

/// An interval in which nobody (of the nodes asked about) held the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vacancy {
    /// When the last holder lost it (or the window start).
    pub start: Instant,
    /// When someone gained it (or the window end).
    pub end: Instant,
}

impl Vacancy {
    /// Its length.
    pub fn duration(&self) -> Duration {
        self.end.saturating_duration_since(self.start)
    }
}

/// Events in time order.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    events: Vec<AddrEvent>,
}

impl Timeline {
    /// Builds a timeline from events in any order.
    pub fn from_events(mut events: Vec<AddrEvent>) -> Self {
        events.sort_by_key(|e| e.at);
        Timeline { events }
    }

    /// Adds one event, keeping time order.
    pub fn push(&mut self, event: AddrEvent) {
        let at = self.events.partition_point(|e| e.at <= event.at);
        self.events.insert(at, event);
    }

    /// All events.
    pub fn events(&self) -> &[AddrEvent] {
        &self.events
    }

    /// Nodes holding `addr` just after `at` (events at `at` included).
    pub fn holders_at(&self, addr: IpAddr, at: Instant) -> BTreeSet<String> {
        let mut holders = BTreeSet::new();
        for e in self.events.iter().filter(|e| e.addr == addr && e.at <= at) {
            apply(&mut holders, e);
        }
        holders
    }

    /// Nodes holding `addr` after the last event.
    pub fn holders(&self, addr: IpAddr) -> BTreeSet<String> {
        let mut holders = BTreeSet::new();
        for e in self.events.iter().filter(|e| e.addr == addr) {
            apply(&mut holders, e);
        }
        holders
    }

    /// When `node` first gained `addr` at or after `since`.
    pub fn acquired(&self, addr: IpAddr, node: &str, since: Instant) -> Option<Instant> {
        self.events
            .iter()
            .find(|e| e.addr == addr && e.node == node && e.present && e.at >= since)
            .map(|e| e.at)
    }

    /// When `node` first lost `addr` at or after `since`.
    pub fn released(&self, addr: IpAddr, node: &str, since: Instant) -> Option<Instant> {
        self.events
            .iter()
            .find(|e| e.addr == addr && e.node == node && !e.present && e.at >= since)
            .map(|e| e.at)
    }

    /// Intervals within `[from, to]` in which two or more of `among` held `addr`.
    pub fn overlaps(
        &self,
        addr: IpAddr,
        among: &[&str],
        from: Instant,
        to: Instant,
    ) -> Vec<Overlap> {
        let mut out = Vec::new();
        let mut holders = self.holders_among(addr, among, from);
        let mut open: Option<Overlap> = (holders.len() >= 2).then(|| Overlap {
            start: from,
            end: from,
            holders: holders.clone(),
        });
        for e in self.window(addr, among, from, to) {
            apply(&mut holders, e);
            match (&mut open, holders.len() >= 2) {
                (None, true) => {
                    open = Some(Overlap {
                        start: e.at,
                        end: e.at,
                        holders: holders.clone(),
                    })
                }
                (Some(o), true) => o.holders.extend(holders.iter().cloned()),
                (Some(_), false) => {
                    if let Some(mut o) = open.take() {
                        o.end = e.at;
                        out.push(o);
                    }
                }
                (None, false) => {}
            }
        }
        if let Some(mut o) = open {
            o.end = to;
            out.push(o);
        }
        out
    }

    /// Intervals within `[from, to]` in which none of `among` held `addr`.
    pub fn vacancies(
        &self,
        addr: IpAddr,
        among: &[&str],
        from: Instant,
        to: Instant,
    ) -> Vec<Vacancy> {
        let mut out = Vec::new();
        let mut holders = self.holders_among(addr, among, from);
        let mut open = holders.is_empty().then_some(from);
        for e in self.window(addr, among, from, to) {
            apply(&mut holders, e);
            match (open, holders.is_empty()) {
                (None, true) => open = Some(e.at),
                (Some(start), false) => {
                    out.push(Vacancy { start, end: e.at });
                    open = None;
                }
                _ => {}
            }
        }
        if let Some(start) = open {
            out.push(Vacancy { start, end: to });
        }
        out
    }

    fn holders_among(&self, addr: IpAddr, among: &[&str], at: Instant) -> BTreeSet<String> {
        let mut h = self.holders_at(addr, at);
        h.retain(|n| among.contains(&n.as_str()));
        h
    }

    fn window<'a>(
        &'a self,
        addr: IpAddr,
        among: &'a [&'a str],
        from: Instant,
        to: Instant,
    ) -> impl Iterator<Item = &'a AddrEvent> + 'a {
        self.events.iter().filter(move |e| {
            e.addr == addr && e.at > from && e.at <= to && among.contains(&e.node.as_str())
        })
    }
}

fn apply(holders: &mut BTreeSet<String>, e: &AddrEvent) {
    if e.present {
        holders.insert(e.node.clone());
    } else {
        holders.remove(&e.node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(base: Instant, ms: u64, node: &str, present: bool) -> AddrEvent {
        AddrEvent {
            at: base + Duration::from_millis(ms),
            node: node.into(),
            addr: "192.0.2.100".parse().unwrap(),
            present,
        }
    }

    fn vip() -> IpAddr {
        "192.0.2.100".parse().unwrap()
    }

    #[test]
    fn finds_overlaps_and_their_holders() {
        let t0 = Instant::now();
        let t = Timeline::from_events(vec![
            ev(t0, 10, "a", true),
            ev(t0, 50, "b", true),
            ev(t0, 80, "a", false),
            ev(t0, 200, "c", true),
            ev(t0, 210, "a", true),
        ]);
        let ms = |n| t0 + Duration::from_millis(n);
        let o = t.overlaps(vip(), &["a", "b", "c"], t0, ms(300));
        assert_eq!(o.len(), 2);
        assert_eq!((o[0].start, o[0].end), (ms(50), ms(80)));
        assert_eq!(o[0].duration(), Duration::from_millis(30));
        // The second is still open at the window end and gathered three holders.
        assert_eq!((o[1].start, o[1].end), (ms(200), ms(300)));
        assert_eq!(o[1].holders.len(), 3);
        // Restricted to a and b, the second starts only when a comes back.
        let ab = t.overlaps(vip(), &["a", "b"], t0, ms(300));
        assert_eq!(ab.len(), 2);
        assert_eq!(ab[1].start, ms(210));
    }

    #[test]
    fn state_before_the_window_counts() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let t = Timeline::from_events(vec![
            ev(t0, 0, "a", true),
            ev(t0, 5, "b", true),
            ev(t0, 100, "b", false),
        ]);
        let o = t.overlaps(vip(), &["a", "b"], ms(50), ms(300));
        assert_eq!(o.len(), 1);
        assert_eq!((o[0].start, o[0].end), (ms(50), ms(100)));
    }

    #[test]
    fn vacancies_and_acquisition_times() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let t = Timeline::from_events(vec![
            ev(t0, 120, "b", true),
            ev(t0, 0, "a", true),
            ev(t0, 40, "a", false),
        ]);
        assert_eq!(
            t.vacancies(vip(), &["a", "b"], t0, ms(200)),
            vec![Vacancy {
                start: ms(40),
                end: ms(120)
            }]
        );
        assert_eq!(t.acquired(vip(), "b", t0), Some(ms(120)));
        assert_eq!(t.released(vip(), "a", t0), Some(ms(40)));
        assert_eq!(t.acquired(vip(), "a", ms(1)), None);
        assert_eq!(t.holders(vip()), BTreeSet::from(["b".to_owned()]));
        assert_eq!(
            t.holders_at(vip(), ms(10)),
            BTreeSet::from(["a".to_owned()])
        );
    }
}
