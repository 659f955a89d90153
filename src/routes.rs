//! The route table: which access rule applies to a (method, normalised path).
//!
//! Routes are tried in file order and the first match wins; a request that matches none gets
//! `[access] default`. A route matches by `path` (a whole-segment prefix: `/dashboard` covers
//! `/dashboard` and `/dashboard/x`, never `/dashboardx`) or by `glob` (`*` is exactly one
//! segment, `**` zero or more), and, when `methods` is set, by method too: a request with
//! another method falls through to later routes rather than being refused.
//!
//! Matching is ASCII case-insensitive unless `[access] case_sensitive = true`, because Express,
//! ASP.NET, Spring (by configuration) and case-insensitive file systems route `/ADMIN` to the
//! same handler as `/admin`; a case-sensitive proxy in front of them is a bypass.

use http::Method;

use crate::host::HostPattern;
pub use crate::metrics::RouteLabel;

/// What a route allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Forwarded to everyone; identity headers only when a valid session exists.
    Public,
    /// Needs a session (and, with `users`/`groups`, one of those).
    Authenticated,
    /// Always 403.
    Deny,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::Public => "public",
            Access::Authenticated => "authenticated",
            Access::Deny => "deny",
        })
    }
}

/// How an authenticated route answers a request without a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnauthenticated {
    /// 401 with `WWW-Authenticate`.
    Status401,
    /// Page loads: 302 to the login page with `next=`; everything else: 401 JSON with `login_url`.
    Redirect,
}

/// The access rule a matched route (or the default) imposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePolicy {
    /// `access`: public, authenticated or deny.
    pub access: Access,
    /// Allowed users; with `groups`, a user passes if listed here OR in one of the groups.
    /// Both empty: any authenticated user.
    pub users: Vec<String>,
    /// `groups`: members of any of these pass (with `users`: either list).
    pub groups: Vec<String>,
    /// `on_unauthenticated`: what a request without a session gets.
    pub on_unauthenticated: OnUnauthenticated,
}

impl RoutePolicy {
    /// A policy with no user or group restriction.
    pub fn new(access: Access) -> RoutePolicy {
        RoutePolicy {
            access,
            users: Vec::new(),
            groups: Vec::new(),
            on_unauthenticated: OnUnauthenticated::Status401,
        }
    }

    /// Whether a session for `user` in `groups` may pass (for `Authenticated` routes).
    pub fn allows(&self, user: &str, groups: &[String]) -> bool {
        (self.users.is_empty() && self.groups.is_empty())
            || self.users.iter().any(|u| u == user)
            || self.groups.iter().any(|g| groups.contains(g))
    }
}

/// How a route selects paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatcher {
    /// Whole-segment prefix, stored without a trailing `/` (`""` for the root, covering all).
    Prefix(String),
    /// Segment pattern.
    Glob(Vec<GlobSegment>),
}

/// One segment of a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobSegment {
    /// A segment matched as written.
    Literal(String),
    /// `*`: exactly one segment.
    One,
    /// `**`: zero or more segments.
    Any,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct Route {
    /// The pattern as written, for logs and metrics (`/dashboard`, `/api/*/admin/**`).
    pub name: RouteLabel,
    /// Which paths the route covers (`path` or `glob`).
    pub matcher: PathMatcher,
    /// `None`: any method.
    pub methods: Option<Vec<Method>>,
    /// `hosts`: `None` matches any host; otherwise the request's host (port ignored) must be
    /// covered by one of them, and a request without a usable host matches none.
    pub hosts: Option<Vec<HostPattern>>,
    /// What the route allows.
    pub policy: RoutePolicy,
}

/// What the table decided for one request.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    /// The route that matched, or `None` for the default.
    pub route: Option<&'a Route>,
    /// The policy that applies: the route's, or the default.
    pub policy: &'a RoutePolicy,
}

/// All routes, the default policy, and the case rule.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
    default: RoutePolicy,
    case_sensitive: bool,
    hosts_scoped: bool,
}

impl RouteTable {
    /// Build a table; patterns are lower-cased here once when matching is case-insensitive.
    ///
    /// A route listing `GET` also matches `HEAD`: frameworks answer `HEAD` with their GET
    /// handler, so a `HEAD` that fell through to a laxer rule would run it unchecked.
    pub fn new(mut routes: Vec<Route>, default: RoutePolicy, case_sensitive: bool) -> RouteTable {
        for route in &mut routes {
            if let Some(methods) = &mut route.methods {
                if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
                    methods.push(Method::HEAD);
                }
            }
        }
        if !case_sensitive {
            for route in &mut routes {
                match &mut route.matcher {
                    PathMatcher::Prefix(p) => p.make_ascii_lowercase(),
                    PathMatcher::Glob(segments) => {
                        for s in segments {
                            if let GlobSegment::Literal(l) = s {
                                l.make_ascii_lowercase();
                            }
                        }
                    }
                }
            }
        }
        let hosts_scoped = routes.iter().any(|r| r.hosts.is_some());
        RouteTable {
            routes,
            default,
            case_sensitive,
            hosts_scoped,
        }
    }

    /// The first route matching `method`, `host` (as [`crate::host::normalise`] returns it;
    /// `None` when the request named no usable host) and `path` (a normalised path), or the
    /// default.
    pub fn find(&self, method: &Method, host: Option<&str>, path: &str) -> Matched<'_> {
        let lowered;
        // Route paths are stored lower-cased; most request paths already are, and are matched
        // as they are, without a lower-cased copy.
        let path = if self.case_sensitive || !path.bytes().any(|b| b.is_ascii_uppercase()) {
            path
        } else {
            lowered = path.to_ascii_lowercase();
            &lowered
        };
        for route in &self.routes {
            if route.methods.as_ref().is_some_and(|m| !m.contains(method)) {
                continue;
            }
            if let Some(hosts) = &route.hosts {
                if !host.is_some_and(|h| crate::host::any_matches(hosts, h)) {
                    continue;
                }
            }
            if route.matcher.matches(path) {
                return Matched {
                    route: Some(route),
                    policy: &route.policy,
                };
            }
        }
        Matched {
            route: None,
            policy: &self.default,
        }
    }

    /// The routes, in the order they are tried.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Whether any route matches on `hosts` (only then is a request's host looked at).
    pub fn matches_hosts(&self) -> bool {
        self.hosts_scoped
    }

    /// Whether paths match case-sensitively (`[access] case_sensitive`).
    pub fn case_sensitive(&self) -> bool {
        self.case_sensitive
    }

    /// What a request matching no route gets.
    pub fn default_policy(&self) -> &RoutePolicy {
        &self.default
    }
}

impl PathMatcher {
    /// Parse a `path` value (already validated as a normalised path).
    pub fn prefix(path: &str) -> PathMatcher {
        PathMatcher::Prefix(path.trim_end_matches('/').to_string())
    }

    /// Parse a `glob` value; `*` and `**` must be whole segments.
    pub fn glob(glob: &str) -> Result<PathMatcher, String> {
        let rest = glob
            .strip_prefix('/')
            .ok_or_else(|| format!("glob {glob:?} must start with /"))?;
        let mut segments = Vec::new();
        for s in rest.split('/').filter(|s| !s.is_empty()) {
            segments.push(match s {
                "*" => GlobSegment::One,
                "**" => GlobSegment::Any,
                s if s.contains('*') => {
                    return Err(format!(
                        "glob {glob:?}: `*` and `**` must be whole segments, found {s:?}"
                    ))
                }
                s => GlobSegment::Literal(s.to_string()),
            });
        }
        Ok(PathMatcher::Glob(segments))
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Prefix(prefix) => path
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            PathMatcher::Glob(pattern) => {
                let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
                glob_match(pattern, &segments)
            }
        }
    }
}

/// Segment-wise glob match in O(pattern × path) (no exponential backtracking on `**/**/...`).
fn glob_match(pattern: &[GlobSegment], path: &[&str]) -> bool {
    // can[j]: the pattern prefix processed so far matches path[..j].
    let mut can = vec![false; path.len() + 1];
    can[0] = true;
    for seg in pattern {
        let mut next = vec![false; path.len() + 1];
        match seg {
            GlobSegment::Any => {
                let mut reachable = false;
                for j in 0..=path.len() {
                    reachable |= can[j];
                    next[j] = reachable;
                }
            }
            GlobSegment::One => next[1..].copy_from_slice(&can[..path.len()]),
            GlobSegment::Literal(l) => {
                for j in 0..path.len() {
                    next[j + 1] = can[j] && path[j] == l;
                }
            }
        }
        can = next;
    }
    can[path.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(matcher: PathMatcher, access: Access, methods: Option<Vec<Method>>) -> Route {
        Route {
            name: RouteLabel::new(&format!("{matcher:?}")),
            matcher,
            methods,
            hosts: None,
            policy: RoutePolicy::new(access),
        }
    }

    fn access(table: &RouteTable, method: Method, path: &str) -> Access {
        table.find(&method, Some("app.test"), path).policy.access
    }

    #[test]
    fn path_routes_cover_whole_segments_only() {
        let m = PathMatcher::prefix("/dashboard");
        assert!(m.matches("/dashboard"));
        assert!(m.matches("/dashboard/"));
        assert!(m.matches("/dashboard/x/y"));
        assert!(!m.matches("/dashboardx"));
        assert!(!m.matches("/dash"));
        assert!(!m.matches("/"));
        let root = PathMatcher::prefix("/");
        assert!(root.matches("/") && root.matches("/anything/at/all"));
        assert!(PathMatcher::prefix("/api/").matches("/api/v1"));
    }

    #[test]
    fn globs_match_segments() {
        let g = PathMatcher::glob("/api/*/admin/**").unwrap();
        assert!(g.matches("/api/v1/admin"));
        assert!(g.matches("/api/v1/admin/users/7"));
        assert!(!g.matches("/api/admin"));
        assert!(!g.matches("/api/v1/v2/admin"));
        assert!(!g.matches("/api/v1/adminx"));
        let g = PathMatcher::glob("/**/secret").unwrap();
        assert!(g.matches("/secret") && g.matches("/a/b/secret"));
        assert!(!g.matches("/a/secretx"));
        assert!(PathMatcher::glob("/a*").is_err());
        assert!(PathMatcher::glob("a/*").is_err());
    }

    #[test]
    fn pathological_globs_stay_linear() {
        let g = PathMatcher::glob(&"/**".repeat(40)).unwrap();
        let long = "/a".repeat(2000) + "/b";
        assert!(g.matches(&long));
    }

    #[test]
    fn first_match_wins_and_methods_fall_through() {
        let table = RouteTable::new(
            vec![
                route(
                    PathMatcher::prefix("/api"),
                    Access::Public,
                    Some(vec![Method::GET]),
                ),
                route(PathMatcher::prefix("/api"), Access::Deny, None),
                route(PathMatcher::prefix("/"), Access::Public, None),
            ],
            RoutePolicy::new(Access::Authenticated),
            false,
        );
        assert_eq!(access(&table, Method::GET, "/api/x"), Access::Public);
        assert_eq!(access(&table, Method::POST, "/api/x"), Access::Deny);
        assert_eq!(access(&table, Method::POST, "/other"), Access::Public);
        assert_eq!(
            access(&table, Method::HEAD, "/api/x"),
            Access::Public,
            "GET covers HEAD"
        );
    }

    #[test]
    fn unmatched_requests_get_the_default() {
        let table = RouteTable::new(
            vec![route(PathMatcher::prefix("/public"), Access::Public, None)],
            RoutePolicy::new(Access::Authenticated),
            false,
        );
        let m = table.find(&Method::GET, None, "/private");
        assert!(m.route.is_none());
        assert_eq!(m.policy.access, Access::Authenticated);
    }

    #[test]
    fn matching_ignores_case_unless_told_otherwise() {
        let routes = vec![route(PathMatcher::prefix("/Admin"), Access::Deny, None)];
        let insensitive = RouteTable::new(routes.clone(), RoutePolicy::new(Access::Public), false);
        assert_eq!(access(&insensitive, Method::GET, "/ADMIN/x"), Access::Deny);
        assert_eq!(access(&insensitive, Method::GET, "/admin"), Access::Deny);
        let sensitive = RouteTable::new(routes, RoutePolicy::new(Access::Public), true);
        assert_eq!(access(&sensitive, Method::GET, "/Admin"), Access::Deny);
        assert_eq!(access(&sensitive, Method::GET, "/admin"), Access::Public);
    }

    #[test]
    fn hosts_are_part_of_the_match() {
        let mut admin = route(PathMatcher::prefix("/"), Access::Deny, None);
        admin.hosts = Some(vec![
            HostPattern::parse("admin.example.com").unwrap(),
            HostPattern::parse("*.ops.example.com").unwrap(),
        ]);
        let table = RouteTable::new(
            vec![admin, route(PathMatcher::prefix("/"), Access::Public, None)],
            RoutePolicy::new(Access::Authenticated),
            false,
        );
        let at = |host: Option<&str>| table.find(&Method::GET, host, "/x").policy.access;
        assert_eq!(at(Some("admin.example.com")), Access::Deny);
        assert_eq!(at(Some("db.ops.example.com")), Access::Deny);
        assert_eq!(at(Some("app.example.com")), Access::Public);
        assert_eq!(at(Some("a.db.ops.example.com")), Access::Public);
        // A request without a usable host never matches a host-scoped route.
        assert_eq!(at(None), Access::Public);
    }

    #[test]
    fn users_or_groups_allow() {
        let mut p = RoutePolicy::new(Access::Authenticated);
        assert!(p.allows("anyone", &[]));
        p.users = vec!["alice".into()];
        p.groups = vec!["admin".into()];
        assert!(p.allows("alice", &[]));
        assert!(p.allows("bob", &["admin".to_string()]));
        assert!(!p.allows("bob", &["staff".to_string()]));
    }
}
