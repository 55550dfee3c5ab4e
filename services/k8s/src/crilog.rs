//! Container log files as the CRI writes them (one line per record:
//! `<RFC 3339 time> <stdout|stderr> <P|F> <text>`; `P` marks a partial line
//! continued by the next record, `F` a full one).

/// One reassembled line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text, without the newline.
    pub text: String,
}

/// Parses a CRI log file's text into lines, joining partial records.
/// Records that do not have the four fields are skipped.
pub fn parse(text: &str) -> Vec<LogLine> {
    let mut out = Vec::new();
    let mut partial: Option<LogLine> = None;
    for record in text.lines() {
        let mut f = record.splitn(4, ' ');
        let (Some(_time), Some(stream), Some(tag)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if stream != "stdout" && stream != "stderr" {
            continue;
        }
        let body = f.next().unwrap_or("");
        let mut line = match partial.take() {
            Some(p) if p.stream == stream => p,
            Some(p) => {
                out.push(p);
                LogLine {
                    stream: stream.to_owned(),
                    text: String::new(),
                }
            }
            None => LogLine {
                stream: stream.to_owned(),
                text: String::new(),
            },
        };
        line.text.push_str(body);
        match tag {
            "P" => partial = Some(line),
            _ => out.push(line),
        }
    }
    out.extend(partial);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_partial_records_become_lines() {
        let text = "2026-11-29T22:00:00.1Z stdout F cairn-selfcheck\n\
                    2026-11-29T22:00:00.2Z stderr P half \n\
                    2026-11-29T22:00:00.3Z stderr F and half\n\
                    garbage\n\
                    2026-11-29T22:00:00.4Z stdout F \n";
        assert_eq!(
            parse(text),
            vec![
                LogLine {
                    stream: "stdout".into(),
                    text: "cairn-selfcheck".into()
                },
                LogLine {
                    stream: "stderr".into(),
                    text: "half and half".into()
                },
                LogLine {
                    stream: "stdout".into(),
                    text: String::new()
                },
            ]
        );
    }

    #[test]
    fn an_unfinished_partial_is_kept() {
        assert_eq!(
            parse("t stdout P abc"),
            vec![LogLine {
                stream: "stdout".into(),
                text: "abc".into()
            }]
        );
    }
}
