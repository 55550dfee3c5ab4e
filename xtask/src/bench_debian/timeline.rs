//! Boot timelines from a serial console: which marker line appeared when.
//! Pure functions over `(seconds since QEMU start, line)` pairs.

/// The phases' end points, in order; each phase runs from the previous
/// point (QEMU start for the first) to its own.
pub const POINTS: &[&str] = &[
    "kernel start",
    "first userspace (initramfs)",
    "init of the root (PID 1)",
    "network up",
    "role ready",
    "first HTTP 200",
];

/// Names of the phases ending at each point, for tables and the chart legend.
pub const PHASES: &[&str] = &[
    "firmware + kernel load",
    "kernel",
    "initramfs",
    "init to network up",
    "network up to role ready",
    "role ready to first 200",
];

/// Console texts marking points 1–4 (any of them; the first line that
/// contains one counts). Point 0 comes from printk timestamps, point 5
/// from the client.
#[derive(Debug, Clone, Copy)]
pub struct Markers {
    /// First line of userspace (the initramfs's init).
    pub userspace: &'static [&'static str],
    /// The root filesystem's PID 1 starts.
    pub init: &'static [&'static str],
    /// The address is configured.
    pub network: &'static [&'static str],
    /// The role's services are up.
    pub ready: &'static [&'static str],
}

/// cairn: cairn-early in the initramfs, then on the root (machine setup,
/// network), then cairn-init as PID 1 of the root.
pub const CAIRN: Markers = Markers {
    userspace: &["cairn-early: early boot"],
    init: &["cairn-early on the real root"],
    network: &["network configured"],
    ready: &["CAIRN-READY"],
};

/// Debian: initramfs-tools' init, systemd, networkd (wait-online), haproxy.service.
pub const DEBIAN: Markers = Markers {
    userspace: &["Loading, please wait"],
    init: &["Welcome to Debian", "systemd[1]: systemd "],
    network: &["Network is Online", "Wait for Network to be Configured"],
    ready: &["Started haproxy.service", "Started HAProxy"],
};

/// The printk timestamp at the start of a kernel line (`[    1.234567] ...`).
pub fn printk_seconds(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (num, _) = rest.split_once(']')?;
    num.trim().parse().ok()
}

/// When the kernel started, in seconds since QEMU start: a kernel line seen
/// at `at` with printk time `t` was printed no earlier than `start + t`, so
/// `at − t` bounds the start from above; the smallest bound over all lines
/// is the estimate (lines the kernel buffered before its console was up
/// give loose bounds and do not win).
pub fn kernel_start(lines: &[(f64, String)]) -> Option<f64> {
    lines
        .iter()
        .filter_map(|(at, l)| printk_seconds(l).map(|t| at - t))
        .min_by(f64::total_cmp)
}

fn first(lines: &[(f64, String)], needles: &[&str]) -> Option<f64> {
    lines
        .iter()
        .find(|(_, l)| needles.iter().any(|n| l.contains(n)))
        .map(|(at, _)| *at)
}

/// The points of [`POINTS`] (seconds since QEMU start), `None` where a marker
/// was not seen; `first_200` is the client's.
pub fn points(lines: &[(f64, String)], m: &Markers, first_200: Option<f64>) -> Vec<Option<f64>> {
    vec![
        kernel_start(lines),
        first(lines, m.userspace),
        first(lines, m.init),
        first(lines, m.network),
        first(lines, m.ready),
        first_200,
    ]
}

/// Phase durations from points: point i − point i−1 (QEMU start = 0); NaN
/// where either end is missing.
pub fn durations(points: &[Option<f64>]) -> Vec<f64> {
    let mut prev = Some(0.0);
    points
        .iter()
        .map(|p| {
            let d = match (prev, p) {
                (Some(a), Some(b)) => b - a,
                _ => f64::NAN,
            };
            prev = *p;
            d
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(at: f64, s: &str) -> (f64, String) {
        (at, s.to_owned())
    }

    #[test]
    fn printk_timestamps() {
        assert_eq!(printk_seconds("[    1.250000] virtio_blk"), Some(1.25));
        assert_eq!(printk_seconds("[  OK  ] Started x"), None);
        assert_eq!(printk_seconds("cairn-early: early boot"), None);
    }

    #[test]
    fn kernel_start_is_the_tightest_bound() {
        let lines = vec![
            l(2.0, "[    0.000000] Linux version"), // buffered: bound 2.0
            l(2.1, "[    0.900000] console [ttyS0] enabled"), // bound 1.2
            l(3.0, "[    1.700000] x"),             // bound 1.3
            l(3.1, "plain"),
        ];
        let k = kernel_start(&lines).unwrap();
        assert!((k - 1.2).abs() < 1e-9, "{k}");
        assert_eq!(kernel_start(&[l(1.0, "plain")]), None);
    }

    #[test]
    fn points_and_durations_for_debian() {
        let lines = vec![
            l(1.5, "[    0.500000] x"),
            l(3.0, "Loading, please wait..."),
            l(5.0, "Welcome to Debian GNU/Linux 12 (bookworm)!"),
            l(
                9.0,
                "[  OK  ] Reached target network-online.target - Network is Online.",
            ),
            l(
                9.5,
                "[  OK  ] Started haproxy.service - HAProxy Load Balancer.",
            ),
        ];
        let p = points(&lines, &DEBIAN, Some(9.75));
        assert_eq!(
            p,
            vec![
                Some(1.0),
                Some(3.0),
                Some(5.0),
                Some(9.0),
                Some(9.5),
                Some(9.75)
            ]
        );
        assert_eq!(durations(&p), vec![1.0, 2.0, 2.0, 4.0, 0.5, 0.25]);
    }

    #[test]
    fn missing_marker_gives_nan_on_both_sides() {
        let p = vec![Some(1.0), None, Some(4.0)];
        let d = durations(&p);
        assert_eq!(d[0], 1.0);
        assert!(d[1].is_nan() && d[2].is_nan());
    }

    #[test]
    fn cairn_markers_match_real_lines() {
        let lines = vec![
            l(2.0, "[    1.000000] k"),
            l(4.0, "cairn-early: early boot 0.1.0: root file:/root.img"),
            l(
                6.0,
                "   0.068467035s  INFO cairn-early on the real root: machine setup version=\"0.1.0\"",
            ),
            l(
                7.0,
                "   1.030537380s  INFO network configured interface=eth0",
            ),
            l(9.0, "CAIRN-READY role=lb node=lb1 version=0.1.0 t_ms=13519"),
        ];
        let p = points(&lines, &CAIRN, None);
        assert_eq!(
            p,
            vec![Some(1.0), Some(4.0), Some(6.0), Some(7.0), Some(9.0), None]
        );
        assert_eq!(POINTS.len(), PHASES.len());
    }
}
