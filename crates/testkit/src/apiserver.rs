//! The apiserver side: CRDs installed and Established, and `apiserver_request_total`
//! read from its `/metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use crate::Result;

/// Applies `crd` (server-side, as `manager`) and waits until it is Established (60 s at
/// most).
pub async fn install_crd(
    client: &Client,
    crd: &CustomResourceDefinition,
    manager: &str,
) -> Result<()> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let name = crd.metadata.name.clone().ok_or("the CRD has no name")?;
    let mut crd = crd.clone();
    crd.metadata.managed_fields = None;
    crd.metadata.resource_version = None;
    api.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&crd),
    )
    .await?;
    established(client, &name, Duration::from_secs(60)).await
}

/// Waits until the CRD `name` is Established, `timeout` at most.
pub async fn established(client: &Client, name: &str, timeout: Duration) -> Result<()> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let established = crate::poll_until(timeout, || {
        let api = api.clone();
        async move {
            let crd = api.get_opt(name).await.ok()??;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await;
    established
        .ok_or_else(|| format!("the CRD {name} was not Established within {timeout:?}").into())
}

/// The apiserver's `/metrics` text.
pub async fn metrics_text(client: &Client) -> Result<String> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    Ok(client.request_text(req).await?)
}

/// Sum of `apiserver_request_total` over the series whose labels hold every
/// `key="value"` pair given.
pub fn requests(metrics: &str, labels: &[(&str, &str)]) -> u64 {
    request_lines(metrics)
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(value)
        .sum::<f64>() as u64
}

/// `apiserver_request_total` of the given resources, summed by verb.
pub fn requests_by_verb(metrics: &str, resources: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in request_lines(metrics).filter(|l| {
        resources
            .iter()
            .any(|r| l.contains(&format!("resource=\"{r}\"")))
    }) {
        let verb = line
            .split("verb=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or("?");
        *out.entry(verb.to_string()).or_insert(0.0) += value(line);
    }
    out
}

fn request_lines(metrics: &str) -> impl Iterator<Item = &str> {
    metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
}

fn value(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP apiserver_request_total Counter of apiserver requests
apiserver_request_total{code=\"200\",resource=\"secrets\",verb=\"GET\"} 3
apiserver_request_total{code=\"404\",resource=\"secrets\",verb=\"GET\"} 2
apiserver_request_total{code=\"200\",resource=\"leases\",verb=\"PUT\"} 40
apiserver_request_total{code=\"201\",resource=\"events\",verb=\"POST\"} 1
apiserver_request_duration_seconds_count{resource=\"secrets\",verb=\"GET\"} 99
";

    #[test]
    fn requests_sum_the_matching_series_only() {
        assert_eq!(requests(TEXT, &[("resource", "secrets")]), 5);
        assert_eq!(
            requests(TEXT, &[("resource", "secrets"), ("code", "404")]),
            2
        );
        assert_eq!(requests(TEXT, &[]), 46);
        let by_verb = requests_by_verb(TEXT, &["secrets", "events"]);
        assert_eq!(by_verb.get("GET"), Some(&5.0));
        assert_eq!(by_verb.get("POST"), Some(&1.0));
        assert_eq!(by_verb.get("PUT"), None);
    }
}
