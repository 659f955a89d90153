//! Operations under test: the Prometheus exposition parsed into `(name, labels) → value`, and
//! JSON log records.

use std::collections::{BTreeMap, HashMap};

use super::login::{request, Answer, HttpClient};

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
