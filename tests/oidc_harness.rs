//! The OIDC test harness on its own, without doorman: the real provider (tests/oidc/provider.mjs,
//! oidc-provider from npm) started by tests/support/oidc.rs, driven as a relying party would by
//! hand — discovery, an authorization request with PKCE, the sign-in form, the code exchanged
//! with client_secret_basic, the ID token's claims, RP-initiated logout — so that a doorman OIDC
//! test that fails is failing on doorman, not on the harness.
//!
//! Nothing listens at the client's redirect URIs: the tests read the redirects' `Location`
//! without following them. The test browser's cookie jar is checked on its own too, against a
//! tiny server, since doorman's OIDC tests will lean on it for doorman's cookies as well.

mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use support::login::{form_encode, request};
use support::oidc::{
    confirm_logout, jwt_header, jwt_payload, random_token, sign_in, with_query, Browser,
    OidcProvider, Page, Pkce, ProviderSpec, CLIENT_ID, CLIENT_SECRET, PASSWORD, SIGN_IN_BUTTON,
};

/// A relying party's view of one sign-in: what it sent and must find again.
struct Request {
    url: String,
    state: String,
    nonce: String,
    pkce: Pkce,
}

/// `http://127.0.0.1:PORT/callback` and `.../signed-out` on a port nobody listens on.
fn client_uris() -> (String, String) {
    let port = support::free_port();
    (
        format!("http://127.0.0.1:{port}/callback"),
        format!("http://127.0.0.1:{port}/signed-out"),
    )
}

/// An authorization request for `scope` at the discovered authorization endpoint.
fn authorize(discovery: &Value, redirect_uri: &str, scope: &str) -> Request {
    let (state, nonce, pkce) = (random_token(16), random_token(16), Pkce::new());
    let endpoint = discovery["authorization_endpoint"]
        .as_str()
        .expect("authorization_endpoint");
    let url = with_query(
        endpoint,
        &[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", redirect_uri),
            ("scope", scope),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    Request {
        url,
        state,
        nonce,
        pkce,
    }
}

/// Assert `page` is the redirect back to `redirect_uri` for `req`, from `issuer`; its code.
fn code_from(page: &Page, redirect_uri: &str, req: &Request, issuer: &str) -> String {
    let location = page
        .location()
        .unwrap_or_else(|| panic!("no redirect ({}): {}", page.status, page.text()));
    assert_eq!(page.status, 303, "{location}");
    assert!(
        location.starts_with(&format!("{redirect_uri}?")),
        "not back to the client: {location}"
    );
    assert_eq!(page.location_param("state").as_deref(), Some(&*req.state));
    // RFC 9207: the issuer says who sent the code.
    assert_eq!(page.location_param("iss").as_deref(), Some(issuer));
    assert_eq!(page.location_param("error"), None, "{location}");
    page.location_param("code").expect("code")
}

/// Exchange `code` at the token endpoint with client_secret_basic; the token response.
async fn exchange(discovery: &Value, code: &str, redirect_uri: &str, verifier: &str) -> Value {
    let endpoint = discovery["token_endpoint"]
        .as_str()
        .expect("token_endpoint");
    // RFC 6749 §2.3.1: id and secret form-encoded, then joined and base64-encoded.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        form_encode(CLIENT_ID),
        form_encode(CLIENT_SECRET)
    ));
    let body = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
        form_encode(code),
        form_encode(redirect_uri),
        form_encode(verifier)
    );
    let answer = request(
        &support::h1_client(),
        "POST",
        endpoint,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", &format!("Basic {basic}")),
        ],
        &body,
    )
    .await;
    assert_eq!(answer.status, 200, "token endpoint: {}", answer.text());
    serde_json::from_slice(&answer.body).expect("token response is JSON")
}

fn shows_login_form(page: &Page) -> bool {
    page.status == 200 && page.form_with_button(SIGN_IN_BUTTON).is_some()
}

#[tokio::test]
async fn sign_in_code_exchange_and_rp_initiated_logout() {
    let (redirect_uri, signed_out) = client_uris();
    let provider = OidcProvider::start(ProviderSpec::new(&[&redirect_uri], &[&signed_out]));
    let issuer = provider.issuer();

    let discovery = provider.discovery().await;
    assert_eq!(discovery["issuer"], issuer);
    assert_eq!(
        discovery["authorization_endpoint"],
        provider.authorize_url(&[]).trim_end_matches('?')
    );
    assert_eq!(discovery["token_endpoint"], provider.token_url());
    assert_eq!(
        discovery["end_session_endpoint"],
        provider.end_session_url(&[]).trim_end_matches('?')
    );
    assert_eq!(
        discovery["authorization_response_iss_parameter_supported"],
        true
    );
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );
    for scope in ["openid", "email", "profile", "groups"] {
        assert!(
            discovery["scopes_supported"]
                .as_array()
                .expect("scopes_supported")
                .contains(&json!(scope)),
            "{scope} not in {}",
            discovery["scopes_supported"]
        );
    }

    // Sign in: authorize → the provider's form → back to the client with a code.
    let mut browser = Browser::new();
    let req = authorize(&discovery, &redirect_uri, "openid email groups");
    let back = sign_in(&mut browser, &req.url, "alice", PASSWORD).await;
    let code = code_from(&back, &redirect_uri, &req, &issuer);
    assert_eq!(provider.sessions().await, 1, "{}", provider.log());
    assert!(
        browser.cookie(&issuer, "_session").is_some(),
        "{:?}",
        browser.cookies(&issuer)
    );

    let tokens = exchange(&discovery, &code, &redirect_uri, &req.pkce.verifier).await;
    let id_token = tokens["id_token"].as_str().expect("id_token");
    assert_eq!(jwt_header(id_token)["alg"], "RS256");
    let claims = jwt_payload(id_token);
    assert_eq!(claims["iss"], issuer);
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["nonce"], req.nonce.as_str());
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["groups"], json!(["staff"]));
    // Not asked for (no `profile` scope): not released.
    assert_eq!(claims.get("preferred_username"), None, "{claims}");

    // The code is single-use.
    let again = request(
        &support::h1_client(),
        "POST",
        &provider.token_url(),
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={}\
             &client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}",
            form_encode(&redirect_uri),
            req.pkce.verifier
        ),
    )
    .await;
    assert_eq!(again.status, 400, "{}", again.text());

    // A second authorize in the same browser: the provider session and the grant are there,
    // so it comes straight back with a new code, no form.
    let req2 = authorize(&discovery, &redirect_uri, "openid email groups");
    let first = browser.get(&req2.url).await;
    let back2 = browser.follow_within(first, &issuer, 10).await;
    assert!(back2.is_redirect(), "a form was shown: {}", back2.text());
    code_from(&back2, &redirect_uri, &req2, &issuer);
    assert_eq!(provider.sessions().await, 1);

    // RP-initiated logout: the confirmation page, "Yes, sign me out", back to the client.
    let logout_state = random_token(8);
    let end_session = with_query(
        discovery["end_session_endpoint"]
            .as_str()
            .expect("end_session_endpoint"),
        &[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", &signed_out),
            ("state", &logout_state),
        ],
    );
    let bye = confirm_logout(&mut browser, &end_session).await;
    assert_eq!(bye.status, 303, "{}", bye.text());
    let location = bye.location().expect("location");
    assert!(
        location.starts_with(&format!("{signed_out}?")),
        "{location}"
    );
    assert_eq!(bye.location_param("state"), Some(logout_state));
    assert_eq!(provider.sessions().await, 0, "{}", provider.log());
    assert_eq!(browser.cookie(&issuer, "_session"), None);

    // Signed out at the provider: the next authorize asks for the password again.
    let req3 = authorize(&discovery, &redirect_uri, "openid email groups");
    let first = browser.get(&req3.url).await;
    let page = browser.follow_within(first, &issuer, 10).await;
    assert!(shows_login_form(&page), "{}: {}", page.status, page.text());
}

#[tokio::test]
async fn a_wrong_password_shows_the_form_again() {
    let (redirect_uri, signed_out) = client_uris();
    let provider = OidcProvider::start(ProviderSpec::new(&[&redirect_uri], &[&signed_out]));
    let issuer = provider.issuer();
    let discovery = provider.discovery().await;
    let mut browser = Browser::new();
    let req = authorize(&discovery, &redirect_uri, "openid email");

    let page = sign_in(&mut browser, &req.url, "alice", "not-her-password").await;
    assert!(shows_login_form(&page), "{}: {}", page.status, page.text());
    assert!(
        page.text().contains("Wrong login or password"),
        "{}",
        page.text()
    );
    let page = sign_in(&mut browser, &req.url, "nobody", PASSWORD).await;
    assert!(shows_login_form(&page), "{}: {}", page.status, page.text());
    assert_eq!(provider.sessions().await, 0);

    // The form shown again still works.
    let form = page.form_with_button(SIGN_IN_BUTTON).expect("form");
    let posted = browser
        .submit(
            &form,
            &[("login", "alice"), ("password", PASSWORD)],
            Some(SIGN_IN_BUTTON),
        )
        .await;
    let back = browser.follow_within(posted, &issuer, 10).await;
    code_from(&back, &redirect_uri, &req, &issuer);
    assert_eq!(provider.sessions().await, 1);
}

#[tokio::test]
async fn es256_and_the_profile_scope_in_the_id_token() {
    let (redirect_uri, signed_out) = client_uris();
    let provider = OidcProvider::start(
        ProviderSpec::new(&[&redirect_uri], &[&signed_out]).signing_alg("ES256"),
    );
    let issuer = provider.issuer();
    let discovery = provider.discovery().await;

    for (login, email, verified, groups) in [
        (
            "carol",
            "carol@example.com",
            true,
            json!(["admin", "staff"]),
        ),
        ("mallory", "mallory@example.com", false, json!(["staff"])),
        ("bob", "bob@other.test", true, json!(["staff"])),
    ] {
        let mut browser = Browser::new();
        let req = authorize(&discovery, &redirect_uri, "openid email profile groups");
        let back = sign_in(&mut browser, &req.url, login, PASSWORD).await;
        let code = code_from(&back, &redirect_uri, &req, &issuer);
        let tokens = exchange(&discovery, &code, &redirect_uri, &req.pkce.verifier).await;
        let id_token = tokens["id_token"].as_str().expect("id_token");
        assert_eq!(jwt_header(id_token)["alg"], "ES256");
        let claims = jwt_payload(id_token);
        assert_eq!(claims["sub"], login);
        assert_eq!(claims["email"], email);
        assert_eq!(claims["email_verified"], verified);
        assert_eq!(claims["groups"], groups);
        assert_eq!(claims["preferred_username"], login);
        assert!(claims["name"].is_string(), "{claims}");
    }
    assert_eq!(provider.sessions().await, 3);
}

#[tokio::test]
async fn logout_without_a_provider_session_goes_straight_through() {
    let (redirect_uri, signed_out) = client_uris();
    let provider = OidcProvider::start(ProviderSpec::new(&[&redirect_uri], &[&signed_out]));
    let mut browser = Browser::new();
    let url = provider.end_session_url(&[
        ("client_id", CLIENT_ID),
        ("post_logout_redirect_uri", &signed_out),
    ]);
    let bye = confirm_logout(&mut browser, &url).await;
    assert_eq!(bye.status, 303, "{}", bye.text());
    assert!(
        bye.location().expect("location").starts_with(&signed_out),
        "{:?}",
        bye.location()
    );
    assert_eq!(provider.sessions().await, 0);
}

/// A server that answers `GET PATH` with the `Set-Cookie`s listed for PATH and a body holding
/// the `Cookie` header it was sent: for checking the browser's jar on its own.
async fn cookie_server(routes: &'static [(&'static str, &'static [&'static str])]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or_default().to_string();
                let cookie = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
                    .map(|(_, v)| v.trim())
                    .collect::<Vec<_>>()
                    .join(" | ");
                let set: String = routes
                    .iter()
                    .filter(|(p, _)| *p == path)
                    .flat_map(|(_, lines)| lines.iter())
                    .map(|l| format!("set-cookie: {l}\r\n"))
                    .collect();
                let response = format!(
                    "HTTP/1.1 200 OK\r\n{set}content-length: {}\r\nconnection: close\r\n\r\n{cookie}",
                    cookie.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn the_browser_keeps_cookies_per_port_and_path_and_deletes_expired_ones() {
    static ROUTES: &[(&str, &[&str])] = &[
        (
            "/a/set",
            &[
                "root=1; Path=/; HttpOnly",
                "under-a=2; Path=/a",
                "default-path=3",
                "secure=4; Path=/; Secure",
                "__Host-prefixed=5; Path=/; Secure",
                "already-gone=6; Path=/; Max-Age=0",
                "past=7; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            ],
        ),
        ("/del", &["root=; Path=/; Max-Age=0"]),
    ];
    let one = cookie_server(ROUTES).await;
    let other = cookie_server(ROUTES).await;
    let mut browser = Browser::new();

    browser.get(&format!("{one}/a/set")).await;
    let mut kept = browser.cookies(&one);
    kept.sort();
    let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
    // Secure cookies are refused over plain HTTP, expired ones never kept.
    assert_eq!(names, ["default-path", "root", "under-a"], "{kept:?}");

    // Path: `/a` and the default path of `/a/set` (`/a`) only below `/a`; longest path first.
    let page = browser.get(&format!("{one}/a/x")).await;
    let sent = page.text();
    assert!(sent.ends_with("root=1"), "{sent}");
    assert!(
        sent.contains("under-a=2") && sent.contains("default-path=3"),
        "{sent}"
    );
    assert_eq!(browser.get(&format!("{one}/b")).await.text(), "root=1");
    assert_eq!(browser.get(&format!("{one}/ab")).await.text(), "root=1");

    // Another port on the same host: a jar of its own.
    assert_eq!(browser.get(&format!("{other}/a/x")).await.text(), "");
    assert!(browser.cookies(&other).is_empty());

    // Max-Age=0 deletes.
    browser.get(&format!("{one}/del")).await;
    assert_eq!(browser.cookie(&one, "root"), None);
    assert_eq!(browser.get(&format!("{one}/b")).await.text(), "");

    // A caller's own Cookie header is joined with the jar's into one header.
    browser.set_cookie(&one, "planted", "x");
    let page = browser
        .request("GET", &format!("{one}/b"), &[("cookie", "given=y")], "")
        .await;
    assert_eq!(page.text(), "given=y; planted=x");
}
