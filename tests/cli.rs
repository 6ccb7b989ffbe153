//! The `vast-operator workers` and `crd` subcommands, against the fake Vast server.

mod common;

use std::process::Command;

use fake_vast::{FakeVast, Shape, worker_json};
use serde_json::json;

fn run(args: &[&str], key: &str) -> std::process::Output {
    common::run_logged(
        "cli",
        Command::new(env!("CARGO_BIN_EXE_vast-operator"))
            .args(args)
            .env("VAST_API_KEY", key)
            .env_remove("VAST_API_URL"),
    )
}

/// `workers --endpoint` lists the workers of every workergroup of the endpoint (and only
/// those), with the endpoint's own key; a workergroup id beside it is refused.
#[tokio::test]
async fn workers_of_an_endpoint() {
    let fake = FakeVast::start(0).await.expect("fake");
    let key = "vk1-cli-endpoint-7788";
    for (group, endpoint, worker) in [(71, 9, 1), (72, 9, 2), (73, 10, 3)] {
        fake.state.put_group(
            group,
            key,
            Shape::Array,
            vec![worker_json(worker, "idle", None)],
        );
        fake.state
            .set_group_settings(group, json!({ "endpoint_id": endpoint }));
    }
    fake.state
        .put_endpoint(9, key, json!({"endpoint_name": "llama"}));
    let url = fake.url();
    let out = tokio::task::spawn_blocking(move || {
        run(
            &["workers", "--endpoint", "9", "--json", "--vast-url", &url],
            key,
        )
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    let ids: Vec<i64> = rows.iter().filter_map(|r| r["id"].as_i64()).collect();
    assert_eq!(ids, [1, 2], "the workers of groups 71 and 72, not of 73");
    assert_eq!(fake.state.endpoint_calls(9), 1);
    assert_eq!(fake.state.calls(71), 0, "asked by endpoint, not by group");
    let both = tokio::task::spawn_blocking(move || {
        run(
            &[
                "workers",
                "71",
                "--endpoint",
                "9",
                "--vast-url",
                "http://127.0.0.1:9",
            ],
            key,
        )
    })
    .await
    .expect("join");
    assert!(!both.status.success());
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
}

#[tokio::test]
async fn workers_prints_the_table_the_operator_would_write() {
    let fake = FakeVast::start(0).await.expect("fake");
    fake.state.put_group(
        77,
        "vk1-cli-123456",
        Shape::Object,
        vec![
            worker_json(3, "idle", Some("http://198.51.100.3:4000")),
            json!({"id": 1, "status": "brand_new_state"}),
        ],
    );
    let url = fake.url();
    let out = tokio::task::spawn_blocking(move || {
        run(&["workers", "77", "--vast-url", &url], "vk1-cli-123456")
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

    // A server that echoes the key across the point where error texts are cut (509
    // bytes and an ellipsis): a cut before the redaction would leave its first 5 bytes.
    // (The key is the group's own: the fake checks the key before it serves a fault.)
    fake.state
        .put_group(78, "vk1-cli-echoed-456", Shape::Array, vec![]);
    fake.state.set_fault(
        78,
        Some(fake_vast::Fault {
            body: fake_vast::FaultBody::ErrorMsg(format!(
                "{} invalid api_key vk1-cli-echoed-456",
                "x".repeat(509 - 5 - " invalid api_key ".len())
            )),
            ..Default::default()
        }),
    );
    let url = fake.url();
    let out = tokio::task::spawn_blocking(move || {
        run(&["workers", "78", "--vast-url", &url], "vk1-cli-echoed-456")
    })
    .await
    .expect("join");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the API key"), "{err}");
    for piece in "vk1-cli-echoed-456".as_bytes().windows(8) {
        let piece = std::str::from_utf8(piece).expect("ascii");
        assert!(!err.contains(piece), "{piece} of the key printed: {err}");
    }
    assert!(
        !err.contains("api_key vk1-"),
        "the start of the key survived the cut: {err}"
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

#[tokio::test]
async fn https_to_vast_with_a_private_ca_and_plain_http_refused() {
    let (ca, cert, key) = common::test_pki();
    let fake = FakeVast::start_tls(0, &cert, &key).await.expect("tls fake");
    fake.state.put_group(
        78,
        "vk1-tls-456789",
        Shape::Array,
        vec![worker_json(5, "idle", Some("http://198.51.100.5:4000"))],
    );
    let url = fake.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let dir = std::env::temp_dir().join(format!("vast-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca).expect("write CA");
    let ca_path = ca_file.to_str().expect("path").to_string();
    let (trusted, untrusted, cleartext, no_pem) = tokio::task::spawn_blocking(move || {
        let trusted = run(
            &[
                "workers",
                "78",
                "--vast-url",
                &url,
                "--vast-ca-file",
                &ca_path,
            ],
            "vk1-tls-456789",
        );
        // The same server without the CA: the certificate is not trusted.
        let untrusted = run(&["workers", "78", "--vast-url", &url], "vk1-tls-456789");
        // Plain http to a host that is not loopback is refused before any call...
        let cleartext = run(
            &[
                "run",
                "--vast-url",
                "http://vast.example.internal",
                "--leader-elect=false",
            ],
            "vk1-cli-unused-0",
        );
        let no_pem = run(
            &[
                "workers",
                "78",
                "--vast-url",
                &url,
                "--vast-ca-file",
                "/dev/null",
            ],
            "vk1-tls-456789",
        );
        (trusted, untrusted, cleartext, no_pem)
    })
    .await
    .expect("join");
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(trusted.status.success(), "{}", text(&trusted));
    assert!(
        text(&trusted).contains("198.51.100.5"),
        "{}",
        text(&trusted)
    );
    assert!(
        !untrusted.status.success(),
        "an untrusted certificate was accepted"
    );
    assert!(
        text(&untrusted).to_lowercase().contains("certificate")
            || text(&untrusted).to_lowercase().contains("tls"),
        "{}",
        text(&untrusted)
    );
    assert!(!cleartext.status.success());
    assert!(
        text(&cleartext).contains("--allow-insecure-vast-url"),
        "{}",
        text(&cleartext)
    );
    assert!(!no_pem.status.success());
    assert!(
        text(&no_pem).contains("--vast-ca-file"),
        "{}",
        text(&no_pem)
    );
    // The key never shows in any of it.
    for o in [&trusted, &untrusted, &cleartext, &no_pem] {
        assert!(!text(o).contains("vk1-tls-456789"));
    }
    assert_eq!(fake.state.calls(78), 1, "only the trusted call got through");
}

/// What the container image relies on, checked quickly without a container engine (the
/// image itself: tests/image.rs, `make image-test`): the binary (the image's has the
/// same linkage) needs only the libraries of the distroless cc base (glibc, libgcc), and
/// runs as uid 65532 from a directory it cannot write, with no home and no temporary
/// directory; its plain log, not on a terminal, carries no terminal escapes.
#[tokio::test]
async fn the_binary_needs_only_the_base_images_libraries_and_runs_as_uid_65532() {
    let bin = env!("CARGO_BIN_EXE_vast-operator");
    let ldd = Command::new("ldd").arg(bin).output().expect("ldd");
    let allowed = [
        "linux-vdso.so.1",
        "libgcc_s.so.1",
        "libm.so.6",
        "libc.so.6",
        "ld-linux",
    ];
    let libs = String::from_utf8_lossy(&ldd.stdout).to_string();
    for line in libs.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            allowed.iter().any(|a| line.contains(a)),
            "a library the distroless cc image lacks: {line}\n{libs}"
        );
    }
    assert!(libs.contains("libc.so.6"), "{libs}");

    let root = Command::new("id").arg("-u").output().expect("id");
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        eprintln!("not root: the uid 65532 part is skipped");
        return;
    }
    let out = common::run_logged(
        "setpriv-crd",
        Command::new("setpriv")
            .args([
                "--reuid=65532",
                "--regid=65532",
                "--clear-groups",
                bin,
                "crd",
            ])
            .current_dir("/")
            .env_clear()
            .env("HOME", "/nonexistent")
            .env("TMPDIR", "/nonexistent"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("kind: CustomResourceDefinition"));
    // Serving its probes as that user: binds, logs to stderr, writes nothing.
    let health = common::free_port();
    let metrics = common::free_port();
    let mut child = Command::new("setpriv")
        .args([
            "--reuid=65532",
            "--regid=65532",
            "--clear-groups",
            bin,
            "run",
        ])
        .args(["--vast-url", "http://127.0.0.1:9", "--leader-elect=false"])
        .args(["--health-addr", &format!("127.0.0.1:{health}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .current_dir("/")
        .env_clear()
        .env("HOME", "/nonexistent")
        .env("TMPDIR", "/nonexistent")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    // Without a cluster it exits with a clear error about the kubeconfig, after binding
    // its ports as a non-root user: what matters is that nothing failed before that.
    let out = tokio::task::spawn_blocking(move || {
        let status = child.wait().expect("wait");
        let mut err = String::new();
        use std::io::Read;
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        common::record(
            "setpriv-run",
            std::process::Output {
                status,
                stdout: Vec::new(),
                stderr: err.clone().into_bytes(),
            },
        );
        (status, err)
    })
    .await
    .expect("join");
    assert!(out.1.contains("serving"), "{}", out.1);
    assert!(out.1.contains("kubeconfig"), "{}", out.1);
    assert!(
        !out.1.contains('\u{1b}'),
        "terminal escapes in a log that is no terminal's: {:?}",
        out.1
    );
    assert!(
        !out.1.to_lowercase().contains("permission denied"),
        "{}",
        out.1
    );
}

#[test]
fn a_bad_endpoint_cidr_is_an_error_at_start_up() {
    let bin = env!("CARGO_BIN_EXE_vast-operator");
    for (flag, value, says) in [
        (
            "--endpoint-allow-cidrs",
            "10.0.0.0/8,10.1.2.3/8",
            "did you mean 10.0.0.0/8",
        ),
        ("--endpoint-deny-cidrs", "203.0.113.0/33", "is not a CIDR"),
        ("--endpoint-allow-cidrs", "peered-network", "is not a CIDR"),
    ] {
        let out = common::run_logged(
            "bad-cidr",
            Command::new(bin)
                .args(["run", "--leader-elect=false", flag, value])
                .env("KUBECONFIG", "/nonexistent/kubeconfig"),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {value} must be refused");
        assert!(
            err.contains(flag) && err.contains(says),
            "{flag} {value}: {err}"
        );
        assert!(
            !err.contains("kubeconfig"),
            "refused before anything else: {err}"
        );
    }
    let env = common::run_logged(
        "bad-cidr-env",
        Command::new(bin)
            .args(["run", "--leader-elect=false"])
            .env("ENDPOINT_DENY_CIDRS", "2001:db8::1/32")
            .env("KUBECONFIG", "/nonexistent/kubeconfig"),
    );
    let err = String::from_utf8_lossy(&env.stderr);
    assert!(
        !env.status.success() && err.contains("did you mean 2001:db8::/32"),
        "{err}"
    );
}
