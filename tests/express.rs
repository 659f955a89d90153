//! Moving the tutorial's Express app behind doorman without logging anyone out (DESIGN.md §12).
//!
//! The real thing on both sides: the tutorial's app (Express 5, express-session, connect-redis;
//! `tests/express/app.mjs`, installed from the committed lock file) on a real redis-server, and
//! doorman in front of it on the same Redis with `[session.express]`. A user logs in at the app
//! directly; the same cookie then goes through doorman.

mod support;

use std::time::Duration;

use support::express::ExpressApp;
use support::login::{
    get_as, post_logout, request, users_toml, write_users, Answer, Backend, Conf, COOKIE,
};
use support::redis::RedisServer;
use support::Doorman;

const SECRET: &str = "keyboard cat";
const HOUR: Duration = Duration::from_secs(3600);

/// The `[session]` extra of these tests: `[session.express]` with `secrets` and `extra` keys.
fn express_table(secrets: &[&str], extra: &str) -> String {
    format!(
        "\n[session.express]\nsecrets = {secrets:?}\nuser_field = \"userId\"\n\
         groups_field = \"roles\"\n{extra}\n"
    )
}

/// Doorman in front of `app` on `redis` (its sessions and the app's in the same Redis), with
/// `/dashboard` and `/headers` needing a session.
async fn doorman(app: &ExpressApp, redis: &RedisServer, secrets: &[&str], extra: &str) -> Doorman {
    let conf = Conf {
        session: express_table(secrets, extra),
        rest: "[[routes]]\npath = \"/dashboard\"\naccess = \"authenticated\"\n\n\
               [[routes]]\npath = \"/headers\"\naccess = \"authenticated\"\n"
            .into(),
        ..Conf::default()
    };
    let users = write_users(&users_toml());
    let toml = conf.toml(&app.url(), &Backend::redis(redis), &users);
    Doorman::toml(&toml).start().await
}

/// Log in at the app itself as `user` (`roles` comma-separated, may be empty): the
/// `connect.sid` cookie's value as the browser would send it back.
async fn app_login(d: &Doorman, app: &ExpressApp, user: &str, roles: &str) -> String {
    let mut url = format!("{}/login?user={user}", app.url());
    if !roles.is_empty() {
        url.push_str(&format!("&roles={roles}"));
    }
    let answer = request(&d.client, "GET", &url, &[], "").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let line = answer
        .set_cookie("connect.sid")
        .expect("the app set connect.sid");
    support::login::cookie_value(&line)
}

/// `GET path` through doorman with these cookies (`name=value` pairs).
async fn get(d: &Doorman, path: &str, cookies: &[String]) -> Answer {
    let cookie = cookies.join("; ");
    let headers: Vec<(&str, &str)> = if cookie.is_empty() {
        vec![]
    } else {
        vec![("cookie", cookie.as_str())]
    };
    request(&d.client, "GET", &d.url(path), &headers, "").await
}

fn sid(value: &str) -> String {
    format!("connect.sid={value}")
}

fn json(answer: &Answer) -> serde_json::Value {
    serde_json::from_slice(&answer.body).unwrap_or_else(|_| panic!("JSON: {}", answer.text()))
}

/// The app's express session id inside a `connect.sid` value.
fn express_id(value: &str) -> String {
    let decoded = value.replace("%3A", ":");
    let signed = decoded.strip_prefix("s:").expect("signed cookie");
    signed.rsplit_once('.').expect("id.sig").0.to_string()
}

async fn redis_conn(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis")
}

#[tokio::test]
async fn a_user_logged_in_at_the_app_is_still_logged_in_through_doorman() {
    let redis = RedisServer::start();
    let app = ExpressApp::start(&redis.url(), &[SECRET], "sess:", HOUR);
    let d = doorman(&app, &redis, &[SECRET], "").await;
    let value = app_login(&d, &app, "42", "admin,staff").await;

    // The app's own view of the cookie, through doorman: still the user, and now vouched for.
    let first = get(&d, "/dashboard", &[sid(&value)]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let body = json(&first);
    assert_eq!(body["userId"], 42, "the app's session still works");
    assert_eq!(
        body["xAuthUser"], "42",
        "a numeric userId as its decimal string"
    );
    assert_eq!(body["xAuthGroups"], "admin,staff");
    let ours = first.new_cookie(COOKIE);

    // Later, doorman's cookie alone (the app no longer needs its own): the same user.
    let later = get_as(&d.client, &d.url("/headers"), Some(&ours), &[]).await;
    assert_eq!(later.status, 200, "{}", later.text());
    assert_eq!(json(&later)["xAuthUser"], "42");
    // Without either cookie: doorman's 401.
    assert_eq!(get(&d, "/headers", &[]).await.status, 401);

    // The session ends no later than the app's cookie would have (maxAge 1 h here, doorman's
    // absolute_timeout 12 h).
    let info = get_as(&d.client, &d.url("/_doorman/session"), Some(&ours), &[]).await;
    assert_eq!(info.status, 200, "{}", info.text());
    let expires = json(&info)["expires"].as_u64().expect("expires");
    let now = doorman::session::now_millis() / 1000;
    assert!(
        expires <= now + HOUR.as_secs() && expires + 60 >= now + HOUR.as_secs(),
        "expires {expires}, now {now}"
    );
}

/// A cookie whose signature does not verify is answered without asking Redis anything.
#[tokio::test]
async fn a_bad_signature_costs_no_redis_round_trip() {
    let redis = RedisServer::start();
    let app = ExpressApp::start(&redis.url(), &[SECRET], "sess:", HOUR);
    let d = doorman(&app, &redis, &[SECRET], "").await;
    let value = app_login(&d, &app, "42", "").await;
    let forged = format!("{}x", &value[..value.len() - 1]);
    let mut conn = redis_conn(&redis).await;
    let commands = |info: String| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("total_commands_processed")
    };
    let mut count = async || -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut conn)
            .await
            .expect("INFO");
        commands(info)
    };
    let before = count().await;
    let idle = count().await - before;
    let start = count().await;
    for _ in 0..20 {
        assert_eq!(get(&d, "/headers", &[sid(&forged)]).await.status, 401);
    }
    let spent = count().await - start;
    assert_eq!(
        spent,
        idle,
        "20 forged cookies made Redis do {} commands",
        spent - idle
    );
}

#[tokio::test]
async fn anything_else_about_the_old_cookie_is_ignored() {
    let redis = RedisServer::start();
    let app = ExpressApp::start(&redis.url(), &[SECRET], "sess:", HOUR);
    let d = doorman(&app, &redis, &[SECRET], "").await;
    let mut conn = redis_conn(&redis).await;

    // A tampered signature, the same id under another secret, and two cookies at once.
    let value = app_login(&d, &app, "alice", "").await;
    let (id, sig) = value.rsplit_once('.').expect("signed");
    let flipped = format!(
        "{id}.{}{}",
        if sig.starts_with('A') { 'B' } else { 'A' },
        &sig[1..]
    );
    let other = ExpressApp::start(&redis.url(), &["another secret"], "sess:", HOUR);
    let foreign = app_login(&d, &other, "alice", "").await;
    for cookies in [
        vec![sid(&flipped)],
        vec![sid(&foreign)],
        vec![sid(&value), sid(&value)],
        vec!["connect.sid=alice".to_string()],
    ] {
        let answer = get(&d, "/headers", &cookies).await;
        assert_eq!(answer.status, 401, "{cookies:?}: {}", answer.text());
        assert!(
            answer.set_cookie(COOKIE).is_none(),
            "no session for {cookies:?}"
        );
    }

    // A deleted record.
    let gone = app_login(&d, &app, "bob", "").await;
    let _: () = redis::cmd("DEL")
        .arg(format!("sess:{}", express_id(&gone)))
        .query_async(&mut conn)
        .await
        .expect("DEL");
    assert_eq!(get(&d, "/headers", &[sid(&gone)]).await.status, 401);

    // An expired one: still in Redis, but its cookie.expires has passed.
    let expired = app_login(&d, &app, "carol", "").await;
    let key = format!("sess:{}", express_id(&expired));
    let record: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    let mut record: serde_json::Value = serde_json::from_str(&record).expect("express JSON");
    record["cookie"]["expires"] = "2020-01-01T00:00:00.000Z".into();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(record.to_string())
        .query_async(&mut conn)
        .await
        .expect("SET");
    assert_eq!(get(&d, "/headers", &[sid(&expired)]).await.status, 401);

    // And the genuine cookie still works after all that.
    let ok = get(&d, "/headers", &[sid(&value)]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(json(&ok)["xAuthUser"], "alice");
}

#[tokio::test]
async fn a_cookie_signed_with_the_second_secret_is_accepted() {
    let redis = RedisServer::start();
    // The app before the rotation signed with "old"; doorman lists the new one first.
    let app = ExpressApp::start(&redis.url(), &["old secret"], "sess:", HOUR);
    let d = doorman(&app, &redis, &["new secret", "old secret"], "").await;
    let value = app_login(&d, &app, "7", "").await;
    let answer = get(&d, "/headers", &[sid(&value)]).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(json(&answer)["xAuthUser"], "7");
}

/// Concurrent first requests share one session; the take-over record shows no session id.
#[tokio::test]
async fn an_express_session_is_taken_over_once() {
    let redis = RedisServer::start();
    let app = ExpressApp::start(&redis.url(), &[SECRET], "sess:", HOUR);
    let d = doorman(&app, &redis, &[SECRET], "").await;
    let value = app_login(&d, &app, "42", "").await;
    let mut firsts = Vec::new();
    for _ in 0..8 {
        let (client, url, cookie) = (d.client.clone(), d.url("/headers"), sid(&value));
        firsts.push(tokio::spawn(async move {
            request(&client, "GET", &url, &[("cookie", &cookie)], "").await
        }));
    }
    let mut ours = Vec::new();
    for first in firsts {
        let answer = first.await.expect("request");
        assert_eq!(answer.status, 200, "{}", answer.text());
        ours.push(answer.new_cookie(COOKIE));
    }
    ours.dedup();
    assert_eq!(ours.len(), 1, "every first request got the same session");
    let mut conn = redis_conn(&redis).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("dm:x:*")
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    assert_eq!(keys.len(), 1, "one take-over record: {keys:?}");
    let sealed: String = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert!(
        !sealed.contains(&ours[0]),
        "the record does not hold the session id in the clear"
    );
    assert!(
        !keys[0].contains(&express_id(&value)),
        "nor is it named by the express id"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    assert!(
        ttl > 0 && ttl <= HOUR.as_millis() as i64,
        "the app record's TTL: {ttl}"
    );
}

#[tokio::test]
async fn after_a_logout_the_old_cookie_cannot_make_a_new_session() {
    let redis = RedisServer::start();
    let app = ExpressApp::start(&redis.url(), &[SECRET], "sess:", HOUR);
    let d = doorman(&app, &redis, &[SECRET], "").await;
    let mut conn = redis_conn(&redis).await;
    let value = app_login(&d, &app, "42", "").await;
    let key = format!("sess:{}", express_id(&value));
    let record: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    let ours = get(&d, "/headers", &[sid(&value)]).await.new_cookie(COOKIE);

    let cookie = sid(&value);
    let out = post_logout(&d.client, &d.base, &ours, &[("cookie", &cookie)]).await;
    assert_eq!(out.status, 303);
    assert!(out.expires_cookie(COOKIE));
    assert!(
        out.expires_cookie("connect.sid"),
        "the app's cookie is expired too"
    );
    let left: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(left, None, "the app's record is deleted");
    assert_eq!(get(&d, "/headers", &[sid(&value)]).await.status, 401);
    assert_eq!(
        get_as(&d.client, &d.url("/headers"), Some(&ours), &[])
            .await
            .status,
        401
    );

    // Even with the app's record back (a replica that had not heard of the delete), the old
    // cookie is not taken over again: its take-over record names an ended session.
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&record)
        .query_async(&mut conn)
        .await
        .expect("SET");
    let again = get(&d, "/headers", &[sid(&value)]).await;
    assert_eq!(again.status, 401, "never resurrected");
    assert!(again.set_cookie(COOKIE).is_none());
}

#[tokio::test]
async fn a_revoke_ends_the_taken_over_session_and_the_apps_record() {
    let redis = RedisServer::start();
    let app = ExpressApp::start(&redis.url(), &[SECRET], "sess:", HOUR);
    let d = doorman(&app, &redis, &[SECRET], "").await;
    let mut conn = redis_conn(&redis).await;
    let value = app_login(&d, &app, "42", "").await;
    let ours = get(&d, "/headers", &[sid(&value)]).await.new_cookie(COOKIE);
    let (code, out, err) = d.revoke("42").await;
    assert_eq!(code, 0, "{out}{err}");
    let left: Option<String> = redis::cmd("GET")
        .arg(format!("sess:{}", express_id(&value)))
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(left, None, "revoke deleted the app's record");
    let after = get(&d, "/headers", &[sid(&value)]).await;
    assert_eq!(after.status, 401);
    assert!(
        after.expires_cookie("connect.sid"),
        "the browser is told to forget the spent cookie when it comes back"
    );
    assert_eq!(
        get_as(&d.client, &d.url("/headers"), Some(&ours), &[])
            .await
            .status,
        401
    );
}

/// The app's cookie reaches the app beside a session of the same user only.
#[tokio::test]
async fn another_users_app_cookie_is_not_forwarded() {
    let redis = RedisServer::start();
    let app = ExpressApp::start(&redis.url(), &[SECRET], "sess:", HOUR);
    let d = doorman(&app, &redis, &[SECRET], "").await;
    let alice = app_login(&d, &app, "alice", "").await;
    let ours = get(&d, "/headers", &[sid(&alice)]).await.new_cookie(COOKIE);
    let bob = app_login(&d, &app, "bob", "").await;
    let with = |value: &str| vec![format!("{COOKIE}={ours}"), sid(value)];

    let same = json(&get(&d, "/headers", &with(&alice)).await);
    assert_eq!(same["xAuthUser"], "alice");
    assert!(
        same["cookie"]
            .as_str()
            .is_some_and(|c| c.contains("connect.sid=")),
        "{same}"
    );
    let other = json(&get(&d, "/headers", &with(&bob)).await);
    assert_eq!(other["xAuthUser"], "alice");
    assert!(
        !other["cookie"]
            .as_str()
            .unwrap_or_default()
            .contains("connect.sid"),
        "bob's cookie beside alice's session: {other}"
    );
    for cookie in [other["cookie"].as_str(), same["cookie"].as_str()] {
        assert!(
            !cookie.unwrap_or_default().contains(COOKIE),
            "doorman's cookie never reaches the app"
        );
    }
}

#[tokio::test]
async fn forward_cookie_false_keeps_the_apps_cookie_from_the_app() {
    let redis = RedisServer::start();
    let app = ExpressApp::start(&redis.url(), &[SECRET], "sess:", HOUR);
    let d = doorman(&app, &redis, &[SECRET], "forward_cookie = false").await;
    let value = app_login(&d, &app, "42", "").await;
    let answer = get(&d, "/headers", &[sid(&value), "theme=dark".into()]).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = json(&answer);
    assert_eq!(body["xAuthUser"], "42");
    assert_eq!(
        body["cookie"], "theme=dark",
        "only the app's other cookies: {body}"
    );
}

#[tokio::test]
async fn check_names_what_is_wrong_with_session_express() {
    let users = write_users(&users_toml());
    for (session, expect) in [
        (
            Backend::embedded()
                .section("\n[session.express]\nsecrets = [\"s\"]\nuser_field = \"userId\"\n"),
            "session.express.redis",
        ),
        (
            Backend::Redis {
                url: "redis://127.0.0.1:6379/0".into(),
                prefix: "dm:".into(),
            }
            .section("\n[session.express]\nuser_field = \"userId\"\n"),
            "session.express.secrets",
        ),
        (
            Backend::Redis {
                url: "redis://127.0.0.1:6379/0".into(),
                prefix: "dm:".into(),
            }
            .section("\n[session.express]\nsecrets = [\"s\"]\n"),
            "session.express.user_field",
        ),
    ] {
        let toml = support::doorman::config(
            "http://127.0.0.1:9",
            "",
            &format!("{session}\n[login]\nusers_file = {users:?}\n"),
        );
        let dir = support::temp_dir("express-check");
        let file = dir.join("proxy.toml");
        std::fs::write(&file, toml).expect("config");
        let (code, out, err) =
            support::process::run_cli(&["check", "--config", file.to_str().expect("path")]);
        assert_eq!(code, 2, "{out}{err}");
        assert!(err.contains(expect), "{expect} not named in:\n{err}");
    }
}

/// A logout that presents a stale doorman cookie beside the app's still-valid one ends the
/// express session too: nothing is left for the old cookie to come back with.
#[tokio::test]
async fn a_logout_with_a_stale_doorman_cookie_ends_the_express_session_too() {
    let redis = RedisServer::start();
    let app = ExpressApp::start(&redis.url(), &[SECRET], "sess:", HOUR);
    let d = doorman(&app, &redis, &[SECRET], "").await;
    let value = app_login(&d, &app, "42", "").await;
    let stale = support::login::unknown_id();
    let cookie = sid(&value);
    let out = post_logout(&d.client, &d.base, &stale, &[("cookie", &cookie)]).await;
    assert_eq!(out.status, 303);
    assert!(out.expires_cookie(COOKIE));
    assert!(out.expires_cookie("connect.sid"));
    let again = get(&d, "/headers", &[sid(&value)]).await;
    assert_eq!(again.status, 401, "{}", again.text());
    assert!(again.set_cookie(COOKIE).is_none());
}

/// README's third step: once `[session.express]` is dropped (a reload), the sessions taken
/// over stay, and the app's cookies are nobody's any more.
#[tokio::test]
async fn dropping_session_express_keeps_the_sessions_already_taken_over() {
    let redis = RedisServer::start();
    let app = ExpressApp::start(&redis.url(), &[SECRET], "sess:", HOUR);
    let users = write_users(&users_toml());
    let routes = "[[routes]]\npath = \"/headers\"\naccess = \"authenticated\"\n";
    let conf = |session: String| Conf {
        session,
        rest: routes.into(),
        ..Conf::default()
    };
    let with = conf(express_table(&[SECRET], "")).toml(&app.url(), &Backend::redis(&redis), &users);
    let d = Doorman::toml(&with).start().await;
    let moved = app_login(&d, &app, "42", "").await;
    let ours = get(&d, "/headers", &[sid(&moved)]).await.new_cookie(COOKIE);
    let late = app_login(&d, &app, "43", "").await;

    let without = conf(String::new()).toml(&app.url(), &Backend::redis(&redis), &users);
    std::fs::write(&d.file, without).expect("config");
    assert!(
        d.reload().await,
        "the reload takes a config without [session.express]"
    );
    let kept = get_as(&d.client, &d.url("/headers"), Some(&ours), &[]).await;
    assert_eq!(kept.status, 200, "{}", kept.text());
    assert_eq!(json(&kept)["xAuthUser"], "42");
    assert_eq!(
        get(&d, "/headers", &[sid(&late)]).await.status,
        401,
        "no take-over any more"
    );
}
