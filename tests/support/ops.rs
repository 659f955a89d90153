//! Operations under test: doorman in-process with its admin listener and a reloader, the
//! Prometheus exposition parsed into `(name, labels) → value`, and JSON log records.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use doorman::config::Config;
use doorman::reload::Reloader;
use doorman::server::Live;
use tokio::net::TcpListener;

use super::login::{request, Answer, HttpClient};

/// Doorman in this process, with `[admin]` served on its own `127.0.0.1:0` listener.
pub struct Operated {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub live: Live,
    /// The config file (rewrite it, then [`Operated::reload`]).
    pub file: PathBuf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Operated {
    /// Validate `toml` (as `DIR/proxy.toml`), then serve it and its admin endpoints.
    pub async fn start(toml: &str) -> Operated {
        let dir = super::temp_dir("ops");
        let file = dir.join("proxy.toml");
        std::fs::write(&file, toml).expect("write config");
        let config =
            Arc::new(Config::load(&file).unwrap_or_else(|e| panic!("test config invalid:\n{e}")));
        let live = doorman::server::start(&config).expect("start doorman");
        let public = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let addr = public.local_addr().expect("addr");
        let admin_addr = admin.local_addr().expect("admin addr");
        let listeners = doorman::server::Listeners {
            main: public,
            redirect: None,
        };
        let serving =
            doorman::server::serve(listeners, config, Arc::clone(&live), std::future::pending());
        let admin_serving = doorman::admin::serve(admin, Arc::clone(&live), std::future::pending());
        let tasks = vec![
            tokio::spawn(async move {
                let _ = serving.await;
            }),
            tokio::spawn(async move {
                let _ = admin_serving.await;
            }),
        ];
        Operated {
            addr,
            admin: admin_addr,
            live,
            file,
            tasks,
        }
    }

    /// `http://PUBLIC` + `path`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://ADMIN` + `path`
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Re-read the config file, as SIGHUP does.
    pub async fn reload(&self) -> bool {
        Reloader::new(self.file.clone(), Arc::clone(&self.live))
            .reload()
            .await
            .is_ok()
    }

    /// Scrape `/metrics`.
    pub async fn metrics(&self, client: &HttpClient) -> Exposition {
        scrape(client, &self.admin_url("/metrics")).await
    }
}

impl Drop for Operated {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// `GET url` and parse the exposition (asserting a 200).
pub async fn scrape(client: &HttpClient, url: &str) -> Exposition {
    let answer = request(client, "GET", url, &[], "").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    Exposition::parse(&answer.text())
}

/// One sample's identity: its name and its labels.
pub type SampleKey = (String, BTreeMap<String, String>);

/// A parsed Prometheus / OpenMetrics text exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub samples: HashMap<SampleKey, f64>,
    /// `# TYPE` lines: family name → type.
    pub types: HashMap<String, String>,
}

impl Exposition {
    /// Parse `name{a="b",c="d"} value [timestamp]` lines; `#` lines give types.
    pub fn parse(text: &str) -> Exposition {
        let mut out = Exposition::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    out.types.insert(name.to_string(), kind.to_string());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (name, labels, rest) = match line.find('{') {
                Some(open) => {
                    let close = line
                        .rfind('}')
                        .unwrap_or_else(|| panic!("bad line {line:?}"));
                    (
                        &line[..open],
                        parse_labels(&line[open + 1..close]),
                        &line[close + 1..],
                    )
                }
                None => {
                    let space = line
                        .find(' ')
                        .unwrap_or_else(|| panic!("bad line {line:?}"));
                    (&line[..space], BTreeMap::new(), &line[space..])
                }
            };
            let value = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("bad value in {line:?}"));
            let previous = out.samples.insert((name.to_string(), labels), value);
            assert!(previous.is_none(), "duplicate sample {line:?}");
        }
        out
    }

    /// The value of `name` with exactly `labels` (0 when absent, as Prometheus reads a
    /// counter that has not been created yet).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .get(&(name.to_string(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// Whether a sample of `name` exists at all.
    pub fn has(&self, name: &str) -> bool {
        self.samples.keys().any(|(n, _)| n == name)
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .unwrap_or_else(|| panic!("bad labels {text:?}"));
        let key = rest[..eq].trim().to_string();
        let after = &rest[eq + 1..];
        assert!(after.starts_with('"'), "bad labels {text:?}");
        let mut value = String::new();
        let mut chars = after[1..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(match e {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.unwrap_or_else(|| panic!("unterminated label in {text:?}"));
        out.insert(key, value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    out
}

/// `GET url` without a cookie.
pub async fn get(client: &HttpClient, url: &str) -> Answer {
    request(client, "GET", url, &[], "").await
}

/// Every JSON log record on `target` (`doorman::audit`, `doorman::access`).
pub fn records(logs: &str, target: &str) -> Vec<serde_json::Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["target"] == target)
        .collect()
}
