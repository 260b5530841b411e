//! Printing results: aligned tables for people, JSON or YAML for programs.

use std::fmt;

use serde_json::Value;

use super::args::Format;
use super::error::{Error, Result};

/// A table with a header row; columns are as wide as their widest cell.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(width) = widths.get_mut(i) {
                    *width = (*width).max(cell.chars().count());
                }
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let width = widths.get(i).copied().unwrap_or(0);
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<width$}   "));
                }
            }
            writeln!(f, "{}", text.trim_end())
        };
        line(f, &self.headers)?;
        for row in &self.rows {
            line(f, row)?;
        }
        Ok(())
    }
}

/// A field of a JSON object as text (`""` when absent, numbers and booleans as written).
pub fn field(value: &Value, name: &str) -> String {
    text(value.get(name).unwrap_or(&Value::Null))
}

/// A JSON value as plain text.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A timestamp field shortened to seconds (`2026-01-02 03:04:05`).
pub fn time(value: &Value, name: &str) -> String {
    field(value, name)
        .replace('T', " ")
        .chars()
        .take(19)
        .collect()
}

/// A value as pretty JSON or YAML.
pub fn render(format: Format, value: &Value) -> Result<String> {
    match format {
        Format::Yaml => {
            serde_yaml::to_string(value).map_err(|e| Error::protocol("cannot print YAML", e))
        }
        Format::Json | Format::Table => serde_json::to_string_pretty(value)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| Error::protocol("cannot print JSON", e)),
    }
}

/// Prints `value` as JSON or YAML, or as the table `table` makes of it.
pub fn print(format: Format, value: &Value, table: impl FnOnce(&Value) -> String) -> Result<()> {
    let text = match format {
        Format::Table => table(value),
        other => render(other, value)?,
    };
    out(&text)
}

/// Writes `text` to standard output; a closed pipe (`meshctl … | head`) ends the command quietly.
pub fn out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Error::OutputClosed),
        Err(e) => Err(Error::protocol("cannot write to standard output", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let mut table = Table::new(&["NAME", "STATUS"]);
        table.row(vec!["sim-1".into(), "Reachable".into()]);
        table.row(vec!["a".into(), "x".into()]);
        assert_eq!(
            table.to_string(),
            "NAME    STATUS\nsim-1   Reachable\na       x\n"
        );
    }

    #[test]
    fn fields_read_as_text() {
        let value = serde_json::json!({"a": "x", "n": 3, "t": "2026-01-02T03:04:05.123"});
        assert_eq!(field(&value, "a"), "x");
        assert_eq!(field(&value, "n"), "3");
        assert_eq!(field(&value, "missing"), "");
        assert_eq!(time(&value, "t"), "2026-01-02 03:04:05");
    }
}
