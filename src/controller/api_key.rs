//! The API key of a WorkerGroup, from the Secret it references.
//!
//! Keys are cached by (namespace, Secret name, key name) together with the Secret's
//! resourceVersion. The Secret watch holds metadata only (no data), so an unchanged
//! Secret is recognised without a request: a poll with an unchanged Secret makes no
//! GET. A changed Secret (new resourceVersion) is read again, and so is a key Vast
//! refused or one held for 10 minutes (in case the watch is down). With
//! `--secret-selector` only Secrets the selected watch holds are read: the selector is
//! the boundary of what the operator reads, not only of what it watches.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};

use super::context::Context;
use super::key_cache::cache_key;
use crate::crd::WorkerGroup;
use crate::reasons::Reason;
use crate::sync::PollOutcome;

/// How long a read waits for the Secret watch's first list when `--secret-selector` is
/// set (only then does the index decide whether a Secret may be read).
const LIST_WAIT: Duration = Duration::from_secs(10);

/// The API key of `wg`: from the cache when the Secret's resourceVersion in the index is
/// the cached one, else read. With `--secret-selector` only a Secret the (selected)
/// watch has seen is read at all: any other is `SecretNotSelected`, with no request, and
/// the message does not tell whether it exists. A missing Secret or key, or a key that
/// cannot be one (too long, not visible ASCII), is a terminal outcome, a failed read a
/// transient one.
pub async fn read(ctx: &Context, wg: &WorkerGroup) -> Result<String, PollOutcome> {
    let key = cache_key(wg);
    let (ns, name, _) = &key;
    let index = ctx.secrets.get();
    let known = || {
        index
            .and_then(|i| i.get(&ObjectRef::new(name).within(ns)))
            .and_then(|s| s.resource_version())
    };
    let mut version = known();
    if let Some(selector) = &ctx.config.secret_selector
        && version.is_none()
    {
        if !ctx.secrets_listed.is_set() {
            let _ = tokio::time::timeout(LIST_WAIT, ctx.secrets_listed.wait()).await;
            if !ctx.secrets_listed.is_set() {
                return Err(PollOutcome::Transient(
                    "the watch of Secrets has not listed yet (needed with --secret-selector)"
                        .into(),
                ));
            }
            version = known();
        }
        if version.is_none() {
            return Err(PollOutcome::Terminal {
                reason: Reason::SecretNotSelected,
                message: not_selected(selector, ns, name),
            });
        }
    }
    if let Some(version) = &version
        && let Some(value) = ctx.keys.get(&key, version)
    {
        return Ok(value);
    }
    let selector = ctx.config.secret_selector.as_deref();
    let (version, value) = fetch(&ctx.client, wg, selector).await?;
    let cache = &ctx.keys;
    if let Some(version) = version {
        cache.put(key, version, value.clone());
    }
    Ok(value)
}

/// The message of `SecretNotSelected`: the same whether the Secret exists or not.
fn not_selected(selector: &str, ns: &str, name: &str) -> String {
    format!(
        "the operator reads only Secrets selected by --secret-selector {selector:?}, and Secret {ns}/{name} is not one of them (or does not exist): label it to match"
    )
}

/// The longest API key accepted, in bytes (Vast's keys are 64 hex characters).
pub const MAX_KEY_BYTES: usize = 1024;

/// Whether `key` can be an API key: at most [`MAX_KEY_BYTES`], visible ASCII only. The
/// reason names neither the key nor a piece of it.
fn check(key: &str) -> Result<(), String> {
    if key.len() > MAX_KEY_BYTES {
        return Err(format!("{} bytes, more than {MAX_KEY_BYTES}", key.len()));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("it holds characters other than visible ASCII".into());
    }
    Ok(())
}

/// Reads the key from the Secret; returns the Secret's resourceVersion with it.
/// With a `selector`, the Secret is read by a list of that name under the selector, so
/// that the apiserver applies the selector to the Secret as it is now (the watch's view
/// may lag a label just removed).
async fn fetch(
    client: &Client,
    wg: &WorkerGroup,
    selector: Option<&str>,
) -> Result<(Option<String>, String), PollOutcome> {
    let ns = wg.namespace().unwrap_or_default();
    let r = &wg.spec.api_key_secret_ref;
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let found = match selector {
        None => secrets.get_opt(&r.name).await,
        Some(selector) => {
            let lp = kube::api::ListParams::default()
                .labels(selector)
                .fields(&format!("metadata.name={}", r.name));
            match secrets.list(&lp).await {
                Ok(list) => match list.items.into_iter().next() {
                    Some(s) => Ok(Some(s)),
                    None => {
                        return Err(PollOutcome::Terminal {
                            reason: Reason::SecretNotSelected,
                            message: not_selected(selector, &ns, &r.name),
                        });
                    }
                },
                Err(e) => Err(e),
            }
        }
    };
    let secret = match found {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(PollOutcome::Terminal {
                reason: Reason::SecretNotFound,
                message: format!("Secret {ns}/{} does not exist", r.name),
            });
        }
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Err(PollOutcome::Terminal {
                reason: Reason::SecretForbidden,
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
        Some(v) if !v.is_empty() => match check(&v) {
            Ok(()) => Ok((secret.resource_version(), v)),
            Err(why) => Err(PollOutcome::Terminal {
                reason: Reason::SecretKeyInvalid,
                message: format!(
                    "key {:?} of Secret {ns}/{} is not a usable API key: {why}",
                    r.key, r.name
                ),
            }),
        },
        Some(_) => Err(PollOutcome::Terminal {
            reason: Reason::SecretKeyMissing,
            message: format!("key {:?} of Secret {ns}/{} is empty", r.key, r.name),
        }),
        None => Err(PollOutcome::Terminal {
            reason: Reason::SecretKeyMissing,
            message: format!("Secret {ns}/{} has no key {:?}", r.name, r.key),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_visible_ascii() {
        assert!(check(&"0123456789abcdef".repeat(4)).is_ok());
        assert!(check(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        let long = "k".repeat(1 << 20);
        let why = check(&long).expect_err("a 1 MiB key");
        assert!(
            why.contains("1048576 bytes") && !why.contains("kkkkkkkk"),
            "{why}"
        );
        for bad in ["has space", "tab\there", "bell\u{7}", "caf\u{e9}", "nul\0"] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }
}
