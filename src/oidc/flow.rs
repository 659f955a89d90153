//! One sign-in flow's secrets, sealed in a short-lived cookie named after its `state`.
//!
//! `GET <prefix>/oidc/start` makes a [`Flow`] (a fresh `state`, `nonce` and PKCE verifier, the
//! validated `next`, the redirect URI it announced) and sets it as the cookie
//! `doorman_oidc_<first 12 characters of state>` (`__Host-` under TLS), sealed with the state
//! key and bound to that name. The callback finds the cookie by the `state` the provider sends
//! back and accepts it only when the sealed `state` is that whole value and the flow has not
//! expired. So:
//!
//! * starting a flow writes nothing to the store (a crawler hitting the button costs nothing
//!   there), and a flow started on one replica finishes on another with the same key;
//! * two tabs signing in at once have two cookies, neither overwriting the other;
//! * a `state` from another browser finds no cookie here: a login cannot be planted by
//!   sending someone a callback URL (login CSRF).
//!
//! The cookie is `HttpOnly`, `SameSite=Lax` (the provider's redirect back is a top-level GET
//! navigation from another site, which Lax lets through and Strict would not) and lives
//! [`LIFETIME`]. Once used it is expired. Its use is also counted in the store until it would
//! have expired, so a replayed callback (the cookie kept by hand) is refused.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::seal::Sealer;

/// The flow cookies' name, before the state prefix (and after `__Host-` under TLS). They are
/// doorman's: they are stripped from requests to the upstream like the session cookie.
pub const COOKIE_PREFIX: &str = "doorman_oidc_";

/// How long a sign-in may take at the provider.
pub const LIFETIME: Duration = Duration::from_secs(10 * 60);

/// How many characters of the state name its cookie: enough that two tabs never collide.
const NAME_CHARS: usize = 12;

/// A flow's secrets and where it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// `state`: ties the callback to this browser's cookie.
    #[serde(rename = "s")]
    pub state: String,
    /// The PKCE verifier the code exchange proves possession with.
    #[serde(rename = "v")]
    pub verifier: String,
    /// The `nonce` the ID token must carry.
    #[serde(rename = "n")]
    pub nonce: String,
    /// Where the browser goes after signing in (already validated).
    #[serde(rename = "x")]
    pub next: String,
    /// The redirect URI sent to the provider; the code exchange must repeat it.
    #[serde(rename = "r")]
    pub redirect_uri: String,
    /// Unix milliseconds after which the flow is refused.
    #[serde(rename = "e")]
    pub expires: u64,
}

impl Flow {
    /// The flow sealed as the value of the cookie `name`.
    pub fn seal(&self, sealer: &Sealer, name: &str) -> Option<String> {
        let json = serde_json::to_vec(self).ok()?;
        sealer.seal(&json, name.as_bytes())
    }

    /// The flow sealed in the cookie `name`'s `value`, if it opens.
    pub fn open(sealer: &Sealer, name: &str, value: &str) -> Option<Flow> {
        let json = sealer.open(value, name.as_bytes())?;
        serde_json::from_slice(&json).ok()
    }
}

/// 32 bytes from the OS CSPRNG, base64url (43 characters): a `state` or a `nonce`.
pub fn random() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// The cookie a flow with `state` travels in; `None` for a state doorman did not make (too
/// short, or not base64url).
pub fn cookie_name(state: &str, secure: bool) -> Option<String> {
    let short = state.get(..NAME_CHARS)?;
    if state.len() != 43
        || !state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let host = if secure { "__Host-" } else { "" };
    Some(format!("{host}{COOKIE_PREFIX}{short}"))
}

/// The value of the one cookie called `name` in the request; none when it is absent or sent
/// twice (which one would be the browser's is unknowable).
pub fn find<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut found = None;
    for value in headers.get_all(COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            let Some((n, v)) = pair.split_once('=') else {
                continue;
            };
            if n.trim() == name {
                if found.is_some() {
                    return None;
                }
                found = Some(v.trim());
            }
        }
    }
    found
}

/// How many sign-ins one browser may have under way: starting one more expires the others
/// (each cookie is half a kilobyte, and a page that makes a browser start flows over and over
/// must not grow its `Cookie` header past what servers accept).
pub const MAX_FLOWS: usize = 4;

/// The longest `next` a flow carries; a longer one becomes `/` (the cookie must stay under
/// the 4 KiB browsers keep).
pub const MAX_NEXT: usize = 2048;

/// The names of the flow cookies the request carries.
pub fn names(headers: &HeaderMap) -> Vec<String> {
    let mut names = Vec::new();
    for value in headers.get_all(COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            let name = pair.split('=').next().unwrap_or_default().trim();
            if name
                .strip_prefix("__Host-")
                .unwrap_or(name)
                .starts_with(COOKIE_PREFIX)
            {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// `Set-Cookie` for a flow.
pub fn set_cookie(name: &str, value: &str, secure: bool) -> Option<HeaderValue> {
    let cookie = cookie::Cookie::build((name.to_string(), value.to_string()))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(cookie::SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(LIFETIME.as_secs() as i64))
        .build();
    HeaderValue::from_str(&cookie.to_string()).ok()
}

/// `Set-Cookie` that removes a used flow's cookie.
pub fn expire_cookie(name: &str, secure: bool) -> Option<HeaderValue> {
    let cookie = cookie::Cookie::build((name.to_string(), String::new()))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(cookie::SameSite::Lax)
        .removal()
        .build();
    HeaderValue::from_str(&cookie.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> Flow {
        Flow {
            state: random().unwrap(),
            verifier: "v".repeat(43),
            nonce: random().unwrap(),
            next: "/dashboard".into(),
            redirect_uri: "https://app.test/_doorman/oidc/callback".into(),
            expires: 1_000,
        }
    }

    #[test]
    fn a_flow_opens_only_under_its_own_cookie_name() {
        let sealer = Sealer::new(&[1; 32]).unwrap();
        let f = flow();
        let name = cookie_name(&f.state, true).unwrap();
        assert!(name.starts_with("__Host-doorman_oidc_"));
        assert_eq!(name.len(), "__Host-doorman_oidc_".len() + NAME_CHARS);
        let value = f.seal(&sealer, &name).unwrap();
        assert!(!value.contains(&f.nonce));
        assert_eq!(Flow::open(&sealer, &name, &value), Some(f.clone()));
        let other = cookie_name(&random().unwrap(), true).unwrap();
        assert_eq!(Flow::open(&sealer, &other, &value), None);
        assert_eq!(
            cookie_name(&f.state, false).unwrap(),
            name["__Host-".len()..]
        );
    }

    #[test]
    fn states_doorman_did_not_make_have_no_cookie() {
        assert_eq!(cookie_name("short", false), None);
        assert_eq!(cookie_name(&"a".repeat(44), false), None);
        assert_eq!(cookie_name(&format!("{}=", "a".repeat(42)), false), None);
        assert_eq!(cookie_name(&format!("{};", "a".repeat(42)), false), None);
    }

    #[test]
    fn a_cookie_sent_twice_is_none() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; doorman_oidc_x=2"));
        assert_eq!(find(&h, "doorman_oidc_x"), Some("2"));
        h.append(COOKIE, HeaderValue::from_static("doorman_oidc_x=3"));
        assert_eq!(find(&h, "doorman_oidc_x"), None);
        assert_eq!(find(&h, "b"), None);
    }

    #[test]
    fn flow_cookies_are_found_by_their_prefix() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static(
                "a=1; doorman_oidc_x=2; __Host-doorman_oidc_y=3; doorman_oidcz=4",
            ),
        );
        assert_eq!(names(&h), ["doorman_oidc_x", "__Host-doorman_oidc_y"]);
    }

    #[test]
    fn flow_cookies_are_host_only_lax_and_short_lived() {
        let set = set_cookie("__Host-doorman_oidc_abc", "v", true).unwrap();
        let set = set.to_str().unwrap();
        for part in [
            "Path=/",
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Max-Age=600",
        ] {
            assert!(set.contains(part), "{set}");
        }
        assert!(!set.contains("Domain"), "{set}");
        let gone = expire_cookie("doorman_oidc_abc", false).unwrap();
        assert!(gone.to_str().unwrap().contains("Max-Age=0"), "{gone:?}");
    }
}
