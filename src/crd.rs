//! The `WorkerGroup` custom resource (`workergroups.vast.ai/v1alpha1`).
//!
//! The Rust types are the source of truth: `vast-operator crd` prints the
//! CustomResourceDefinition generated from them, and `crds/` must equal that output.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration;

/// Default `spec.pollInterval`.
pub const DEFAULT_POLL_INTERVAL: &str = "30s";

/// The shortest `pollInterval`, as the CRD's validation writes it.
pub const POLL_INTERVAL_MIN_TEXT: &str = "5s";
/// The longest `pollInterval`, likewise.
pub const POLL_INTERVAL_MAX_TEXT: &str = "24h";
/// The range of `pollInterval` (the CRD's validation and the operator's own check).
pub const POLL_INTERVAL_RANGE: (std::time::Duration, std::time::Duration) = (
    std::time::Duration::from_secs(5),
    std::time::Duration::from_secs(86_400),
);

/// The CEL rule of `pollInterval`.
fn poll_interval_rule() -> String {
    format!(
        "duration(self) >= duration('{POLL_INTERVAL_MIN_TEXT}') && duration(self) <= duration('{POLL_INTERVAL_MAX_TEXT}')"
    )
}

/// The message of that rule.
fn poll_interval_message() -> String {
    format!("pollInterval must be between {POLL_INTERVAL_MIN_TEXT} and {POLL_INTERVAL_MAX_TEXT}")
}
/// Annotation asking for a poll at once: when its value changes, the operator polls
/// (at most once per 5 s) and records the value in `status.lastHandledResyncAt`.
pub const RESYNC_ANNOTATION: &str = "vast.ai/resync-requested-at";

/// Default `spec.apiKeySecretRef.key`.
pub const DEFAULT_SECRET_KEY: &str = "api-key";

/// A Vast.ai serverless workergroup, or a whole endpoint, mirrored into Kubernetes.
///
/// The operator polls Vast for the workers of `workergroupId` (or of every workergroup of
/// `endpointId`), using the API key held in the referenced Secret, and keeps `status`
/// equal to what Vast reports.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "vast.ai",
    version = "v1alpha1",
    kind = "WorkerGroup",
    plural = "workergroups",
    singular = "workergroup",
    namespaced,
    shortname = "vwg",
    category = "vast",
    status = "WorkerGroupStatus",
    printcolumn = r#"{"name":"Workergroup","type":"integer","jsonPath":".spec.workergroupId"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.settings.endpointName","description":"Name of the Vast endpoint, from the console API"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.readySummary","description":"Ready workers / all workers, and the endpoint's state when it is not active"}"#,
    printcolumn = r#"{"name":"Max","type":"integer","jsonPath":".status.settings.maxWorkers","description":"The endpoint's max_workers, from the console API"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","description":"Reason of the Ready condition"}"#,
    printcolumn = r#"{"name":"Last Change","type":"date","jsonPath":".status.lastChangeTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Endpoint Id","type":"integer","jsonPath":".spec.endpointId","priority":1}"#,
    printcolumn = r#"{"name":"Interval","type":"string","jsonPath":".spec.pollInterval","priority":1}"#,
    printcolumn = r#"{"name":"Suspended","type":"boolean","jsonPath":".spec.suspend","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": SCOPE_RULE,
    "message": SCOPE_MESSAGE
}]))]
pub struct WorkerGroupSpec {
    /// The id of the Vast serverless workergroup to mirror (shown by `vastai show
    /// workergroups`). Exactly one of `workergroupId` and `endpointId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub workergroup_id: Option<i64>,

    /// The id of a Vast serverless endpoint whose workers, of all its workergroups, are
    /// mirrored (shown by `vastai show endpoints`). Exactly one of `workergroupId` and
    /// `endpointId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub endpoint_id: Option<i64>,

    /// The Secret, in the WorkerGroup's namespace, that holds the Vast API key.
    pub api_key_secret_ref: SecretKeyRef,

    /// How often Vast is polled: a duration such as `30s`, `2m` or `1h30m`, from 5s to 24h.
    #[serde(default = "default_poll_interval")]
    #[schemars(extend("pattern" = duration::PATTERN, "x-kubernetes-validations" = [{
        "rule": poll_interval_rule(),
        "message": poll_interval_message()
    }]))]
    pub poll_interval: String,

    /// While true, Vast is not called; the last data stays in status and the Ready
    /// condition's reason becomes `Suspended`.
    #[serde(default)]
    pub suspend: bool,

    /// Publishing of the workers as a selector-less Service with EndpointSlices, so
    /// in-cluster clients reach them at `http://<serviceName>.<namespace>.svc:<port>`.
    #[serde(default)]
    pub discovery: DiscoverySpec,
}

/// The CEL rule on `spec`: exactly one scope.
pub const SCOPE_RULE: &str = "has(self.workergroupId) != has(self.endpointId)";

/// Its message.
pub const SCOPE_MESSAGE: &str = "set exactly one of spec.workergroupId and spec.endpointId";

/// What one WorkerGroup mirrors: one workergroup, or every workergroup of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `spec.workergroupId`: polled with `POST /get_workergroup_workers/`.
    Workergroup(i64),
    /// `spec.endpointId`: polled with `POST /get_endpoint_workers/`.
    Endpoint(i64),
}

impl Scope {
    /// The Vast id.
    pub const fn id(self) -> i64 {
        match self {
            Scope::Workergroup(id) | Scope::Endpoint(id) => id,
        }
    }

    /// `workergroup` or `endpoint`.
    pub const fn kind(self) -> &'static str {
        match self {
            Scope::Workergroup(_) => "workergroup",
            Scope::Endpoint(_) => "endpoint",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind(), self.id())
    }
}

impl WorkerGroupSpec {
    /// The scope the spec names, or why it names none (both or neither set: an object
    /// from before the CEL rule, or a schema without it).
    pub fn scope(&self) -> Result<Scope, String> {
        match (self.workergroup_id, self.endpoint_id) {
            (Some(id), None) if id >= 1 => Ok(Scope::Workergroup(id)),
            (None, Some(id)) if id >= 1 => Ok(Scope::Endpoint(id)),
            (Some(_), None) | (None, Some(_)) => {
                Err("spec.workergroupId and spec.endpointId must be at least 1".into())
            }
            _ => Err(SCOPE_MESSAGE.into()),
        }
    }
}

/// How the workers are published for in-cluster discovery.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoverySpec {
    /// Publish a Service and EndpointSlices for the workers (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Name of the Service; defaults to the WorkerGroup's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub service_name: Option<String>,
    /// A headless Service (`clusterIP: None`): DNS answers with the worker addresses.
    #[serde(default)]
    pub headless: bool,
    /// Name of the Service port and of every EndpointSlice port.
    #[serde(default = "default_port_name")]
    #[schemars(
        length(min = 1, max = 15),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub port_name: String,
    /// The Service's port, which clients connect to; traffic goes to each worker's own port.
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

impl Default for DiscoverySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            service_name: None,
            headless: false,
            port_name: default_port_name(),
            port: default_service_port(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_port_name() -> String {
    "http".to_string()
}

fn default_service_port() -> i32 {
    80
}

fn default_poll_interval() -> String {
    DEFAULT_POLL_INTERVAL.to_string()
}

fn default_secret_key() -> String {
    DEFAULT_SECRET_KEY.to_string()
}

/// A key of a Secret in the same namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret (a DNS-1123 subdomain, as every Secret name is).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key within the Secret's data whose value is the API key.
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// What the operator last observed of the workergroup.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {"observedGeneration": -1}))]
pub struct WorkerGroupStatus {
    /// The `metadata.generation` this status was computed for; -1 until the first
    /// reconcile, so tools do not judge a brand-new object healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Reconciling` and `Stalled`, following kstatus conventions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The workers, sorted by id; capped (see `workersTruncated`), ready workers kept first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["id"]))]
    pub workers: Vec<WorkerStatus>,

    /// The workergroup the workers were read from (differs from the spec's until the
    /// first poll after a change of `workergroupId`; the list is then empty). Unset for
    /// an endpoint scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workergroup_id: Option<i64>,

    /// The endpoint the workers were read from, for an endpoint scope (likewise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<i64>,

    /// What Vast's console says the workergroup (or endpoint) is set to do, refreshed
    /// every `--settings-interval`; the last read stays when the console cannot be read
    /// (see the `SettingsSynced` condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<SettingsStatus>,

    /// Number of workers Vast reported (exact, also when `workers` is truncated).
    #[serde(default)]
    pub worker_count: i64,

    /// Number of ready workers (state `idle` or `running`).
    #[serde(default)]
    pub ready_workers: i64,

    /// `readyWorkers/workerCount`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_summary: Option<String>,

    /// Number of workers in each Vast state (exact, also when `workers` is truncated).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status_counts: BTreeMap<String, i64>,

    /// True when `workers` holds fewer entries than `workerCount`.
    #[serde(default)]
    pub workers_truncated: bool,

    /// URLs of the ready workers, sorted (capped like `workers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ready_urls: Vec<String>,

    /// What was published for in-cluster discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryStatus>,

    /// When the set of workers or one of their states last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub last_change_time: Option<Timestamp>,

    /// The value of the `vast.ai/resync-requested-at` annotation that the last poll
    /// answered, so scripts can wait for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_resync_at: Option<String>,

    /// When a successful poll was last written. Refreshed on every write and otherwise at
    /// most once per the operator's `--status-heartbeat`; the load figures of the workers
    /// are as of this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub last_sync_time: Option<Timestamp>,
}

impl WorkerGroupStatus {
    /// The scope the workers on record were read from (None: no poll yet, or a status
    /// from before these fields).
    pub fn scope(&self) -> Option<Scope> {
        match (self.endpoint_id, self.workergroup_id) {
            (Some(id), _) => Some(Scope::Endpoint(id)),
            (None, Some(id)) => Some(Scope::Workergroup(id)),
            (None, None) => None,
        }
    }

    /// Whether the workers on record belong to `scope` (a status that records no scope
    /// is taken to: it predates the fields).
    pub fn is_of(&self, scope: Scope) -> bool {
        self.scope().is_none_or(|s| s == scope)
    }

    /// Records `scope` as where the workers were read from.
    pub fn set_scope(&mut self, scope: Scope) {
        (self.workergroup_id, self.endpoint_id) = match scope {
            Scope::Workergroup(id) => (Some(id), None),
            Scope::Endpoint(id) => (None, Some(id)),
        };
    }
}

/// The settings of the workergroup (or endpoint) as Vast's console lists them: a copy of
/// known fields only (the listings also carry the account's API key, which is never
/// copied).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingsStatus {
    /// The endpoint the workergroup belongs to (or the endpoint itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<i64>,
    /// The endpoint's name: what clients pass to `/route/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_name: Option<String>,
    /// `active`, `suspended` or `stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_state: Option<String>,
    /// The most workers the endpoint may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_workers: Option<i64>,
    /// Workers the endpoint keeps stopped but ready to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_workers: Option<i64>,
    /// The load the autoscaler provisions for at least.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_load: Option<f64>,
    /// The utilisation the autoscaler aims for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_util: Option<f64>,
    /// How much capacity is kept cold, as a multiple of the load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_mult: Option<f64>,
    /// Workers started to measure performance (workergroup setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_workers: Option<i64>,
    /// GPU memory asked of each worker, in GB (workergroup setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_ram: Option<f64>,
    /// The template the workers run (workergroup setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_hash: Option<String>,
    /// The template's id (workergroup setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<i64>,
    /// For an endpoint scope, the endpoint's workergroups, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workergroup_ids: Vec<i64>,
}

/// The state of in-cluster discovery.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryStatus {
    /// The Service the endpoints are published under.
    pub service_name: String,
    /// Number of endpoints published in EndpointSlices (ready or not).
    pub endpoints: i64,
    /// Number of workers left out: no URL, a hostname URL, an unparsable URL, or beyond
    /// `--max-endpoints`.
    pub skipped: i64,
    /// Number of workers whose reported address the address policy refuses (private,
    /// loopback, metadata and other ranges not globally routable, or
    /// `--endpoint-deny-cidrs`). They stay in `workers`, never in an EndpointSlice or
    /// `readyUrls`.
    #[serde(default)]
    pub refused: i64,
    /// Why workers were left out, or why publishing failed; empty when all is well.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// One Vast worker.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerStatus {
    /// The Vast instance id of the worker.
    pub id: i64,
    /// Vast's state string, verbatim (for example `loading`, `idle`, `error`).
    pub status: String,
    /// True when the state is `idle` or `running`: the worker serves requests.
    pub ready: bool,
    /// Where the worker's PyWorker listens, when Vast reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When the worker was created, when Vast reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub created_at: Option<Timestamp>,
    /// Current load in work units per second, as of `lastSyncTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cur_load: Option<f64>,
    /// Requests in flight, as of `lastSyncTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reqs_working: Option<i64>,
    /// Measured throughput times reliability, as of `lastSyncTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perf: Option<f64>,
}

impl WorkerStatus {
    /// Whether `other` is this worker in the same state at the same address: equal but
    /// for the load figures (`curLoad`, `reqsWorking`, `perf`).
    pub fn same_apart_from_load(&self, other: &Self) -> bool {
        self.id == other.id
            && self.status == other.status
            && self.ready == other.ready
            && self.url == other.url
            && self.created_at == other.created_at
    }
}

/// A Kubernetes status condition.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Reconciling` or `Stalled`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[schemars(extend("enum" = ["True", "False", "Unknown"]))]
    pub status: String,
    /// CamelCase reason for the condition's last transition.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// Human-readable details.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub message: String,
    /// When `status` last changed.
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub last_transition_time: Timestamp,
    /// The `metadata.generation` the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The CustomResourceDefinition as `vast-operator crd` prints it (YAML).
pub fn crd_yaml() -> Result<String, serde_norway::Error> {
    serde_norway::to_string(&crd())
}

/// The CEL rule on `metadata.name`: with discovery on and no `serviceName`, the name is
/// the Service name, which Kubernetes requires to be a DNS-1035 label. Checked at
/// creation only (`oldSelf`): a root rule is evaluated on every status write too, and an
/// object from before the rule must still take its status (the operator then reports
/// `InvalidServiceName`).
pub const NAME_RULE: &str = "oldSelf.hasValue() || ((has(self.spec.discovery) && ((has(self.spec.discovery.enabled) && !self.spec.discovery.enabled) || has(self.spec.discovery.serviceName))) || (size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')))";

/// Longest WorkerGroup name: an Event is named `<object>.<16 hex digits>`, at most 253
/// characters, so a longer name could have no events at all.
pub const MAX_NAME: usize = 236;

/// The CEL rule on the name's length (at creation).
pub const NAME_LENGTH_RULE: &str = "oldSelf.hasValue() || size(self.metadata.name) <= 236";

/// Its message.
pub const NAME_LENGTH_MESSAGE: &str = "a WorkerGroup name is at most 236 characters: the names of its Events add 17 to it, and Kubernetes allows 253";

/// Its message.
pub const NAME_RULE_MESSAGE: &str = "with discovery enabled and no spec.discovery.serviceName, the WorkerGroup name is its Service name and must be a DNS-1035 label: at most 63 characters, lowercase letters, digits and '-', starting with a letter and ending with a letter or digit; set spec.discovery.serviceName, or choose such a name";

/// The WorkerGroup CustomResourceDefinition, with the root-level CEL rule on the name.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    let mut crd = WorkerGroup::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            for (rule, message) in [
                (NAME_RULE, NAME_RULE_MESSAGE),
                (NAME_LENGTH_RULE, NAME_LENGTH_MESSAGE),
            ] {
                schema.x_kubernetes_validations.get_or_insert_default().push(
                    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::ValidationRule {
                        rule: rule.into(),
                        message: Some(message.into()),
                        optional_old_self: Some(true),
                        ..Default::default()
                    },
                );
            }
        }
    }
    crd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_range_is_one_range_in_both_forms() {
        assert_eq!(
            duration::parse(POLL_INTERVAL_MIN_TEXT),
            Ok(POLL_INTERVAL_RANGE.0)
        );
        assert_eq!(
            duration::parse(POLL_INTERVAL_MAX_TEXT),
            Ok(POLL_INTERVAL_RANGE.1)
        );
        let yaml = crd_yaml().expect("crd");
        assert!(
            yaml.contains("duration(self) >= duration('5s') && duration(self) <= duration('24h')"),
            "{yaml}"
        );
    }

    #[test]
    fn status_defaults_observed_generation_to_minus_one() {
        let crd: serde_json::Value =
            serde_norway::from_str(&super::crd_yaml().expect("crd")).expect("yaml");
        let status =
            &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
        assert_eq!(
            status["default"],
            serde_json::json!({"observedGeneration": -1})
        );
    }
}
