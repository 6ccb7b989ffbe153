//! The architecture holds: modules import only modules of a lower layer, the pure core
//! names no I/O crate, and the release build carries neither the fake Vast server, nor
//! axum, nor failpoints. See `docs/architecture.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Layer of each top-level module; `main` and the crate root stand above them all.
const LAYERS: &[(&str, u8)] = &[
    ("duration", 0),
    ("error", 0),
    ("reasons", 0),
    ("shared", 0),
    ("text", 0),
    ("crd", 1),
    ("runtime", 1),
    ("vast", 2),
    ("sync", 3),
    ("discovery", 4),
    ("controller", 5),
    ("app", 6),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/sync/diff.rs` -> `[sync, diff]`, `src/sync/mod.rs`
/// -> `[sync]`, `src/lib.rs` -> `[lib]`.
fn module_path(path: &Path) -> Vec<String> {
    let rel = path.strip_prefix(src()).expect("under src");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Code without comment lines (docs may name any module).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a `use` tree or a path expression names, starting at `text` (just after
/// `crate::` or `super::`): `{a, b::{c, d}}` gives `[a]`, `[b, c]`, `[b, d]`.
fn paths(text: &str) -> Vec<Vec<String>> {
    fn tree(t: &[char], at: &mut usize) -> Vec<Vec<String>> {
        let skip = |at: &mut usize| {
            while *at < t.len() && t[*at].is_whitespace() {
                *at += 1;
            }
        };
        let mut prefix = Vec::new();
        loop {
            skip(at);
            if *at < t.len() && t[*at] == '{' {
                *at += 1;
                let mut out = Vec::new();
                loop {
                    skip(at);
                    if *at >= t.len() || t[*at] == '}' {
                        *at += 1;
                        break;
                    }
                    let before = *at;
                    for p in tree(t, at) {
                        if !p.is_empty() {
                            out.push(prefix.iter().cloned().chain(p).collect());
                        }
                    }
                    skip(at);
                    if *at < t.len() && t[*at] == ',' {
                        *at += 1;
                    } else if *at == before {
                        // Something no use tree holds (a comment's text): step over it.
                        *at += 1;
                    }
                }
                return out;
            }
            let start = *at;
            while *at < t.len() && (t[*at].is_alphanumeric() || t[*at] == '_' || t[*at] == '*') {
                *at += 1;
            }
            if *at == start {
                return vec![prefix];
            }
            prefix.push(t[start..*at].iter().collect());
            if t.get(*at) == Some(&':') && t.get(*at + 1) == Some(&':') {
                *at += 2;
            } else {
                // `as alias`, `;`, `,`, `(`, ...: the path ends here.
                let rest: String = t[*at..t.len().min(*at + 4)].iter().collect();
                if rest.trim_start().starts_with("as ") {
                    skip(at);
                    *at += 2;
                    skip(at);
                    while *at < t.len() && (t[*at].is_alphanumeric() || t[*at] == '_') {
                        *at += 1;
                    }
                }
                return vec![prefix];
            }
        }
    }
    let chars: Vec<char> = text.chars().collect();
    tree(&chars, &mut 0)
}

/// `text` without its `#[cfg(test)] mod` items (a braced module to its closing brace,
/// or a `mod x;` line), wherever they are.
fn without_test_modules(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("#[cfg(test)]\nmod ") {
        out.push_str(&rest[..i]);
        let item = &rest[i..];
        let (brace, semi) = (item.find('{'), item.find(';'));
        let end = match (brace, semi) {
            (Some(b), s) if s.is_none_or(|s| b < s) => {
                let mut depth = 0usize;
                let mut end = item.len();
                for (k, c) in item[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (_, Some(s)) => s + 1,
            _ => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// What each `mod.rs` re-exports of its submodules (`pub use context::{Config, Context}`
/// in `controller/mod.rs`): `[controller, Context]` -> `[controller, context]`.
fn re_exports(files: &[PathBuf]) -> BTreeMap<Vec<String>, Vec<String>> {
    let mut map = BTreeMap::new();
    for file in files.iter().filter(|f| f.ends_with("mod.rs")) {
        let own = module_path(file);
        let text = without_test_modules(&code(file));
        let mut from = 0;
        while let Some(i) = text[from..].find("pub use ") {
            from += i + "pub use ".len();
            if text[from..].starts_with("crate::") || text[from..].starts_with("super::") {
                continue;
            }
            for p in paths(&text[from..]) {
                if p.len() >= 2 {
                    let item: Vec<String> = own.iter().chain(&p[p.len() - 1..]).cloned().collect();
                    let module: Vec<String> = own.iter().chain(&p[..1]).cloned().collect();
                    map.insert(item, module);
                }
            }
        }
    }
    map
}

/// Every module path `file` names through `crate::` and `super::`, resolved from the
/// crate root.
fn imports(file: &Path) -> Vec<Vec<String>> {
    let own = module_path(file);
    // A file's `super` is its parent module (`src/controller/context.rs`: `controller`);
    // a `mod.rs`'s is the crate root.
    let parent: Vec<String> = own[..own.len().saturating_sub(1)].to_vec();
    // Not the unit tests: their `super` is the file's own module, and a test may use
    // what it needs.
    let text = without_test_modules(&code(file));
    let text = &text[..];
    let mut out = Vec::new();
    for (marker, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut from = 0;
        while let Some(i) = text[from..].find(marker) {
            let at = from + i;
            from = at + marker.len();
            // `crate::` inside `$crate::` or a longer name is not ours.
            if text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            for p in paths(&text[from..]) {
                out.push(base.iter().cloned().chain(p).collect());
            }
        }
    }
    out
}

#[test]
fn use_trees_are_read_whole() {
    assert_eq!(
        paths("{Error, discovery::{desired, publish::Publish}, duration};"),
        vec![
            vec!["Error".to_string()],
            vec!["discovery".into(), "desired".into()],
            vec!["discovery".into(), "publish".into(), "Publish".into()],
            vec!["duration".into()],
        ]
    );
    assert_eq!(
        paths("sync::plan(a, b)"),
        vec![vec!["sync".to_string(), "plan".into()]]
    );
    assert_eq!(
        paths("vast::VastError as E, x"),
        vec![vec!["vast".to_string(), "VastError".into()]]
    );
}

#[test]
fn modules_import_only_lower_layers() {
    let layers: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let own = module_path(file);
        let top = own[0].as_str();
        let Some(&layer) = layers.get(top) else {
            assert!(
                top == "lib" || top == "main",
                "{} is a module the layer table does not know: add it to LAYERS and to docs/architecture.md",
                file.display()
            );
            continue;
        };
        for path in imports(file) {
            let Some(first) = path.first() else { continue };
            match layers.get(first.as_str()) {
                Some(&other) if first != top && other >= layer => violations.push(format!(
                    "{} (layer {layer}) imports {} (layer {other})",
                    file.display(),
                    path.join("::")
                )),
                Some(_) => {}
                // Through the crate root's re-exports, which are for the binary and the
                // tests: a module names the module an item lives in.
                None => violations.push(format!(
                    "{} names crate::{} through the crate root",
                    file.display(),
                    path.join("::")
                )),
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layers:\n{}",
        violations.join("\n")
    );
}

/// Within a top-level module, the submodules import each other without a cycle (a
/// cycle means that neither can be read, or moved, without the other).
#[test]
fn submodules_import_each_other_without_a_cycle() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let known: std::collections::BTreeSet<Vec<String>> =
        files.iter().map(|f| module_path(f)).collect();
    let re_exported = re_exports(&files);
    // (module, submodule) -> the submodules of the same module it imports.
    let mut edges: BTreeMap<Vec<String>, std::collections::BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let own = module_path(file);
        if own.len() < 2 {
            continue;
        }
        for path in imports(file) {
            // An item a parent re-exports (`super::Context`) names the submodule it is
            // from (`context`).
            let cut = path.len().min(own.len());
            let path = match re_exported.get(&path[..cut]) {
                Some(module) => module.iter().chain(&path[cut..]).cloned().collect(),
                None => path,
            };
            // The longest known module the path starts with, a sibling of this file.
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| known.contains(p));
            if let Some(t) = target
                && t.len() == own.len()
                && t[..t.len() - 1] == own[..own.len() - 1]
                && t != own
            {
                edges.entry(own.clone()).or_default().insert(t);
            }
        }
    }
    // A depth-first search for a back edge.
    fn visit(
        n: &Vec<String>,
        edges: &BTreeMap<Vec<String>, std::collections::BTreeSet<Vec<String>>>,
        on_path: &mut Vec<Vec<String>>,
        done: &mut std::collections::BTreeSet<Vec<String>>,
        cycles: &mut Vec<String>,
    ) {
        if done.contains(n) {
            return;
        }
        if let Some(i) = on_path.iter().position(|p| p == n) {
            let cycle: Vec<String> = on_path[i..]
                .iter()
                .chain([n])
                .map(|p| p.join("::"))
                .collect();
            cycles.push(cycle.join(" -> "));
            return;
        }
        on_path.push(n.clone());
        for next in edges.get(n).into_iter().flatten() {
            visit(next, edges, on_path, done, cycles);
        }
        on_path.pop();
        done.insert(n.clone());
    }
    let mut cycles = Vec::new();
    let mut done = std::collections::BTreeSet::new();
    for n in edges.keys() {
        visit(n, &edges, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(
        cycles.is_empty(),
        "submodules in a cycle:\n{}",
        cycles.join("\n")
    );
    assert!(
        edges.values().map(|e| e.len()).sum::<usize>() > 10,
        "the submodule imports were not read: {edges:?}"
    );
}

#[test]
fn the_pure_parts_name_no_io() {
    let mut files = Vec::new();
    rust_files(&src().join("sync"), &mut files);
    files.push(src().join("vast/parse.rs"));
    files.push(src().join("discovery/desired.rs"));
    for file in files {
        let text = code(&file);
        for io in [
            "tokio",
            "reqwest",
            "kube::Client",
            "kube::api",
            "kube::runtime",
            "std::fs",
            "std::net::Tcp",
        ] {
            assert!(
                !text.contains(io),
                "{} is meant to be pure but names {io}",
                file.display()
            );
        }
    }
}

#[test]
fn the_release_build_has_no_fake_server_no_axum_and_no_failpoints() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-e",
            "normal,build",
            "-p",
            "vast-operator",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        tree.lines().any(|l| l.starts_with("kube ")),
        "cargo tree lists the dependencies"
    );
    for banned in ["axum ", "fake-vast ", "fail "] {
        assert!(
            !tree.lines().any(|l| l.starts_with(banned)),
            "the operator's release dependencies include {banned}"
        );
    }
}
