//! The architecture holds: modules import only modules of a lower layer, the pure core
//! names no I/O crate, and the release build carries neither the fake Vast server nor
//! axum. See `docs/architecture.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Layer of each top-level module; `main` and the crate root stand above them all.
const LAYERS: &[(&str, u8)] = &[
    ("duration", 0),
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

/// The top-level module a file belongs to (`src/sync/diff.rs` -> `sync`).
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).expect("under src");
    let first = rel.components().next().expect("component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
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

#[test]
fn modules_import_only_lower_layers() {
    let layers: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(file);
        let Some(&own) = layers.get(module.as_str()) else {
            assert!(
                module == "lib" || module == "main",
                "{} is a module the layer table does not know: add it to LAYERS and to docs/architecture.md",
                file.display()
            );
            continue;
        };
        let text = code(file);
        for (other, &layer) in &layers {
            if *other == module {
                continue;
            }
            let named = [format!("crate::{other}"), format!("crate::{{{other}")]
                .iter()
                .any(|p| text.contains(p.as_str()))
                || text.contains(&format!(", {other}}}")) && text.contains("use crate::{");
            if named && layer >= own {
                violations.push(format!(
                    "{} (layer {own}) imports {other} (layer {layer})",
                    file.display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layers:\n{}",
        violations.join("\n")
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
fn the_release_build_has_no_fake_server_and_no_axum() {
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
    for banned in ["axum ", "fake-vast "] {
        assert!(
            !tree.lines().any(|l| l.starts_with(banned)),
            "the operator's release dependencies include {banned}"
        );
    }
}
