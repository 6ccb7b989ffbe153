//! `crds/` must be exactly what `vast-operator crd` prints.

#[test]
fn committed_crd_matches_the_rust_types() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/workergroups.vast.ai.yaml");
    let committed = std::fs::read_to_string(&path).expect("read crds/workergroups.vast.ai.yaml");
    let generated = vast_operator::crd::crd_yaml().expect("generate");
    assert!(
        committed == generated,
        "crds/workergroups.vast.ai.yaml is stale: run `make crds` and commit the result"
    );
}

#[test]
fn status_defaults_observed_generation_to_minus_one() {
    let crd: serde_json::Value =
        serde_norway::from_str(&vast_operator::crd::crd_yaml().expect("crd")).expect("yaml");
    let status = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
    assert_eq!(
        status["default"],
        serde_json::json!({"observedGeneration": -1})
    );
}
