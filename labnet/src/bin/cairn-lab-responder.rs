//! `cairn-lab-responder --listen <addr:port> --name <text>`: answers every HTTP request
//! with `200` and body `<name>\n`, then closes the connection. One thread per connection.

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
    #[arg(long)]
    name: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("listen on {}", args.listen))?;
    eprintln!("cairn-lab-responder: {} on {}", args.name, args.listen);
    let body = format!("{}\n", args.name);
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cairn-lab-responder: accept: {e}");
                continue;
            }
        };
        let body = body.clone();
        std::thread::spawn(move || {
            if let Err(e) = cairn_labnet::http::serve(stream, &body) {
                eprintln!("cairn-lab-responder: {e}");
            }
        });
    }
    Ok(())
}
