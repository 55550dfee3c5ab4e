//! Plain-text tables: columns padded to their widest cell, two spaces apart, no trailing
//! blanks.

/// Renders `rows` (the first is usually the header) as aligned lines, each ending in `\n`.
/// Widths count characters, not bytes, so non-ASCII cells line up too.
pub(crate) fn render<R: AsRef<[String]>>(rows: &[R]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.as_ref().iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut table = String::new();
    for row in rows {
        let row = row.as_ref();
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_by_characters_and_trims_line_ends() {
        let rows = [
            vec!["A".to_owned(), "BB".to_owned(), "C".to_owned()],
            vec!["ünï".to_owned(), "".to_owned(), "".to_owned()],
            vec!["x".to_owned(), "y".to_owned(), "z z".to_owned()],
        ];
        assert_eq!(render(&rows), "A    BB  C\nünï\nx    y   z z\n");
        assert_eq!(render::<Vec<String>>(&[]), "");
    }
}
