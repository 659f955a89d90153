//! The whole provider client against a small provider over a real socket: discovery, the
//! token endpoint and the key set served by hyper on 127.0.0.1, ID tokens signed by the test
//! (ES256) so that each check can be made to fail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::provider::{Metadata, OidcError, Provider, ProviderSettings, ProviderStatus};
use crate::jws::testing::TestKey;

const NOW: u64 = 1_700_000_000;
const CLIENT_ID: &str = "doorman";
/// `:` and `&` must reach the provider URL-encoded inside the Basic credentials (RFC 6749
/// §2.3.1), and as themselves in a form.
const SECRET: &str = "s3cret:&x";

/// The test provider: a canned answer per path, and what it was sent.
#[derive(Default)]
struct Idp {
    answers: HashMap<&'static str, (u16, String)>,
    hits: HashMap<String, usize>,
    token_requests: Vec<http::request::Parts>,
    token_forms: Vec<HashMap<String, String>>,
}

type Shared = Arc<Mutex<Idp>>;

impl Idp {
    fn answer(idp: &Shared, path: &'static str, status: u16, body: impl ToString) {
        idp.lock()
            .unwrap()
            .answers
            .insert(path, (status, body.to_string()));
    }

    fn hits(idp: &Shared, path: &str) -> usize {
        idp.lock().unwrap().hits.get(path).copied().unwrap_or(0)
    }
}

async fn handle(
    idp: Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut idp = idp.lock().unwrap();
    let path = parts.uri.path().to_owned();
    *idp.hits.entry(path.clone()).or_default() += 1;
    if path == "/token" {
        idp.token_forms
            .push(form_urlencoded::parse(&body).into_owned().collect());
        idp.token_requests.push(parts);
    }
    let (status, body) = idp
        .answers
        .get(path.as_str())
        .cloned()
        .unwrap_or((404, "{}".into()));
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("location", "http://127.0.0.1:1/elsewhere")
        .body(Full::new(Bytes::from(body)))
        .unwrap())
}

/// Serve `idp` on a free loopback port; the issuer URL.
async fn serve(idp: Shared) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let idp = Arc::clone(&idp);
            let service = service_fn(move |req| handle(Arc::clone(&idp), req));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    issuer
}

fn document(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
    })
}

fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// A provider serving `key`'s set, and the client of it (not yet discovered).
async fn setup(key: &TestKey) -> (Shared, String, Arc<Provider>) {
    let idp = Shared::default();
    let issuer = serve(Arc::clone(&idp)).await;
    Idp::answer(
        &idp,
        "/.well-known/openid-configuration",
        200,
        document(&issuer),
    );
    Idp::answer(&idp, "/jwks", 200, jwks(&[key]));
    let provider = Provider::new(ProviderSettings {
        issuer: issuer.clone(),
        client_id: CLIENT_ID.into(),
        client_secret: SECRET.into(),
        ca: None,
    })
    .unwrap();
    (idp, issuer, Arc::new(provider))
}

/// An ID token the provider would issue for this flow, with `changes` (null removes a claim).
fn id_token(key: &TestKey, issuer: &str, changes: Value) -> String {
    let mut claims = json!({
        "iss": issuer,
        "aud": CLIENT_ID,
        "sub": "u-1",
        "email": "alice@example.com",
        "email_verified": true,
        "exp": NOW + 300,
        "iat": NOW,
        "nonce": "n-1",
    });
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    key.token(&claims)
}

fn token_answer(id_token: &str) -> Value {
    json!({ "access_token": "at-1", "token_type": "Bearer", "expires_in": 300, "id_token": id_token })
}

async fn discovered(provider: &Provider) -> Arc<Metadata> {
    provider.discover().await.unwrap()
}

#[tokio::test]
async fn discovery_exchange_and_verification_over_a_real_socket() {
    let key = TestKey::es256("k1");
    let (idp, issuer, provider) = setup(&key).await;
    assert_eq!(provider.status(), ProviderStatus::Pending { error: None });
    let meta = discovered(&provider).await;
    assert_eq!(
        provider.status(),
        ProviderStatus::Discovered {
            issuer: issuer.clone()
        }
    );
    assert_eq!(meta.token_endpoint, format!("{issuer}/token"));

    let token = id_token(&key, &issuer, json!({}));
    Idp::answer(&idp, "/token", 200, token_answer(&token));
    let got = provider
        .exchange(&meta, "code-1", "verifier-1", "https://app.example/cb")
        .await
        .unwrap();
    assert_eq!(got, token);
    {
        let seen = idp.lock().unwrap();
        let req = &seen.token_requests[0];
        assert_eq!(req.method, http::Method::POST);
        let basic = req.headers["authorization"].to_str().unwrap();
        let decoded = STANDARD
            .decode(basic.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "doorman:s3cret%3A%26x");
        assert!(req.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("doorman/"));
        assert_eq!(req.headers["accept"], "application/json");
        let form = &seen.token_forms[0];
        assert_eq!(form["grant_type"], "authorization_code");
        assert_eq!(form["code"], "code-1");
        assert_eq!(form["code_verifier"], "verifier-1");
        assert_eq!(form["redirect_uri"], "https://app.example/cb");
        assert!(!form.contains_key("client_secret"), "{form:?}");
    }

    let claims = provider.verify(&meta, &got, "n-1", NOW).await.unwrap();
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["sub"], "u-1");
    // The keys are cached: a second login fetches nothing.
    provider.verify(&meta, &got, "n-1", NOW + 10).await.unwrap();
    assert_eq!(Idp::hits(&idp, "/jwks"), 1);
}

#[tokio::test]
async fn discovery_refuses_another_issuer_and_retries_in_the_background_until_it_matches() {
    let key = TestKey::es256("k1");
    let (idp, issuer, provider) = setup(&key).await;
    Idp::answer(
        &idp,
        "/.well-known/openid-configuration",
        200,
        document("https://evil.example"),
    );
    let err = provider.discover().await.unwrap_err();
    assert_eq!(err.reason(), "discovery");
    let text = err.to_string();
    assert!(
        text.contains("https://evil.example") && text.contains(&issuer),
        "{text}"
    );
    assert!(provider.metadata().is_none());
    assert_eq!(
        provider.status().to_string(),
        format!("not discovered yet: {text}")
    );

    provider.spawn_discovery();
    provider.spawn_discovery(); // one task only
    let discovery_hits = || Idp::hits(&idp, "/.well-known/openid-configuration");
    // The task's first attempt fails too; the document is then corrected, and the retry a
    // second later succeeds.
    until(|| discovery_hits() == 2).await;
    Idp::answer(
        &idp,
        "/.well-known/openid-configuration",
        200,
        document(&issuer),
    );
    until(|| provider.metadata().is_some()).await;
    assert_eq!(provider.status(), ProviderStatus::Discovered { issuer });
    assert_eq!(discovery_hits(), 3, "one task, one retry");
}

#[tokio::test]
async fn the_discovery_task_does_not_keep_a_dropped_provider_alive() {
    let key = TestKey::es256("k1");
    let (idp, _issuer, provider) = setup(&key).await;
    Idp::answer(&idp, "/.well-known/openid-configuration", 503, "{}");
    provider.spawn_discovery();
    until(|| {
        matches!(
            provider.status(),
            ProviderStatus::Pending { error: Some(_) }
        )
    })
    .await;
    // Between attempts the task holds a weak reference only: dropping the provider frees it,
    // and the task's next wake-up finds it gone and ends.
    let weak = Arc::downgrade(&provider);
    drop(provider);
    assert!(weak.upgrade().is_none());
}

/// Wait (at most 10 s) until `done`, polling: the test provider has no event to wait on.
async fn until(done: impl Fn() -> bool) {
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !done() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("condition reached within 10 s");
}

#[tokio::test]
async fn tokens_that_fail_a_check_are_refused_with_their_reason() {
    let key = TestKey::es256("k1");
    let (_idp, issuer, provider) = setup(&key).await;
    let meta = discovered(&provider).await;
    let impostor = TestKey::es256("k1"); // same kid, other key
    let cases = [
        (
            id_token(&key, "https://other.example", json!({})),
            "wrong_issuer",
        ),
        (
            id_token(&key, &issuer, json!({ "aud": "another-client" })),
            "wrong_audience",
        ),
        (
            id_token(&key, &issuer, json!({ "azp": "another-client" })),
            "wrong_audience",
        ),
        (
            id_token(&key, &issuer, json!({ "aud": [CLIENT_ID, "api"] })),
            "wrong_audience",
        ),
        (
            id_token(&key, &issuer, json!({ "nonce": "n-2" })),
            "wrong_nonce",
        ),
        (
            id_token(&key, &issuer, json!({ "exp": NOW - 61 })),
            "expired",
        ),
        (
            id_token(&key, &issuer, json!({ "iat": NOW + 61 })),
            "issued_in_future",
        ),
        (id_token(&impostor, &issuer, json!({})), "bad_signature"),
        (
            key.sign(&json!({ "alg": "none" }), &json!({ "iss": issuer })),
            "unsupported_algorithm",
        ),
        (
            key.sign(
                &json!({ "alg": "HS256", "kid": "k1" }),
                &json!({ "iss": issuer }),
            ),
            "unsupported_algorithm",
        ),
        // EdDSA is verified by doorman, but this provider announced ES256 and RS256 only.
        (
            TestKey::ed25519("k1").token(&json!({ "iss": issuer })),
            "unsupported_algorithm",
        ),
        // An RS256 header naming the EC key.
        (
            key.sign(
                &json!({ "alg": "RS256", "kid": "k1" }),
                &json!({ "iss": issuer }),
            ),
            "key_mismatch",
        ),
        ("not-a-token".to_string(), "malformed_token"),
    ];
    for (token, reason) in cases {
        let err = provider
            .verify(&meta, &token, "n-1", NOW)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), reason, "{err}");
        assert!(
            !err.to_string().contains(&token),
            "the token is never in the message"
        );
    }
    // And the clock is the one passed in: the same token is fine a minute earlier.
    let late = id_token(&key, &issuer, json!({ "exp": NOW - 61 }));
    provider
        .verify(&meta, &late, "n-1", NOW - 60)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_at_most_once_a_minute() {
    let k1 = TestKey::es256("k1");
    let (idp, issuer, provider) = setup(&k1).await;
    let meta = discovered(&provider).await;
    provider
        .verify(&meta, &id_token(&k1, &issuer, json!({})), "n-1", NOW)
        .await
        .unwrap();
    assert_eq!(Idp::hits(&idp, "/jwks"), 1);

    // The provider rotates to k2: the first token naming it makes doorman refetch.
    let k2 = TestKey::es256("k2");
    Idp::answer(&idp, "/jwks", 200, jwks(&[&k2]));
    provider
        .verify(&meta, &id_token(&k2, &issuer, json!({})), "n-1", NOW)
        .await
        .unwrap();
    assert_eq!(Idp::hits(&idp, "/jwks"), 2);

    // Within the minute, tokens naming unknown keys, even many at once, fetch nothing more.
    let k3 = TestKey::es256("k3");
    Idp::answer(&idp, "/jwks", 200, jwks(&[&k2, &k3]));
    let verify_all = |token: String| {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (provider, meta, token) =
                    (Arc::clone(&provider), Arc::clone(&meta), token.clone());
                tokio::spawn(async move { provider.verify(&meta, &token, "n-1", NOW).await })
            })
            .collect();
        async move {
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.unwrap().map(|_| ()).map_err(|e| e.reason()));
            }
            results
        }
    };
    let k3_token = id_token(&k3, &issuer, json!({}));
    assert_eq!(
        verify_all(k3_token.clone()).await,
        vec![Err("unknown_key"); 4]
    );
    assert_eq!(Idp::hits(&idp, "/jwks"), 2);

    // A minute later: the next unknown kid refetches, once for all the concurrent callers.
    provider.jwks().forget_last_refetch().await;
    assert_eq!(verify_all(k3_token).await, vec![Ok(()); 4]);
    assert_eq!(Idp::hits(&idp, "/jwks"), 3);
    // k1 was withdrawn: no longer accepted, and no fetch for it within the minute.
    let err = provider
        .verify(&meta, &id_token(&k1, &issuer, json!({})), "n-1", NOW)
        .await;
    assert_eq!(err.unwrap_err().reason(), "unknown_key");
    assert_eq!(Idp::hits(&idp, "/jwks"), 3);
}

#[tokio::test]
async fn client_secret_post_when_discovery_offers_only_that() {
    let key = TestKey::es256("k1");
    let (idp, issuer, provider) = setup(&key).await;
    let mut doc = document(&issuer);
    doc["token_endpoint_auth_methods_supported"] = json!(["client_secret_post"]);
    Idp::answer(&idp, "/.well-known/openid-configuration", 200, doc);
    let meta = discovered(&provider).await;
    Idp::answer(
        &idp,
        "/token",
        200,
        token_answer(&id_token(&key, &issuer, json!({}))),
    );
    provider
        .exchange(&meta, "code-1", "verifier-1", "https://app.example/cb")
        .await
        .unwrap();
    let seen = idp.lock().unwrap();
    assert!(!seen.token_requests[0].headers.contains_key("authorization"));
    let form = &seen.token_forms[0];
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["client_secret"], SECRET);
    assert_eq!(form["code_verifier"], "verifier-1");
}

#[tokio::test]
async fn token_endpoint_failures_name_the_oauth_error_never_the_body() {
    let key = TestKey::es256("k1");
    let (idp, _issuer, provider) = setup(&key).await;
    let meta = discovered(&provider).await;
    let exchange = || provider.exchange(&meta, "code-1", "verifier-1", "https://app.example/cb");

    let refusal =
        json!({ "error": "invalid_grant", "error_description": "code code-1 already used" });
    Idp::answer(&idp, "/token", 400, refusal);
    let err = exchange().await.unwrap_err();
    assert_eq!(
        err,
        OidcError::TokenEndpoint("answered 400: invalid_grant".into())
    );
    assert_eq!(err.reason(), "token_endpoint");

    Idp::answer(
        &idp,
        "/token",
        502,
        "<html>proxy error for code-1 and s3cret</html>",
    );
    let text = exchange().await.unwrap_err().to_string();
    assert!(
        text.contains("502") && !text.contains("code-1") && !text.contains("s3cret"),
        "{text}"
    );

    let no_id_token = json!({ "access_token": "at-1", "token_type": "Bearer" });
    Idp::answer(&idp, "/token", 200, no_id_token);
    assert_eq!(exchange().await, Err(OidcError::NoIdToken));

    Idp::answer(&idp, "/token", 302, "{}");
    let err = exchange().await.unwrap_err();
    assert!(
        err.to_string().contains("redirects are not followed"),
        "{err}"
    );
}

#[tokio::test]
async fn redirects_oversized_answers_and_silence_are_errors() {
    let key = TestKey::es256("k1");
    let (idp, issuer, provider) = setup(&key).await;

    Idp::answer(&idp, "/.well-known/openid-configuration", 301, "{}");
    let err = provider.discover().await.unwrap_err();
    assert_eq!(err.reason(), "discovery");
    assert!(err.to_string().contains("301"), "{err}");

    Idp::answer(
        &idp,
        "/.well-known/openid-configuration",
        200,
        document(&issuer),
    );
    let meta = discovered(&provider).await;
    let big = json!({ "keys": [], "padding": "x".repeat(super::http::MAX_BODY) });
    Idp::answer(&idp, "/jwks", 200, big);
    let err = provider
        .verify(&meta, &id_token(&key, &issuer, json!({})), "n-1", NOW)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "jwks");
    assert!(err.to_string().contains("larger than 256 KiB"), "{err}");

    // Nobody listening.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let provider = Provider::new(ProviderSettings {
        issuer: gone,
        client_id: CLIENT_ID.into(),
        client_secret: SECRET.into(),
        ca: None,
    })
    .unwrap();
    let err = provider.discover().await.unwrap_err();
    assert_eq!(err.reason(), "provider_unreachable");
    assert!(matches!(
        provider.status(),
        ProviderStatus::Pending { error: Some(_) }
    ));
}
