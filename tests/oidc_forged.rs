//! OpenID Connect sign-in (DESIGN.md §10) against a scripted provider, for what a real one
//! will not do: ID tokens forged by the test (a bad signature, another audience, expired, from
//! the future, another nonce or issuer), a missing or wrong RFC 9207 `iss`, and a provider
//! that is not there when doorman starts. Every refusal is a 401 page, an audit reason and a
//! metric, never a session. tests/oidc.rs runs the whole flow against a real provider.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::fake_oidc::FakeProvider;
use support::login::{get_as, request, Answer, Conf, DASHBOARD};
use support::{eventually, Doorman};

const CLIENT: &str = "doorman";

fn conf(issuer: &str, extra: &str) -> Conf {
    Conf {
        rest: format!(
            "{DASHBOARD}\n[oidc]\nissuer = {issuer:?}\nclient_id = \"{CLIENT}\"\n\
             client_secret = \"s3cret\"\ngroups_claim = \"groups\"\n{extra}\n"
        ),
        ..Conf::default()
    }
}

async fn doorman(fake: &FakeProvider, extra: &str) -> Doorman {
    let d = Doorman::conf(&conf(&fake.issuer(), extra))
        .admin()
        .start()
        .await;
    discovered(&d).await;
    d
}

/// Wait until the button stops answering 503 (discovery runs in the background).
async fn discovered(d: &Doorman) {
    let answer = eventually(
        Duration::from_secs(20),
        async || d.get("/_doorman/oidc/start", None).await,
        |a| a.status != 503,
    )
    .await;
    assert_eq!(answer.status, 302, "{}", answer.text());
}

/// One started flow: what doorman sent the browser to the provider with.
struct Begun {
    state: String,
    nonce: String,
    /// `name=value` of the flow cookie.
    cookie: String,
    location: String,
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn begin(d: &Doorman) -> Begun {
    let a = d.get("/_doorman/oidc/start?next=/dashboard", None).await;
    assert_eq!(a.status, 302, "{}", a.text());
    let location = a.header("location").expect("location").to_string();
    let set = a
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("doorman_oidc_"))
        .expect("a flow cookie");
    Begun {
        state: query_param(&location, "state").expect("state"),
        nonce: query_param(&location, "nonce").expect("nonce"),
        cookie: set.split(';').next().unwrap().to_string(),
        location,
    }
}

fn encode(s: &str) -> String {
    support::login::form_encode(s)
}

/// The provider's redirect back, as the browser follows it.
async fn callback(d: &Doorman, cookie: Option<&str>, query: &str) -> Answer {
    let url = d.url(&format!("/_doorman/oidc/callback?{query}"));
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
    request(&d.client, "GET", &url, &headers, "").await
}

fn code_query(fake: &FakeProvider, state: &str) -> String {
    format!(
        "code=c0de&state={}&iss={}",
        encode(state),
        encode(&fake.issuer())
    )
}

fn now() -> u64 {
    doorman::session::now_millis() / 1000
}

/// A callback that must be refused for `reason`: a 401 page, no session, the metric.
async fn assert_refused(d: &Doorman, answer: &Answer, reason: &str) {
    assert_eq!(answer.status, 401, "{reason}: {}", answer.text());
    assert!(answer.text().contains("<form"), "a page: {}", answer.text());
    assert!(
        answer.set_cookie("doorman_session").is_none(),
        "{reason}: no session cookie"
    );
    let m = d.metrics(&d.client).await;
    assert_eq!(
        m.get("doorman_oidc_logins_total", &[("result", reason)]),
        1.0,
        "{reason}"
    );
    assert_eq!(
        m.get("doorman_oidc_logins_total", &[("result", "success")]),
        0.0
    );
}

#[tokio::test]
async fn a_signed_token_makes_a_session_and_the_app_sees_the_user() {
    let fake = FakeProvider::start().await;
    let d = doorman(&fake, "").await;
    let begun = begin(&d).await;
    assert!(begun
        .location
        .starts_with(&format!("{}/authorize?", fake.issuer())));
    for (param, want) in [
        ("response_type", Some("code")),
        ("client_id", Some(CLIENT)),
        ("code_challenge_method", Some("S256")),
    ] {
        assert_eq!(
            query_param(&begun.location, param).as_deref(),
            want,
            "{param}"
        );
    }
    assert_eq!(
        query_param(&begun.location, "redirect_uri"),
        Some(d.url("/_doorman/oidc/callback"))
    );
    let scope = query_param(&begun.location, "scope").unwrap();
    assert!(scope.split(' ').any(|s| s == "openid"), "{scope}");
    fake.set_token(&fake.sign(&fake.claims(CLIENT, &begun.nonce, now())));
    let a = callback(&d, Some(&begun.cookie), &code_query(&fake, &begun.state)).await;
    assert_eq!(a.status, 303, "{}", a.text());
    assert_eq!(a.header("location"), Some("/dashboard"));
    let session = a.new_cookie("doorman_session");
    let flow_name = begun.cookie.split('=').next().unwrap();
    assert!(a.expires_cookie(flow_name), "the flow cookie is used up");
    // The token endpoint got the code, the verifier and the client's credentials (Basic).
    let requests = fake.token_requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let (auth, form) = &requests[0];
    assert!(
        auth.as_deref().is_some_and(|a| a.starts_with("Basic ")),
        "{auth:?}"
    );
    assert!(
        form.contains("code=c0de") && form.contains("code_verifier="),
        "{form}"
    );

    // The app sees the user and groups from the ID token, and none of doorman's cookies.
    let cookies = format!("doorman_session={session}; {}", begun.cookie);
    let a = request(
        &d.client,
        "GET",
        &d.url("/dashboard"),
        &[("cookie", &cookies)],
        "",
    )
    .await;
    assert_eq!(a.status, 200);
    let echo: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(
        support::echoed_header(&echo, "x-auth-user"),
        ["alice@example.com"]
    );
    assert_eq!(support::echoed_header(&echo, "x-auth-groups"), ["staff"]);
    assert!(support::echoed_header(&echo, "cookie").is_empty(), "{echo}");
    let m = d.metrics(&d.client).await;
    assert_eq!(
        m.get("doorman_oidc_logins_total", &[("result", "success")]),
        1.0
    );
}

/// Start a flow, have the token endpoint answer `token(nonce)`, and expect `reason`.
async fn refused_token(claims: impl Fn(&FakeProvider, &str) -> Value, forge: bool, reason: &str) {
    let fake = FakeProvider::start().await;
    let d = doorman(&fake, "").await;
    let begun = begin(&d).await;
    let claims = claims(&fake, &begun.nonce);
    let token = if forge {
        fake.forge(&claims)
    } else {
        fake.sign(&claims)
    };
    fake.set_token(&token);
    let a = callback(&d, Some(&begun.cookie), &code_query(&fake, &begun.state)).await;
    assert_refused(&d, &a, reason).await;
    // Nothing that looks like a session works afterwards either.
    assert_eq!(d.get("/dashboard", None).await.status, 401);
}

#[tokio::test]
async fn a_token_signed_by_another_key_is_refused() {
    refused_token(|f, n| f.claims(CLIENT, n, now()), true, "bad_signature").await;
}

#[tokio::test]
async fn a_token_for_another_client_is_refused() {
    refused_token(
        |f, n| f.claims("someone-else", n, now()),
        false,
        "wrong_audience",
    )
    .await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let old = now() - 3600;
    refused_token(move |f, n| f.claims(CLIENT, n, old), false, "expired").await;
}

#[tokio::test]
async fn a_token_from_the_future_is_refused() {
    refused_token(
        |f, n| f.claims(CLIENT, n, now() + 600),
        false,
        "issued_in_future",
    )
    .await;
}

#[tokio::test]
async fn a_token_with_another_nonce_is_refused() {
    refused_token(
        |f, _| f.claims(CLIENT, "another-flows-nonce", now()),
        false,
        "wrong_nonce",
    )
    .await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    refused_token(
        |f, n| {
            let mut c = f.claims(CLIENT, n, now());
            c["iss"] = Value::from("https://evil.test");
            c
        },
        false,
        "wrong_issuer",
    )
    .await;
}

#[tokio::test]
async fn the_iss_parameter_must_name_the_issuer_when_advertised() {
    let fake = FakeProvider::start().await;
    let d = doorman(&fake, "").await;
    for query in ["", "&iss=https%3A%2F%2Fevil.test"] {
        let begun = begin(&d).await;
        fake.set_token(&fake.sign(&fake.claims(CLIENT, &begun.nonce, now())));
        let q = format!("code=c0de&state={}{query}", encode(&begun.state));
        let a = callback(&d, Some(&begun.cookie), &q).await;
        assert_eq!(a.status, 401, "{query}: {}", a.text());
        assert!(a.set_cookie("doorman_session").is_none());
    }
    let m = d.metrics(&d.client).await;
    assert_eq!(
        m.get("doorman_oidc_logins_total", &[("result", "wrong_issuer")]),
        2.0
    );
    // Before the code was ever exchanged.
    assert!(fake.token_requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_expired_flow_is_refused() {
    let fake = FakeProvider::start().await;
    let d = doorman(&fake, "").await;
    let begun = begin(&d).await;
    fake.set_token(&fake.sign(&fake.claims(CLIENT, &begun.nonce, now())));
    d.clock.advance(Duration::from_secs(11 * 60));
    let a = callback(&d, Some(&begun.cookie), &code_query(&fake, &begun.state)).await;
    assert_refused(&d, &a, "expired_state").await;
}

#[tokio::test]
async fn a_provider_down_at_start_does_not_stop_doorman() {
    let port = support::free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let d = Doorman::conf(&conf(&issuer, "")).admin().start().await;
    let ready = get_as(&d.client, &d.admin_url("/readyz"), None, &[]).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert!(
        ready.text().contains("oidc provider: not discovered"),
        "{}",
        ready.text()
    );
    let start = d.get("/_doorman/oidc/start", None).await;
    assert_eq!(start.status, 503);
    assert!(start.header("retry-after").is_some());
    // The login page still works (and still offers the button).
    let page = d.get("/_doorman/login", None).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Sign in with"), "{}", page.text());

    let _fake = FakeProvider::start_on(port).await;
    discovered(&d).await;
    let ready = get_as(&d.client, &d.admin_url("/readyz"), None, &[]).await;
    assert!(
        ready.text().contains("oidc provider: discovered"),
        "{}",
        ready.text()
    );
}

#[tokio::test]
async fn two_tabs_sign_in_at_once_and_flows_stay_bounded() {
    let fake = FakeProvider::start().await;
    let d = doorman(&fake, "").await;
    // Two tabs: two flows, two cookies; each callback finds its own.
    let (one, two) = (begin(&d).await, begin(&d).await);
    assert_ne!(one.cookie, two.cookie);
    let both = format!("{}; {}", one.cookie, two.cookie);
    for begun in [&two, &one] {
        fake.set_token(&fake.sign(&fake.claims(CLIENT, &begun.nonce, now())));
        let a = callback(&d, Some(&both), &code_query(&fake, &begun.state)).await;
        assert_eq!(a.status, 303, "{}", a.text());
    }
    // A page that makes a browser start flows over and over does not grow its cookies: the
    // fifth start expires the four under way.
    let mut cookies = Vec::new();
    for _ in 0..4 {
        cookies.push(begin(&d).await.cookie);
    }
    let header = cookies.join("; ");
    let url = d.url("/_doorman/oidc/start");
    let a = request(&d.client, "GET", &url, &[("cookie", &header)], "").await;
    assert_eq!(a.status, 302);
    for c in &cookies {
        assert!(a.expires_cookie(c.split('=').next().unwrap()), "{c}");
    }
}
