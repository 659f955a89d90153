//! The demo app (examples/demo/app.rs) behaves as the tutorial's app, and doorman keeps a
//! client from impersonating anyone to it.

#[path = "../examples/demo/app.rs"]
#[allow(dead_code)]
mod app;
mod support;

use support::{get, h1_client, send, Doorman};
use tokio::net::TcpListener;

async fn demo_app() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind demo app");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(app::serve(listener));
    url
}

/// The unmodified app trusts `X-Auth-User`: public home page, a greeting for the named user,
/// and its own 401 without the header.
#[tokio::test]
async fn the_demo_app_greets_the_user_named_in_x_auth_user() {
    let app = demo_app().await;
    let client = h1_client();
    let (status, _, _) = send(&client, get(&format!("{app}/"), &[])).await;
    assert_eq!(status, 200);
    let (status, _, body) = send(
        &client,
        get(&format!("{app}/dashboard"), &[("x-auth-user", "alice")]),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&body).contains("Welcome, user alice"),
        "{body:?}"
    );
    let (status, _, _) = send(&client, get(&format!("{app}/dashboard"), &[])).await;
    assert_eq!(status, 401);
}

/// Through doorman a client cannot claim to be alice: whatever spelling of the identity header
/// it sends is stripped before the app sees the request.
#[tokio::test]
async fn through_doorman_a_spoofed_identity_never_reaches_the_app() {
    let app = demo_app().await;
    let doorman = Doorman::start(&support::doorman::config(&app, "", "")).await;
    let client = h1_client();
    let (status, _, _) = send(&client, get(&doorman.url("/"), &[])).await;
    assert_eq!(status, 200);
    for spoof in ["X-Auth-User", "x_auth_user", "X.Auth.User"] {
        let (status, _, body) = send(
            &client,
            get(&doorman.url("/dashboard"), &[(spoof, "alice")]),
        )
        .await;
        assert_eq!(status, 401, "{spoof} reached the app: {body:?}");
    }
}
