//! The `vast-operator workers` and `crd` subcommands, against the fake Vast server.

use std::process::Command;

use fake_vast::{FakeVast, Shape, worker_json};
use serde_json::json;

fn run(args: &[&str], key: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vast-operator"))
        .args(args)
        .env("VAST_API_KEY", key)
        .env_remove("VAST_API_URL")
        .output()
        .expect("run vast-operator")
}

#[tokio::test]
async fn workers_prints_the_table_the_operator_would_write() {
    let fake = FakeVast::start(0).await.expect("fake");
    fake.state.put_group(
        77,
        "cli-key-123",
        Shape::Object,
        vec![
            worker_json(3, "idle", Some("http://198.51.100.3:4000")),
            json!({"id": 1, "status": "brand_new_state"}),
        ],
    );
    let url = fake.url();
    let out = tokio::task::spawn_blocking(move || {
        run(&["workers", "77", "--vast-url", &url], "cli-key-123")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "ID", "STATUS", "READY", "URL", "CREATED", "LOAD", "REQS", "PERF"
        ]
    );
    assert_eq!(
        rows[1],
        ["1", "brand_new_state", "false", "-", "-", "-", "-", "-"]
    );
    assert_eq!(
        &rows[2][..4],
        ["3", "idle", "true", "http://198.51.100.3:4000"]
    );

    // A server that echoes the key past the point where error texts are cut.
    fake.state
        .put_group(78, "cli-key-123", Shape::Array, vec![]);
    fake.state.set_fault(
        78,
        Some(fake_vast::Fault {
            body: fake_vast::FaultBody::ErrorMsg(format!(
                "{} invalid api_key wrong-key-456",
                "x".repeat(195)
            )),
            ..Default::default()
        }),
    );
    let url = fake.url();
    let out = tokio::task::spawn_blocking(move || {
        run(&["workers", "78", "--vast-url", &url], "wrong-key-456")
    })
    .await
    .expect("join");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the API key"), "{err}");
    assert!(
        !err.contains("wrong-key"),
        "no piece of the key may be printed: {err}"
    );
    assert_eq!((fake.state.calls(77), fake.state.calls(78)), (1, 1));
}

#[test]
fn crd_subcommand_prints_the_committed_crd() {
    let out = run(&["crd"], "");
    assert!(out.status.success());
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/workergroups.vast.ai.yaml"
    ))
    .expect("read crd");
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "`vast-operator crd` differs from crds/: run `make crds`"
    );
}
