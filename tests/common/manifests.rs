//! What goes into the cluster: a fresh namespace per test and its objects, the
//! WorkerGroup CRD, ServiceAccount credentials and a test PKI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use vast_operator::crd::WorkerGroup;

use super::{client, eventually, kubeconfig, repo_root};

/// A WorkerGroup manifest.
pub fn workergroup(name: &str, spec: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
        "metadata": {"name": name}, "spec": spec
    })
}

/// The spec of a WorkerGroup on workergroup `id` with the key in Secret `vast`, polled
/// every `interval`.
pub fn group_spec(id: i64, interval: &str) -> serde_json::Value {
    serde_json::json!({
        "workergroupId": id, "apiKeySecretRef": {"name": "vast"}, "pollInterval": interval
    })
}

/// A fresh namespace for one test.
pub struct TestNs {
    /// The client.
    pub client: Client,
    /// The namespace's name.
    pub name: String,
}

impl TestNs {
    /// Creates a namespace named after the test plus a random suffix.
    pub async fn new(test: &str) -> Self {
        let client = client().await;
        let suffix: u32 = rand::random::<u32>() % 1_000_000;
        let name = format!(
            "{}-{suffix:06}",
            test.replace('_', "-").chars().take(40).collect::<String>()
        );
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
        }))
        .expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self { client, name }
    }

    /// Deletes the namespace (the namespace controller of kube-controller-manager empties
    /// and removes it).
    pub async fn cleanup(self) {
        if let Some(dir) = std::env::var_os("VAST_LEAK_DUMP") {
            self.dump(std::path::Path::new(&dir)).await;
        }
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await;
    }

    /// Writes the namespace's events, WorkerGroups, Services and EndpointSlices as JSON
    /// into `dir` (for `make leak-check`, which searches them for keys).
    async fn dump(&self, dir: &Path) {
        use k8s_openapi::api::core::v1::Service;
        use k8s_openapi::api::discovery::v1::EndpointSlice;
        use k8s_openapi::api::events::v1::Event;
        let lp = Default::default();
        let objects = serde_json::json!({
            "events": self.api::<Event>().list(&lp).await.map(|l| l.items).unwrap_or_default(),
            "workergroups": self.api::<WorkerGroup>().list(&lp).await.map(|l| l.items).unwrap_or_default(),
            "services": self.api::<Service>().list(&lp).await.map(|l| l.items).unwrap_or_default(),
            "endpointslices": self.api::<EndpointSlice>().list(&lp).await.map(|l| l.items).unwrap_or_default(),
        });
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(
            dir.join(format!("{}-objects.json", self.name)),
            serde_json::to_string_pretty(&objects).unwrap_or_default(),
        );
    }

    /// Applies the Secret `name` holding `value` under `key`.
    pub async fn secret(&self, name: &str, key: &str, value: &str) {
        let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}, "stringData": {key: value}
        }))
        .expect("secret");
        self.api::<k8s_openapi::api::core::v1::Secret>()
            .patch(
                name,
                &PatchParams::apply("tests").force(),
                &Patch::Apply(&s),
            )
            .await
            .expect("apply secret");
    }

    /// Creates the ServiceAccount `name` here and returns a token of it (a scraper of
    /// `/metrics`, say).
    pub async fn service_account_with_token(&self, name: &str) -> String {
        let sa: k8s_openapi::api::core::v1::ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
                .expect("service account");
        self.api::<k8s_openapi::api::core::v1::ServiceAccount>()
            .create(&PostParams::default(), &sa)
            .await
            .expect("create service account");
        service_account_token(&self.client, &self.name, name).await
    }

    /// Applies a WorkerGroup `name` with `spec` (server-side, as the tests' manager).
    pub async fn apply_group(&self, name: &str, spec: serde_json::Value) -> WorkerGroup {
        self.api::<WorkerGroup>()
            .patch(
                name,
                &PatchParams::apply("tests").force(),
                &Patch::Apply(workergroup(name, spec)),
            )
            .await
            .expect("apply workergroup")
    }

    /// An Api of `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

/// Deletes the WorkerGroup CRD (`make cluster` installs it) and waits until it is gone;
/// for tests on a control plane of their own that need it absent.
pub async fn delete_workergroup_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let _ = crds
        .delete("workergroups.vast.ai", &DeleteParams::default())
        .await;
    eventually("the CRD is gone", Duration::from_secs(30), || async {
        matches!(crds.get_opt("workergroups.vast.ai").await, Ok(None)).then_some(())
    })
    .await;
}

/// Applies `crds/workergroups.vast.ai.yaml` and waits until it is Established.
pub async fn install_workergroup_crd(client: &Client) {
    let text = std::fs::read_to_string(repo_root().join("crds/workergroups.vast.ai.yaml"))
        .expect("read CRD file");
    let crd: CustomResourceDefinition = serde_norway::from_str(&text).expect("parse CRD");
    install_crd(client, &crd).await;
}

/// Applies a CRD and waits until it is Established.
pub async fn install_crd(client: &Client, crd: &CustomResourceDefinition) {
    vast_testkit::apiserver::install_crd(client, crd, "vast-operator-tests")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The condition of `type_` on a WorkerGroup: (status, reason).
pub fn cond(wg: &WorkerGroup, type_: &str) -> Option<(String, String)> {
    wg.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// True when the Ready condition has `status` and `reason` for the current generation.
pub fn ready_is(wg: &WorkerGroup, status: &str, reason: &str) -> bool {
    let current = wg.status.as_ref().and_then(|s| s.observed_generation) == wg.metadata.generation;
    current && cond(wg, "Ready") == Some((status.into(), reason.into()))
}

/// Worker ids and states in status.
pub fn worker_states(wg: &WorkerGroup) -> Vec<(i64, String)> {
    wg.status
        .as_ref()
        .map(|s| s.workers.iter().map(|w| (w.id, w.status.clone())).collect())
        .unwrap_or_default()
}

/// A token of the ServiceAccount `sa` in `ns`.
pub async fn service_account_token(admin: &kube::Client, ns: &str, sa: &str) -> String {
    let tr: k8s_openapi::api::authentication::v1::TokenRequest = serde_json::from_value(
        serde_json::json!({"spec": {"audiences": [], "expirationSeconds": 3600}}),
    )
    .expect("token request");
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &tr)
        .await
        .expect("token")
        .status
        .expect("status")
        .token
}

/// A client and a kubeconfig file acting as the chart's ServiceAccount.
pub async fn as_service_account(
    admin: &kube::Client,
    ns: &str,
    sa: &str,
) -> (kube::Client, PathBuf) {
    let token = service_account_token(admin, ns, sa).await;
    let admin_kc = std::fs::read_to_string(kubeconfig()).expect("kubeconfig");
    let server = admin_kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("server");
    let ca = admin_kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data: "))
        .expect("ca");
    let kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: sa\n    namespace: {ns}\ncurrent-context: c\n"
    );
    let file = repo_root()
        .join("target/test-logs")
        .join(format!("{ns}-{sa}.kubeconfig"));
    std::fs::create_dir_all(file.parent().expect("dir")).expect("dir");
    std::fs::write(&file, kc).expect("write");
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&file).expect("read"),
        &Default::default(),
    )
    .await
    .expect("config");
    (kube::Client::try_from(config).expect("client"), file)
}

/// A test CA and a certificate it signed for 127.0.0.1: (CA PEM, leaf PEM, leaf key PEM).
pub fn test_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "vast-operator test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");
    (ca_cert.pem(), leaf.pem(), leaf_key.serialize_pem())
}

/// Applies a ValidatingAdmissionPolicy `name` refusing, in namespace `ns` only, the
/// `operations` on `resources` of `group` for which `expression` is false, with
/// `message`; and its binding (same name).
pub async fn refusing_policy(
    client: &kube::Client,
    name: &str,
    ns: &str,
    rule: (&str, &[&str], &[&str]),
    expression: &str,
    message: &str,
) {
    let (group, operations, resources) = rule;
    for (kind, plural, body) in [
        (
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
            serde_json::json!({"spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": [group], "apiVersions": ["*"],
                    "operations": operations, "resources": resources}]},
                "validations": [{"expression": expression, "message": message}]
            }}),
        ),
        (
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            serde_json::json!({"spec": {"policyName": name, "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}}),
        ),
    ] {
        let api = admission_api(client, kind, plural);
        let mut obj = body;
        obj["apiVersion"] = serde_json::json!("admissionregistration.k8s.io/v1");
        obj["kind"] = serde_json::json!(kind);
        obj["metadata"] = serde_json::json!({"name": name});
        let obj: kube::api::DynamicObject = serde_json::from_value(obj).expect("object");
        api.patch(
            name,
            &kube::api::PatchParams::apply("tests").force(),
            &kube::api::Patch::Apply(&obj),
        )
        .await
        .expect("apply policy");
    }
}

/// The API of an admissionregistration.k8s.io/v1 kind.
fn admission_api(client: &kube::Client, kind: &str, plural: &str) -> Api<kube::api::DynamicObject> {
    let ar = kube::api::ApiResource {
        group: "admissionregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::all_with(client.clone(), &ar)
}

/// Deletes the policy and binding `name` of [`refusing_policy`].
pub async fn remove_policy(client: &kube::Client, name: &str) {
    for (kind, plural) in [
        (
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
        ),
        ("ValidatingAdmissionPolicy", "validatingadmissionpolicies"),
    ] {
        let api = admission_api(client, kind, plural);
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
}
