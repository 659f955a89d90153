//! Property tests for the path normaliser and the route matcher, through the library.
//!
//! The normaliser is doorman's defence against route bypasses: the routes match its output and
//! the upstream receives its output, so it must (1) produce only one unambiguous spelling,
//! (2) be stable (normalising again changes nothing, so doorman and anything after it agree),
//! and (3) map every equivalent spelling of a path to the same result. The route table must
//! then agree with the plain meaning of "whole-segment prefix" and "glob" on that output.

use doorman::path::normalise;
use doorman::routes::{Access, PathMatcher, Route, RoutePolicy, RouteTable};
use http::Method;
use proptest::prelude::*;
use proptest::sample::select;

// ---- generators -----------------------------------------------------------------------------

/// Pieces of hostile paths: separators, dot-segments in every spelling, encoded separators and
/// controls, stray `%`, `;`, `\`, escapes of unreserved and of other characters.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "/", "//", ".", "..", "%2e", "%2E", "%2e%2e", ".%2E", "%2f", "%2F", "%5c", "%5C",
            "%00", "%0a", "%1F", "%7f", "%41", "%61", "%7e", "%7E", "%2D", "%5f", "%c3%a9",
            "%C3%A9", "%20", "%25", "%252e", "%", "%4", "%zz", ";", ";x=1", "\\", "*", "~",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z0-9._~!$&'()*+,=:@-]{1,4}",
        "%[0-9a-fA-F]{2}",
    ]
}

/// A path-like string: `/` followed by hostile pieces.
fn hostile_path() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..14).prop_map(|t| format!("/{}", t.concat()))
}

/// One segment of a canonical path: not `.` or `..`, unreserved and sub-delim characters,
/// optionally followed by an escape of a character that stays encoded (upper-case hex).
fn canonical_segment() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z0-9._~!$&'()*+,=:@-]{1,6}"
            .prop_filter("not a dot-segment", |s| s != "." && s != ".."),
        select(vec!["", "", "", "%C3%A9", "%20", "%25", "%3F"]),
    )
        .prop_map(|(s, esc)| format!("{s}{esc}"))
}

/// How one segment is re-spelt: which unreserved characters are percent-encoded (and in which
/// hex case), how many `./` segments and extra slashes come before it, and an optional
/// `x/../` detour.
#[derive(Debug, Clone)]
struct Spelling {
    encode: Vec<bool>,
    lower_hex: Vec<bool>,
    dots: Vec<&'static str>,
    extra_slashes: usize,
    detour: Option<(String, &'static str)>,
}

fn spelling() -> impl Strategy<Value = Spelling> {
    (
        prop::collection::vec(any::<bool>(), 12),
        prop::collection::vec(any::<bool>(), 12),
        prop::collection::vec(select(vec!["./", "%2e/", "%2E/"]), 0..3),
        0..3usize,
        prop::option::of((
            canonical_segment(),
            select(vec!["/../", "/%2e%2e/", "/.%2E/", "/%2E./", "//../"]),
        )),
    )
        .prop_map(
            |(encode, lower_hex, dots, extra_slashes, detour)| Spelling {
                encode,
                lower_hex,
                dots,
                extra_slashes,
                detour,
            },
        )
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `segment` re-spelt: unreserved characters encoded where `s.encode` says, existing escapes'
/// hex digits lower-cased where `s.lower_hex` says.
fn respell_segment(segment: &str, s: &Spelling) -> String {
    let bytes = segment.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let mut k = 0;
    while i < bytes.len() {
        let flag = |v: &[bool]| v[k % v.len()];
        if bytes[i] == b'%' {
            let esc = &segment[i..i + 3];
            out.push_str(&if flag(&s.lower_hex) {
                esc.to_ascii_lowercase()
            } else {
                esc.to_string()
            });
            i += 3;
        } else {
            let b = bytes[i];
            if is_unreserved(b) && flag(&s.encode) {
                if flag(&s.lower_hex) {
                    out.push_str(&format!("%{b:02x}"));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            } else {
                out.push(char::from(b));
            }
            i += 1;
        }
        k += 1;
    }
    out
}

/// A canonical path from `segments` (and a trailing slash), and an equivalent spelling of it.
fn spell(
    segments: &[String],
    trailing: bool,
    spellings: &[Spelling],
    ending: &str,
) -> (String, String) {
    let mut canonical = String::new();
    let mut spelt = String::new();
    for (seg, s) in segments.iter().zip(spellings.iter().cycle()) {
        canonical.push('/');
        canonical.push_str(seg);
        spelt.push('/');
        spelt.push_str(&"/".repeat(s.extra_slashes));
        for dot in &s.dots {
            spelt.push_str(dot);
        }
        if let Some((detour, back)) = &s.detour {
            spelt.push_str(&respell_segment(detour, s));
            spelt.push_str(back);
        }
        spelt.push_str(&respell_segment(seg, s));
    }
    if segments.is_empty() || trailing {
        canonical.push('/');
        spelt.push_str(ending);
    }
    (canonical, spelt)
}

/// Ways to write a trailing `/` (or the root).
fn ending() -> impl Strategy<Value = &'static str> {
    select(vec![
        "/",
        "/.",
        "//",
        "/./",
        "/%2e",
        "/x/..",
        "/x/%2E%2E",
        "/x/../",
    ])
}

// ---- invariants of the normaliser's output ------------------------------------------------

/// Panic unless `out` is in the one unambiguous form routes are matched on.
fn assert_canonical(input: &str, out: &str) {
    assert!(out.starts_with('/'), "{input:?} -> {out:?}: no leading /");
    assert!(!out.contains("//"), "{input:?} -> {out:?}: //");
    for seg in out.split('/').skip(1) {
        assert!(
            seg != "." && seg != "..",
            "{input:?} -> {out:?}: dot-segment left"
        );
    }
    assert!(!out.contains("/./") && !out.contains("/../"));
    assert!(!out.ends_with("/.") && !out.ends_with("/.."));
    assert!(!out.contains(';'), "{input:?} -> {out:?}: ;");
    assert!(!out.contains('\\'), "{input:?} -> {out:?}: backslash");
    let upper = out.to_ascii_uppercase();
    assert!(
        !upper.contains("%2F") && !upper.contains("%5C"),
        "{input:?} -> {out:?}: encoded separator"
    );
    let bytes = out.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        assert!(
            b.is_ascii_graphic(),
            "{input:?} -> {out:?}: byte {b:#x} not printable ASCII"
        );
        if b == b'%' {
            let hex = out
                .get(i + 1..i + 3)
                .unwrap_or_else(|| panic!("{input:?} -> {out:?}: truncated escape"));
            assert!(
                hex.bytes()
                    .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h)),
                "{input:?} -> {out:?}: escape %{hex} is not upper-case hex"
            );
            let v = u8::from_str_radix(hex, 16).expect("hex");
            assert!(
                !is_unreserved(v),
                "{input:?} -> {out:?}: %{hex} encodes an unreserved character"
            );
            assert!(
                v > 0x1f && v != 0x7f,
                "{input:?} -> {out:?}: %{hex} encodes a control character"
            );
            i += 3;
        } else {
            i += 1;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever a hostile client sends, an accepted path comes out in the one form routes are
    /// matched on (no `//`, dot-segments, `;`, `\`, encoded separators or encoded unreserved
    /// characters), and normalising it again changes nothing — so doorman and the upstream
    /// (or a second doorman) can never read it two ways.
    #[test]
    fn normalised_paths_are_canonical_and_normalising_again_changes_nothing(raw in hostile_path()) {
        if let Ok(out) = normalise(&raw) {
            assert_canonical(&raw, &out);
            prop_assert_eq!(normalise(&out), Ok(out.clone()), "not idempotent on {:?}", raw);
        }
    }

    /// Arbitrary text (any Unicode, any bytes of a request line) never panics the normaliser,
    /// and what it accepts obeys the same rules.
    #[test]
    fn arbitrary_input_never_panics_and_accepted_output_is_canonical(raw in "/?\\PC{0,24}") {
        if let Ok(out) = normalise(&raw) {
            assert_canonical(&raw, &out);
            prop_assert_eq!(normalise(&out), Ok(out.clone()));
        }
    }

    /// Every equivalent spelling of a path — unreserved characters percent-encoded in either hex
    /// case, `./` segments, doubled slashes, `x/../` detours — normalises to the same path, and
    /// the canonical spelling is left as it is. A spelling that normalised differently is a
    /// route bypass.
    #[test]
    fn equivalent_spellings_normalise_to_the_same_path(
        segments in prop::collection::vec(canonical_segment(), 0..6),
        trailing in any::<bool>(),
        spellings in prop::collection::vec(spelling(), 1..6),
        ending in ending(),
    ) {
        let (canonical, spelt) = spell(&segments, trailing, &spellings, ending);
        prop_assert_eq!(normalise(&canonical), Ok(canonical.clone()));
        prop_assert_eq!(normalise(&spelt), Ok(canonical.clone()), "spelling {:?}", spelt);
    }
}

// ---- the route table against a reference model ---------------------------------------------

/// Segments from a tiny alphabet, so prefixes and paths often share (or nearly share) segments,
/// in both cases.
fn small_segment() -> impl Strategy<Value = String> {
    select(vec!["a", "b", "A", "B", "ab", "aB", "a.b"]).prop_map(str::to_string)
}

/// A one-route table: the route denies, everything else is public.
fn table(matcher: PathMatcher, case_sensitive: bool) -> RouteTable {
    let route = Route {
        name: "under test".into(),
        matcher,
        methods: None,
        hosts: None,
        policy: RoutePolicy::new(Access::Deny),
    };
    RouteTable::new(
        vec![route],
        RoutePolicy::new(Access::Public),
        case_sensitive,
    )
}

fn fold(segments: &[String], case_sensitive: bool) -> Vec<String> {
    segments
        .iter()
        .map(|s| {
            if case_sensitive {
                s.clone()
            } else {
                s.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Reference glob: `*` is one segment, `**` zero or more, literals equal.
fn glob_reference(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => {
            (0..=path.len()).any(|skip| glob_reference(rest, &path[skip..]))
        }
        Some((p, rest)) => match path.split_first() {
            None => false,
            Some((s, path_rest)) => (p == "*" || p == s) && glob_reference(rest, path_rest),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A `path` route covers exactly the paths whose segments start with its segments
    /// (`/a` covers `/a`, `/a/`, `/a/b`, never `/ab`), case-folded unless `case_sensitive`,
    /// judged on the normalised form of whatever spelling the client used.
    #[test]
    fn prefix_routes_agree_with_the_segment_model(
        prefix in prop::collection::vec(small_segment(), 0..4),
        prefix_trailing in any::<bool>(),
        path in prop::collection::vec(small_segment(), 0..5),
        path_trailing in any::<bool>(),
        spellings in prop::collection::vec(spelling(), 1..4),
        ending in ending(),
        case_sensitive in any::<bool>(),
    ) {
        let mut written = format!("/{}", prefix.join("/"));
        if prefix_trailing && !prefix.is_empty() {
            written.push('/');
        }
        let (canonical, spelt) = spell(&path, path_trailing, &spellings, ending);
        let normal = normalise(&spelt).expect("an equivalent spelling is accepted");
        prop_assert_eq!(&normal, &canonical);

        let want = fold(&path, case_sensitive).starts_with(&fold(&prefix, case_sensitive));
        let got = table(PathMatcher::prefix(&written), case_sensitive)
            .find(&Method::GET, None, &normal)
            .policy
            .access
            == Access::Deny;
        prop_assert_eq!(got, want, "route {:?} path {:?} (sent as {:?}), case_sensitive {}",
            written, normal, spelt, case_sensitive);
    }

    /// A `glob` route agrees with a plain recursive reference for `*` and `**`, in both case
    /// modes.
    #[test]
    fn glob_routes_agree_with_the_segment_model(
        pattern in prop::collection::vec(
            prop_oneof![small_segment(), Just("*".to_string()), Just("**".to_string())], 0..5),
        path in prop::collection::vec(small_segment(), 0..6),
        path_trailing in any::<bool>(),
        case_sensitive in any::<bool>(),
    ) {
        let written = format!("/{}", pattern.join("/"));
        let mut normal = format!("/{}", path.join("/"));
        if path_trailing && !path.is_empty() {
            normal.push('/');
        }
        let matcher = PathMatcher::glob(&written).expect("whole-segment wildcards");
        let want = glob_reference(&fold(&pattern, case_sensitive), &fold(&path, case_sensitive));
        let got = table(matcher, case_sensitive).find(&Method::GET, None, &normal).policy.access
            == Access::Deny;
        prop_assert_eq!(got, want, "glob {:?} path {:?}, case_sensitive {}",
            written, normal, case_sensitive);
    }
}
