//! What the client subcommands print: aligned text tables and `field  value` records for
//! people, the server's JSON (pretty) for scripts. Writes ignore a closed pipe
//! (`switchboard channels list | head`), so output never panics.

use std::io::Write;

use serde_json::Value;

/// Prints one line to stdout.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints one line to stderr (notes beside the data: cursors, "shown once").
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Prints `value` as pretty JSON.
pub fn json(value: &Value) {
    say(&serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}

/// A cell: strings as they are, `-` for null or absent, other values as compact JSON.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(text)) if text.is_empty() => "-".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// A column: its header and the JSON pointer of its value in each item (`/route/type`).
pub type Column<'a> = (&'a str, &'a str);

/// Prints `items` as a table of `columns`, padded to the widest cell of each.
pub fn table(items: &[Value], columns: &[Column<'_>]) {
    let mut rows: Vec<Vec<String>> = vec![columns.iter().map(|c| c.0.to_owned()).collect()];
    rows.extend(items.iter().map(|item| {
        columns
            .iter()
            .map(|(_, pointer)| cell(item.pointer(pointer)))
            .collect()
    }));
    for line in aligned(&rows) {
        say(&line);
    }
}

/// The rows with every column but the last padded to its widest cell, two spaces apart.
pub fn aligned(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|row| row.get(i))
                .map(|text| text.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, text) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(text);
                } else {
                    let pad = widths[i].saturating_sub(text.chars().count());
                    line.push_str(text);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            line
        })
        .collect()
}

/// Prints an object as `field  value` lines, in the server's order.
pub fn record(value: &Value) {
    let Some(object) = value.as_object() else {
        say(&cell(Some(value)));
        return;
    };
    let rows: Vec<Vec<String>> = object
        .iter()
        .map(|(name, value)| vec![name.clone(), cell(Some(value))])
        .collect();
    for line in aligned(&rows) {
        say(&line);
    }
}

/// Prints a page: the JSON as is, or the table of `key`'s items and, when there is more,
/// how to get the next page.
pub fn page(json_mode: bool, page: &Value, key: &str, columns: &[Column<'_>]) {
    if json_mode {
        json(page);
        return;
    }
    let items = page[key].as_array().map(Vec::as_slice).unwrap_or_default();
    table(items, columns);
    if let Some(next) = page.get("next_after").filter(|n| !n.is_null()) {
        note(&format!("more: --after {}", cell(Some(next))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_are_padded_to_their_widest_cell() {
        let rows = vec![
            vec!["ID".to_owned(), "NAME".to_owned()],
            vec!["abcdef".to_owned(), "x".to_owned()],
        ];
        assert_eq!(aligned(&rows), ["ID      NAME", "abcdef  x"]);
    }

    #[test]
    fn cells_show_missing_values_as_a_dash() {
        let item = json!({"a": null, "b": "", "c": 3, "d": {"e": true}});
        assert_eq!(cell(item.pointer("/a")), "-");
        assert_eq!(cell(item.pointer("/b")), "-");
        assert_eq!(cell(item.pointer("/c")), "3");
        assert_eq!(cell(item.pointer("/d/e")), "true");
        assert_eq!(cell(item.pointer("/zzz")), "-");
    }
}
