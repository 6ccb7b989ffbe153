//! The apiserver's audit log (JSON lines, `audit.k8s.io/v1` Events) read into the
//! oracle's [`Write`]s: the replicas' writes, with when they were received and answered.
//! The policy (written by the harness) logs only the replicas' own users, at the
//! Request level for writes, so that Lease bodies tell who took the Lease.

use serde_json::Value;

use crate::oracle::{At, Write, replica_of};

/// The policy: the replicas' writes with their bodies, nothing else.
pub fn policy(users: &[String]) -> String {
    let users = users
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [\"RequestReceived\"]\nrules:\n- level: Request\n  users: [{users}]\n  verbs: [\"create\", \"update\", \"patch\", \"delete\", \"deletecollection\"]\n- level: None\n"
    )
}

/// The writes in `text`, times in seconds after `started`; lines that are not a
/// completed write of a replica are left out.
pub fn writes(text: &str, started: jiff::Timestamp) -> Vec<Write> {
    let at = |v: &Value| -> Option<At> {
        let t: jiff::Timestamp = v.as_str()?.parse().ok()?;
        Some(t.duration_since(started).as_secs_f64())
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["stage"] == "ResponseComplete")
        .filter_map(|e| {
            let user = e["user"]["username"].as_str()?;
            let o = &e["objectRef"];
            let mut resource = o["resource"].as_str()?.to_string();
            if let Some(sub) = o["subresource"].as_str() {
                resource = format!("{resource}/{sub}");
            }
            let body = &e["requestObject"];
            let holder = match &body["spec"]["holderIdentity"] {
                Value::String(h) => Some(h.clone()),
                Value::Null if body["spec"].get("holderIdentity").is_some() => Some(String::new()),
                _ => None,
            };
            let owners = body.get("metadata").map(|m| {
                m["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["kind"].as_str().map(str::to_string))
                    .collect()
            });
            Some(Write {
                at: at(&e["requestReceivedTimestamp"])?,
                done: at(&e["stageTimestamp"])?,
                replica: replica_of(user),
                verb: e["verb"].as_str()?.to_string(),
                resource,
                namespace: o["namespace"].as_str().unwrap_or_default().to_string(),
                name: o["name"].as_str().unwrap_or_default().to_string(),
                code: e["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
                holder,
                owners,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_becomes_a_write_with_its_times_holder_and_owners() {
        let started: jiff::Timestamp = "2026-12-03T10:00:00Z".parse().expect("time");
        let text = r#"{"kind":"Event","stage":"ResponseComplete","verb":"patch","user":{"username":"chaos-op-1"},"objectRef":{"resource":"leases","namespace":"chaos-system","name":"l"},"responseStatus":{"code":200},"requestObject":{"spec":{"holderIdentity":"chaos-op-1-42-3"}},"requestReceivedTimestamp":"2026-12-03T10:00:01.500000Z","stageTimestamp":"2026-12-03T10:00:01.750000Z"}
{"kind":"Event","stage":"ResponseComplete","verb":"create","user":{"username":"chaos-op-0"},"objectRef":{"resource":"endpointslices","namespace":"chaos-a","name":"wg-1-x"},"responseStatus":{"code":201},"requestObject":{"metadata":{"ownerReferences":[{"kind":"WorkerGroup"}]}},"requestReceivedTimestamp":"2026-12-03T10:00:02Z","stageTimestamp":"2026-12-03T10:00:02.1Z"}
{"kind":"Event","stage":"ResponseComplete","verb":"patch","user":{"username":"chaos-op-0"},"objectRef":{"resource":"workergroups","subresource":"status","namespace":"chaos-a","name":"wg-1"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-12-03T10:00:03Z","stageTimestamp":"2026-12-03T10:00:03Z"}
{"kind":"Event","stage":"ResponseStarted","verb":"patch","user":{"username":"chaos-op-0"},"objectRef":{"resource":"leases"},"requestReceivedTimestamp":"2026-12-03T10:00:03Z","stageTimestamp":"2026-12-03T10:00:03Z"}
not json"#;
        let w = writes(text, started);
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].replica, Some(1));
        assert_eq!(w[0].holder.as_deref(), Some("chaos-op-1-42-3"));
        assert!((w[0].at - 1.5).abs() < 1e-6 && (w[0].done - 1.75).abs() < 1e-6);
        assert_eq!(w[1].owners, Some(vec!["WorkerGroup".to_string()]));
        assert_eq!(w[1].code, 201);
        assert_eq!(w[2].resource, "workergroups/status");
        assert_eq!(w[2].owners, None);
        assert!(policy(&["chaos-op-0".into()]).contains("users: [\"chaos-op-0\"]"));
    }
}
