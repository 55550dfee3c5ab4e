//! Command-line parsing, without a parser crate (the binary stays tiny).

/// How to call the program.
pub const USAGE: &str = "usage: cairn-pause [--serve PORT --say TEXT]";

/// What to serve besides waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serve {
    /// TCP port on 0.0.0.0.
    pub port: u16,
    /// The line printed and sent to every connection.
    pub say: String,
}

/// Parsed options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Opts {
    /// `--serve PORT --say TEXT`, when given.
    pub serve: Option<Serve>,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Opts, String> {
    let mut port = None;
    let mut say = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--serve" => {
                let v = it.next().ok_or("--serve needs a port")?;
                port = Some(
                    v.parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("--serve: {v:?} is not a port (1-65535)"))?,
                );
            }
            "--say" => say = Some(it.next().ok_or("--say needs a text")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    match (port, say) {
        (None, None) => Ok(Opts::default()),
        (Some(port), Some(say)) => Ok(Opts {
            serve: Some(Serve { port, say }),
        }),
        _ => Err("--serve and --say go together".into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<Opts, String> {
        parse(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn no_arguments_only_wait() {
        assert_eq!(p(&[]).unwrap(), Opts::default());
    }

    #[test]
    fn serve_and_say_go_together() {
        assert_eq!(
            p(&["--serve", "8080", "--say", "hi there"]).unwrap().serve,
            Some(Serve {
                port: 8080,
                say: "hi there".into()
            })
        );
        assert!(p(&["--serve", "8080"]).unwrap_err().contains("together"));
        assert!(
            p(&["--serve", "0", "--say", "x"])
                .unwrap_err()
                .contains("not a port")
        );
        assert!(p(&["--bogus"]).unwrap_err().contains("unknown argument"));
    }
}
