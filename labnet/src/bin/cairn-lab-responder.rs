//! `cairn-lab-responder --listen <addr:port> --name <text>`: answers every HTTP request
//! with `200` and body `<name>\n`, then closes the connection. One thread per connection.
//!
//! `cairn-lab-responder --listen <addr:port> --dir <path>` serves the files under `path`
//! instead (the lab's update repository; see `cairn_labnet::static_files`).
//!
//! `cairn-lab-responder --listen <addr:port> --name <text> --echo` keeps each connection
//! open and answers every line with `<name> <line>`: a long-lived connection, to see which
//! box serves it across a VIP move.

use std::net::{SocketAddr, TcpListener};

use anyhow::Context;
use clap::Parser;

/// A tiny HTTP server telling which node answered.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address and port to listen on, e.g. `0.0.0.0:80`.
    #[arg(long)]
    listen: SocketAddr,
    /// The body of every answer (a newline is added).
    #[arg(long, required_unless_present = "dir")]
    name: Option<String>,
    /// Serve the files under this directory instead of a fixed answer.
    #[arg(long, conflicts_with = "name")]
    dir: Option<std::path::PathBuf>,
    /// Echo lines prefixed with the name on long-lived connections instead of HTTP.
    #[arg(long, requires = "name")]
    echo: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("listen on {}", args.listen))?;
    let body = match (&args.name, &args.dir) {
        (_, Some(dir)) => {
            eprintln!(
                "cairn-lab-responder: files under {} on {}",
                dir.display(),
                args.listen
            );
            return serve_dir(&listener, dir);
        }
        (Some(name), None) => name.clone(),
        (None, None) => anyhow::bail!("--name or --dir is required"),
    };
    eprintln!("cairn-lab-responder: {body} on {}", args.listen);
    if args.echo {
        return serve_each(&listener, move |stream| echo(stream, &body));
    }
    let body = format!("{body}\n");
    serve_each(&listener, move |stream| {
        cairn_labnet::http::serve(stream, &body)
    })
}

/// Answers every line on `stream` with `<name> <line>` until the peer closes.
fn echo(stream: std::net::TcpStream, name: &str) -> std::io::Result<()> {
    use std::io::{BufRead, Write};
    let mut out = stream.try_clone()?;
    for line in std::io::BufReader::new(stream).lines() {
        writeln!(out, "{name} {}", line?)?;
    }
    Ok(())
}

fn serve_dir(listener: &TcpListener, dir: &std::path::Path) -> anyhow::Result<()> {
    let dir = dir.to_path_buf();
    serve_each(listener, move |stream| {
        cairn_labnet::static_files::serve(stream, &dir)
    })
}

/// Answers every connection on a thread of its own with `serve`.
fn serve_each(
    listener: &TcpListener,
    serve: impl Fn(std::net::TcpStream) -> std::io::Result<()> + Clone + Send + 'static,
) -> anyhow::Result<()> {
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cairn-lab-responder: accept: {e}");
                continue;
            }
        };
        let serve = serve.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(stream) {
                eprintln!("cairn-lab-responder: {e}");
            }
        });
    }
    Ok(())
}
