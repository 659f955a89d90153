//! Micro-benchmarks of the pure, per-request steps of doorman's hot path (issue 7).
//!
//! Run with `cargo bench --bench hot_path` (add a filter to run one group:
//! `cargo bench --bench hot_path -- routes`). `cargo test --benches` runs each benchmark once,
//! so they cannot rot. The figures are CPU time on whatever else the machine is doing: compare
//! two commits on the same quiet machine, never against a number written down elsewhere.
//!
//! * `normalise`: [`doorman::path::normalise`] on paths as browsers and scanners send them.
//! * `routes`: [`doorman::routes::RouteTable::find`] on a realistic table, built by the config
//!   loader from TOML as `proxy.toml` would be, so patterns are in the form doorman runs.
//! * `headers`: the strip-then-set of identity headers alone, and the whole rebuild of a
//!   browser's request head in the order `forward::Upstream::upstream_request` applies it
//!   (hop-by-hop, identity strip, own cookie out, `X-Forwarded-*`, `Host`, identity set). The
//!   header map is cloned outside the timed part.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use doorman::config::Config;
use doorman::cookie;
use doorman::forward::headers::{self, Forwarded};
use doorman::identity::Identity;
use doorman::path::normalise;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Method;

/// A deployment's routes: static assets and health checks public, an API split by method, an
/// admin area by group, an internal area denied; authenticated by default.
const CONFIG: &str = r#"
[listen]
addr = "127.0.0.1:8080"

[upstream]
url = "http://127.0.0.1:3000"

[access]
default = "authenticated"

[[routes]]
path = "/static"
access = "public"

[[routes]]
path = "/assets"
access = "public"

[[routes]]
path = "/favicon.ico"
access = "public"

[[routes]]
glob = "/api/*/health"
methods = ["GET", "HEAD"]
access = "public"

[[routes]]
glob = "/internal/**"
access = "deny"

[[routes]]
glob = "/api/*/admin/**"
access = "authenticated"
groups = ["admin"]

[[routes]]
path = "/admin"
access = "authenticated"
groups = ["admin"]

[[routes]]
path = "/api"
methods = ["POST", "PUT", "PATCH", "DELETE"]
access = "authenticated"
groups = ["writers"]

[[routes]]
path = "/api"
methods = ["GET", "HEAD"]
access = "authenticated"

[[routes]]
path = "/dashboard"
access = "authenticated"
on_unauthenticated = "redirect"
"#;

fn config() -> Config {
    Config::parse(CONFIG, Path::new("bench-proxy.toml"))
        .unwrap_or_else(|e| panic!("the benchmark's config is invalid: {e:?}"))
}

fn bench_normalise(c: &mut Criterion) {
    let inputs = [
        ("plain", "/dashboard/reports/2026"),
        (
            "dots_escapes",
            "/static//js/./vendor/%2e%2e/app/%7Euser/main.%6As",
        ),
        (
            "long",
            "/api/v2/organisations/acme-corp/projects/website-redesign/repositories/frontend\
             /commits/9f8e7d6c5b4a39281706f5e4d3c2b1a098765432/files/src/components/navigation\
             /header/menu-item.tsx",
        ),
    ];
    let mut g = c.benchmark_group("normalise");
    for (name, path) in inputs {
        if let Err(e) = normalise(path) {
            panic!("benchmark input {path:?} is refused: {e}");
        }
        g.bench_function(name, |b| b.iter(|| normalise(black_box(path))));
    }
    g.finish();
}

fn bench_routes(c: &mut Criterion) {
    let config = config();
    let table = &config.routes;
    assert_eq!(table.routes().len(), 10, "the benchmark's table");
    let cases = [
        // the last route, after nine that do not match (two skipped by method)
        ("hit_late", Method::GET, "/dashboard/reports/2026"),
        ("glob_hit", Method::DELETE, "/api/v1/admin/users/42"),
        (
            "default_miss",
            Method::GET,
            "/account/settings/notifications",
        ),
    ];
    let mut g = c.benchmark_group("routes");
    for (name, method, path) in cases {
        g.bench_function(name, |b| {
            b.iter(|| {
                table
                    .find(black_box(&method), None, black_box(path))
                    .policy
                    .access
            })
        });
    }
    g.finish();
}

/// What Chromium sends for a page load on a site with analytics and a CSRF cookie, plus what an
/// attacker adds: a forged identity in two spellings and a forged client address.
fn browser_headers(cookie_name: &str) -> HeaderMap {
    let cookie = format!(
        "_ga=GA1.1.1843920211.1732780000; theme=dark; {cookie_name}=\
         Q2hhbmdlIG1lIGludG8gYSByZWFsIHNlc3Npb24gaWQh; csrftoken=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA"
    );
    let pairs: [(&str, &str); 19] = [
        ("host", "app.example.com"),
        ("connection", "keep-alive"),
        ("cache-control", "max-age=0"),
        (
            "sec-ch-ua",
            "\"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"",
        ),
        ("sec-ch-ua-mobile", "?0"),
        ("sec-ch-ua-platform", "\"Linux\""),
        ("upgrade-insecure-requests", "1"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/131.0.0.0 Safari/537.36",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,\
             */*;q=0.8",
        ),
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-user", "?1"),
        ("sec-fetch-dest", "document"),
        ("referer", "https://app.example.com/dashboard"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("x-auth-user", "admin"),
        ("x_forwarded_user", "root"),
        ("x-forwarded-for", "10.0.0.1"),
    ];
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{name}: {e}")),
        );
    }
    h.append(
        header::COOKIE,
        HeaderValue::from_str(&cookie).unwrap_or_else(|e| panic!("cookie: {e}")),
    );
    h
}

fn bench_headers(c: &mut Criterion) {
    let config = config();
    let identity = Identity::new("alice", vec!["staff".into(), "admin".into()])
        .unwrap_or_else(|e| panic!("identity: {e}"));
    let incoming = browser_headers(&config.session.cookie_name);
    let peer = HeaderValue::from_static("127.0.0.1");
    let host = HeaderValue::from_static("127.0.0.1:3000");
    // What the gate's read of the cookies found the upstream's copy needs (a browser's
    // cookies, doorman's among them: a rewrite), as `gate::handle` reads it before forwarding.
    let (_, cookies) = cookie::CookiePolicy::new(&config.session, false)
        .read_remembering(&incoming, &cookie::KeyMemo::default());
    let rebuild = |h: &mut HeaderMap| rebuild(h, &config, &identity, &peer, &host, cookies);

    // The result is what the upstream would receive: check it once, outside the timing.
    let mut check = incoming.clone();
    rebuild(&mut check);
    assert_eq!(check["x-auth-user"], "alice");
    assert!(check.get("x_forwarded_user").is_none());
    assert_eq!(check["x-forwarded-for"], "127.0.0.1");
    assert!(!check[header::COOKIE]
        .to_str()
        .is_ok_and(|c| c.contains(config.session.cookie_name.as_str())));

    let mut g = c.benchmark_group("headers");
    g.bench_function("identity_strip_then_set", |b| {
        b.iter_batched_ref(
            || incoming.clone(),
            |h| {
                config.identity.strip(h);
                config.identity.set(h, &identity);
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("upstream_request_head", |b| {
        b.iter_batched_ref(|| incoming.clone(), |h| rebuild(h), BatchSize::SmallInput)
    });
    g.finish();
}

/// The header steps of `forward::Upstream::upstream_request`, in its order (that function takes
/// a live hyper body, so it cannot be called here; keep the two in step).
fn rebuild(
    h: &mut HeaderMap,
    config: &Config,
    identity: &Identity,
    peer: &HeaderValue,
    host: &HeaderValue,
    cookies: cookie::ForUpstream,
) {
    let client_host = h.get(header::HOST).filter(|v| v.to_str().is_ok()).cloned();
    // One scan of the names for the hop-by-hop set and the claims (`Upstream::scan`), taken
    // before the request is built, then its removal.
    let (initials, claims) = config
        .identity
        .claims_and(headers::FORWARDING_INITIALS, headers::is_forwarding);
    headers::Scan::new(h, initials, claims).remove(h);
    cookies.apply(h, &config.session.cookie_name);
    headers::set_forwarded(
        h,
        Forwarded {
            peer: peer.clone(),
            trusted: false,
            proto: "http",
            host: client_host,
        },
    );
    h.insert(header::HOST, host.clone());
    config.identity.set(h, identity);
}

criterion_group!(benches, bench_normalise, bench_routes, bench_headers);
criterion_main!(benches);
