//! Validation of WorkerGroup specs by the apiserver itself, from the CRD's schema and
//! its CEL rules, before the operator sees anything: `kubectl apply` of each bad input is
//! refused with an error that names the field, and the near misses are accepted.

mod common;

use common::{TestNs, install_workergroup_crd, kubectl};
use serde_json::json;

#[tokio::test]
async fn invalid_specs_are_rejected_by_the_apiserver() {
    let ns = TestNs::new("invalid").await;
    install_workergroup_crd(&ns.client).await;
    let key = |extra: serde_json::Value| {
        let mut s = json!({"workergroupId": 1, "apiKeySecretRef": {"name": "s"}});
        for (k, v) in extra.as_object().into_iter().flatten() {
            s[k] = v.clone();
        }
        s
    };
    let long = "a".repeat(300);
    let dns1035 = "the WorkerGroup name is its Service name";
    let rows: Vec<(String, serde_json::Value, &str)> = vec![
        (
            "bad".into(),
            key(json!({"workergroupId": 0})),
            "workergroupId",
        ),
        (
            "bad".into(),
            key(json!({"workergroupId": -3})),
            "workergroupId",
        ),
        (
            "bad".into(),
            key(json!({"workergroupId": "12"})),
            "workergroupId",
        ),
        (
            "bad".into(),
            key(json!({"pollInterval": "1s"})),
            "between 5s and 24h",
        ),
        (
            "bad".into(),
            key(json!({"pollInterval": "25h"})),
            "between 5s and 24h",
        ),
        (
            "bad".into(),
            key(json!({"pollInterval": "soon"})),
            "pollInterval",
        ),
        (
            "bad".into(),
            key(json!({"pollInterval": "forever"})),
            "pollInterval",
        ),
        ("bad".into(), json!({"workergroupId": 1}), "apiKeySecretRef"),
        // Exactly one scope: both, or neither, is refused with the rule's message.
        (
            "bad".into(),
            key(json!({"endpointId": 2})),
            "set exactly one of spec.workergroupId and spec.endpointId",
        ),
        (
            "bad".into(),
            json!({"apiKeySecretRef": {"name": "s"}}),
            "set exactly one of spec.workergroupId and spec.endpointId",
        ),
        (
            "bad".into(),
            json!({"endpointId": 0, "apiKeySecretRef": {"name": "s"}}),
            "endpointId",
        ),
        (
            "bad".into(),
            key(json!({"apiKeySecretRef": {"name": ""}})),
            "name",
        ),
        (
            "bad".into(),
            key(json!({"apiKeySecretRef": {"name": "../Vast_Key"}})),
            "apiKeySecretRef.name",
        ),
        (
            "bad".into(),
            key(json!({"pollIntervall": "30s"})),
            "unknown field",
        ),
        (long.clone(), key(json!({})), "metadata.name"),
        ("a".repeat(64), key(json!({})), dns1035),
        ("team.llama".into(), key(json!({})), dns1035),
        (
            format!("{}.example", "c".repeat(229)),
            key(json!({"discovery": {"serviceName": "svc-c"}})),
            "at most 236 characters",
        ),
    ];
    let tried = rows.len();
    for (name, bad, why) in rows {
        let manifest = json!({
            "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
            "metadata": {"name": name, "namespace": ns.name}, "spec": bad
        });
        let file = std::env::temp_dir().join(format!("{}-bad.json", ns.name));
        std::fs::write(&file, manifest.to_string()).expect("write manifest");
        let out = kubectl(&["apply", "-f", file.to_str().expect("path")]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{name}: {bad} was accepted");
        assert!(
            err.contains(why),
            "{name}: {bad}: error does not mention {why}: {err}"
        );
    }
    // The same names are fine once the Service name is given or discovery is off.
    for (name, discovery) in [
        ("a".repeat(64), json!({"serviceName": "svc-a"})),
        ("team.llama".to_string(), json!({"enabled": false})),
        (
            format!("{}.example", "b".repeat(228)),
            json!({"serviceName": "svc-b"}),
        ),
    ] {
        let manifest = json!({
            "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
            "metadata": {"name": name, "namespace": ns.name},
            "spec": key(json!({"discovery": discovery}))
        });
        let file = std::env::temp_dir().join(format!("{}-good.json", ns.name));
        std::fs::write(&file, manifest.to_string()).expect("write manifest");
        let out = kubectl(&["apply", "-f", file.to_str().expect("path")]);
        assert!(
            out.status.success(),
            "{name} refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // An endpoint alone is a scope.
    let manifest = json!({
        "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
        "metadata": {"name": "endpoint-scope", "namespace": ns.name},
        "spec": {"endpointId": 3, "apiKeySecretRef": {"name": "s"}}
    });
    let file = std::env::temp_dir().join(format!("{}-endpoint.json", ns.name));
    std::fs::write(&file, manifest.to_string()).expect("write manifest");
    let out = kubectl(&["apply", "-f", file.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "an endpoint scope refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("bad inputs tried: {tried}, all rejected by the apiserver");
    ns.cleanup().await;
}
