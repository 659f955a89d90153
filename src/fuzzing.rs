//! What the fuzz targets under `fuzz/` reach that the crate does not otherwise export.
//!
//! Compiled only with `--cfg fuzzing`, which cargo-fuzz sets for the fuzz build: neither the
//! binary nor the public API carries it. Every item is a re-export or a thin call into the
//! function doorman runs, unchanged, so a crash the fuzzer finds is in the real code, not in a
//! copy of it. The path normaliser ([`crate::path`]), the cookie functions ([`crate::cookie`])
//! and the config reader ([`crate::config::Config::parse`], [`crate::config::Users::parse`])
//! are public already and are called directly.

pub use crate::login::form::Form;
pub use crate::login::handoff::Handoff;
pub use crate::login::next::{safe_next, Absolute, MAX_LEN as NEXT_MAX_LEN};

use crate::login::page::{render, LoginPage};

/// The login page a failed password login answers with (`login::page`), for `next` and
/// `username` as the form carried them; under the default `[login] prefix`, with no provider
/// button.
pub fn failed_login_page(next: Option<&str>, username: Option<&str>) -> String {
    render(&LoginPage {
        action: "/_doorman/login",
        next,
        username,
        error: Some("Wrong user name or password."),
        ..LoginPage::default()
    })
}
