//! A typed reader over a parsed TOML table that collects *every* error.
//!
//! serde with `deny_unknown_fields` stops at the first problem; operators fixing a config want the
//! whole list in one `doorman check`. So the loader walks the document with [`Section`]: each
//! getter converts one key, records a `key.path: message` error when the value is wrong and
//! falls back to the default so the walk can go on, and [`Section::finish`] reports every key
//! nobody asked for as unknown, with the accepted key it was probably meant to be. Each error
//! carries the position of what it is about when the file has it ([`super::source`]).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use toml::{Table, Value};

use crate::config::source::{render, Document, Position, Step};
use crate::config::spelling::did_you_mean;

/// One validation problem, addressed by its dotted key path (`listen.header_timeout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The key's dotted path (`routes[0].path`).
    pub key: String,
    /// What is wrong with it.
    pub message: String,
    /// Where the file says it: the value for a bad value, the key for an unknown key; `None`
    /// when the key is not in the file (a required key left out).
    pub at: Option<Position>,
}

impl KeyError {
    /// An error about the value at `path` of `doc`, placed at that value.
    pub fn value(doc: &Document<'_>, path: &[Step], message: impl Into<String>) -> KeyError {
        KeyError {
            key: render(path),
            message: message.into(),
            at: doc.value_position(path),
        }
    }

    /// An error about the key at `path` of `doc` itself (unknown, a bad name), placed at the key.
    pub fn key(doc: &Document<'_>, path: &[Step], message: impl Into<String>) -> KeyError {
        KeyError {
            key: render(path),
            message: message.into(),
            at: doc.key_position(path),
        }
    }

    /// `key` is not one `accepted`: "unknown key", with the accepted key it was probably meant
    /// to be.
    pub fn unknown<'k>(
        doc: &Document<'_>,
        path: &[Step],
        accepted: impl IntoIterator<Item = &'k str>,
    ) -> KeyError {
        let typed = match path.last() {
            Some(Step::Key(key)) => key.as_str(),
            _ => "",
        };
        let message = match did_you_mean(typed, accepted) {
            Some(meant) => format!("unknown key; did you mean `{meant}`?"),
            None => "unknown key".to_string(),
        };
        KeyError::key(doc, path, message)
    }
}

impl fmt::Display for KeyError {
    /// Without the position: the file's printer puts `FILE:LINE:COL:` in front.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// One table of the document (`[listen]`, `[upstream]`, ...), read key by key.
pub struct Section<'a> {
    doc: &'a Document<'a>,
    /// This table's key path from the document's root (empty for the root itself).
    path: Vec<Step>,
    table: Option<&'a Table>,
    /// Keys a getter read: any other key of the table is unknown.
    used: Vec<&'static str>,
    /// Keys the code reads or asks about (`has`), present or not: what an unknown key is
    /// compared with for "did you mean". Recorded as the code runs, so it cannot drift from
    /// what the reader accepts, including keys it reads only when present.
    accepted: Vec<&'static str>,
    errors: &'a mut Vec<KeyError>,
}

impl<'a> Section<'a> {
    /// The table at `key` in `doc`'s root; a missing table reads as empty (every key defaulted).
    pub fn new(doc: &'a Document<'a>, key: &'static str, errors: &'a mut Vec<KeyError>) -> Self {
        let path = vec![Step::key(key)];
        let table = match doc.values().get(key) {
            None => None,
            Some(Value::Table(t)) => Some(t),
            Some(other) => {
                let message = format!("expected a table, found {}", kind(other));
                errors.push(KeyError::value(doc, &path, message));
                None
            }
        };
        Section::at(doc, path, table, errors)
    }

    /// The document's root table: its keys are sections, read by sections of their own (see
    /// [`Section::known`]).
    pub fn root(doc: &'a Document<'a>, errors: &'a mut Vec<KeyError>) -> Self {
        Section::at(doc, Vec::new(), Some(doc.values()), errors)
    }

    /// The table `table` found at `path` of `doc`: one element of an array of tables
    /// (`[[routes]]`, addressed `routes[2]`), or one user of the users file.
    pub fn entry(
        doc: &'a Document<'a>,
        path: Vec<Step>,
        table: &'a Table,
        errors: &'a mut Vec<KeyError>,
    ) -> Self {
        Section::at(doc, path, Some(table), errors)
    }

    fn at(
        doc: &'a Document<'a>,
        path: Vec<Step>,
        table: Option<&'a Table>,
        errors: &'a mut Vec<KeyError>,
    ) -> Self {
        Section {
            doc,
            path,
            table,
            used: Vec::new(),
            accepted: Vec::new(),
            errors,
        }
    }

    /// A nested table (`redis_sentinel = { ... }`, `[session.express]`), read like a section of
    /// its own.
    pub fn sub(&mut self, key: &'static str) -> Option<Section<'_>> {
        let value = self.raw(key)?;
        match value {
            Value::Table(t) => Some(Section::at(
                self.doc,
                self.key_path(key),
                Some(t),
                &mut *self.errors,
            )),
            other => {
                let message = format!("expected a table, found {}", kind(other));
                self.error(key, message);
                None
            }
        }
    }

    /// Whether `key` is present (without reading it). The key counts as one this table
    /// accepts: a reader asks before reading a key it reads only when present.
    pub fn has(&mut self, key: &'static str) -> bool {
        self.accept(key);
        self.table.is_some_and(|t| t.contains_key(key))
    }

    /// Whether `key` holds a table (for a key that takes a table or a shorter form). Like
    /// [`Section::has`], the key counts as one this table accepts.
    pub fn is_table(&mut self, key: &'static str) -> bool {
        self.accept(key);
        self.table
            .and_then(|t| t.get(key))
            .is_some_and(Value::is_table)
    }

    /// Whether an error about `key` of this section, or about anything inside it (`key[2]`,
    /// `key.sub`), was recorded already: so a reader does not add "required" to "invalid".
    pub fn has_errors_at(&self, key: &str) -> bool {
        let path = render(&self.key_path(key));
        self.errors.iter().any(|e| {
            e.key
                .strip_prefix(path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['[', '.']))
        })
    }

    /// `key` is read elsewhere (a section of the root, read by its own [`Section`]): not unknown.
    pub fn known(&mut self, key: &'static str) {
        self.accept(key);
        self.used.push(key);
    }

    /// Refuse `key` when present: a contract key this build does not implement yet, which
    /// must not be accepted and silently ignored.
    pub fn refuse(&mut self, key: &'static str, message: &str) {
        if self.raw(key).is_some() {
            self.error(key, message);
        }
    }

    fn accept(&mut self, key: &'static str) {
        if !self.accepted.contains(&key) {
            self.accepted.push(key);
        }
    }

    fn key_path(&self, key: &str) -> Vec<Step> {
        let mut path = self.path.clone();
        path.push(Step::key(key));
        path
    }

    /// Record an error about `key` of this section (placed at its value when the file has it).
    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        let error = KeyError::value(self.doc, &self.key_path(key), message);
        self.errors.push(error);
    }

    /// Record an error about element `index` of the array `key` (`key[index]`).
    pub fn error_item(&mut self, key: &str, index: usize, message: impl Into<String>) {
        let mut path = self.key_path(key);
        path.push(Step::Item(index));
        let error = KeyError::value(self.doc, &path, message);
        self.errors.push(error);
    }

    fn raw(&mut self, key: &'static str) -> Option<&'a Value> {
        self.accept(key);
        self.used.push(key);
        self.table.and_then(|t| t.get(key))
    }

    /// Fetch `key` and convert it; on a wrong type or a failed conversion, record the error
    /// and return `None`.
    fn convert<T>(
        &mut self,
        key: &'static str,
        what: &str,
        f: impl FnOnce(&'a Value) -> Option<Result<T, String>>,
    ) -> Option<T> {
        let value = self.raw(key)?;
        match f(value) {
            Some(Ok(v)) => Some(v),
            Some(Err(message)) => {
                self.error(key, message);
                None
            }
            None => {
                self.error(key, format!("expected {what}, found {}", kind(value)));
                None
            }
        }
    }

    /// An optional string.
    pub fn opt_str(&mut self, key: &'static str) -> Option<&'a str> {
        self.convert(key, "a string", |v| v.as_str().map(Ok))
    }

    /// One of a fixed set of strings (`choices`, in the order the error message lists them),
    /// or `default` when the key is absent; anything else is reported and gives `default`.
    pub fn choice<T: Copy>(&mut self, key: &'static str, default: T, choices: &[(&str, T)]) -> T {
        let Some(value) = self.opt_str(key) else {
            return default;
        };
        if let Some((_, chosen)) = choices.iter().find(|(name, _)| *name == value) {
            return *chosen;
        }
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
        let expected = match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        self.error(key, format!("expected {expected}, found {value:?}"));
        default
    }

    /// A boolean with a default.
    pub fn bool(&mut self, key: &'static str, default: bool) -> bool {
        self.convert(key, "true or false", |v| v.as_bool().map(Ok))
            .unwrap_or(default)
    }

    /// An integer within `min..=max`, with a default.
    pub fn int(&mut self, key: &'static str, default: u64, min: u64, max: u64) -> u64 {
        self.convert(key, "an integer", |v| {
            v.as_integer().map(|i| match u64::try_from(i) {
                Ok(i) if (min..=max).contains(&i) => Ok(i),
                _ => Err(format!("must be between {min} and {max}, found {i}")),
            })
        })
        .unwrap_or(default)
    }

    /// A duration string (`"500ms"`, `"30s"`, `"15m"`, `"12h"`, `"7d"`), greater than zero.
    pub fn duration(&mut self, key: &'static str, default: Duration) -> Duration {
        self.convert(key, "a duration string such as \"30s\"", |v| {
            v.as_str().map(|s| match parse_duration(s) {
                Ok(d) if d.is_zero() => Err("must be greater than zero".to_string()),
                other => other,
            })
        })
        .unwrap_or(default)
    }

    /// An `IP:port` socket address.
    pub fn socket_addr(&mut self, key: &'static str, default: SocketAddr) -> SocketAddr {
        self.convert(key, "an address string such as \"127.0.0.1:8080\"", |v| {
            v.as_str().map(|s| {
                s.parse::<SocketAddr>().map_err(|_| {
                    format!("invalid address {s:?}: expected IP:PORT, such as \"127.0.0.1:8080\" or \"[::1]:8080\"")
                })
            })
        })
        .unwrap_or(default)
    }

    /// A list of strings, each converted by `f`; a bad element is reported as `key[i]`.
    pub fn list<T>(
        &mut self,
        key: &'static str,
        mut f: impl FnMut(&str) -> Result<T, String>,
    ) -> Vec<T> {
        let Some(items) = self.convert(key, "an array of strings", |v| v.as_array().map(Ok)) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => match f(s) {
                    Ok(v) => out.push(v),
                    Err(message) => self.error_item(key, i, message),
                },
                None => {
                    let message = format!("expected a string, found {}", kind(item));
                    self.error_item(key, i, message);
                }
            }
        }
        out
    }

    /// Report every key of the section that no getter asked for, with the accepted key it was
    /// probably meant to be (also when the table has that key too: then the misspelt one is
    /// likely a leftover the operator believes is in effect).
    pub fn finish(self) {
        let Some(table) = self.table else { return };
        for key in table.keys() {
            if !self.used.iter().any(|u| u == key) {
                let path = self.key_path(key);
                let accepted = self.accepted.iter().copied();
                let error = KeyError::unknown(self.doc, &path, accepted);
                self.errors.push(error);
            }
        }
    }
}

/// Parse `"500ms"`, `"30s"`, `"15m"`, `"12h"` or `"7d"`: a whole number and exactly one unit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("invalid duration {s:?}: expected a number and a unit (ms, s, m, h, d), such as \"30s\"")
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(bad)
}

/// How a TOML value's type is named in messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// An RFC 9110 §5.6.2 token (a cookie name, a protocol name).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// A `tchar` of RFC 9110 §5.6.2.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_number_and_one_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in [
            "",
            "s",
            "30",
            "30 s",
            "1.5s",
            "-1s",
            "30sec",
            "3m30s",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    /// `(shown, position)` of every error `read` records on `text`.
    fn read_errors(text: &str, read: impl FnOnce(Section<'_>)) -> Vec<(String, Option<String>)> {
        let doc = Document::parse(text).unwrap();
        let mut errors = Vec::new();
        read(Section::new(&doc, "s", &mut errors));
        errors
            .iter()
            .map(|e| (e.to_string(), e.at.map(|p| p.to_string())))
            .collect()
    }

    #[test]
    fn every_error_is_collected_with_its_position_and_unknown_keys_reported() {
        let text = "[s]\ntimeout = \"soon\"\nlimit = -1\nflag = \"yes\"\nmystery = 1\n";
        let errors = read_errors(text, |mut s| {
            assert_eq!(
                s.duration("timeout", Duration::from_secs(1)),
                Duration::from_secs(1)
            );
            assert_eq!(s.int("limit", 7, 0, 10), 7);
            assert!(!s.bool("flag", false));
            let _ = s.opt_str("absent");
            s.error("absent", "required: something");
            s.finish();
        });
        let at = |p: &str| Some(p.to_string());
        assert_eq!(
            errors,
            [
                ("s.timeout: invalid duration \"soon\": expected a number and a unit (ms, s, m, h, d), such as \"30s\"".into(), at("2:11")),
                ("s.limit: must be between 0 and 10, found -1".into(), at("3:9")),
                ("s.flag: expected true or false, found a string".into(), at("4:8")),
                ("s.absent: required: something".into(), None),
                ("s.mystery: unknown key".into(), at("5:1")),
            ]
        );
    }

    #[test]
    fn nested_tables_and_list_elements_are_placed_too() {
        let text = "[s]\nt = { n = \"x\", bogus = 1 }\nitems = [\"ok\", 3]\n\n[s.deep]\nn = 2\n";
        let errors = read_errors(text, |mut s| {
            if let Some(mut t) = s.sub("t") {
                let _ = t.int("n", 0, 0, 9);
                t.finish();
            }
            let _ = s.list("items", |v| Ok(v.to_string()));
            if let Some(mut t) = s.sub("deep") {
                let _ = t.opt_str("n");
                t.finish();
            }
            s.finish();
        });
        let at = |p: &str| Some(p.to_string());
        assert_eq!(
            errors,
            [
                (
                    "s.t.n: expected an integer, found a string".into(),
                    at("2:11")
                ),
                ("s.t.bogus: unknown key".into(), at("2:16")),
                (
                    "s.items[1]: expected a string, found an integer".into(),
                    at("3:16")
                ),
                (
                    "s.deep.n: expected a string, found an integer".into(),
                    at("6:5")
                ),
            ]
        );
    }

    #[test]
    fn a_misspelt_key_gets_the_accepted_key_it_was_meant_to_be() {
        let text = "[s]\nidle_timout = \"5m\"\nRecheck = \"1s\"\nhst = 1\nzzz = 1\n";
        let errors = read_errors(text, |mut s| {
            let _ = s.duration("idle_timeout", Duration::from_secs(1));
            let _ = s.duration("recheck", Duration::from_secs(1));
            // Read only when present: still a key this table accepts.
            if s.has("hsts") {
                let _ = s.duration("hsts", Duration::from_secs(1));
            }
            s.finish();
        });
        let shown: Vec<&str> = errors.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(
            shown,
            [
                "s.Recheck: unknown key; did you mean `recheck`?",
                "s.hst: unknown key; did you mean `hsts`?",
                "s.idle_timout: unknown key; did you mean `idle_timeout`?",
                "s.zzz: unknown key",
            ]
        );
        // Beside the key it misspells, too: it is a leftover the operator may believe in.
        let errors = read_errors("[s]\nttl = \"1s\"\ntll = 1\n", |mut s| {
            let _ = s.duration("ttl", Duration::from_secs(1));
            s.finish();
        });
        assert_eq!(errors[0].0, "s.tll: unknown key; did you mean `ttl`?");
    }
}
