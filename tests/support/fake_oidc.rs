//! A scripted OpenID provider for the failures a real one will not produce: ID tokens with a
//! bad signature, the wrong audience or nonce, already expired — forged here with ES256 keys
//! the test holds (ring signs; the token is assembled by hand, as a forger would).
//!
//! It serves what doorman fetches: discovery (`/.well-known/openid-configuration`, with RFC
//! 9207's `iss` parameter advertised), the key set (`/jwks`), and the token endpoint
//! (`POST /token`), which answers with whatever token the test set last ([`FakeProvider::
//! set_token`]). There is no authorize endpoint: a test reads `state` and `nonce` from
//! doorman's redirect and calls the callback itself. It can be started on a port chosen
//! beforehand ([`FakeProvider::start_on`]), so doorman can be configured with a provider that
//! is not there yet.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// A token request as received: its `Authorization` header and its form body.
pub type TokenRequest = (Option<String>, String);

/// The fake provider; stops when dropped.
pub struct FakeProvider {
    pub addr: SocketAddr,
    key: Arc<EcdsaKeyPair>,
    other: EcdsaKeyPair,
    token: Arc<Mutex<String>>,
    /// Token requests received: their `Authorization` header and form body.
    pub token_requests: Arc<Mutex<Vec<TokenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key_pair() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
}

impl FakeProvider {
    /// Start on a free loopback port.
    pub async fn start() -> FakeProvider {
        FakeProvider::start_on(super::free_port()).await
    }

    /// Start on `port` (chosen beforehand with [`super::free_port`]).
    pub async fn start_on(port: u16) -> FakeProvider {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let key = Arc::new(key_pair());
        let point = key.public_key().as_ref().to_vec(); // 0x04 || x || y
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]})
        .to_string();
        let discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "end_session_endpoint": format!("{issuer}/logout"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
        })
        .to_string();
        let token = Arc::new(Mutex::new(String::new()));
        let token_requests = Arc::new(Mutex::new(Vec::new()));
        let (served_token, requests) = (Arc::clone(&token), Arc::clone(&token_requests));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (jwks, discovery) = (jwks.clone(), discovery.clone());
                let (token, requests) = (Arc::clone(&served_token), Arc::clone(&requests));
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (jwks, discovery) = (jwks.clone(), discovery.clone());
                        let (token, requests) = (Arc::clone(&token), Arc::clone(&requests));
                        async move {
                            let path = req.uri().path().to_string();
                            let auth = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let body =
                                String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
                            let json = |text: String| {
                                Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(text)))
                                    .unwrap()
                            };
                            Ok::<_, Infallible>(match path.as_str() {
                                "/.well-known/openid-configuration" => json(discovery),
                                "/jwks" => json(jwks),
                                "/token" => {
                                    requests.lock().unwrap().push((auth, body));
                                    let id_token = token.lock().unwrap().clone();
                                    json(
                                        json!({"access_token": "at", "token_type": "Bearer",
                                               "expires_in": 60, "id_token": id_token})
                                        .to_string(),
                                    )
                                }
                                _ => Response::builder()
                                    .status(StatusCode::NOT_FOUND)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            })
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeProvider {
            addr,
            key,
            other: key_pair(),
            token,
            token_requests,
            task,
        }
    }

    /// The issuer (`http://127.0.0.1:<port>`).
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the token endpoint answers with next.
    pub fn set_token(&self, token: &str) {
        *self.token.lock().unwrap() = token.to_string();
    }

    /// `claims` signed with the published key (ES256, kid `k1`).
    pub fn sign(&self, claims: &Value) -> String {
        jws(&self.key, "k1", claims)
    }

    /// `claims` signed with a key nobody published, under the published key's id.
    pub fn forge(&self, claims: &Value) -> String {
        jws(&self.other, "k1", claims)
    }

    /// Claims a valid ID token for `client_id` and `nonce` would hold, issued `now` (Unix
    /// seconds), for alice@example.com with a verified email and the group `staff`.
    pub fn claims(&self, client_id: &str, nonce: &str, now: u64) -> Value {
        json!({
            "iss": self.issuer(), "aud": client_id, "sub": "alice-sub",
            "iat": now, "exp": now + 300, "nonce": nonce,
            "email": "alice@example.com", "email_verified": true, "groups": ["staff"],
        })
    }
}

fn jws(key: &EcdsaKeyPair, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}
