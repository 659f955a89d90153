//! Signing in with OpenID Connect (DESIGN.md §10) against a real provider: Node's
//! oidc-provider (tests/oidc/provider.mjs), driven over HTTP by a cookie-keeping test browser
//! (tests/support/oidc.rs). The whole flow on both stores and across two doormen, RP-initiated
//! logout that ends the provider's session, and the refusals a real provider can cause: its
//! `error=`, an unverified email, a domain not allowed, a users-file name, a replayed, unknown
//! or another browser's state. Forged tokens are in tests/oidc_forged.rs.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::login::{Backend, Conf, DASHBOARD};
use support::oidc::{
    confirm_logout, issuer_for, sign_in, site, with_query, Browser, OidcProvider, Page,
    ProviderSpec, CLIENT_ID, CLIENT_SECRET, PASSWORD,
};
use support::redis::RedisServer;
use support::{eventually, Doorman};

/// `[oidc]` for the test client at `issuer`, plus `extra` keys.
fn oidc_table(issuer: &str, extra: &str) -> String {
    format!(
        "[oidc]\nissuer = {issuer:?}\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
         scopes = [\"openid\", \"email\", \"profile\", \"groups\"]\ngroups_claim = \"groups\"\n\
         name = \"Test SSO\"\n{extra}\n"
    )
}

/// A provider and a doorman that know each other (the provider's port is picked first, so
/// doorman's config can name the issuer; doorman's address is then the client's redirect URI).
async fn pair(extra: &str) -> (OidcProvider, Doorman) {
    pair_on(Backend::embedded(), "", extra).await
}

async fn pair_on(backend: Backend, session: &str, extra: &str) -> (OidcProvider, Doorman) {
    let port = support::free_port();
    let conf = Conf {
        session: session.into(),
        rest: format!("{DASHBOARD}\n{}", oidc_table(&issuer_for(port), extra)),
        ..Conf::default()
    };
    let d = Doorman::conf(&conf).backend(backend).admin().start().await;
    let provider = OidcProvider::start(
        ProviderSpec::new(&[&d.url("/_doorman/oidc/callback")], &[&d.url("/")]).on_port(port),
    );
    discovered(&d).await;
    (provider, d)
}

async fn discovered(d: &Doorman) {
    let a = eventually(
        Duration::from_secs(20),
        async || d.get("/_doorman/oidc/start", None).await,
        |a| a.status != 503,
    )
    .await;
    assert_eq!(a.status, 302, "{}", a.text());
}

/// Start at doorman's button and sign in at the provider as `login`: the provider's redirect
/// back to doorman's callback (not followed).
async fn to_callback(browser: &mut Browser, d: &Doorman, login: &str) -> Page {
    let start = browser
        .get(&d.url("/_doorman/oidc/start?next=/dashboard"))
        .await;
    assert_eq!(start.status, 302, "{}", start.text());
    let back = sign_in(browser, &start.location().unwrap(), login, PASSWORD).await;
    let to = back
        .location()
        .unwrap_or_else(|| panic!("no redirect: {}", back.text()));
    assert!(to.starts_with(&d.url("/_doorman/oidc/callback?")), "{to}");
    back
}

async fn metric(d: &Doorman, result: &str) -> f64 {
    d.metrics(&d.client)
        .await
        .get("doorman_oidc_logins_total", &[("result", result)])
}

/// The page a refused sign-in gets: 401, the login page with a message, no session.
async fn assert_refused(d: &Doorman, browser: &Browser, page: &Page, reason: &str) {
    assert_eq!(page.status, 401, "{reason}: {}", page.text());
    assert!(
        page.text().contains("Sign in with Test SSO"),
        "{}",
        page.text()
    );
    assert!(page.set_cookie("doorman_session").is_none(), "{reason}");
    assert!(browser.cookie(&site(&d.base), "doorman_session").is_none());
    assert_eq!(metric(d, reason).await, 1.0, "{reason}");
    assert_eq!(metric(d, "success").await, 0.0);
}

/// The app's view of `/dashboard` for this browser.
async fn dashboard(browser: &mut Browser, d: &Doorman) -> Page {
    browser.get(&d.url("/dashboard")).await
}

fn echoed(page: &Page, name: &str) -> Vec<String> {
    let echo: Value = serde_json::from_slice(&page.body).expect("echo");
    support::echoed_header(&echo, name)
}

async fn whole_flow(backend: Backend, extra: &str) {
    let (provider, d) = pair_on(backend, "", extra).await;
    let mut browser = Browser::new();
    let page = browser.get(&d.url("/_doorman/login?next=/dashboard")).await;
    assert!(
        page.text().contains("Sign in with Test SSO"),
        "{}",
        page.text()
    );

    let back = to_callback(&mut browser, &d, "alice").await;
    let landed = browser.get(&back.location().unwrap()).await;
    assert_eq!(landed.status, 303, "{}", landed.text());
    assert_eq!(landed.header("location"), Some("/dashboard"));
    let app = dashboard(&mut browser, &d).await;
    assert_eq!(app.status, 200, "{}", app.text());
    assert_eq!(echoed(&app, "x-auth-user"), ["alice@example.com"]);
    assert_eq!(echoed(&app, "x-auth-groups"), ["staff"]);
    assert!(
        echoed(&app, "cookie").is_empty(),
        "no doorman cookie upstream"
    );
    assert_eq!(provider.sessions().await, 1);
    assert_eq!(metric(&d, "success").await, 1.0);

    // Logout ends the provider's session too (RP-initiated logout), with the ID token as hint
    // and doorman as the way back.
    let out = browser.post_form(&d.url("/_doorman/logout"), &[]).await;
    assert_eq!(out.status, 303, "{}", out.text());
    let to = out.location().unwrap();
    assert!(to.starts_with(&provider.url("/session/end?")), "{to}");
    let hint = support::oidc::query_param(&to, "id_token_hint").expect("id_token_hint");
    assert_eq!(
        support::oidc::jwt_payload(&hint)["email"],
        "alice@example.com"
    );
    assert_eq!(
        support::oidc::query_param(&to, "post_logout_redirect_uri").as_deref(),
        Some(d.url("/").as_str())
    );
    let back = confirm_logout(&mut browser, &to).await;
    assert_eq!(
        back.location().as_deref(),
        Some(d.url("/").as_str()),
        "{}",
        back.text()
    );
    assert_eq!(provider.sessions().await, 0);
    assert_eq!(dashboard(&mut browser, &d).await.status, 401);
    // Signing in again asks for the password again: nothing signs the browser back in.
    let start = browser.get(&d.url("/_doorman/oidc/start")).await;
    let at_provider = browser
        .follow_within(start, &site(&provider.issuer()), 10)
        .await;
    assert_eq!(at_provider.status, 200);
    assert!(
        at_provider.text().contains("name=\"password\""),
        "{}",
        at_provider.text()
    );
}

#[tokio::test]
async fn the_whole_flow_on_the_embedded_store() {
    whole_flow(Backend::embedded(), "").await;
}

/// A state key file (the same 32 bytes for every doorman that uses it).
fn state_key() -> String {
    let key = support::temp_dir("oidc-key").join("oidc-state.key");
    std::fs::write(&key, [9u8; 32]).unwrap();
    format!("state_key_file = {key:?}")
}

#[tokio::test]
async fn the_whole_flow_on_redis() {
    let redis = RedisServer::start();
    whole_flow(Backend::redis(&redis), &state_key()).await;
}

#[tokio::test]
async fn a_flow_started_on_one_doorman_finishes_on_another() {
    let redis = RedisServer::start();
    let port = support::free_port();
    let extra = state_key();
    let conf = Conf {
        rest: format!("{DASHBOARD}\n{}", oidc_table(&issuer_for(port), &extra)),
        ..Conf::default()
    };
    // Two doormen on one Redis with one state key: the flow starts on one and ends on the
    // other, as behind a load balancer.
    let a = Doorman::conf(&conf)
        .backend(Backend::redis(&redis))
        .admin()
        .start()
        .await;
    let b = Doorman::conf(&conf)
        .backend(Backend::redis(&redis))
        .admin()
        .start()
        .await;
    let provider = OidcProvider::start(
        ProviderSpec::new(&[&a.url("/_doorman/oidc/callback")], &[&a.url("/")]).on_port(port),
    );
    discovered(&a).await;
    discovered(&b).await;
    let mut browser = Browser::new();
    let back = to_callback(&mut browser, &a, "carol").await;
    // The load balancer sends the callback to b: same cookies, b's address.
    for (name, value) in browser.cookies(&site(&a.base)) {
        browser.set_cookie(&site(&b.base), &name, &value);
    }
    let callback = back.location().unwrap().replace(&a.base, &b.base);
    let landed = browser.get(&callback).await;
    assert_eq!(landed.status, 303, "{}", landed.text());
    let app = dashboard(&mut browser, &b).await;
    assert_eq!(app.status, 200);
    assert_eq!(echoed(&app, "x-auth-user"), ["carol@example.com"]);
    assert_eq!(echoed(&app, "x-auth-groups"), ["admin,staff"]);
    // The session is in Redis: a knows it too.
    let session = browser.cookie(&site(&b.base), "doorman_session").unwrap();
    assert_eq!(a.get("/dashboard", Some(&session)).await.status, 200);
    // The used state is recorded in Redis: replaying the callback on a is refused.
    let replay = browser.get(&back.location().unwrap()).await;
    assert_eq!(replay.status, 401, "{}", replay.text());
    drop(provider);
}

#[tokio::test]
async fn a_provider_error_is_refused() {
    let (_provider, d) = pair("").await;
    let mut browser = Browser::new();
    let start = browser.get(&d.url("/_doorman/oidc/start")).await;
    // prompt=none without a provider session: the provider answers error=login_required.
    let silent = with_query(&start.location().unwrap(), &[("prompt", "none")]);
    let back = browser.get(&silent).await;
    let to = back.location().unwrap();
    assert!(to.contains("error=login_required"), "{to}");
    let page = browser.get(&to).await;
    assert_refused(&d, &browser, &page, "provider_error").await;
}

#[tokio::test]
async fn an_unverified_email_is_refused() {
    let (_provider, d) = pair("").await;
    let mut browser = Browser::new();
    let back = to_callback(&mut browser, &d, "mallory").await;
    let page = browser.get(&back.location().unwrap()).await;
    assert_refused(&d, &browser, &page, "email_not_verified").await;
}

#[tokio::test]
async fn a_domain_not_allowed_is_refused() {
    let (_provider, d) = pair("allowed_domains = [\"example.com\"]").await;
    let mut browser = Browser::new();
    let back = to_callback(&mut browser, &d, "bob").await;
    let page = browser.get(&back.location().unwrap()).await;
    assert_refused(&d, &browser, &page, "domain_not_allowed").await;
}

#[tokio::test]
async fn a_users_file_name_needs_link_local_users() {
    // alice is in the users file: her provider account may not become her local session.
    let (_provider, d) = pair("user_claim = \"preferred_username\"").await;
    let mut browser = Browser::new();
    let back = to_callback(&mut browser, &d, "alice").await;
    let page = browser.get(&back.location().unwrap()).await;
    assert_refused(&d, &browser, &page, "local_user").await;

    let (_provider, d) = pair("user_claim = \"preferred_username\"\nlink_local_users = true").await;
    let mut browser = Browser::new();
    let back = to_callback(&mut browser, &d, "alice").await;
    let page = browser.get(&back.location().unwrap()).await;
    assert_eq!(page.status, 303, "{}", page.text());
    let app = dashboard(&mut browser, &d).await;
    assert_eq!(echoed(&app, "x-auth-user"), ["alice"]);
    // Groups come from the ID token, not the users file.
    assert_eq!(echoed(&app, "x-auth-groups"), ["staff"]);
}

#[tokio::test]
async fn a_replayed_callback_is_refused() {
    let (_provider, d) = pair("").await;
    let mut browser = Browser::new();
    let back = to_callback(&mut browser, &d, "alice").await;
    let callback = back.location().unwrap();
    let flow: Vec<(String, String)> = browser
        .cookies(&site(&d.base))
        .into_iter()
        .filter(|(n, _)| n.starts_with("doorman_oidc_"))
        .collect();
    assert_eq!(flow.len(), 1, "one flow cookie");
    assert_eq!(browser.get(&callback).await.status, 303);
    // The cookie was expired; a replay that kept it by hand is refused all the same.
    assert!(browser.cookie(&site(&d.base), &flow[0].0).is_none());
    let mut other = Browser::new();
    other.set_cookie(&site(&d.base), &flow[0].0, &flow[0].1);
    let page = other.get(&callback).await;
    assert_eq!(page.status, 401, "{}", page.text());
    assert!(page.set_cookie("doorman_session").is_none());
    assert_eq!(metric(&d, "replayed_state").await, 1.0);
    assert_eq!(metric(&d, "success").await, 1.0, "only the first use");
}

#[tokio::test]
async fn an_unknown_state_is_refused() {
    let (_provider, d) = pair("").await;
    let mut browser = Browser::new();
    let state = "A".repeat(43);
    let page = browser
        .get(&d.url(&format!("/_doorman/oidc/callback?code=x&state={state}")))
        .await;
    assert_refused(&d, &browser, &page, "unknown_state").await;
}

#[tokio::test]
async fn another_browsers_state_is_refused() {
    // The attacker starts a flow and sends the victim the callback URL (login CSRF): the
    // victim's browser has no cookie for that state, only for its own flow.
    let (_provider, d) = pair("").await;
    let mut attacker = Browser::new();
    let back = to_callback(&mut attacker, &d, "bob").await;
    let mut victim = Browser::new();
    let own = victim.get(&d.url("/_doorman/oidc/start")).await;
    assert_eq!(own.status, 302);
    let page = victim.get(&back.location().unwrap()).await;
    assert_refused(&d, &victim, &page, "unknown_state").await;
}
