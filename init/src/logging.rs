//! Console logging for both stages (`cairn-early` after the switch, `cairn-init`).

/// Installs the `tracing` subscriber writing to stderr (the console on a
/// box): level from `CAIRN_LOG` (`error` … `trace`, default `info`), or
/// `debug` when `debug` is set (`cairn.debug` on the kernel command line).
pub fn init(debug: bool) {
    let level = match std::env::var("CAIRN_LOG").as_deref() {
        Ok("error") => tracing::Level::ERROR,
        Ok("warn") => tracing::Level::WARN,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        _ if debug => tracing::Level::DEBUG,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .init();
}
