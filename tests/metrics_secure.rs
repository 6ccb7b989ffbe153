//! `--metrics-secure`: `/metrics` over HTTPS to callers whose ServiceAccount token may
//! `get` the non-resource URL `/metrics` (TokenReview + SubjectAccessReview against the
//! test control plane), the probes still plain HTTP, and no token in the log.

mod common;

use std::time::Duration;

use common::{OperatorProcess, TestNs, eventually, http_get};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

/// An HTTPS client trusting `ca` only (None: trusting anything, for the self-signed
/// certificate).
fn https_client(ca: Option<&str>) -> reqwest::Client {
    vast_operator::install_crypto_provider();
    let b = reqwest::Client::builder().timeout(Duration::from_secs(5));
    let b = match ca {
        Some(pem) => {
            b.tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA")])
        }
        None => b.danger_accept_invalid_certs(true),
    };
    b.build().expect("https client")
}

/// GET `url` with an optional bearer token: (status, body); None when nothing answers.
async fn get(c: &reqwest::Client, url: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut req = c.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.text().await.ok()?))
}

/// Two ServiceAccounts in `ns`, `reader` bound to a ClusterRole that may get /metrics and
/// `stranger` bound to nothing; their tokens. The cluster-scoped objects are named after
/// `ns` and returned for cleanup.
async fn reader_and_stranger(ns: &TestNs) -> (String, String, String) {
    let pp = PostParams::default();
    for name in ["reader", "stranger"] {
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("sa");
        ns.api::<ServiceAccount>()
            .create(&pp, &sa)
            .await
            .expect("create sa");
    }
    let role_name = format!("{}-metrics-reader", ns.name);
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": role_name},
        "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    }))
    .expect("role");
    Api::<ClusterRole>::all(ns.client.clone())
        .create(&pp, &role)
        .await
        .expect("create role");
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": role_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns.name}]
    }))
    .expect("binding");
    Api::<ClusterRoleBinding>::all(ns.client.clone())
        .create(&pp, &binding)
        .await
        .expect("create binding");
    (
        common::service_account_token(&ns.client, &ns.name, "reader").await,
        common::service_account_token(&ns.client, &ns.name, "stranger").await,
        role_name,
    )
}

async fn delete_cluster_rbac(client: &kube::Client, name: &str) {
    let dp = DeleteParams::default();
    let _ = Api::<ClusterRoleBinding>::all(client.clone())
        .delete(name, &dp)
        .await;
    let _ = Api::<ClusterRole>::all(client.clone())
        .delete(name, &dp)
        .await;
}

async fn token_reviews(client: &kube::Client) -> u64 {
    common::apiserver_requests(client, &[("resource", "tokenreviews")]).await
}

#[tokio::test]
async fn metrics_need_a_token_allowed_to_get_them_and_probes_stay_plain_http() {
    let ns = TestNs::new("metrics-secure").await;
    let (ca, cert, key) = common::test_pki();
    let dir = common::repo_root()
        .join("target/test-logs")
        .join(format!("{}-metrics-cert", ns.name));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("tls.crt"), &cert).expect("tls.crt");
    std::fs::write(dir.join("tls.key"), &key).expect("tls.key");
    let dir_arg = dir.to_str().expect("path").to_string();
    let p = OperatorProcess::start(
        "op",
        &ns.name,
        "http://127.0.0.1:9",
        &[
            "--leader-elect=false",
            "--metrics-secure",
            "--metrics-cert-dir",
            &dir_arg,
        ],
    );
    let (reader, stranger, role) = reader_and_stranger(&ns).await;
    let wait = Duration::from_secs(30);
    // The probes: plain HTTP, no token.
    eventually("/healthz 200 over plain HTTP", wait, || async {
        (http_get(&format!("{}/healthz", p.health)).await?.0 == 200).then_some(())
    })
    .await;

    let https = https_client(Some(&ca));
    let url = format!("{}/metrics", p.metrics.replace("http://", "https://"));
    // No token: 401, without asking the apiserver.
    let (code, body) = eventually("/metrics answers over HTTPS", wait, || {
        get(&https, &url, None)
    })
    .await;
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains("vast_operator_"), "{body}");
    // Not plain HTTP any more.
    assert_ne!(
        http_get(&format!("{}/metrics", p.metrics))
            .await
            .map(|r| r.0),
        Some(200)
    );
    // A token that is no ServiceAccount's: 401.
    let forged = "eyJhbGciOiJSUzI1NiJ9.forged-token-4711.c2lnbmF0dXJl";
    let (code, _) = get(&https, &url, Some(forged)).await.expect("answer");
    assert_eq!(code, 401);
    // A valid token of a ServiceAccount that may not get /metrics: 403.
    let (code, body) = get(&https, &url, Some(&stranger)).await.expect("answer");
    assert_eq!(code, 403, "{body}");
    assert!(!body.contains("vast_operator_"), "{body}");
    // Allowed: the metrics. (RBAC may take a moment to see the new binding.)
    let body = eventually("200 with the reader's token", wait, || async {
        let (code, body) = get(&https, &url, Some(&reader)).await?;
        (code == 200).then_some(body)
    })
    .await;
    assert!(body.contains("vast_operator_"), "{body}");
    // Scraped again at once: the verdict is cached, no new TokenReview.
    let before = token_reviews(&ns.client).await;
    for _ in 0..5 {
        let (code, _) = get(&https, &url, Some(&reader)).await.expect("answer");
        assert_eq!(code, 200);
        let (code, _) = get(&https, &url, Some(&stranger)).await.expect("answer");
        assert_eq!(code, 403);
    }
    assert_eq!(
        token_reviews(&ns.client).await,
        before,
        "cached verdicts still called TokenReview"
    );
    // The probes did not move to HTTPS.
    assert_eq!(
        http_get(&format!("{}/healthz", p.health))
            .await
            .map(|r| r.0),
        Some(200)
    );

    // Without --metrics-cert-dir: a self-signed certificate, the same checks.
    let p2 = OperatorProcess::start(
        "op-self-signed",
        &ns.name,
        "http://127.0.0.1:9",
        &["--leader-elect=false", "--metrics-secure"],
    );
    let url2 = format!("{}/metrics", p2.metrics.replace("http://", "https://"));
    let any_cert = https_client(None);
    let (code, _) = eventually("self-signed /metrics answers", wait, || {
        get(&any_cert, &url2, None)
    })
    .await;
    assert_eq!(code, 401);
    // Not signed by our CA: a client that checks refuses it.
    assert!(get(&https, &url2, Some(&reader)).await.is_none());
    let (code, body) = get(&any_cert, &url2, Some(&reader)).await.expect("answer");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("vast_operator_"));

    // No token ever reaches a log; the reviewed user does.
    let log = p.log_text() + &p2.log_text();
    assert!(
        log.contains(&format!("system:serviceaccount:{}:reader", ns.name)),
        "{log}"
    );
    for t in [reader.as_str(), stranger.as_str(), forged] {
        assert!(!log.contains(t), "a token is in the operator's log");
        // Nor a large piece of one (a JWT's signature part).
        let tail = &t[t.len().saturating_sub(24)..];
        assert!(!log.contains(tail), "part of a token is in the log");
    }
    drop((p, p2));
    delete_cluster_rbac(&ns.client, &role).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn secure_metrics_refuse_the_probe_address_and_a_cert_dir_needs_them() {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let other_metrics = format!("127.0.0.1:{}", common::free_port());
    let other_health = format!("127.0.0.1:{}", common::free_port());
    let kubeconfig = common::kubeconfig().to_path_buf();
    // Each must exit at once; one still running after 20 s is killed (and fails below).
    let run = move |args: &[&str]| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vast-operator"))
            .arg("run")
            .args(["--vast-url", "http://127.0.0.1:9", "--leader-elect=false"])
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("METRICS_SECURE")
            .env_remove("METRICS_CERT_DIR")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run vast-operator");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        common::record(
            "metrics-secure-refused",
            child.wait_with_output().expect("vast-operator output"),
        )
    };
    let (same, dir_alone) = tokio::task::spawn_blocking(move || {
        (
            run(&[
                "--metrics-secure",
                "--metrics-addr",
                &addr,
                "--health-addr",
                &addr,
            ]),
            run(&[
                "--metrics-cert-dir",
                "/nonexistent",
                "--metrics-addr",
                &other_metrics,
                "--health-addr",
                &other_health,
            ]),
        )
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&same.stderr);
    assert!(!same.status.success(), "{stderr}");
    assert!(
        stderr.contains("--metrics-addr and --health-addr must differ"),
        "{stderr}"
    );
    let stderr = String::from_utf8_lossy(&dir_alone.stderr);
    assert!(!dir_alone.status.success(), "{stderr}");
    assert!(
        stderr.contains("--metrics-cert-dir needs --metrics-secure"),
        "{stderr}"
    );
}
