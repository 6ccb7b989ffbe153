//! The container image (`make image`), run the way the chart's pod runs it: the
//! container is started by a real engine (podman, through `hack/container.sh`) from the
//! Deployment that `helm install` put in the test control plane, with its arguments,
//! environment, security context and volumes, a ServiceAccount token mounted where the
//! kubelet mounts it, and the host network standing in for the pod's. The fake Vast
//! answers over HTTPS with a private CA, mounted as the chart's `vast.caConfigMap`.
//!
//! These tests need the image: `make image-test` builds it and runs them (`--ignored`,
//! with IMAGE naming it); `cargo test` alone leaves them out.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestNs, eventually, free_port, helm_off_runtime, http_get, ready_is, text};
use fake_vast::{Shape, worker_json};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use vast_operator::crd::WorkerGroup;

const KEY: &str = "vk1-image-5173";
/// Under this many bytes uncompressed (the target: 40 MB).
const MAX_SIZE: u64 = 40_000_000;

fn image() -> String {
    std::env::var("IMAGE").unwrap_or_else(|_| "localhost/vast-operator:dev".into())
}

/// `hack/container.sh` (the engine with this machine's flags).
fn engine() -> Command {
    Command::new(common::repo_root().join("hack/container.sh"))
}

fn engine_ok(args: &[&str]) -> String {
    let out = engine()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("hack/container.sh {args:?}: {e}"));
    assert!(
        out.status.success(),
        "hack/container.sh {args:?}: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn inspect() -> Value {
    let out = engine_ok(&["image", "inspect", &image()]);
    let all: Value = serde_json::from_str(&out).expect("image inspect JSON");
    all[0].clone()
}

/// The image's files: (path without the leading `/`, `tar -tv` line).
fn files() -> Vec<(String, String)> {
    let name = format!("vo-files-{}", std::process::id());
    engine_ok(&["create", "--name", &name, &image()]);
    let tar = common::repo_root()
        .join("target")
        .join(format!("{name}.tar"));
    let export = engine()
        .args(["export", "-o"])
        .arg(&tar)
        .arg(&name)
        .output()
        .expect("export");
    engine_ok(&["rm", "-f", &name]);
    assert!(export.status.success(), "{}", text(&export));
    let list = Command::new("tar")
        .args(["-tvf"])
        .arg(&tar)
        .output()
        .expect("tar");
    let _ = std::fs::remove_file(&tar);
    assert!(list.status.success(), "{}", text(&list));
    String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| {
            // `-rw-r--r-- 0/0  1234 1970-01-01 00:00 path[ -> target]`
            let path = l.split_whitespace().nth(5)?;
            Some((
                path.trim_start_matches("./")
                    .trim_end_matches('/')
                    .to_string(),
                l.to_string(),
            ))
        })
        .collect()
}

#[test]
#[ignore = "needs the image: make image-test"]
fn the_image_is_small_labelled_runs_as_65532_and_has_no_shell() {
    let img = inspect();
    let config = &img["Config"];
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(
        config["Entrypoint"],
        json!(["/usr/local/bin/vast-operator"])
    );
    assert_eq!(config["Cmd"], json!(["run"]));
    // distroless's environment, one variable per entry.
    let env: BTreeSet<&str> = config["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for e in [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
    ] {
        assert!(env.contains(e), "{e} not in {env:?}");
    }
    let labels = &config["Labels"];
    let label = |k: &str| {
        labels[format!("org.opencontainers.image.{k}")]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(
        label("version").as_deref(),
        Some(env!("CARGO_PKG_VERSION")),
        "{labels}"
    );
    assert_eq!(
        label("licenses").as_deref(),
        Some(env!("CARGO_PKG_LICENSE")),
        "{labels}"
    );
    assert!(
        label("source").is_some_and(|s| s.starts_with("https://")),
        "{labels}"
    );
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(common::repo_root())
        .output()
        .expect("git");
    if head.status.success() {
        let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
        // `<commit>-dirty` when the image was built from a tree with changes.
        let revision = label("revision").unwrap_or_default();
        assert_eq!(revision.trim_end_matches("-dirty"), head, "{labels}");
    }
    let size = img["Size"].as_u64().expect("size");
    let layers = img["RootFS"]["Layers"].as_array().map_or(0, Vec::len);
    eprintln!("image {}: {size} bytes, {layers} layers", image());
    assert!(
        size < MAX_SIZE,
        "the image is {size} bytes, over {MAX_SIZE}"
    );

    let files = files();
    let paths: BTreeSet<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    for needed in [
        "usr/local/bin/vast-operator",
        "etc/ssl/certs/ca-certificates.crt",
        "etc/passwd",
        "usr/share/zoneinfo/Etc/UTC",
    ] {
        assert!(paths.contains(needed), "the image lacks /{needed}");
    }
    assert!(
        paths.iter().any(|p| p.ends_with("/libc.so.6"))
            && paths.iter().any(|p| p.ends_with("/libgcc_s.so.1")),
        "glibc or libgcc is missing"
    );
    // No shell and no other program: the operator is the one executable outside the
    // libraries' directories.
    let shells = ["sh", "bash", "dash", "ash", "busybox", "zsh"];
    for (path, line) in &files {
        let base = path.rsplit('/').next().unwrap_or(path);
        assert!(!shells.contains(&base), "a shell in the image: {line}");
        let executable = line.starts_with('-') && line.as_bytes().get(3) == Some(&b'x');
        let name = path.rsplit('/').next().unwrap_or(path);
        let library = (path.starts_with("lib") || path.starts_with("usr/lib/"))
            && (name.contains(".so") || name.starts_with("ld-linux"));
        assert!(
            !executable || library || path == "usr/local/bin/vast-operator",
            "a program besides the operator: {line}"
        );
    }
    // The user 65532 is nonroot in /etc/passwd, and the binary runs in the image.
    let passwd = files
        .iter()
        .find(|(p, _)| p == "etc/passwd")
        .map(|(p, _)| p.clone())
        .expect("etc/passwd");
    assert!(
        file_text(&passwd)
            .lines()
            .any(|l| l.starts_with("nonroot:x:65532:65532:")),
        "{}",
        file_text(&passwd)
    );
    // The CA bundle update-ca-certificates would have written: Mozilla's roots.
    let bundle = file_text("etc/ssl/certs/ca-certificates.crt");
    let roots = bundle.matches("-----BEGIN CERTIFICATE-----").count();
    assert!(roots > 100, "{roots} certificates in the CA bundle");
    let version = engine_ok(&["run", "--rm", "--network", "none", &image(), "--version"]);
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
}

/// The text of `path` in the image.
fn file_text(path: &str) -> String {
    let name = format!("vo-file-{}", std::process::id());
    engine_ok(&["create", "--name", &name, &image()]);
    let out = engine()
        .args(["cp", &format!("{name}:/{path}"), "-"])
        .output()
        .expect("cp");
    engine_ok(&["rm", "-f", &name]);
    assert!(out.status.success(), "{}", text(&out));
    // `podman cp ... -` writes a tar of the one file.
    let tar = common::repo_root()
        .join("target")
        .join(format!("{name}.tar"));
    std::fs::write(&tar, &out.stdout).expect("tar");
    let file = Command::new("tar")
        .arg("-xOf")
        .arg(&tar)
        .output()
        .expect("tar");
    let _ = std::fs::remove_file(&tar);
    String::from_utf8_lossy(&file.stdout).into_owned()
}

/// A container started from the chart's pod template, killed and removed on drop.
struct Pod {
    name: String,
    child: Child,
    log: PathBuf,
    health: String,
    metrics: String,
    grace: u64,
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = engine()
            .args(["rm", "-f", "-t", "0", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pod {
    fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Waits (at most `within`) for `podman run` to end: its exit code is the container's.
    async fn exit_code(&mut self, within: Duration) -> i32 {
        let child = &mut self.child;
        eventually("the container exits", within, || {
            let r = child.try_wait().expect("try_wait");
            async move { r.map(|s| s.code().unwrap_or(-1)) }
        })
        .await
    }
}

/// What the kubelet would give the pod, read from the Deployment and the objects its
/// volumes name.
struct Template {
    spec: PodSpec,
    container: Container,
    /// The pod's volumes as host directories, with their mount paths.
    volumes: Vec<(PathBuf, String)>,
}

async fn template(client: &kube::Client, ns: &str, deployment: &str, dir: &Path) -> Template {
    let d = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(deployment)
        .await
        .expect("the chart's Deployment");
    let spec = d.spec.expect("spec").template.spec.expect("pod spec");
    assert_eq!(spec.containers.len(), 1, "one container");
    let container = spec.containers[0].clone();
    let mut volumes = Vec::new();
    // The ServiceAccount volume the kubelet projects: a token of the pod's
    // ServiceAccount, the cluster's CA (the kube-root-ca.crt ConfigMap the controller
    // manager publishes in every namespace) and the namespace.
    let sa = spec
        .service_account_name
        .clone()
        .expect("serviceAccountName");
    let token = common::service_account_token(client, ns, &sa).await;
    let root_ca = eventually("kube-root-ca.crt", Duration::from_secs(30), || async {
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get_opt("kube-root-ca.crt")
            .await
            .ok()??
            .data?
            .get("ca.crt")
            .cloned()
    })
    .await;
    let sa_dir = dir.join("serviceaccount");
    std::fs::create_dir_all(&sa_dir).expect("dir");
    std::fs::write(sa_dir.join("token"), token).expect("token");
    std::fs::write(sa_dir.join("ca.crt"), root_ca).expect("ca");
    std::fs::write(sa_dir.join("namespace"), ns).expect("namespace");
    volumes.push((
        sa_dir,
        "/var/run/secrets/kubernetes.io/serviceaccount".to_string(),
    ));
    for mount in container.volume_mounts.iter().flatten() {
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .unwrap_or_else(|| panic!("no volume {}", mount.name));
        let host = dir.join(&mount.name);
        std::fs::create_dir_all(&host).expect("dir");
        if let Some(cm) = &volume.config_map {
            let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get(&cm.name)
                .await
                .unwrap_or_else(|e| panic!("ConfigMap {}: {e}", cm.name));
            for (k, v) in cm.data.unwrap_or_default() {
                std::fs::write(host.join(k), v).expect("write");
            }
        } else if let Some(s) = &volume.secret {
            let name = s.secret_name.clone().expect("secretName");
            let s = Api::<Secret>::namespaced(client.clone(), ns)
                .get(&name)
                .await
                .unwrap_or_else(|e| panic!("Secret {name}: {e}"));
            for (k, v) in s.data.unwrap_or_default() {
                std::fs::write(host.join(k), v.0).expect("write");
            }
        } else {
            panic!("a volume this test cannot give: {volume:?}");
        }
        assert_eq!(mount.read_only, Some(true), "{mount:?}");
        volumes.push((host, mount.mount_path.clone()));
    }
    Template {
        spec,
        container,
        volumes,
    }
}

/// `KUBERNETES_SERVICE_HOST` and `_PORT`: the test apiserver's.
fn service_host_and_port() -> (String, String) {
    let kc = std::fs::read_to_string(common::kubeconfig()).expect("kubeconfig");
    let server = kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("server");
    let hostport = server.trim_start_matches("https://");
    let (host, port) = hostport.rsplit_once(':').expect("host:port");
    (host.to_string(), port.to_string())
}

/// Starts the container as the pod `pod` of the template would run, in `ns`, with
/// `--metrics-addr`/`--health-addr` moved to `ports` when given (two pods share the host
/// network here; in a cluster each has its own).
fn run_pod(t: &Template, ns: &str, pod: &str, ports: Option<(u16, u16)>) -> Pod {
    let c = &t.container;
    let pod_sc = t
        .spec
        .security_context
        .clone()
        .expect("pod securityContext");
    let sc = c
        .security_context
        .clone()
        .expect("container securityContext");
    let mut cmd = engine();
    cmd.args(["run", "--name", pod, "--network", "host", "--pull", "never"]);
    // The security context, flag by flag; each must be there.
    let uid = pod_sc.run_as_user.expect("runAsUser");
    let gid = pod_sc.run_as_group.expect("runAsGroup");
    assert_eq!(pod_sc.run_as_non_root, Some(true));
    cmd.args(["--user", &format!("{uid}:{gid}")]);
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    cmd.arg("--read-only");
    // podman's --read-only also mounts writable tmpfs on /tmp, /var/tmp and /run; a pod
    // with readOnlyRootFilesystem and no emptyDir has none.
    if std::env::var("CONTAINER_ENGINE")
        .ok()
        .filter(|e| !e.is_empty())
        .is_none_or(|e| e == "podman")
    {
        cmd.arg("--read-only-tmpfs=false");
    }
    let drop = sc.capabilities.and_then(|c| c.drop).unwrap_or_default();
    assert_eq!(drop, vec!["ALL".to_string()]);
    cmd.args(["--cap-drop", "ALL"]);
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    cmd.args(["--security-opt", "no-new-privileges"]);
    // The environment: the chart's, with the downward API resolved as the kubelet does,
    // and the two variables the kubelet adds for the apiserver's Service.
    for e in c.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), None) => v.clone(),
            (None, Some(from)) => match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                Some("metadata.name") => pod.to_string(),
                Some("metadata.namespace") => ns.to_string(),
                other => panic!("an env source this test cannot give: {other:?}"),
            },
            other => panic!("env {}: {other:?}", e.name),
        };
        cmd.args(["--env", &format!("{}={value}", e.name)]);
    }
    let (host, port) = service_host_and_port();
    cmd.args(["--env", &format!("KUBERNETES_SERVICE_HOST={host}")]);
    cmd.args(["--env", &format!("KUBERNETES_SERVICE_PORT={port}")]);
    // The test's one addition: the log level, searched for keys by make image-test.
    let level =
        std::env::var("VAST_OPERATOR_LOG").unwrap_or_else(|_| "info,vast_operator=debug".into());
    cmd.args(["--env", &format!("RUST_LOG={level}")]);
    for (host, path) in &t.volumes {
        cmd.args(["--volume", &format!("{}:{path}:ro", host.display())]);
    }
    cmd.arg(c.image.as_deref().expect("image"));
    let mut args = c.args.clone().unwrap_or_default();
    if let Some((m, h)) = ports {
        for a in &mut args {
            if a.starts_with("--metrics-addr=") {
                *a = format!("--metrics-addr=0.0.0.0:{m}");
            } else if a.starts_with("--health-addr=") {
                *a = format!("--health-addr=0.0.0.0:{h}");
            }
        }
    }
    let port_of = |flag: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(flag))
            .and_then(|a| a.rsplit_once(':'))
            .map(|(_, p)| p.to_string())
            .unwrap_or_else(|| panic!("no {flag} in {args:?}"))
    };
    let health = format!("http://127.0.0.1:{}", port_of("--health-addr="));
    let metrics = format!("https://127.0.0.1:{}", port_of("--metrics-addr="));
    cmd.args(&args);
    let log = vast_testkit::logs::dir(&common::repo_root()).join(format!("image-{pod}.log"));
    std::fs::create_dir_all(log.parent().expect("dir")).expect("dir");
    let file = std::fs::File::create(&log).expect("log");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .expect("hack/container.sh run");
    Pod {
        name: pod.to_string(),
        child,
        log,
        health,
        metrics,
        grace: t
            .spec
            .termination_grace_period_seconds
            .expect("terminationGracePeriodSeconds") as u64,
    }
}

/// [`eventually`] for a wait on the containers: on a timeout, the panic shows the end of
/// their logs (what the operator said about why it could not).
async fn until<T, F, Fut>(pods: &[&Pod], what: &str, timeout: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match vast_testkit::poll_until(timeout, f).await {
        Some(v) => v,
        None => {
            let logs: Vec<String> = pods
                .iter()
                .map(|p| {
                    let log = p.log_text();
                    let lines: Vec<&str> = log.lines().collect();
                    let tail = &lines[lines.len().saturating_sub(30)..];
                    format!("--- {} (last lines) ---\n{}", p.name, tail.join("\n"))
                })
                .collect();
            panic!(
                "timed out after {timeout:?} waiting for: {what}\n{}",
                logs.join("\n")
            )
        }
    }
}

/// A Helm release of the test, uninstalled on drop (its ClusterRoles and bindings are
/// cluster-wide: a failed run must not leave them on a reused control plane).
struct Release {
    name: String,
    namespace: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = common::helm(&["uninstall", &self.name, "--namespace", &self.namespace]);
    }
}

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases.get_opt(name).await.ok()??.spec?.holder_identity
}

async fn addresses(ns: &TestNs) -> BTreeSet<String> {
    let slices = ns
        .api::<EndpointSlice>()
        .list(&ListParams::default().labels("kubernetes.io/service-name=llama"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .flat_map(|e| e.addresses.iter().cloned())
        .collect()
}

#[tokio::test]
#[ignore = "needs the image: make image-test"]
async fn the_image_runs_as_the_charts_pod_leads_syncs_over_https_and_hands_over() {
    let admin = TestNs::new("image-admin").await;
    let sys = TestNs::new("image-sys").await;
    let team = TestNs::new("image-team").await;
    let (ca, cert, key) = common::test_pki();
    let vast = fake_vast::FakeVast::start_tls(0, &cert, &key)
        .await
        .expect("fake Vast over HTTPS");
    let id = 701;
    vast.state.put_group(
        id,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some("http://198.51.100.91:4000"))],
    );
    // The private CA, as a user would give it: a ConfigMap named by vast.caConfigMap.
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "vast-ca"}, "data": {"ca.crt": ca}}))
            .expect("configmap");
    sys.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .expect("vast-ca");
    let scraper = admin.service_account_with_token("scraper").await;

    // The chart, pointed at the image as the README says: repository and tag.
    let image = image();
    let (repository, tag) = image.rsplit_once(':').expect("IMAGE is repository:tag");
    let (m, h) = (free_port(), free_port());
    let chart = common::repo_root().join("charts/vast-operator");
    let sets = [
        format!("image.repository={repository}"),
        format!("image.tag={tag}"),
        format!("vast.url={}", vast.url()),
        // The fake's console too: never the real one with a test key.
        format!("vast.consoleUrl={}", vast.url()),
        "vast.caConfigMap=vast-ca".to_string(),
        format!("metrics.port={m}"),
        format!("health.port={h}"),
        "crds.install=false".to_string(),
        "metrics.readerSubjects[0].kind=ServiceAccount".to_string(),
        "metrics.readerSubjects[0].name=scraper".to_string(),
        format!("metrics.readerSubjects[0].namespace={}", admin.name),
    ];
    // A release of this run's own: its ClusterRoles and bindings are cluster-wide, and a
    // reused control plane (make cluster) may hold another run's.
    let release = format!("img{}", std::process::id());
    let mut args = vec![
        "install".to_string(),
        release.clone(),
        chart.to_string_lossy().into_owned(),
        "--namespace".to_string(),
        sys.name.clone(),
    ];
    for s in &sets {
        args.extend(["--set".to_string(), s.clone()]);
    }
    let out = helm_off_runtime(args).await;
    let installed = Release {
        name: release.clone(),
        namespace: sys.name.clone(),
    };
    assert!(out.status.success(), "{}", text(&out));
    let dir = common::repo_root()
        .join("target/image-test")
        .join(format!("{}", std::process::id()));
    let t = template(
        &admin.client,
        &sys.name,
        &format!("{release}-vast-operator"),
        &dir,
    )
    .await;
    assert_eq!(t.container.image.as_deref(), Some(image.as_str()));
    let lease_name = t
        .container
        .args
        .iter()
        .flatten()
        .find_map(|a| a.strip_prefix("--lease-name="))
        .expect("--lease-name")
        .to_string();
    let leases = sys.api::<Lease>();
    team.secret("vast", "api-key", KEY).await;
    team.apply_group("llama", common::group_spec(id, "5s"))
        .await;

    let pid = std::process::id();
    let (a_name, b_name) = (format!("vo-{pid}-a"), format!("vo-{pid}-b"));
    let mut a = run_pod(&t, &sys.name, &a_name, None);
    let wait = Duration::from_secs(90);
    until(&[&a], "the container leads", wait, || async {
        (holder(&leases, &lease_name).await.as_deref() == Some(a_name.as_str())).then_some(())
    })
    .await;
    let groups = team.api::<WorkerGroup>();
    until(&[&a], "synced from the fake over HTTPS", wait, || async {
        let wg = groups.get("llama").await.ok()?;
        ready_is(&wg, "True", "Synced").then_some(())
    })
    .await;
    until(&[&a], "discovery published", wait, || async {
        team.api::<Service>().get_opt("llama").await.ok()??;
        addresses(&team)
            .await
            .contains("198.51.100.91")
            .then_some(())
    })
    .await;
    let readyz = format!("{}/readyz", a.health);
    let (code, _) = until(&[&a], "/readyz 200", wait, || async {
        http_get(&readyz).await.filter(|r| r.0 == 200)
    })
    .await;
    assert_eq!(code, 200);
    let url = format!("{}/metrics", a.metrics);
    let metrics = until(
        &[&a],
        "/metrics answers with the scraper's token",
        wait,
        || async {
            let (code, body) = common::https_get_insecure(&url, &scraper).await?;
            (code == 200 && body.contains("vast_operator_workergroup_load{")).then_some(body)
        },
    )
    .await;
    assert!(metrics.contains("vast_operator_leader 1"), "{metrics}");
    // Without a token, /metrics refuses.
    let anonymous = common::https_get_insecure(&url, "").await;
    assert!(matches!(anonymous, Some((401, _))), "{anonymous:?}");

    // For make image-test's key search: a key the container logs on purpose (it quotes
    // what Vast answered), which the search must find in this container's log.
    const PLANTED: &str = "vk1-leak-canary-5a4b3c2d1e";
    vast.state.put_group(id + 1, KEY, Shape::Array, Vec::new());
    vast.state.set_fault(
        id + 1,
        Some(fake_vast::Fault {
            body: fake_vast::FaultBody::ErrorMsg(format!("no workergroup for {PLANTED}")),
            ..Default::default()
        }),
    );
    team.apply_group("canary", common::group_spec(id + 1, "1h"))
        .await;
    until(
        &[&a],
        "the container logged what Vast answered",
        wait,
        || async { a.log_text().contains(PLANTED).then_some(()) },
    )
    .await;

    // A second pod waits as the standby; the first is killed (SIGKILL, no release):
    // the second takes over once the Lease expires, and shows a change at Vast.
    let mut b = run_pod(&t, &sys.name, &b_name, Some((free_port(), free_port())));
    let readyz = format!("{}/readyz", b.health);
    let (code, _) = until(&[&b], "the standby's /readyz 200", wait, || async {
        http_get(&readyz).await.filter(|r| r.0 == 200)
    })
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        holder(&leases, &lease_name).await.as_deref(),
        Some(a_name.as_str())
    );
    engine_ok(&["kill", "--signal", "KILL", &a_name]);
    let killed = Instant::now();
    let code = a.exit_code(Duration::from_secs(30)).await;
    assert_ne!(code, 0, "a killed container exits non-zero");
    vast.state.upsert_worker(
        id,
        2,
        worker_json(2, "idle", Some("http://198.51.100.92:4000")),
    );
    until(&[&a, &b], "the second container leads", wait, || async {
        (holder(&leases, &lease_name).await.as_deref() == Some(b_name.as_str())).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    eprintln!("takeover after the kill: {takeover:?}");
    // Within a lease duration of the last renewal (at most one before the kill), plus
    // slack for a shared machine.
    let lease: u64 = t
        .container
        .args
        .iter()
        .flatten()
        .find_map(|a| a.strip_prefix("--lease-duration="))
        .and_then(|d| d.strip_suffix('s'))
        .and_then(|d| d.parse().ok())
        .expect("--lease-duration=<N>s");
    assert!(
        takeover < Duration::from_secs(lease + 10),
        "the standby took {takeover:?} to lead after the kill (lease {lease}s)"
    );
    until(
        &[&b],
        "the new leader publishes the change",
        wait,
        || async {
            (addresses(&team).await
                == BTreeSet::from(["198.51.100.91".to_string(), "198.51.100.92".to_string()]))
            .then_some(())
        },
    )
    .await;

    // `podman stop -t <grace period>`: SIGTERM, then SIGKILL after the grace period.
    // The operator must end on its own with 0 and release the Lease.
    let stopping = Instant::now();
    engine_ok(&["stop", "-t", &b.grace.to_string(), &b_name]);
    let code = b.exit_code(Duration::from_secs(b.grace + 10)).await;
    let state = engine_ok(&["inspect", "--format", "{{.State.ExitCode}}", &b_name]);
    assert_eq!((code, state.trim()), (0, "0"), "{}", b.log_text());
    assert!(
        stopping.elapsed() < Duration::from_secs(b.grace),
        "the container ran out its grace period and was killed"
    );
    let lease = leases.get(&lease_name).await.expect("lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity),
        None,
        "the Lease was not released"
    );

    // The logs are a container's: plain text, no terminal escapes, nothing refused.
    for pod in [&a, &b] {
        let log = pod.log_text();
        assert!(log.contains("serving"), "{log}");
        assert!(
            !log.contains('\u{1b}'),
            "terminal escapes in a container's log:\n{log}"
        );
        for bad in [
            "forbidden",
            "Read-only file system",
            "Permission denied",
            "panicked",
        ] {
            assert!(!log.contains(bad), "{bad}:\n{log}");
        }
    }
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
    tokio::task::spawn_blocking(move || drop(installed))
        .await
        .expect("helm uninstall");
    for ns in [team, sys, admin] {
        ns.cleanup().await;
    }
}
