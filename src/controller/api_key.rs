//! The API key of a WorkerGroup, read from the Secret it references.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::crd::WorkerGroup;
use crate::sync::PollOutcome;

/// Reads the API key from the referenced Secret; a missing Secret or key is a terminal
/// outcome, a failed read a transient one.
pub async fn read(client: &Client, wg: &WorkerGroup) -> Result<String, PollOutcome> {
    let ns = wg.namespace().unwrap_or_default();
    let r = &wg.spec.api_key_secret_ref;
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let secret = match secrets.get_opt(&r.name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(PollOutcome::Terminal {
                reason: "SecretNotFound",
                message: format!("Secret {ns}/{} does not exist", r.name),
            });
        }
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Err(PollOutcome::Terminal {
                reason: "SecretForbidden",
                message: format!("the operator may not read Secret {ns}/{}", r.name),
            });
        }
        Err(e) => {
            return Err(PollOutcome::Transient(format!(
                "cannot read Secret {ns}/{}: {e}",
                r.name
            )));
        }
    };
    // The apiserver returns `data` only (`stringData` is write-only).
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string());
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(PollOutcome::Terminal {
            reason: "SecretKeyMissing",
            message: format!("key {:?} of Secret {ns}/{} is empty", r.key, r.name),
        }),
        None => Err(PollOutcome::Terminal {
            reason: "SecretKeyMissing",
            message: format!("Secret {ns}/{} has no key {:?}", r.name, r.key),
        }),
    }
}
