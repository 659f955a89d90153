//! A typed reader over a parsed TOML table that collects *every* error.
//!
//! serde with `deny_unknown_fields` stops at the first problem; operators fixing a config want the
//! whole list in one `doorman check`. So the loader walks the document with [`Section`]: each
//! getter converts one key, records a `key.path: message` error when the value is wrong and
//! falls back to the default so the walk can go on, and [`Section::finish`] reports every key
//! nobody asked for as unknown.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use toml::{Table, Value};

/// One validation problem, addressed by its dotted key path (`listen.header_timeout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The key's dotted path (`routes[0].path`).
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// One table of the document (`[listen]`, `[upstream]`, ...), read key by key.
pub struct Section<'a> {
    path: String,
    table: Option<&'a Table>,
    used: Vec<&'static str>,
    errors: &'a mut Vec<KeyError>,
}

impl<'a> Section<'a> {
    /// The table at `key` in `root`; a missing table reads as empty (every key defaulted).
    pub fn new(root: &'a Table, key: &'static str, errors: &'a mut Vec<KeyError>) -> Self {
        let table = match root.get(key) {
            None => None,
            Some(Value::Table(t)) => Some(t),
            Some(other) => {
                errors.push(KeyError {
                    key: key.to_string(),
                    message: format!("expected a table, found {}", kind(other)),
                });
                None
            }
        };
        Section {
            path: key.to_string(),
            table,
            used: Vec::new(),
            errors,
        }
    }

    /// One element of an array of tables (`[[routes]]`), addressed as `path` (`routes[2]`).
    pub fn entry(table: &'a Table, path: String, errors: &'a mut Vec<KeyError>) -> Self {
        Section {
            path,
            table: Some(table),
            used: Vec::new(),
            errors,
        }
    }

    /// A nested table (`redis_sentinel = { ... }`), read like a section of its own.
    pub fn sub(&mut self, key: &'static str) -> Option<Section<'_>> {
        let value = self.raw(key)?;
        match value {
            Value::Table(t) => Some(Section {
                path: self.key_path(key),
                table: Some(t),
                used: Vec::new(),
                errors: &mut *self.errors,
            }),
            other => {
                let message = format!("expected a table, found {}", kind(other));
                self.error(key, message);
                None
            }
        }
    }

    /// Whether `key` is present (without reading it).
    pub fn has(&self, key: &str) -> bool {
        self.table.is_some_and(|t| t.contains_key(key))
    }

    /// Refuse `key` when present: a contract key this build does not implement yet, which
    /// must not be accepted and silently ignored.
    #[allow(dead_code)] // no key is refused this way now; kept for the next planned one
    pub fn refuse(&mut self, key: &'static str, message: &str) {
        if self.raw(key).is_some() {
            self.error(key, message);
        }
    }

    fn key_path(&self, key: &str) -> String {
        format!("{}.{}", self.path, key)
    }

    /// Record an error about `key` of this section.
    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        let key = self.key_path(key);
        self.errors.push(KeyError {
            key,
            message: message.into(),
        });
    }

    fn raw(&mut self, key: &'static str) -> Option<&'a Value> {
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
            let at = format!("{key}[{i}]");
            match item.as_str() {
                Some(s) => match f(s) {
                    Ok(v) => out.push(v),
                    Err(message) => self.error(&at, message),
                },
                None => self.error(&at, format!("expected a string, found {}", kind(item))),
            }
        }
        out
    }

    /// Report every key of the section that no getter asked for.
    pub fn finish(self) {
        let Some(table) = self.table else { return };
        for key in table.keys() {
            if !self.used.iter().any(|u| u == key) {
                self.errors.push(KeyError {
                    key: format!("{}.{}", self.path, key),
                    message: "unknown key".to_string(),
                });
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

    #[test]
    fn every_error_is_collected_and_unknown_keys_reported() {
        let root: Table =
            toml::from_str("[s]\ntimeout = \"soon\"\nlimit = -1\nflag = \"yes\"\nmystery = 1\n")
                .unwrap();
        let mut errors = Vec::new();
        let mut s = Section::new(&root, "s", &mut errors);
        assert_eq!(
            s.duration("timeout", Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert_eq!(s.int("limit", 7, 0, 10), 7);
        assert!(!s.bool("flag", false));
        s.finish();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "s.timeout: invalid duration \"soon\": expected a number and a unit (ms, s, m, h, d), such as \"30s\"",
                "s.limit: must be between 0 and 10, found -1",
                "s.flag: expected true or false, found a string",
                "s.mystery: unknown key",
            ]
        );
    }
}
