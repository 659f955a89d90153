//! Requests and responses pass through intact, minus exactly what must not cross a proxy.

mod support;

use support::{echoed, echoed_header, get, h1_client, send, Doorman, Upstream};

#[tokio::test]
async fn method_path_query_and_body_reach_the_upstream_unchanged() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let (status, _, body) = send(&h1_client(), get(&doorman.url("/a/b?x=1&y=%20z"), &[])).await;
    assert_eq!(status, 200);
    let echo = echoed(&body);
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["uri"], "/a/b?x=1&y=%20z");
    assert_eq!(echoed_header(&echo, "host"), [upstream.addr.to_string()]);
}
