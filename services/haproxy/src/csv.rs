//! Splitting one line of HAProxy's CSV.
//!
//! HAProxy quotes a field only when it holds `,`, `"`, CR or LF (`csv_enc_append`
//! in src/tools.c), doubling inner quotes; line breaks are already replaced by
//! spaces ("oneline"), so a record is always one line.

/// The fields of `line`, unquoted. A quote that is never closed runs to the end
/// of the line (HAProxy never writes one; we do not fail on it either).
pub(crate) fn split_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, '"') if field.is_empty() => quoted = true,
            (true, '"') => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            }
            (_, c) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_empty_fields() {
        assert_eq!(split_line("a,,b,"), ["a", "", "b", ""]);
        assert_eq!(split_line(""), [""]);
    }

    #[test]
    fn quoted_fields_keep_commas_and_doubled_quotes() {
        assert_eq!(
            split_line(r#"web,"step 1, connect","say ""hi""",x"#),
            ["web", "step 1, connect", r#"say "hi""#, "x"]
        );
        assert_eq!(split_line(r#""open"#), ["open"]);
    }
}
