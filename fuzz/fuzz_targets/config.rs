//! The config reader: `Config::parse` (a `proxy.toml`'s text, src/config/) and `Users::parse`
//! (a users file's, src/config/users.rs), on any text.
//!
//! Input: the file's text (invalid UTF-8 replaced). Both readers get every input. Asserted:
//!
//! * each returns `Ok` or `Err`, never panics, and an `Err` holds at least one error;
//! * every error prints, and every position an error carries is inside the text (a line the
//!   text has, a column at most one past that line's last character);
//! * a config accepted prints its summary (what `doorman check` shows).
//!
//! The config names files (the users file, certificates, keys, secrets) that `Config::parse`
//! reads, relative to the config's folder, here `/nonexistent`. An input that names an
//! existing device, socket or pipe, or anything under `/dev`, `/proc` or `/sys`, is skipped:
//! reading `/dev/zero` or `/proc/kmsg` would hang or exhaust memory in the read itself, which
//! says nothing about the reader (the TOML strings are looked at after decoding, so escapes
//! cannot hide such a name).

#![no_main]

use std::path::Path;

use doorman::config::{Config, ConfigError, KeyError, Users};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if names_a_special_file(&text) {
        return;
    }
    match Config::parse(&text, Path::new("/nonexistent/proxy.toml")) {
        Ok(config) => {
            let _ = config.summary();
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an Err without errors");
            let _ = errors.to_string();
            for e in &errors.0 {
                match e {
                    ConfigError::Syntax { line, col, .. } => check_position(&text, *line, *col),
                    ConfigError::Key { error, .. } => check_key_error(&text, error),
                    ConfigError::Io { .. } => {}
                }
            }
        }
    }
    match Users::parse(&text) {
        Ok(users) => {
            let _ = users.len();
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "an Err without errors");
            for e in &errors {
                check_key_error(&text, e);
            }
        }
    }
});

fn check_key_error(text: &str, e: &KeyError) {
    let _ = e.to_string();
    if let Some(at) = e.at {
        check_position(text, at.line, at.col);
    }
}

/// A 1-based line the text has, and a 1-based column at most one past that line's end.
fn check_position(text: &str, line: usize, col: usize) {
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(
        (1..=lines.len()).contains(&line),
        "line {line} of a {}-line text",
        lines.len()
    );
    let chars = lines[line - 1].chars().count();
    assert!(
        (1..=chars + 1).contains(&col),
        "column {col} of line {line}, which has {chars} characters"
    );
}

/// Whether any string in the TOML names a file that reading could hang on (see the module
/// docs). Text that is not TOML names none: the reader stops at its syntax.
fn names_a_special_file(text: &str) -> bool {
    fn walk(value: &toml::Value) -> bool {
        match value {
            toml::Value::String(s) => is_special(s),
            toml::Value::Array(items) => items.iter().any(walk),
            toml::Value::Table(t) => t.iter().any(|(k, v)| is_special(k) || walk(v)),
            _ => false,
        }
    }
    fn is_special(s: &str) -> bool {
        if ["/dev", "/proc", "/sys"].iter().any(|p| s.contains(p)) {
            return true;
        }
        let path = Path::new("/nonexistent").join(s);
        std::fs::metadata(&path).is_ok_and(|m| !m.is_file() && !m.is_dir())
    }
    match text.parse::<toml::Table>() {
        Ok(table) => table.iter().any(|(k, v)| is_special(k) || walk(v)),
        Err(_) => false,
    }
}
