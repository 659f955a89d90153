//! The signed identity assertion (DESIGN.md §9) end to end: what the upstream receives, when a
//! token is signed again, the JWKS, `doorman keys generate`, `check`'s errors, and — with
//! someone else's code, PyJWT — that the tokens verify, that forgeries do not, and that a key
//! rotation never strands a token.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use support::login::{get_as, request, upstream_saw, Answer, Conf, ALICE_PW, BOB_PW};
use support::process::{run_cli, run_cli_in};
use support::Doorman;

const ISSUER: &str = "https://login.example.test";
const HEADER: &str = "x-auth-assertion";

/// `[identity]` with an assertion signed by `key` (a file beside the config), and `extra` keys
/// of the inline table.
fn identity(key: &str, extra: &str) -> String {
    format!(
        "[identity]\nassertion = {{ key = {key:?}, issuer = {ISSUER:?}{extra} }}\n\
         [[routes]]\npath = \"/dashboard\"\naccess = \"authenticated\"\n"
    )
}

fn conf(rest: String) -> Conf {
    Conf {
        login: "public_origin = \"https://app.example.test:8443\"".into(),
        rest,
        ..Conf::default()
    }
}

fn new_key() -> Vec<u8> {
    doorman::jws::keys::generate_pem()
        .expect("key")
        .into_bytes()
}

async fn start(rest: String, keys: &[(&str, &[u8])]) -> Doorman {
    Doorman::conf(&conf(rest)).files(keys).start().await
}

/// The assertion the upstream received (asserting there was exactly one), or none.
fn token(answer: &Answer) -> Option<String> {
    let seen = upstream_saw(answer, HEADER);
    assert!(
        seen.len() <= 1,
        "several assertions reached the upstream: {seen:?}"
    );
    seen.into_iter().next()
}

/// The one assertion the upstream received (asserting there was one).
fn sent_token(answer: &Answer) -> String {
    token(answer).expect("an assertion with a session")
}

async fn jwks(d: &Doorman) -> Value {
    let answer = d.get("/_doorman/jwks.json", None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    serde_json::from_slice(&answer.body).expect("jwks json")
}

/// Verify `token` with jsonwebtoken against `jwks`, pinning EdDSA, issuer and audience.
fn verify(token: &str, jwks: &Value, audience: &str) -> Value {
    let set: JwkSet = serde_json::from_value(jwks.clone()).expect("jwk set");
    let kid = jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid");
    let jwk = set.find(&kid).expect("the token's kid is in the JWKS");
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[audience]);
    v.validate_exp = false; // some tests move doorman's clock ahead
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).expect("key"), &v)
        .expect("token verifies")
        .claims
}

#[tokio::test]
async fn a_request_with_a_session_carries_a_valid_token_and_one_without_none() {
    let key = new_key();
    let d = start(identity("signing.pem", ""), &[("signing.pem", &key)]).await;
    let forged = [(HEADER, "forged"), ("X_Auth_Assertion", "forged")];

    let anonymous = get_as(&d.client, &d.url("/public"), None, &forged).await;
    assert_eq!(token(&anonymous), None);
    assert!(upstream_saw(&anonymous, "x_auth_assertion").is_empty());

    let cookie = d.log_in("alice", ALICE_PW).await;
    let before = d.clock.now_millis() / 1000;
    let answer = get_as(&d.client, &d.url("/dashboard"), Some(&cookie), &forged).await;
    let token = token(&answer).expect("an assertion with a session");
    assert_ne!(token, "forged");
    assert!(upstream_saw(&answer, "x_auth_assertion").is_empty());
    let header = jsonwebtoken::decode_header(&token).expect("header");
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    // The audience is public_origin's host: neither the Host the client sent nor the port.
    let claims = verify(&token, &jwks(&d).await, "app.example.test");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["groups"], json!(["admin", "staff"]));
    let iat = claims["iat"].as_u64().expect("iat");
    assert!(
        iat >= before && iat <= before + 5,
        "iat {iat}, now {before}"
    );
    assert_eq!(claims["exp"].as_u64(), Some(iat + 60));
    let auth_time = claims["auth_time"].as_u64().expect("auth_time");
    assert!(
        auth_time <= iat && auth_time + 5 >= before,
        "auth_time {auth_time}"
    );
    let sid = claims["sid"].as_str().expect("sid");
    assert_eq!(sid.len(), 16);
    assert!(!cookie.contains(sid));

    // Another session of another user: its own sid and subject.
    let bob = d.log_in("bob", BOB_PW).await;
    let bobs = get_as(&d.client, &d.url("/public"), Some(&bob), &[]).await;
    let bobs = verify(&sent_token(&bobs), &jwks(&d).await, "app.example.test");
    assert_eq!(bobs["sub"], "bob");
    assert_eq!(bobs["groups"], json!([]));
    assert_ne!(bobs["sid"], sid);
}

#[tokio::test]
async fn a_configured_audience_and_header_are_used() {
    let key = new_key();
    let rest = identity(
        "signing.pem",
        ", audience = \"billing\", header = \"X-App-Token\", ttl = \"2m\"",
    );
    let d = start(rest, &[("signing.pem", &key)]).await;
    let cookie = d.log_in("alice", ALICE_PW).await;
    let answer = get_as(
        &d.client,
        &d.url("/dashboard"),
        Some(&cookie),
        &[("x-app-token", "forged"), (HEADER, "forged")],
    )
    .await;
    assert!(upstream_saw(&answer, HEADER).is_empty());
    let seen = upstream_saw(&answer, "x-app-token");
    assert_eq!(seen.len(), 1, "{seen:?}");
    let claims = verify(&seen[0], &jwks(&d).await, "billing");
    assert_eq!(
        claims["exp"].as_u64(),
        claims["iat"].as_u64().map(|i| i + 120)
    );
}

#[tokio::test]
async fn a_token_is_signed_again_only_when_less_than_half_its_ttl_is_left() {
    let key = new_key();
    let d = start(identity("signing.pem", ""), &[("signing.pem", &key)]).await;
    let cookie = d.log_in("alice", ALICE_PW).await;
    let fetch = || async {
        let answer = get_as(&d.client, &d.url("/dashboard"), Some(&cookie), &[]).await;
        sent_token(&answer)
    };
    let first = fetch().await;
    assert_eq!(fetch().await, first, "signed again at once");
    // 29 s on (plus under a second of real time): at least half of the 60 s ttl is left.
    d.clock.advance(Duration::from_secs(29));
    assert_eq!(fetch().await, first, "signed again with half its ttl left");
    // 32 s on: less than half is left.
    d.clock.advance(Duration::from_secs(3));
    let second = fetch().await;
    assert_ne!(second, first);
    let keys = jwks(&d).await;
    let (a, b) = (
        verify(&first, &keys, "app.example.test"),
        verify(&second, &keys, "app.example.test"),
    );
    assert!(b["iat"].as_u64() >= a["iat"].as_u64().map(|i| i + 32));
    assert_eq!(a["sid"], b["sid"]);
    assert_eq!(fetch().await, second);
}

#[tokio::test]
async fn jwks_json_publishes_the_public_keys_for_five_minutes() {
    let (current, next, previous) = (new_key(), new_key(), new_key());
    let rest = identity(
        "current.pem",
        ", next_keys = [\"next.pem\"], previous_keys = [\"previous.pem\"]",
    );
    let files: [(&str, &[u8]); 3] = [
        ("current.pem", &current),
        ("next.pem", &next),
        ("previous.pem", &previous),
    ];
    let d = start(rest, &files).await;
    let answer = d.get("/_doorman/jwks.json", None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("cache-control"), Some("max-age=300"));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let set: Value = serde_json::from_slice(&answer.body).expect("json");
    let keys = set["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 3);
    let kid_of = |pem: &[u8]| {
        let path = d.dir.join("kid.pem");
        std::fs::write(&path, pem).expect("write");
        doorman::jws::Key::load(&path)
            .expect("key")
            .kid()
            .to_string()
    };
    let kids: Vec<&str> = keys
        .iter()
        .map(|k| k["kid"].as_str().expect("kid"))
        .collect();
    assert_eq!(kids, [kid_of(&current), kid_of(&next), kid_of(&previous)]);
    for k in keys {
        let mut names: Vec<&str> = k
            .as_object()
            .expect("jwk")
            .keys()
            .map(|s| s.as_str())
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x"], "{k}");
        assert_eq!(
            (&k["kty"], &k["crv"], &k["alg"], &k["use"]),
            (
                &json!("OKP"),
                &json!("Ed25519"),
                &json!("EdDSA"),
                &json!("sig")
            )
        );
    }
    let head = request(&d.client, "HEAD", &d.url("/_doorman/jwks.json"), &[], "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let post = request(&d.client, "POST", &d.url("/_doorman/jwks.json"), &[], "").await;
    assert_eq!(post.status, 405);

    // Without an assertion there is nothing to publish.
    let plain = Doorman::conf(&Conf::dashboard()).start().await;
    assert_eq!(plain.get("/_doorman/jwks.json", None).await.status, 404);
}

#[test]
fn keys_generate_writes_a_private_pkcs8_key_doorman_loads_and_never_overwrites() {
    // No proxy.toml where it runs: making a key needs no config.
    let dir = support::temp_dir("keys-generate");
    let (code, _, stderr) = run_cli_in(Some(&dir), &["keys", "generate", "--out", "signing.pem"]);
    assert_eq!(code, 0, "{stderr}");
    let path = dir.join("signing.pem");
    let pem = std::fs::read_to_string(&path).expect("key file");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert!(pem.ends_with("-----END PRIVATE KEY-----\n"), "{pem}");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let kid = doorman::jws::Key::load(&path)
        .expect("doorman loads it")
        .kid()
        .to_string();

    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "{}[login]\npublic_origin = \"https://a.test\"\n",
            identity("signing.pem", "")
        ),
    )
    .expect("config");
    let (code, stdout, stderr) = run_cli(&["check", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{stdout}{stderr}");

    let (code, _, stderr) = run_cli_in(Some(&dir), &["keys", "generate", "--out", "signing.pem"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).expect("key file"), pem);
    let again = doorman::jws::Key::load(&path).expect("still loads");
    assert_eq!(again.kid(), kid);
}

/// `doorman check` on `identity` (an `[identity]` table) with `login` keys: its stderr lines,
/// without the `FILE:` or `FILE:LINE:COL:` in front (these tests are about what each message
/// says; tests/config.rs checks where they point).
fn check_errors(identity: &str, login: &str, files: &[(&str, &[u8])]) -> (i32, Vec<String>) {
    let dir = support::temp_dir("assertion-check");
    for (name, contents) in files {
        std::fs::write(dir.join(name), contents).expect("write");
    }
    let config = dir.join("proxy.toml");
    std::fs::write(&config, format!("{identity}\n[login]\n{login}\n")).expect("config");
    let (code, _, stderr) = run_cli(&["check", "--config", config.to_str().expect("utf-8")]);
    let file = config.display().to_string();
    let lines = stderr
        .lines()
        .map(|l| {
            let Some(rest) = l.strip_prefix(&file) else {
                return l.to_string();
            };
            // The position, if any, is digits and colons; the key path starts with a letter.
            rest.trim_start_matches(|c: char| c == ':' || c.is_ascii_digit())
                .trim_start()
                .to_string()
        })
        .collect();
    (code, lines)
}

#[test]
fn check_names_a_missing_issuer_a_bad_key_and_a_missing_audience() {
    let key = new_key();
    let origin = "public_origin = \"https://app.example.test\"";
    let no_issuer = "[identity]\nassertion = { key = \"k.pem\" }";
    assert_eq!(
        check_errors(no_issuer, origin, &[("k.pem", &key)]),
        (2, vec!["identity.assertion.issuer: required: the `iss` of every token (an app checks it; never taken from a request)".to_string()])
    );
    let (code, lines) = check_errors(
        &identity("k.pem", ""),
        origin,
        &[(
            "k.pem",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )],
    );
    assert_eq!(code, 2);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("identity.assertion.key: "),
        "{lines:?}"
    );
    assert!(lines[0].contains("not an Ed25519 private key"), "{lines:?}");
    // A TLS certificate's key is no signing key either (P-256).
    let p256 = rcgen::KeyPair::generate().expect("p256").serialize_pem();
    let (code, lines) = check_errors(
        &identity("k.pem", ""),
        origin,
        &[("k.pem", p256.as_bytes())],
    );
    assert_eq!((code, lines.len()), (2, 1), "{lines:?}");
    assert!(
        lines[0].starts_with("identity.assertion.key: "),
        "{lines:?}"
    );

    // No audience and no public_origin: refused, not taken from the Host header.
    let (code, lines) = check_errors(&identity("k.pem", ""), "", &[("k.pem", &key)]);
    assert_eq!(code, 2);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "identity.assertion.audience: required unless [login] public_origin or \
             [forward_auth] allowed_hosts say which hosts are valid"
        ),
        "{lines:?}"
    );
    // Either one is enough.
    assert_eq!(
        check_errors(&identity("k.pem", ""), origin, &[("k.pem", &key)]).0,
        0
    );
    assert_eq!(
        check_errors(
            &identity("k.pem", ", audience = \"app\""),
            "",
            &[("k.pem", &key)]
        )
        .0,
        0
    );
    // A ttl out of bounds, a header that cannot carry it, a previous key that is not there.
    let (code, lines) = check_errors(
        &identity(
            "k.pem",
            ", ttl = \"2h\", header = \"X-Auth-User\", previous_keys = [\"old.pem\"]",
        ),
        origin,
        &[("k.pem", &key)],
    );
    assert_eq!(code, 2);
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        [
            "identity.assertion.header",
            "identity.assertion.ttl",
            "identity.assertion.previous_keys[0]"
        ],
        "{lines:?}"
    );
}

// ------------------------------------------------------------------ PyJWT, someone else's code

/// Run tests/assertion/verify.py `mode` with `input` on Debian's Python (which has PyJWT).
fn python(mode: &str, input: &Value) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/assertion/verify.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (scripts/test installs python3-jwt and python3-cryptography)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "verify.py {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// PyJWT's verdict on each token against `jwks` for `audience`: claims, or the error's class.
fn pyjwt(jwks: &Value, audience: &str, tokens: &[&str]) -> Vec<Result<Value, String>> {
    let input = json!({"jwks": jwks, "issuer": ISSUER, "audience": audience, "tokens": tokens});
    python("verify", &input)
        .into_iter()
        .map(|r| match r["valid"].as_bool() {
            Some(true) => Ok(r["claims"].clone()),
            _ => Err(r["error"].as_str().unwrap_or_default().to_string()),
        })
        .collect()
}

#[tokio::test]
async fn pyjwt_verifies_the_tokens_and_rejects_forgeries() {
    let key = new_key();
    let d = start(identity("signing.pem", ""), &[("signing.pem", &key)]).await;
    let cookie = d.log_in("alice", ALICE_PW).await;
    let answer = get_as(&d.client, &d.url("/dashboard"), Some(&cookie), &[]).await;
    let token = sent_token(&answer);
    let keys = jwks(&d).await;

    let verdicts = pyjwt(&keys, "app.example.test", &[&token]);
    let claims = verdicts[0].clone().expect("PyJWT accepts doorman's token");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "app.example.test");
    assert_eq!(claims["groups"], json!(["admin", "staff"]));

    // The same library refuses the token for another app, and every forgery.
    assert_eq!(
        pyjwt(&keys, "other.example.test", &[&token]),
        [Err("InvalidAudienceError".to_string())]
    );
    let forged = &python("forge", &json!({"token": token, "jwks": keys}))[0];
    let forgeries: Vec<&str> = ["tampered", "alg_none", "hs256"]
        .iter()
        .map(|k| forged[k].as_str().expect("forgery"))
        .collect();
    let verdicts = pyjwt(&keys, "app.example.test", &forgeries);
    assert_eq!(
        verdicts,
        [
            Err("InvalidSignatureError".to_string()),
            Err("InvalidAlgorithmError".to_string()),
            Err("InvalidAlgorithmError".to_string()),
        ],
        "forgeries: {forgeries:?}"
    );
}

#[tokio::test]
async fn a_key_rotation_never_strands_a_token() {
    let (old, new) = (new_key(), new_key());
    let files: [(&str, &[u8]); 2] = [("old.pem", &old), ("new.pem", &new)];
    let d = start(identity("old.pem", ""), &files).await;
    let cookie = d.log_in("alice", ALICE_PW).await;
    let aud = "app.example.test";
    let fetch = || async {
        let answer = get_as(&d.client, &d.url("/dashboard"), Some(&cookie), &[]).await;
        sent_token(&answer)
    };
    let kid = |t: &str| {
        jsonwebtoken::decode_header(t)
            .expect("header")
            .kid
            .expect("kid")
    };
    let rewrite = |rest: String| {
        let conf = conf(rest);
        let backend = d.backend();
        let toml = conf.toml(&d.upstream().url(), backend, d.users());
        std::fs::write(&d.file, toml).expect("rewrite config");
    };
    let t0 = fetch().await;
    let jwks0 = jwks(&d).await;

    // 1. The new key is published, not signing.
    rewrite(identity("old.pem", ", next_keys = [\"new.pem\"]"));
    assert!(d.reload().await, "step 1 reload refused");
    let t1 = fetch().await;
    assert_eq!(kid(&t1), kid(&t0), "a next key must not sign");
    let jwks1 = jwks(&d).await;
    assert_eq!(jwks1["keys"].as_array().map(Vec::len), Some(2));
    assert!(pyjwt(&jwks1, aud, &[&t0, &t1]).iter().all(Result::is_ok));

    // 2. The new key signs; the old one is kept as a previous key. The reload emptied the
    // cache: the token is new at once, though the old one had most of its ttl left.
    rewrite(identity("new.pem", ", previous_keys = [\"old.pem\"]"));
    assert!(d.reload().await, "step 2 reload refused");
    let t2 = fetch().await;
    assert_ne!(kid(&t2), kid(&t0));
    let jwks2 = jwks(&d).await;
    assert!(pyjwt(&jwks2, aud, &[&t0, &t1, &t2])
        .iter()
        .all(Result::is_ok));
    // An app that still has step 1's JWKS (cached up to 300 s) verifies the new token too:
    // that is what publishing it first was for. With only step 0's, it could not.
    assert!(pyjwt(&jwks1, aud, &[&t2])[0].is_ok());
    assert_eq!(
        pyjwt(&jwks0, aud, &[&t2]),
        [Err("InvalidKeyError".to_string())]
    );

    // 3. Once old tokens have expired, the old key goes; its tokens no longer verify.
    rewrite(identity("new.pem", ""));
    assert!(d.reload().await, "step 3 reload refused");
    let jwks3 = jwks(&d).await;
    assert_eq!(
        pyjwt(&jwks3, aud, &[&t0]),
        [Err("InvalidKeyError".to_string())]
    );
    assert!(pyjwt(&jwks3, aud, &[&t2])[0].is_ok());
}

/// Forward-auth 200s carry the assertion too (DESIGN §8, §9): for the original's host as
/// `allowed_hosts` validated it, so a token for one app is refused by another, and present but
/// empty for an anonymous request, so a gateway copying it never passes a client's own.
#[tokio::test]
async fn forward_auth_answers_carry_a_token_for_the_validated_host() {
    let key = new_key();
    let rest = format!(
        "{}\n[forward_auth]\ntrusted_gateways = [\"127.0.0.1/32\"]\n\
         allowed_hosts = [\"app.example.test\", \"wiki.example.test\"]\n",
        identity("signing.pem", "")
    );
    let d = Doorman::conf(&Conf {
        rest,
        ..Conf::default()
    })
    .files(&[("signing.pem", &key)])
    .start()
    .await;
    let cookie = format!("doorman_session={}", d.log_in("alice", ALICE_PW).await);
    let ask = |url: &'static str, cookie: Option<String>| {
        let d = &d;
        async move {
            let mut headers = vec![("x-original-method", "GET"), ("x-original-url", url)];
            if let Some(cookie) = &cookie {
                headers.push(("cookie", cookie.as_str()));
            }
            let headers: Vec<(&str, &str)> = headers;
            support::login::request(&d.client, "GET", &d.url("/_doorman/auth"), &headers, "").await
        }
    };
    // (http originals: over https the browser's cookie would be the __Host- one.)
    let anonymous = ask("http://app.example.test/public", None).await;
    assert_eq!(anonymous.status, 200);
    assert_eq!(anonymous.header(HEADER), Some(""));

    let app = ask("http://app.example.test/dashboard", Some(cookie.clone())).await;
    let wiki = ask(
        "http://WIKI.example.test:8080/dashboard",
        Some(cookie.clone()),
    )
    .await;
    assert_eq!(app.status, 200, "{:?}", app.headers);
    let (app, wiki) = (
        app.header(HEADER).expect("token").to_string(),
        wiki.header(HEADER).expect("token").to_string(),
    );
    let keys = jwks(&d).await;
    let verdicts = pyjwt(&keys, "app.example.test", &[&app, &wiki]);
    assert_eq!(verdicts[0].clone().expect("app's token")["sub"], "alice");
    assert_eq!(verdicts[1], Err("InvalidAudienceError".to_string()));
    assert_eq!(
        verify(&wiki, &keys, "wiki.example.test")["aud"],
        "wiki.example.test"
    );

    // A request doorman proxies itself, on an allowed host: that host is the audience.
    let proxied = get_as(
        &d.client,
        &d.url("/dashboard"),
        Some(cookie.trim_start_matches("doorman_session=")),
        &[("host", "wiki.example.test")],
    )
    .await;
    assert_eq!(
        verify(&sent_token(&proxied), &keys, "wiki.example.test")["sub"],
        "alice"
    );
    // On a host no list validates, no token at all (never an audience from the Host header).
    let other = get_as(
        &d.client,
        &d.url("/dashboard"),
        Some(cookie.trim_start_matches("doorman_session=")),
        &[("host", "evil.example.test")],
    )
    .await;
    assert_eq!(token(&other), None);
}
