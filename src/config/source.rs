//! The text of a config file, parsed twice over: the values the readers convert, and where
//! every key and value sits, so an error can point at its line.
//!
//! `toml::Table` forgets positions; `toml::de::DeTable` keeps the byte span of every key and
//! value. The readers keep working on plain values (what they check is unchanged), and an
//! error is placed afterwards by walking the spans along its key path: at the value for a bad
//! value, at the key for an unknown key. A key the file does not have has no position.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::{Spanned, Table};

/// A 1-based line and column (in characters, as editors count them) in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
}

impl Position {
    /// The position of byte `offset` of `text` (clamped to the text, and to the start of the
    /// character it falls in, so a stray offset can never panic).
    pub fn of(text: &str, offset: usize) -> Position {
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            col: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One step of a key path: a key of a table, or an element of an array (`routes[2]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A key of a table.
    Key(String),
    /// An element of an array (0-based).
    Item(usize),
}

impl Step {
    /// `Step::Key` from anything string-like.
    pub fn key(key: impl Into<String>) -> Step {
        Step::Key(key.into())
    }
}

/// A key path as messages show it: `session.redis_sentinel.nodes[0]`, `routes[2].path`.
pub fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) if out.is_empty() => out.push_str(key),
            Step::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Step::Item(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A parsed config (or users) file.
pub struct Document<'t> {
    text: &'t str,
    values: Table,
    /// `None` only if the span parse failed where the value parse did not (they share one
    /// parser, so it should not happen): errors then lose their positions, never the check.
    spans: Option<Spanned<DeTable<'t>>>,
}

impl<'t> Document<'t> {
    /// Parse `text`; a syntax error is returned as the parser reports it (with its span).
    pub fn parse(text: &'t str) -> Result<Document<'t>, toml::de::Error> {
        let values: Table = toml::from_str(text)?;
        // Parsed a second time to keep spans: a config file is small, and the readers stay on
        // the plain `Table` they were written for.
        let spans = DeTable::parse(text).ok();
        Ok(Document {
            text,
            values,
            spans,
        })
    }

    /// The document's values, as the readers convert them.
    pub fn values(&self) -> &Table {
        &self.values
    }

    /// Where the key at the end of `path` is written (for an array element: where the element
    /// starts, such as its `[[routes]]` header).
    pub fn key_position(&self, path: &[Step]) -> Option<Position> {
        let (key, _) = self.spans_of(path)?;
        Some(Position::of(self.text, key.start))
    }

    /// Where the value at `path` starts (for a table written as `[a.b]`: its header).
    pub fn value_position(&self, path: &[Step]) -> Option<Position> {
        let (_, value) = self.spans_of(path)?;
        Some(Position::of(self.text, value.start))
    }

    /// The byte spans of the key and of the value at `path`.
    fn spans_of(&self, path: &[Step]) -> Option<(Range<usize>, Range<usize>)> {
        let root = self.spans.as_ref()?.get_ref();
        let (first, rest) = path.split_first()?;
        let Step::Key(key) = first else { return None };
        let (k, mut value) = root.get_key_value(key.as_str())?;
        let mut key_span = k.span();
        for step in rest {
            match (step, value.get_ref()) {
                (Step::Key(key), DeValue::Table(table)) => {
                    let (k, v) = table.get_key_value(key.as_str())?;
                    key_span = k.span();
                    value = v;
                }
                (Step::Item(i), DeValue::Array(items)) => {
                    value = items.get(*i)?;
                    key_span = value.span();
                }
                _ => return None,
            }
        }
        Some((key_span, value.span()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Step {
        Step::key(s)
    }

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        assert_eq!(Position::of("ab\ncd", 0), Position { line: 1, col: 1 });
        assert_eq!(Position::of("ab\ncd", 4), Position { line: 2, col: 2 });
        // Columns count characters, not bytes: `é` is two bytes, `🔑` four.
        let text = "name = \"é🔑\" x";
        let x = text.find('x').unwrap();
        assert_eq!(Position::of(text, x), Position { line: 1, col: 13 });
        // An offset inside a character counts as that character's start; past the end, the end.
        assert_eq!(Position::of("é", 1), Position { line: 1, col: 1 });
        assert_eq!(Position::of("ab", 99), Position { line: 1, col: 3 });
    }

    #[test]
    fn key_paths_render_as_messages_show_them() {
        assert_eq!(render(&[key("listen"), key("addr")]), "listen.addr");
        assert_eq!(
            render(&[key("routes"), Step::Item(2), key("methods"), Step::Item(0)]),
            "routes[2].methods[0]"
        );
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn keys_and_values_are_found_in_nested_tables_inline_tables_and_arrays_of_tables() {
        let text = "\
[session]
idle_timout = \"5m\"
redis_sentinel = { master = \"m\", nodes = [\"a\", 1] }

[session.express]
user = { name = \"é🔑\", x = 1 }
x = 1

[[routes]]
path = \"/a\"

[[routes]]
path = \"/b\"
a.b = 3
";
        let doc = Document::parse(text).unwrap();
        let at = |path: &[Step]| {
            (
                doc.key_position(path).map(|p| p.to_string()),
                doc.value_position(path).map(|p| p.to_string()),
            )
        };
        let pair = |k: &str, v: &str| (Some(k.to_string()), Some(v.to_string()));
        assert_eq!(
            at(&[key("session"), key("idle_timout")]),
            pair("2:1", "2:15")
        );
        assert_eq!(
            at(&[key("session"), key("redis_sentinel"), key("nodes")]),
            pair("3:34", "3:42")
        );
        assert_eq!(
            at(&[
                key("session"),
                key("redis_sentinel"),
                key("nodes"),
                Step::Item(1)
            ]),
            pair("3:48", "3:48")
        );
        assert_eq!(at(&[key("session"), key("express")]), pair("5:10", "5:1"));
        // Columns count characters: `é🔑` is six bytes, two columns.
        assert_eq!(
            at(&[key("session"), key("express"), key("user"), key("x")]),
            pair("6:23", "6:27")
        );
        assert_eq!(
            at(&[key("session"), key("express"), key("x")]),
            pair("7:1", "7:5")
        );
        assert_eq!(at(&[key("routes"), Step::Item(1)]), pair("12:1", "12:1"));
        assert_eq!(
            at(&[key("routes"), Step::Item(1), key("path")]),
            pair("13:1", "13:8")
        );
        assert_eq!(
            at(&[key("routes"), Step::Item(1), key("a"), key("b")]),
            pair("14:3", "14:7")
        );
        // Keys the file does not have, and steps of the wrong kind, have no position.
        assert_eq!(at(&[key("session"), key("store")]), (None, None));
        assert_eq!(at(&[key("routes"), Step::Item(2)]), (None, None));
        assert_eq!(at(&[key("routes"), key("path")]), (None, None));
        assert_eq!(at(&[]), (None, None));
    }
}
