//! In-cluster discovery: a selector-less Service and EndpointSlices holding the workers'
//! addresses, so clients reach a workergroup the Kubernetes way.
//!
//! [`desired`] computes the desired objects from the workers and compares them with
//! what exists (pure); [`stores`] watches our objects and keeps only what the comparison
//! reads; [`publish`] creates, replaces and deletes only what differs. The objects of a deleted WorkerGroup go with it through
//! their ownerReferences (the cluster's garbage collector). Objects are never taken
//! over: a Service or slice of the same name that the WorkerGroup does not own is a
//! conflict, reported, not overwritten. The one exception is what an earlier WorkerGroup
//! of the same name left while the collector is behind (`desired::left_by_earlier`):
//! its owner is gone for certain, and the object is replaced.

pub mod desired;
pub mod publish;
pub mod stores;

pub use desired::{
    Desired, KeptSlice, Seen, desired, needs_recreate, owned_by, service_matches, service_name,
    skipped_reason, slice_fingerprint, slice_matches,
};
pub use publish::{Published, publish};
pub use stores::Stores;

/// `endpointslice.kubernetes.io/managed-by` of our slices.
pub const MANAGED_BY: &str = "vast-operator.vast.ai";
/// Label naming the WorkerGroup an object belongs to.
pub const LABEL_WORKERGROUP: &str = "vast.ai/workergroup";
/// `app.kubernetes.io/managed-by` of our Services.
pub const LABEL_MANAGED_BY_APP: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const APP_MANAGER: &str = "vast-operator";
/// Most endpoints in one EndpointSlice.
pub const MAX_ENDPOINTS: usize = 1000;

/// On the slices of a headless Service, as the EndpointSlice controller sets it: every
/// kube-proxy watches every slice and skips those with this label (a headless Service
/// has no virtual IP to program), so our slices cost the nodes nothing.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const SLICE_MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
