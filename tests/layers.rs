//! The layering rule of `src/lib.rs` ("Layers, lowest first"), checked against the code: every
//! `crate::…` / `super::…` path a module names must lead to a module of its own layer or a
//! lower one, and modules of one layer must not import each other in a circle. Like
//! `../shared/tools/modcycles.py`, it reads text (doc links count too: a doc that points up is
//! a dependency a reader sees), and stops at a file's first `#[cfg(test)] mod`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layer name → its modules, lowest layer first.
type Table = Vec<(String, Vec<String>)>;

#[test]
fn every_module_imports_only_its_own_layer_or_lower_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read src/lib.rs");
    let table = layer_table(&lib);
    assert!(table.len() >= 5, "src/lib.rs has no layer table: {table:?}");
    let listed: BTreeSet<String> = table.iter().flat_map(|(_, m)| m.clone()).collect();
    let declared = declared_modules(&lib);
    assert_eq!(
        listed, declared,
        "src/lib.rs's layer table must list exactly the modules lib.rs declares"
    );
    let files = rust_files(&src);
    let sources: Vec<(Vec<String>, String)> = files
        .iter()
        .filter_map(|f| {
            let module = module_path(&src, f)?;
            let text = std::fs::read_to_string(f).expect("read source");
            Some((module, text))
        })
        .collect();
    let problems = check(&table, &sources);
    assert!(
        problems.is_empty(),
        "imports against the layers of src/lib.rs:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_check_finds_an_import_that_points_up_and_a_circle_within_a_layer() {
    let table: Table = vec![
        ("base".into(), vec!["a".into(), "b".into()]),
        ("top".into(), vec!["c".into()]),
    ];
    let src = |m: &[&str], text: &str| (m.iter().map(|s| s.to_string()).collect(), text.into());
    let ok = vec![
        src(&["c"], "use crate::a::X;\nuse crate::{b, a::Y};"),
        src(&["a"], "use crate::b::Z;"),
        src(
            &["a", "inner"],
            "use super::super::b::Z; use super::sibling;",
        ),
    ];
    assert_eq!(check(&table, &ok), Vec::<String>::new());
    let up = vec![src(&["a"], "/// see [`crate::c::Thing`]\nfn f() {}")];
    assert_eq!(check(&table, &up).len(), 1, "{:?}", check(&table, &up));
    let grouped_up = vec![src(&["b", "x"], "use crate::{a, c::D};")];
    assert_eq!(check(&table, &grouped_up).len(), 1);
    let circle = vec![
        src(&["a"], "use crate::b::Z;"),
        src(&["b"], "use crate::a::Y;"),
    ];
    assert_eq!(
        check(&table, &circle).len(),
        1,
        "{:?}",
        check(&table, &circle)
    );
    let only_tests = vec![src(
        &["a"],
        "#[cfg(test)]\nmod tests {\n use crate::c::T;\n}",
    )];
    assert!(check(&table, &only_tests).is_empty());
}

/// The ```text block after "## Layers": `name: module module ...` per line.
fn layer_table(lib: &str) -> Table {
    let mut table = Vec::new();
    let mut in_section = false;
    let mut in_block = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim();
        if doc.starts_with("## ") {
            in_section = doc.starts_with("## Layers");
            continue;
        }
        if !in_section {
            continue;
        }
        if doc.starts_with("```") {
            if in_block {
                break;
            }
            in_block = true;
            continue;
        }
        if in_block {
            if let Some((name, modules)) = doc.split_once(':') {
                let modules = modules.split_whitespace().map(str::to_string).collect();
                table.push((name.trim().to_string(), modules));
            }
        }
    }
    table
}

/// `mod x;` / `pub mod x;` / `pub(crate) mod x;` lines of lib.rs.
fn declared_modules(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("pub(crate) mod "))
                .or_else(|| line.strip_prefix("mod "))?;
            Some(rest.strip_suffix(';')?.trim().to_string())
        })
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `src/a/b.rs` → `[a, b]`, `src/a/mod.rs` → `[a]`; `None` for the crate roots.
fn module_path(src: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.is_empty() || parts == ["lib"] || parts == ["main"] {
        return None;
    }
    Some(parts)
}

/// Every rule broken by `sources` (module path, text) under `table`.
fn check(table: &Table, sources: &[(Vec<String>, String)]) -> Vec<String> {
    let layer_of: BTreeMap<&str, usize> = table
        .iter()
        .enumerate()
        .flat_map(|(i, (_, mods))| mods.iter().map(move |m| (m.as_str(), i)))
        .collect();
    let mut problems = Vec::new();
    // Imports between top-level modules of one layer, to look for circles.
    let mut same_layer: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in sources {
        let from = &module[0];
        let Some(&from_layer) = layer_of.get(from.as_str()) else {
            problems.push(format!("module `{from}` is in no layer"));
            continue;
        };
        for target in referenced_modules(module, outside_tests(text)) {
            if &target == from {
                continue;
            }
            let Some(&to_layer) = layer_of.get(target.as_str()) else {
                continue; // not a module of ours (a crate-root item such as a macro)
            };
            if to_layer > from_layer {
                problems.push(format!(
                    "{} ({}) uses `{target}` ({}), a higher layer",
                    module.join("::"),
                    table[from_layer].0,
                    table[to_layer].0
                ));
            } else if to_layer == from_layer {
                same_layer.entry(from.clone()).or_default().insert(target);
            }
        }
    }
    for circle in circles(&same_layer) {
        problems.push(format!(
            "modules of one layer import each other: {circle:?}"
        ));
    }
    problems
}

fn outside_tests(text: &str) -> &str {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim() == "#[cfg(test)]" {
            let rest = &text[offset + line.len()..];
            let next = rest.trim_start();
            if next.starts_with("mod ") || next.starts_with("pub mod ") {
                return &text[..offset];
            }
        }
        offset += line.len();
    }
    text
}

/// The top-level modules `text` (of module `module`) names through `crate::` or `super::`.
fn referenced_modules(module: &[String], text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let word_start = i == 0 || !is_ident(bytes[i - 1]);
        let rest = &bytes[i..];
        if word_start && (rest.starts_with(b"crate::") || rest.starts_with(b"super::")) {
            // Resolve the path's start against the module it is written in.
            let mut base: Vec<String> = module.to_vec();
            let mut j = i;
            if bytes[j..].starts_with(b"crate::") {
                base.clear();
                j += "crate::".len();
            } else {
                while bytes[j..].starts_with(b"super::") {
                    base.pop();
                    j += "super::".len();
                }
            }
            if !base.is_empty() {
                out.insert(base[0].clone());
            } else if bytes[j..].starts_with(b"{") {
                for item in group_heads(&text[j + 1..]) {
                    out.insert(item);
                }
            } else {
                let ident: String = bytes[j..]
                    .iter()
                    .copied()
                    .take_while(|&b| is_ident(b))
                    .map(char::from)
                    .collect();
                if !ident.is_empty() {
                    out.insert(ident);
                }
            }
            i = j.max(i + 1);
            continue;
        }
        i += 1;
    }
    out
}

/// The first identifier of each item of a `{a, b::c, d::{e}}` group (text after the `{`).
fn group_heads(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&text[start..i]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
        .into_iter()
        .map(|item| {
            item.trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|head| !head.is_empty())
        .collect()
}

/// Strongly connected groups of more than one module.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = graph
        .keys()
        .chain(graph.values().flat_map(|s| s.iter()))
        .collect();
    let reaches = |from: &String, to: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for next in graph.get(&n).into_iter().flatten() {
                if next == to {
                    return true;
                }
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        false
    };
    let mut out: Vec<Vec<String>> = Vec::new();
    for n in &nodes {
        if out.iter().any(|c| c.contains(n)) || !reaches(n, n) {
            continue;
        }
        let circle: Vec<String> = nodes
            .iter()
            .filter(|m| reaches(n, m) && reaches(m, n))
            .map(|m| m.to_string())
            .collect();
        out.push(circle);
    }
    out
}
