//! Text tables for the command line (`ps`, `network ls`, `list-nat`, ...): left-aligned columns two spaces
//! apart, each line ending in a newline, no trailing spaces.

/// Renders `rows` (the first is usually the header).
pub fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_aligned_columns() {
        let rows = [
            vec!["A".to_string(), "LONGER".to_string()],
            vec!["wide cell".to_string(), "x".to_string()],
        ];
        assert_eq!(render(&rows), "A          LONGER\nwide cell  x\n");
    }
}
