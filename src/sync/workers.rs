//! Worker lists as status holds them: conversion from Vast's workers, readiness, the cap
//! on the listed workers and the exact summary figures.

use std::collections::BTreeMap;

use super::endpoints::EndpointPolicy;
use crate::crd::{Scope, WorkerGroupStatus, WorkerStatus};
use crate::vast::Worker;

/// Whether a Vast state means the worker serves requests.
pub fn is_ready_state(status: &str) -> bool {
    matches!(status, "idle" | "running")
}

/// Converts Vast workers to status entries, sorted by id without duplicates. The parser
/// already hands them over sorted; other callers may not.
pub fn to_status_workers(workers: &[Worker]) -> Vec<WorkerStatus> {
    let mut out: Vec<WorkerStatus> = workers
        .iter()
        .map(|w| WorkerStatus {
            id: w.id,
            status: w.status.clone(),
            ready: is_ready_state(&w.status),
            url: w.url.clone(),
            created_at: w.created_at,
            cur_load: w.cur_load,
            reqs_working: w.reqs_working,
            perf: w.perf,
        })
        .collect();
    if !out.is_sorted_by_key(|w| w.id) {
        out.sort_by_key(|w| w.id);
    }
    out.dedup_by_key(|w| w.id);
    out
}

/// Keeps at most `max` workers, ready ones first, and returns them sorted by id.
pub fn truncate(all: &[WorkerStatus], max: usize) -> Vec<WorkerStatus> {
    if all.len() <= max {
        return all.to_vec();
    }
    let mut keep: Vec<&WorkerStatus> = all.iter().filter(|w| w.ready).take(max).collect();
    let room = max - keep.len();
    keep.extend(all.iter().filter(|w| !w.ready).take(room));
    let mut out: Vec<WorkerStatus> = keep.into_iter().cloned().collect();
    out.sort_by_key(|w| w.id);
    out
}

/// Writes `workers` (the full list of `scope`) into `status`: the capped list,
/// the exact counts, the summary and the ready URLs: only those that could be endpoints
/// (http(s) with an IP address `policy` lets through), as parsed (`readyUrls` is read by
/// clients as where to send traffic).
pub fn fill(
    status: &mut WorkerGroupStatus,
    workers: &[WorkerStatus],
    scope: Scope,
    max: usize,
    policy: &EndpointPolicy,
) {
    let status_counts = workers.iter().fold(BTreeMap::new(), |mut m, w| {
        *m.entry(w.status.clone()).or_insert(0) += 1;
        m
    });
    let ready_n = workers.iter().filter(|w| w.ready).count() as i64;
    status.set_scope(scope);
    status.workers = truncate(workers, max);
    status.worker_count = workers.len() as i64;
    status.ready_workers = ready_n;
    status.ready_summary = Some(format!("{ready_n}/{}", workers.len()));
    status.status_counts = status_counts;
    status.workers_truncated = status.workers.len() < workers.len();
    let mut urls: Vec<String> = workers
        .iter()
        .filter(|w| w.ready)
        .filter_map(|w| policy.ready_url(w.url.as_deref()?))
        .collect();
    urls.sort();
    urls.dedup();
    urls.truncate(max);
    status.ready_urls = urls;
}

/// A status entry for unit tests: a worker in `status`, ready as that state says.
#[cfg(test)]
pub(crate) fn test_worker(id: i64, status: &str, url: Option<&str>) -> WorkerStatus {
    WorkerStatus {
        id,
        status: status.into(),
        ready: is_ready_state(status),
        url: url.map(str::to_string),
        created_at: None,
        cur_load: None,
        reqs_working: None,
        perf: None,
    }
}
