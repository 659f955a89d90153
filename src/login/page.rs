//! The login page: one self-contained HTML document, and the policy it is served under.
//!
//! The page works without JavaScript (a plain form POSTing `username`, `password` and a hidden
//! `next`), carries no external assets (its only style is one inline `<style>` block), and is
//! served with [`content_security_policy`], which forbids every script, every framing, and
//! every style except that exact block (allowed by its SHA-256, computed from the bytes the page
//! emits, so the two cannot drift apart). Every value interpolated into the page passes through
//! [`escape`].
//!
//! Accessibility: real `<label for>`s, `autocomplete` hints for password managers, focus on the
//! first empty field, an error announced through `role="alert"` and tied to the fields with
//! `aria-describedby`/`aria-invalid`, visible focus rings, WCAG AA contrast in light and dark
//! colour schemes, and a layout that holds from phone width (360px) to desktop.

use std::fmt::Write as _;
use std::sync::OnceLock;

use base64::Engine as _;

use crate::encoding::percent_encode_component;

/// What one rendering of the login page shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginPage<'a> {
    /// Where the form posts, e.g. `/_doorman/login`.
    pub action: &'a str,
    /// The local path to return to after login, carried in a hidden field.
    pub next: Option<&'a str>,
    /// The user name to refill after a failed attempt.
    pub username: Option<&'a str>,
    /// An error to show, e.g. "Wrong user name or password."
    pub error: Option<&'a str>,
    /// A neutral notice to show, e.g. "You have been logged out."
    pub notice: Option<&'a str>,
    /// The OpenID Connect button ("Sign in with {name}"), shown above the password form.
    pub provider: Option<ProviderButton<'a>>,
    /// Whether to show the password form: `false` when there are no local users and a
    /// provider button stands alone.
    pub hide_password: bool,
}

/// A "Sign in with {name}" button: a link to the flow's start carrying `next`, styled as a
/// button. A link, not a GET form: browsers hold every redirect that follows a form submission
/// to `form-action` (Chromium cancels the hop to the provider under `form-action 'self'`),
/// while a link's navigation may go wherever the provider sends it.
#[derive(Debug, Clone, Copy)]
pub struct ProviderButton<'a> {
    /// The provider's name as configured (`[oidc] name`).
    pub name: &'a str,
    /// `<prefix>/oidc/start`.
    pub start: &'a str,
}

/// The page's whole style sheet. Kept ASCII and emitted byte for byte between `<style>` and
/// `</style>`, because the Content-Security-Policy allows it by the hash of exactly those bytes.
const STYLE: &str = "\
:root{color-scheme:light dark;--bg:#eef0f4;--card:#fff;--fg:#111827;--muted:#4b5563;\
--line:#6b7280;--accent:#1d4ed8;--accent-hover:#1e40af;--on-accent:#fff;--err-bg:#fef2f2;\
--err-fg:#991b1b;--err-line:#dc2626;--note-bg:#eff6ff;--note-fg:#1e3a8a;--ring:#1d4ed8;\
--edge:transparent}\
@media (prefers-color-scheme:dark){:root{--bg:#0b0f17;--card:#171c27;--fg:#f3f4f6;\
--muted:#b4bac6;--line:#8b93a3;--accent:#8fb0ff;--accent-hover:#b3caff;--on-accent:#0b0f17;\
--err-bg:#3b1519;--err-fg:#fecaca;--err-line:#f87171;--note-bg:#15233f;--note-fg:#cddafe;\
--ring:#8fb0ff;--edge:#2b3242}}\
*{box-sizing:border-box}\
html{background:var(--bg);color:var(--fg);font-family:system-ui,-apple-system,\"Segoe UI\",\
Roboto,\"Helvetica Neue\",Arial,\"Noto Sans\",sans-serif;font-size:100%;line-height:1.5}\
body{margin:0;min-height:100vh;min-height:100svh;display:flex;align-items:center;\
justify-content:center;padding:1rem}\
main{width:100%;max-width:24rem;background:var(--card);border:1px solid var(--edge);\
border-radius:12px;padding:2rem 1.5rem;\
box-shadow:0 1px 2px rgba(0,0,0,.08),0 8px 28px rgba(0,0,0,.08)}\
h1{margin:0;font-size:1.5rem;line-height:1.25}\
.sub{margin:.375rem 0 1.5rem;color:var(--muted)}\
.msg{margin:0 0 1.25rem;padding:.75rem 1rem;border-radius:8px;border-left:4px solid}\
.err{background:var(--err-bg);color:var(--err-fg);border-color:var(--err-line)}\
.note{background:var(--note-bg);color:var(--note-fg);border-color:var(--ring)}\
label{display:block;margin-bottom:.375rem;font-weight:600}\
input{display:block;width:100%;margin:0 0 1.25rem;padding:.625rem .75rem;font:inherit;\
color:inherit;background:var(--card);border:1px solid var(--line);border-radius:8px}\
input[aria-invalid=true]{border-color:var(--err-line)}\
button,.sso{display:block;width:100%;margin-top:.5rem;padding:.75rem 1rem;font:inherit;\
font-weight:600;color:var(--on-accent);background:var(--accent);border:0;border-radius:8px;\
cursor:pointer}\
.sso{text-align:center;text-decoration:none}\
button:hover,.sso:hover{background:var(--accent-hover)}\
:focus-visible{outline:3px solid var(--ring);outline-offset:2px}\
@media (min-width:480px){main{padding:2.5rem 2.25rem}}";

/// The id of the error message, referenced by the fields' `aria-describedby`.
const ERROR_ID: &str = "login-error";

/// Escape `s` for use in HTML text and in double- or single-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// [`content_security_policy`] for a login that may send the browser on to other hosts after
/// its form is posted (sign-in across hosts, DESIGN.md §8): browsers hold the redirects after
/// a form submission to `form-action` too, so each of `hosts` (host names or `*.` patterns, as
/// `allowed_hosts` has them) is allowed, on any port.
pub fn content_security_policy_with(hosts: &[String]) -> String {
    let base = content_security_policy();
    if hosts.is_empty() {
        return base.to_string();
    }
    let sources: Vec<String> = hosts.iter().map(|h| format!(" {h}:*")).collect();
    base.replacen(
        "form-action 'self'",
        &format!("form-action 'self'{}", sources.concat()),
        1,
    )
}

/// The `Content-Security-Policy` to serve the login page with: no scripts, no framing, forms
/// only to this origin, and no style but the page's own block (by its SHA-256).
pub fn content_security_policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        let digest = ring::digest::digest(&ring::digest::SHA256, STYLE.as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'"
        )
    })
}

/// Render the complete login page.
pub fn render(page: &LoginPage<'_>) -> String {
    let username = page.username.unwrap_or("");
    let error = page.error.filter(|e| !e.is_empty());
    let notice = page.notice.filter(|n| !n.is_empty());
    // Focus the first field that still needs typing: the password when the name is refilled.
    let (user_focus, pass_focus) = if username.is_empty() {
        (" autofocus", "")
    } else {
        ("", " autofocus")
    };
    let invalid = if error.is_some() {
        format!(" aria-invalid=\"true\" aria-describedby=\"{ERROR_ID}\"")
    } else {
        String::new()
    };

    let mut html = String::with_capacity(STYLE.len() + 2048);
    html.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>Sign in</title>\n<style>",
    );
    html.push_str(STYLE);
    html.push_str("</style>\n</head>\n<body>\n<main>\n<h1>Sign in</h1>\n");
    let sub = if page.hide_password {
        "Continue with your organisation's sign-in."
    } else {
        "Enter your user name and password to continue."
    };
    let _ = writeln!(html, "<p class=\"sub\">{sub}</p>");
    if let Some(notice) = notice {
        // Writing to a String cannot fail.
        let _ = writeln!(
            html,
            "<p class=\"msg note\" role=\"status\">{}</p>",
            escape(notice)
        );
    }
    if let Some(error) = error {
        let _ = writeln!(
            html,
            "<p class=\"msg err\" id=\"{ERROR_ID}\" role=\"alert\">{}</p>",
            escape(error)
        );
    }
    if let Some(button) = page.provider {
        let href = match page.next {
            Some(next) => format!("{}?next={}", button.start, percent_encode_component(next)),
            None => button.start.to_string(),
        };
        let _ = writeln!(
            html,
            "<p><a class=\"sso\" href=\"{}\">Sign in with {}</a></p>",
            escape(&href),
            escape(button.name)
        );
        if page.hide_password {
            html.push_str("</main>\n</body>\n</html>\n");
            return html;
        }
        html.push_str("<p class=\"sub\">or</p>\n");
    }
    let _ = writeln!(
        html,
        "<form method=\"post\" action=\"{}\">",
        escape(page.action)
    );
    if let Some(next) = page.next {
        let _ = writeln!(
            html,
            "<input type=\"hidden\" name=\"next\" value=\"{}\">",
            escape(next)
        );
    }
    let _ = write!(
        html,
        "<label for=\"username\">User name</label>\n\
         <input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" \
         autocapitalize=\"none\" spellcheck=\"false\" required value=\"{}\"{invalid}{user_focus}>\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required{invalid}{pass_focus}>\n\
         <button type=\"submit\">Sign in</button>\n</form>\n</main>\n</body>\n</html>\n",
        escape(username)
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTION: &str = "/_doorman/login";

    fn page() -> LoginPage<'static> {
        LoginPage {
            action: ACTION,
            ..LoginPage::default()
        }
    }

    /// The bytes between `<style>` and `</style>`, as the browser hashes them.
    fn style_block(html: &str) -> &str {
        let start = html.find("<style>").expect("a style block") + "<style>".len();
        let end = html[start..].find("</style>").expect("closed") + start;
        assert_eq!(html.matches("<style").count(), 1, "exactly one style block");
        &html[start..end]
    }

    #[test]
    fn the_provider_button_comes_first_and_may_stand_alone() {
        let button = ProviderButton {
            name: "Example <SSO>",
            start: "/_doorman/oidc/start",
        };
        let html = render(&LoginPage {
            provider: Some(button),
            next: Some("/x?a=1&b=2"),
            ..page()
        });
        let sso = html.find("Sign in with Example &lt;SSO&gt;</a>").unwrap();
        let password = html.find("name=\"password\"").unwrap();
        assert!(sso < password, "{html}");
        // A link (no form: form-action would hold the provider's redirects), next encoded.
        assert!(
            html.contains(
                "<a class=\"sso\" href=\"/_doorman/oidc/start?next=%2Fx%3Fa%3D1%26b%3D2\">"
            ),
            "{html}"
        );
        assert_eq!(html.matches("<form").count(), 1, "{html}");
        assert_eq!(
            html.matches("value=\"/x?a=1&amp;b=2\"").count(),
            1,
            "{html}"
        );
        let alone = render(&LoginPage {
            provider: Some(button),
            hide_password: true,
            ..page()
        });
        assert!(alone.contains("Sign in with Example"), "{alone}");
        assert!(!alone.contains("password"), "{alone}");
        assert!(alone.ends_with("</html>\n"));
        assert_eq!(style_block(&alone), STYLE);
    }

    #[test]
    fn escape_replaces_every_special_character() {
        assert_eq!(escape(""), "");
        assert_eq!(escape("plain /path?x=1"), "plain /path?x=1");
        assert_eq!(escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
        assert_eq!(
            escape("&amp;"),
            "&amp;amp;",
            "escaping is not idempotent by design"
        );
        assert_eq!(escape("héllo ✓"), "héllo ✓");
    }

    #[test]
    fn hidden_next_is_present_and_escaped() {
        let html = render(&LoginPage {
            next: Some("/reports?a=1&b=2"),
            ..page()
        });
        assert!(
            html.contains("<input type=\"hidden\" name=\"next\" value=\"/reports?a=1&amp;b=2\">")
        );

        let payload = "\"><script>alert(1)</script>";
        let html = render(&LoginPage {
            next: Some(payload),
            ..page()
        });
        assert!(html.contains("value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""));
        assert!(!html.contains(payload));
        assert!(!html.to_ascii_lowercase().contains("<script"));
    }

    #[test]
    fn no_next_means_no_hidden_field() {
        assert!(!render(&page()).contains("name=\"next\""));
    }

    #[test]
    fn every_interpolated_value_is_escaped() {
        let evil = "'\"><script>x</script>&";
        let html = render(&LoginPage {
            action: evil,
            next: Some(evil),
            username: Some(evil),
            error: Some(evil),
            notice: Some(evil),
            provider: Some(ProviderButton {
                name: evil,
                start: evil,
            }),
            hide_password: false,
        });
        assert!(!html.contains(evil));
        assert!(!html.to_ascii_lowercase().contains("<script"));
        assert_eq!(html.matches("&#39;&quot;&gt;&lt;script&gt;").count(), 7);
    }

    #[test]
    fn form_posts_the_three_fields_with_labels_and_autocomplete() {
        let html = render(&LoginPage {
            next: Some("/x"),
            ..page()
        });
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(html.contains("<title>Sign in</title>"));
        assert!(html
            .contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"));
        assert!(html.contains("<form method=\"post\" action=\"/_doorman/login\">"));
        assert!(html.contains("<label for=\"username\">"));
        assert!(html.contains("<label for=\"password\">"));
        assert!(html.contains("id=\"username\" name=\"username\""));
        assert!(html.contains("id=\"password\" name=\"password\" type=\"password\""));
        assert!(html.contains("autocomplete=\"username\""));
        assert!(html.contains("autocomplete=\"current-password\""));
        assert_eq!(html.matches(" required").count(), 2);
        assert!(html.contains("<button type=\"submit\">Sign in</button>"));
        assert!(!html.contains("role=\"alert\""));
        assert!(!html.contains(" aria-invalid=\"true\""));
    }

    #[test]
    fn autofocus_goes_to_the_first_empty_field() {
        let fresh = render(&page());
        assert_eq!(fresh.matches("autofocus").count(), 1);
        assert!(fresh.contains("value=\"\" autofocus>"));

        let refilled = render(&LoginPage {
            username: Some("alice"),
            ..page()
        });
        assert_eq!(refilled.matches("autofocus").count(), 1);
        assert!(refilled.contains("value=\"alice\">"));
        assert!(refilled.contains("required autofocus>"));
    }

    #[test]
    fn error_is_an_alert_tied_to_the_fields() {
        let html = render(&LoginPage {
            username: Some("alice"),
            error: Some("Wrong user name or password."),
            ..page()
        });
        assert!(html.contains(
            "<p class=\"msg err\" id=\"login-error\" role=\"alert\">\
             Wrong user name or password.</p>"
        ));
        assert_eq!(
            html.matches(" aria-invalid=\"true\" aria-describedby=\"login-error\"")
                .count(),
            2
        );
    }

    #[test]
    fn notice_is_a_status_message() {
        let html = render(&LoginPage {
            notice: Some("You have been logged out."),
            ..page()
        });
        assert!(
            html.contains("<p class=\"msg note\" role=\"status\">You have been logged out.</p>")
        );
        assert!(!html.contains("role=\"alert\""));
    }

    #[test]
    fn no_scripts_and_no_external_assets() {
        let html = render(&LoginPage {
            next: Some("/x"),
            username: Some("alice"),
            error: Some("e"),
            notice: Some("n"),
            ..page()
        });
        let lower = html.to_ascii_lowercase();
        for banned in [
            "<script", "<link", "<img", "<iframe", "@import", "url(", "http:", "https:", " on",
        ] {
            assert!(!lower.contains(banned), "page contains {banned:?}");
        }
    }

    #[test]
    fn page_is_small() {
        let long = "x".repeat(200);
        let html = render(&LoginPage {
            action: ACTION,
            next: Some(&long),
            username: Some("someone.with.a.long.name@example.com"),
            error: Some("Wrong user name or password."),
            notice: Some("You have been logged out."),
            provider: Some(ProviderButton {
                name: "Example Single Sign-On",
                start: "/_doorman/oidc/start",
            }),
            hide_password: false,
        });
        assert!(html.len() < 6 * 1024, "login page is {} bytes", html.len());
    }

    #[test]
    fn policy_hash_matches_the_emitted_style_block() {
        let html = render(&page());
        let block = style_block(&html);
        assert_eq!(block, STYLE);
        let digest = ring::digest::digest(&ring::digest::SHA256, block.as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        let policy = content_security_policy();
        assert!(
            policy.contains(&format!("style-src 'sha256-{hash}';")),
            "{policy}"
        );
        assert!(block.is_ascii());
    }

    #[test]
    fn a_login_across_hosts_may_post_on_to_the_allowed_hosts() {
        assert_eq!(content_security_policy_with(&[]), content_security_policy());
        let policy = content_security_policy_with(&["app.test".into(), "*.b.test".into()]);
        assert!(
            policy.contains("; form-action 'self' app.test:* *.b.test:*; "),
            "{policy}"
        );
    }

    #[test]
    fn policy_forbids_scripts_and_framing() {
        let policy = content_security_policy();
        let directives: Vec<&str> = policy.split("; ").collect();
        assert_eq!(directives[0], "default-src 'none'");
        assert!(directives[1].starts_with("style-src 'sha256-"));
        assert_eq!(
            &directives[2..],
            [
                "form-action 'self'",
                "frame-ancestors 'none'",
                "base-uri 'none'"
            ]
        );
        assert!(!policy.contains("script-src"));
        assert!(!policy.contains("unsafe"));
    }
}
