//! The fuzz target's seeds (`fuzz/corpus/`) reach the branches their names say, decoded
//! and checked by the target's own code (`fuzz/src/check.rs`, included here by path):
//! a seed that decodes to another status, another branch or no echo of its key fails
//! here instead of rotting unnoticed. No cluster.

#[path = "../fuzz/src/check.rs"]
mod check;

use std::path::{Path, PathBuf};

use check::Outcome;

/// What a seed's name says it reaches: `<status>-<outcome>[-<workers>][-echo]-<what>`.
#[derive(Debug, PartialEq)]
struct Named {
    status: u16,
    outcome: Outcome,
    echoed: bool,
}

fn named(name: &str) -> Named {
    let mut parts = name.split('-');
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{name}: no status at the start of the name"));
    let outcome = match parts.next() {
        Some("workers") => Outcome::Workers(
            parts
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{name}: no worker count after `workers`")),
        ),
        Some("ratelimited") => Outcome::RateLimited,
        Some("auth") => Outcome::Authentication,
        Some("notfound") => Outcome::NotFound,
        Some("http") => Outcome::Http(status),
        Some("remote") => Outcome::Remote,
        Some("malformed") => Outcome::Malformed,
        other => panic!("{name}: {other:?} is not an outcome"),
    };
    let echoed = parts.next() == Some("echo");
    Named {
        status,
        outcome,
        echoed,
    }
}

fn seeds() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    seeds.sort();
    seeds
}

fn name(seed: &Path) -> &str {
    seed.file_name()
        .and_then(|n| n.to_str())
        .expect("a seed name")
}

#[test]
fn every_seed_reaches_what_its_name_says() {
    let seeds = seeds();
    assert!(!seeds.is_empty(), "no seeds");
    let mut wrong = Vec::new();
    for seed in &seeds {
        let data = std::fs::read(seed).expect("read seed");
        let report = match std::panic::catch_unwind(|| check::check(&data)) {
            Ok(report) => report,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic");
                wrong.push(format!("{}: fails the target's checks: {why}", name(seed)));
                continue;
            }
        };
        let got = Named {
            status: report.status,
            outcome: report.outcome,
            echoed: report.echoed,
        };
        let want = named(name(seed));
        if got != want {
            wrong.push(format!("{}: reaches {got:?}", name(seed)));
        }
    }
    assert!(
        wrong.is_empty(),
        "seeds failing or reaching something else than their names say:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_seeds_cover_every_branch() {
    let reached: Vec<Named> = seeds().iter().map(|s| named(name(s))).collect();
    let has = |what: &str, f: &dyn Fn(&Named) -> bool| {
        assert!(reached.iter().any(f), "no seed reaches {what}");
    };
    // The four shapes of a 200, and what a 200 can carry instead of workers.
    has("workers from a 200", &|n| {
        n.status == 200 && matches!(n.outcome, Outcome::Workers(w) if w > 0)
    });
    for outcome in [
        Outcome::Authentication,
        Outcome::NotFound,
        Outcome::Remote,
        Outcome::Malformed,
    ] {
        has(&format!("{outcome:?} from a 200"), &|n| {
            n.status == 200 && n.outcome == outcome
        });
        has(&format!("{outcome:?} from a 200 echoing the key"), &|n| {
            n.status == 200 && n.outcome == outcome && n.echoed
        });
    }
    for (status, outcome) in [
        (429, Outcome::RateLimited),
        (401, Outcome::Authentication),
        (403, Outcome::Authentication),
        (404, Outcome::NotFound),
        (500, Outcome::Http(500)),
        (502, Outcome::Http(502)),
        (503, Outcome::Http(503)),
    ] {
        has(&format!("{outcome:?} from HTTP {status}"), &|n| {
            n.status == status && n.outcome == outcome
        });
    }
}

/// The decoding the seeds rely on, byte by byte.
#[test]
fn the_header_decodes_as_documented() {
    // Status 100 + 329, the key from byte 4 of the body, 34 bytes long.
    let input = check::decode(b"\x49\x01\x04\x21abcdvk1-fuzz-header-decoding-3e7b1c9a tail");
    assert_eq!(input.status, 429);
    assert_eq!(input.key, "vk1-fuzz-header-decoding-3e7b1c9a");
    assert_eq!(input.body, b"abcdvk1-fuzz-header-decoding-3e7b1c9a tail");
    // 600 is 100 past 500: status 200. A key running off the end, or into bytes that
    // are not UTF-8, ends there.
    let input = check::decode(b"\x58\x02\x02\xffabvk1-fuzz-header-off-the-end-6d2a9f");
    assert_eq!(input.status, 200);
    assert_eq!(input.key, "vk1-fuzz-header-off-the-end-6d2a9f");
    let input = check::decode(b"\x58\x02\x00\x40vk1-fuzz-header-not-utf8-0b8e4c\xff\xfe");
    assert_eq!(input.key, "vk1-fuzz-header-not-utf8-0b8e4c");
    // Shorter than the header: a body alone, status 200, no key.
    assert_eq!(
        check::decode(b"[]"),
        check::Input {
            status: 200,
            key: "",
            body: b"[]"
        }
    );
}
