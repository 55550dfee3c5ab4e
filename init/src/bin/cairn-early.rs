//! `cairn-early`: the initramfs's `/init`. Sets up the verified root, runs the
//! one-time machine setup on it and execs the real root's `/sbin/init`
//! (cairn-init); see [`cairn_init::earlyboot`] and docs/boot.md.

const USAGE: &str = "\
usage: cairn-early [--version]

The initramfs stage of a cairn box, run by the kernel as /init (PID 1 on the
initramfs). It verifies and mounts the root, sets up the machine (data
partition, ESP, hostname, network from the site file), leaves what it found in
/run/cairn/boot-record and execs /sbin/init. It refuses to run anywhere else.";

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "--version") {
        println!("cairn-early {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if argv.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return;
    }
    // The kernel passes words of its command line it did not understand as
    // arguments; as the initramfs's PID 1 they are ignored.
    if std::process::id() == 1 && cairn_init::earlyboot::in_initramfs() {
        cairn_init::earlyboot::run();
    }
    eprintln!(
        "cairn-early: not PID 1 of a cairn initramfs (no {} on a RAM root)\n{USAGE}",
        cairn_init::earlyboot::MARKER
    );
    std::process::exit(2);
}
