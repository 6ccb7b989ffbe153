//! The Helm chart: lint, schema, both RBAC modes rendered and accepted by the apiserver
//! (server-side dry run), and installed into this process's own control plane, where the
//! operator then runs out of cluster with a token of the chart's own ServiceAccount and
//! must sync and publish under exactly the chart's RBAC. Pods do not run here (no
//! kubelet), so the operator binary plays the Deployment.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use common::{OperatorProcess, TestNs, eventually, helm, helm_off_runtime, ready_is, text};
use fake_vast::{Shape, worker_json};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::Api;
use serde_json::json;
use vast_operator::crd::WorkerGroup;

const KEY: &str = "vk1-chart-8642";
/// The Kubernetes version `helm template` renders for (the test control plane's).
const KUBE: &str = "1.34.4";

fn chart() -> PathBuf {
    common::repo_root().join("charts/vast-operator")
}

fn yaml_value(file: &str, key: &str) -> String {
    file.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_default()
}

/// The project's helm is built as Helm's own Makefile builds it (hack/tools.sh): a plain
/// `helm template`, without `--kube-version`, assumes the Kubernetes of its client-go
/// (1.36), not 1.20, and so accepts the chart's `kubeVersion: >=1.30.0-0`; and it knows
/// its own version.
#[test]
fn a_plain_helm_template_renders_the_chart() {
    let c = chart();
    let c = c.to_str().expect("path");
    let out = helm(&["template", "t", c]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("kind: Deployment"), "{}", text(&out));
    let out = helm(&["version", "--template", "{{.Version}}"]);
    let version = text(&out);
    assert!(
        version.starts_with("v3.") && !version.contains("unreleased"),
        "helm version: {version}"
    );
}

#[test]
fn the_chart_follows_cargo_and_ships_the_crds_file() {
    let cargo =
        std::fs::read_to_string(common::repo_root().join("Cargo.toml")).expect("Cargo.toml");
    let version = yaml_value(&cargo.replace(" = ", ": "), "version");
    let chart_yaml = std::fs::read_to_string(chart().join("Chart.yaml")).expect("Chart.yaml");
    assert_eq!(
        yaml_value(&chart_yaml, "version"),
        version,
        "Chart.yaml version"
    );
    assert_eq!(
        yaml_value(&chart_yaml, "appVersion"),
        version,
        "Chart.yaml appVersion"
    );
    let ours = std::fs::read_to_string(common::repo_root().join("crds/workergroups.vast.ai.yaml"))
        .expect("crds/");
    let shipped = std::fs::read_to_string(chart().join("files/workergroups.vast.ai.yaml"))
        .expect("chart files/");
    assert_eq!(
        shipped, ours,
        "charts/vast-operator/files/ differs from crds/: cp crds/workergroups.vast.ai.yaml charts/vast-operator/files/"
    );
    // The README's Argo CD snippet is the shipped health script.
    let lua = std::fs::read_to_string(chart().join("files/argocd-health.lua")).expect("lua");
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).expect("README");
    let indented: String = lua
        .lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("  {l}\n")
            }
        })
        .collect();
    assert!(
        readme.contains(&indented),
        "the README's Argo CD health check differs from charts/vast-operator/files/argocd-health.lua"
    );
}

#[test]
fn lint_and_the_values_schema() {
    let c = chart();
    let c = c.to_str().expect("path");
    let lint = helm(&["lint", "--strict", c]);
    assert!(lint.status.success(), "{}", text(&lint));
    let lint = helm(&["lint", "--strict", c, "--set", "watchNamespace=team-a"]);
    assert!(lint.status.success(), "{}", text(&lint));
    // At helm install, against the cluster, too.
    let kube = common::kubeconfig().to_string_lossy().to_string();
    let out = helm(&[
        "install",
        "bad",
        c,
        "--kubeconfig",
        &kube,
        "--dry-run=server",
        "--set",
        "replicaCount=-1",
    ]);
    assert!(!out.status.success(), "helm install took replicaCount=-1");
    assert!(text(&out).contains("replicaCount"), "{}", text(&out));
    // One replica: no PodDisruptionBudget (it would block drains); more than one needs
    // leader election.
    let one = helm(&[
        "template",
        "t",
        c,
        "--kube-version",
        KUBE,
        "--set",
        "replicaCount=1",
    ]);
    assert!(one.status.success(), "{}", text(&one));
    assert!(!text(&one).contains("kind: PodDisruptionBudget"));
    let two = helm(&[
        "template",
        "t",
        c,
        "--kube-version",
        KUBE,
        "--set",
        "leaderElection.enabled=false",
    ]);
    assert!(!two.status.success());
    assert!(
        text(&two).contains("needs leaderElection"),
        "{}",
        text(&two)
    );
    for (bad, says) in [
        ("replicaCount=-1", "replicaCount"),
        ("unknownField=1", "unknownField"),
        ("vast.url=ftp://x", "vast"),
        ("vast.url=http://vast.example", "vast"),
        ("leaderElection.leaseDuration=soon", "leaseDuration"),
        ("discovery.allowCidrs={peered-net}", "allowCidrs"),
        ("discovery.maxEndpoints=0", "maxEndpoints"),
    ] {
        let out = helm(&["template", "t", c, "--kube-version", KUBE, "--set", bad]);
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(text(&out).contains(says), "{bad}: {}", text(&out));
    }
    // The address policy's values become the flags.
    let policy = helm(&[
        "template",
        "t",
        c,
        "--kube-version",
        KUBE,
        "--set",
        "discovery.allowCidrs={10.20.0.0/16,192.0.2.0/24}",
        "--set",
        "discovery.denyCidrs={10.20.9.0/24}",
        "--set",
        "discovery.maxEndpoints=50",
    ]);
    assert!(policy.status.success(), "{}", text(&policy));
    for arg in [
        "- --endpoint-allow-cidrs=10.20.0.0/16,192.0.2.0/24",
        "- --endpoint-deny-cidrs=10.20.9.0/24",
        "- --max-endpoints=50",
    ] {
        assert!(text(&policy).contains(arg), "{arg} not rendered");
    }
    assert!(
        !text(&one).contains("--endpoint-allow-cidrs"),
        "no allow list by default"
    );
}

/// Renders the chart with `sets` and has the apiserver validate it (server dry run).
async fn dry_run(release_ns: &str, sets: &[&str]) -> String {
    let mut args = vec![
        "template".to_string(),
        "vo".to_string(),
        chart().to_string_lossy().to_string(),
        "--namespace".to_string(),
        release_ns.to_string(),
        "--kube-version".to_string(),
        KUBE.to_string(),
    ];
    for s in sets {
        args.push("--set".into());
        args.push((*s).into());
    }
    let out = helm_off_runtime(args).await;
    assert!(out.status.success(), "{}", text(&out));
    let rendered = String::from_utf8_lossy(&out.stdout).to_string();
    let file = common::repo_root()
        .join("target/test-logs")
        .join(format!("{release_ns}-rendered.yaml"));
    std::fs::create_dir_all(file.parent().expect("dir")).expect("dir");
    std::fs::write(&file, &rendered).expect("write");
    let kubectl = common::repo_root().join("hack/bin/kubectl");
    let kc = common::kubeconfig().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(kubectl)
            .args(["apply", "--dry-run=server", "-f"])
            .arg(&file)
            .env("KUBECONFIG", kc)
            .output()
    })
    .await
    .expect("join")
    .expect("kubectl");
    assert!(out.status.success(), "{}", text(&out));
    rendered
}

/// Renders the chart with `sets` (helm template only: for kinds the test cluster lacks).
fn render(sets: &[&str]) -> Output {
    let c = chart();
    let mut args = vec![
        "template",
        "vo",
        c.to_str().expect("path"),
        "--kube-version",
        KUBE,
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    helm(&args)
}

/// The objects of a rendered chart.
fn objects(rendered: &str) -> Vec<serde_json::Value> {
    rendered
        .split("\n---")
        .filter_map(|doc| serde_norway::from_str::<serde_json::Value>(doc).ok())
        .filter(|v| v.is_object())
        .collect()
}

/// The rendered objects of `kind`.
fn of_kind<'a>(objects: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The rules of the ClusterRole or Role `name`, as (apiGroup, resource, verbs) triples.
fn grants(objects: &[serde_json::Value], kind: &str, name: &str) -> Vec<(String, String, String)> {
    let role = of_kind(objects, kind)
        .into_iter()
        .find(|o| o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"));
    let mut out = Vec::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        let strs = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        for g in strs("apiGroups") {
            for r in strs("resources") {
                out.push((g.clone(), r, strs("verbs").join(",")));
            }
        }
    }
    out
}

fn may_review_tokens(grants: &[(String, String, String)]) {
    for (group, resource) in [
        ("authentication.k8s.io", "tokenreviews"),
        ("authorization.k8s.io", "subjectaccessreviews"),
    ] {
        assert!(
            grants.iter().any(|(g, r, v)| g == group
                && r == resource
                && v.split(',').any(|v| v == "create")),
            "no create on {resource}: {grants:?}"
        );
    }
}

fn has_metrics_reader(objects: &[serde_json::Value]) {
    let reader = of_kind(objects, "ClusterRole")
        .into_iter()
        .find(|o| o["metadata"]["name"] == "vo-metrics-reader")
        .expect("the metrics-reader ClusterRole");
    assert_eq!(
        reader["rules"],
        json!([{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}])
    );
}

#[test]
fn metrics_are_https_behind_a_token_by_default() {
    let out = render(&["metrics.serviceMonitor.enabled=true"]);
    assert!(out.status.success(), "{}", text(&out));
    let rendered = String::from_utf8_lossy(&out.stdout).to_string();
    let objs = objects(&rendered);
    assert!(rendered.contains("- --metrics-secure\n"), "{rendered}");
    may_review_tokens(&grants(&objs, "ClusterRole", "vo-vast-operator"));
    has_metrics_reader(&objs);
    // No binding unless asked for.
    assert!(
        !of_kind(&objs, "ClusterRoleBinding")
            .iter()
            .any(|o| o["metadata"]["name"] == "vo-metrics-reader")
    );
    // Prometheus scrapes over HTTPS with its own token; the certificate is self-signed.
    let sm = of_kind(&objs, "ServiceMonitor");
    let endpoint = &sm.first().expect("a ServiceMonitor")["spec"]["endpoints"][0];
    assert_eq!(endpoint["scheme"], "https", "{endpoint}");
    assert_eq!(
        endpoint["bearerTokenFile"],
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    );
    assert_eq!(endpoint["tlsConfig"], json!({"insecureSkipVerify": true}));

    // A certificate Secret: mounted as --metrics-cert-dir, and Prometheus checks it.
    let out = render(&[
        "metrics.serviceMonitor.enabled=true",
        "metrics.certSecret=vo-metrics-cert",
        "metrics.readerSubjects[0].kind=ServiceAccount",
        "metrics.readerSubjects[0].name=prometheus-k8s",
        "metrics.readerSubjects[0].namespace=monitoring",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let rendered = String::from_utf8_lossy(&out.stdout).to_string();
    let objs = objects(&rendered);
    assert!(rendered.contains("--metrics-cert-dir=/etc/metrics-cert"));
    let deployment = of_kind(&objs, "Deployment")[0];
    assert_eq!(
        deployment["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "metrics-cert", "secret": {"secretName": "vo-metrics-cert"}}])
    );
    let endpoint = &of_kind(&objs, "ServiceMonitor")[0]["spec"]["endpoints"][0];
    assert_eq!(endpoint["tlsConfig"]["insecureSkipVerify"], false);
    assert_eq!(
        endpoint["tlsConfig"]["ca"],
        json!({"secret": {"name": "vo-metrics-cert", "key": "ca.crt"}})
    );
    let binding = of_kind(&objs, "ClusterRoleBinding")
        .into_iter()
        .find(|o| o["metadata"]["name"] == "vo-metrics-reader")
        .expect("the reader binding");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": "monitoring"}])
    );

    // Plain metrics when asked for: no flag, no reviews, plain ServiceMonitor.
    let out = render(&[
        "metrics.serviceMonitor.enabled=true",
        "metrics.secure=false",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let rendered = String::from_utf8_lossy(&out.stdout).to_string();
    let objs = objects(&rendered);
    assert!(!rendered.contains("--metrics-secure"));
    assert!(!rendered.contains("tokenreviews"));
    assert!(!rendered.contains("metrics-reader"));
    assert!(of_kind(&objs, "ServiceMonitor")[0]["spec"]["endpoints"][0]["scheme"].is_null());

    // HTTPS metrics and plain probes cannot share a port.
    let out = render(&["metrics.port=8081"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("metrics.port and health.port to differ"),
        "{}",
        text(&out)
    );
    assert!(
        render(&["metrics.port=8081", "metrics.secure=false"])
            .status
            .success()
    );
}

#[tokio::test]
async fn both_modes_render_and_the_apiserver_accepts_them() {
    let ns = TestNs::new("chart-dry").await;
    let cluster = dry_run(&ns.name, &[]).await;
    assert!(cluster.contains("kind: ClusterRole\n"));
    assert!(cluster.contains("helm.sh/resource-policy: keep"));
    for must in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "type: RuntimeDefault",
        "drop: [\"ALL\"]",
        "path: /healthz",
        "path: /readyz",
        "fieldPath: metadata.name",
        "fieldPath: metadata.namespace",
        "terminationGracePeriodSeconds: 30",
        "--shutdown-timeout=20s",
        "topologySpreadConstraints",
        "kind: PodDisruptionBudget",
    ] {
        assert!(cluster.contains(must), "missing {must}");
    }
    let objs = objects(&cluster);
    may_review_tokens(&grants(&objs, "ClusterRole", "vo-vast-operator"));
    has_metrics_reader(&objs);
    let single = dry_run(&ns.name, &["watchNamespace=default", "crds.install=false"]).await;
    // Cluster-wide: only the right to review tokens (cluster-scoped), and the reader role.
    let objs = objects(&single);
    let cluster_roles: Vec<&serde_json::Value> = of_kind(&objs, "ClusterRole")
        .into_iter()
        .map(|o| &o["metadata"]["name"])
        .collect();
    assert_eq!(
        cluster_roles,
        [
            &json!("vo-vast-operator-metrics-auth"),
            &json!("vo-metrics-reader")
        ],
        "namespace mode is cluster-wide"
    );
    assert_eq!(
        grants(&objs, "ClusterRole", "vo-vast-operator-metrics-auth").len(),
        2
    );
    may_review_tokens(&grants(
        &objs,
        "ClusterRole",
        "vo-vast-operator-metrics-auth",
    ));
    assert!(single.contains("--namespace=default"));
    assert!(!single.contains("kind: CustomResourceDefinition"));
    let plain = dry_run(
        &ns.name,
        &[
            "watchNamespace=default",
            "crds.install=false",
            "metrics.secure=false",
        ],
    )
    .await;
    assert!(
        !plain.contains("kind: ClusterRole"),
        "namespace mode with plain metrics is cluster-wide"
    );
    let extras = dry_run(
        &ns.name,
        &[
            "networkPolicy.enabled=true",
            "dashboard.enabled=true",
            "crds.install=false",
        ],
    )
    .await;
    assert!(extras.contains("kind: NetworkPolicy"));
    assert!(extras.contains("grafana_dashboard"));
    // The metrics port admits the monitoring namespace only; the probes stay open.
    let objs = objects(&extras);
    let policy = of_kind(&objs, "NetworkPolicy")[0];
    let ingress = policy["spec"]["ingress"].as_array().expect("ingress");
    let on_port = |port: i64| {
        ingress
            .iter()
            .find(|r| {
                r["ports"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["port"] == port))
            })
            .unwrap_or_else(|| panic!("no ingress rule on {port}: {policy}"))
    };
    assert_eq!(
        on_port(8080)["from"],
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]),
        "{policy}"
    );
    assert!(on_port(8081)["from"].is_null(), "{policy}");
    let scoped = dry_run(
        &ns.name,
        &[
            "networkPolicy.enabled=true",
            "crds.install=false",
            "networkPolicy.metricsFrom.namespaceSelector.matchLabels.team=obs",
            "networkPolicy.metricsFrom.podSelector.matchLabels.app=prometheus",
        ],
    )
    .await;
    let objs = objects(&scoped);
    let from = &of_kind(&objs, "NetworkPolicy")[0]["spec"]["ingress"][0]["from"];
    assert_eq!(
        from[0]["namespaceSelector"]["matchLabels"]["team"], "obs",
        "{from}"
    );
    assert_eq!(
        from[0]["podSelector"],
        json!({"matchLabels": {"app": "prometheus"}}),
        "{from}"
    );
    ns.cleanup().await;
}

/// The operator's arguments as the release's Deployment gives them, without `run` and
/// the three this test sets itself (the fake Vast, free local ports).
async fn deployment_args(release: &str, ns: &str) -> Vec<String> {
    let out = helm_off_runtime(
        ["get", "manifest", release, "--namespace", ns]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let manifest = String::from_utf8_lossy(&out.stdout).to_string();
    let args: Vec<String> = manifest
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .skip(1)
        .map_while(|l| {
            l.trim()
                .strip_prefix("- ")
                .map(|a| a.trim_matches('"').to_string())
        })
        .filter(|a| a != "run")
        .filter(|a| {
            ![
                "--vast-url=",
                "--vast-console-url=",
                "--metrics-addr=",
                "--health-addr=",
            ]
            .iter()
            .any(|p| a.starts_with(p))
        })
        .collect();
    assert!(
        args.iter().any(|a| a.starts_with("--lease-name=")),
        "{manifest}"
    );
    args
}

async fn secret_and_group(ns: &TestNs, id: i64) {
    ns.secret("vast", "api-key", KEY).await;
    ns.apply_group("llama", common::group_spec(id, "5s")).await;
}

/// Waits until `ns`'s WorkerGroup is synced, its Service published, and it has events.
async fn synced_and_published(ns: &TestNs) {
    let api = ns.api::<WorkerGroup>();
    eventually("synced and published", Duration::from_secs(60), || async {
        let wg = api.get("llama").await.ok()?;
        let published = wg
            .status
            .as_ref()?
            .conditions
            .iter()
            .any(|c| c.type_ == "DiscoveryReady" && c.status == "True");
        (ready_is(&wg, "True", "Synced") && published).then_some(())
    })
    .await;
    assert!(
        ns.api::<Service>()
            .get_opt("llama")
            .await
            .expect("get")
            .is_some()
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = ns.api();
    eventually("an event", Duration::from_secs(20), || async {
        (!events
            .list(&Default::default())
            .await
            .ok()?
            .items
            .is_empty())
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn installed_with_helm_the_charts_own_identity_is_enough_in_both_modes() {
    let admin = TestNs::new("chart-admin").await;
    // The chart installs the CRD itself: the one `make cluster` put there goes first.
    common::delete_workergroup_crd(&admin.client).await;
    let vast = fake_vast::FakeVast::start(0).await.expect("fake");
    vast.state.put_group(
        501,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some("http://198.51.100.71:4000"))],
    );
    vast.state.put_group(
        502,
        KEY,
        Shape::Array,
        vec![worker_json(2, "idle", Some("http://198.51.100.72:4000"))],
    );

    // Cluster-wide release.
    let sys = TestNs::new("vo-system").await;
    let out = helm_off_runtime(
        [
            "install",
            "vo",
            &chart().to_string_lossy(),
            "--namespace",
            &sys.name,
            // A scraper of our own, bound to the chart's metrics-reader ClusterRole.
            "--set",
            "metrics.readerSubjects[0].kind=ServiceAccount",
            "--set",
            "metrics.readerSubjects[0].name=scraper",
            "--set",
            &format!("metrics.readerSubjects[0].namespace={}", admin.name),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("create secret generic vast"),
        "NOTES: {}",
        text(&out)
    );
    vast_testkit::apiserver::established(
        &admin.client,
        "workergroups.vast.ai",
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let (_, kc) = common::as_service_account(&admin.client, &sys.name, "vo-vast-operator").await;
    let team = TestNs::new("chart-team").await;
    secret_and_group(&team, 501).await;
    // Exactly the Deployment's arguments (but Vast's URL and the local ports).
    let args = deployment_args("vo", &sys.name).await;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let op = OperatorProcess::start_all_namespaces(&sys.name, "vo", &vast.url(), &args, &kc);
    synced_and_published(&team).await;
    assert!(!op.log_text().contains("forbidden"), "{}", op.log_text());
    // Every series the Grafana dashboard queries is exported.
    let dashboard =
        std::fs::read_to_string(chart().join("files/dashboard.json")).expect("dashboard");
    let mut queried: Vec<&str> = dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("vast_operator_"))
        .collect();
    queried.sort_unstable();
    queried.dedup();
    assert!(queried.len() >= 8, "{queried:?}");
    // /metrics is HTTPS behind a token: the scraper's, checked with the chart's RBAC.
    assert!(args.contains(&"--metrics-secure"), "{args:?}");
    let scraper = admin.service_account_with_token("scraper").await;
    let https = op.metrics.replace("http://", "https://");
    let exported = eventually("the load series", Duration::from_secs(30), || async {
        let text = common::https_get_insecure(&format!("{https}/metrics"), &scraper)
            .await?
            .1;
        text.contains("vast_operator_workergroup_load{")
            .then_some(text)
    })
    .await;
    // The operator's own token may review tokens but not read /metrics.
    let own = common::service_account_token(&admin.client, &sys.name, "vo-vast-operator").await;
    assert_eq!(
        common::https_get_insecure(&format!("{https}/metrics"), &own)
            .await
            .map(|r| r.0),
        Some(403)
    );
    for name in &queried {
        assert!(
            exported
                .lines()
                .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))),
            "the dashboard queries {name}, which /metrics does not export"
        );
    }
    drop(op);

    // Single-namespace release: a Role in the watched namespace, nothing cluster-wide.
    let sys2 = TestNs::new("vo2-system").await;
    let watched = TestNs::new("chart-watched").await;
    let out = helm_off_runtime(
        [
            "install",
            "vo2",
            &chart().to_string_lossy(),
            "--namespace",
            &sys2.name,
            "--set",
            &format!("watchNamespace={}", watched.name),
            "--set",
            "crds.install=false",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let (client2, kc2) =
        common::as_service_account(&admin.client, &sys2.name, "vo2-vast-operator").await;
    secret_and_group(&watched, 502).await;
    let args2 = deployment_args("vo2", &sys2.name).await;
    assert!(
        args2.contains(&format!("--namespace={}", watched.name)),
        "{args2:?}"
    );
    let args2: Vec<&str> = args2.iter().map(String::as_str).collect();
    let op2 = OperatorProcess::start_all_namespaces(&sys2.name, "vo2", &vast.url(), &args2, &kc2);
    synced_and_published(&watched).await;
    // Namespace mode reviews tokens too (its one cluster-wide grant).
    let https2 = op2.metrics.replace("http://", "https://");
    let code = eventually(
        "namespace mode serves /metrics",
        Duration::from_secs(30),
        || async {
            common::https_get_insecure(&format!("{https2}/metrics"), &scraper)
                .await
                .map(|r| r.0)
        },
    )
    .await;
    assert_eq!(code, 200);
    assert!(!op2.log_text().contains("forbidden"), "{}", op2.log_text());
    // And it may not read another namespace's Secrets or WorkerGroups.
    let other_secret = Api::<Secret>::namespaced(client2.clone(), &team.name)
        .get("vast")
        .await;
    assert!(
        matches!(&other_secret, Err(kube::Error::Api(s)) if s.code == 403),
        "{other_secret:?}"
    );
    let other_groups = Api::<WorkerGroup>::namespaced(client2, &team.name)
        .list(&Default::default())
        .await;
    assert!(
        matches!(&other_groups, Err(kube::Error::Api(s)) if s.code == 403),
        "{other_groups:?}"
    );
    drop(op2);
    for ns in [team, watched, sys, sys2, admin] {
        ns.cleanup().await;
    }
}

/// The defaults of `vast-operator run`, from its `--help`: flag -> default.
fn binary_defaults() -> BTreeMap<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_vast-operator"))
        .args(["run", "--help"])
        .output()
        .expect("vast-operator run --help");
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    let mut defaults = BTreeMap::new();
    let mut flag: Option<String> = None;
    for line in help.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("--").or_else(|| {
            t.strip_prefix('-')
                .and_then(|r| r.split_once(", --").map(|(_, f)| f))
        }) {
            flag = rest.split([' ', '[', '=']).next().map(str::to_string);
        }
        if let (Some(f), Some((_, d))) = (&flag, line.split_once("[default: ")) {
            let d = d.split(']').next().unwrap_or_default();
            defaults.insert(f.clone(), d.to_string());
        }
    }
    defaults
}

/// The chart's defaults are the binary's: every flag the chart's Deployment passes with
/// its default values has the binary's default value, but for the few the chart sets
/// on purpose (said here, with why).
#[test]
fn the_charts_defaults_are_the_binarys() {
    let out = render(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let rendered = String::from_utf8_lossy(&out.stdout).to_string();
    let objects = objects(&rendered);
    let deployment = of_kind(&objects, "Deployment");
    let args: Vec<String> = deployment[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let defaults = binary_defaults();
    assert!(
        defaults.get("concurrency").is_some_and(|d| d == "16"),
        "the help was not read: {defaults:?}"
    );
    // On purpose: the Lease is named after the release and lives in its namespace, and
    // metrics are HTTPS in a cluster (plain HTTP for a local run).
    let chosen = ["lease-name", "lease-namespace", "metrics-secure"];
    let mut compared = Vec::new();
    for arg in &args {
        let Some((flag, value)) = arg.strip_prefix("--").and_then(|a| a.split_once('=')) else {
            continue;
        };
        if chosen.contains(&flag) {
            continue;
        }
        if let Some(default) = defaults.get(flag) {
            assert_eq!(
                value, default,
                "the chart passes --{flag}={value}, the binary's default is {default}"
            );
            compared.push(flag.to_string());
        }
    }
    assert!(
        compared.len() >= 8,
        "only {compared:?} compared: the Deployment's arguments were not read"
    );
}
