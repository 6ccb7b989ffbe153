//! Leader election with a Lease (`kube-lease-manager`), plus the renew deadline the crate
//! lacks: a leader that cannot renew stops leading before its Lease expires.
//!
//! The Lease is also watched, so a standby learns at once when the leader releases it
//! (on SIGTERM) instead of sleeping until it would have expired, and the leader learns of
//! every renewal it made; without a confirmed renewal it steps down one second before
//! the Lease it last saw would expire.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// How to take part in the election.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Name of the Lease.
    pub lease_name: String,
    /// Its namespace.
    pub namespace: String,
    /// This process's identity (the pod name).
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub duration: Duration,
}

/// Shortest `--lease-duration`.
pub const MIN_DURATION: Duration = Duration::from_secs(3);

/// A leader stops this long before the Lease it last saw renewed would expire.
const SAFETY_MARGIN: Duration = Duration::from_secs(1);

/// How often a manager that leads without a confirmed renewal asks the apiserver.
const RECHECK: Duration = Duration::from_secs(2);

/// The one rule for `--lease-duration`: at least [`MIN_DURATION`].
pub fn check_duration(duration: Duration) -> Result<(), String> {
    if duration < MIN_DURATION {
        return Err(format!(
            "--lease-duration must be at least {}s",
            MIN_DURATION.as_secs()
        ));
    }
    Ok(())
}

/// Joins the election. Returns a receiver that is true while this process leads, and
/// the task, which releases the Lease and ends once `stop` turns true.
pub async fn start(
    client: Client,
    settings: Settings,
    stop: watch::Receiver<bool>,
) -> Result<(watch::Receiver<bool>, tokio::task::JoinHandle<()>), crate::error::Error> {
    check_duration(settings.duration).map_err(crate::error::Error::Config)?;
    let secs = settings.duration.as_secs();
    // Renew a third of the duration before expiry (15s: every 10s).
    let grace = (secs / 3).max(1);
    let params =
        LeaseParams::new(settings.identity.clone(), secs, grace).with_field_manager(format!(
            "{}-lease-{}",
            crate::shared::FIELD_MANAGER,
            settings.identity
        ));
    let candidate = Candidate {
        client: client.clone(),
        settings: settings.clone(),
        params,
    };
    // An apiserver that cannot be reached (down, restarting, a network cut) is waited
    // for, as a standby waits: exiting would only crash-loop the pod. An answer that
    // refuses (RBAC, a bad namespace) is an error at once.
    let mut delay = Duration::from_millis(500);
    let manager = loop {
        match candidate.manager().await {
            Ok(m) => break m,
            Err(e) if !worth_waiting(&e) => {
                return Err(crate::error::Error::StartUp(format!(
                    "cannot use Lease {}/{}: {e}",
                    settings.namespace, settings.lease_name
                )));
            }
            Err(e) => {
                warn!(error = %e, retry_in = ?delay, lease = %settings.lease_name, "cannot read the Lease yet (is the apiserver reachable?); retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    };
    let (tx, rx) = watch::channel(false);
    let leases = Api::<Lease>::namespaced(client, &settings.namespace);
    let task = tokio::spawn(elect(candidate, manager, leases, tx, stop));
    Ok((rx, task))
}

/// Whether a failed start may go through later: the apiserver could not be reached or
/// was busy (a transport error, 5xx, a conflict, a rate limit), or another replica
/// created or deleted the Lease at the same moment. An answer that refuses (any other
/// 4xx: RBAC, a bad namespace) and the crate's own inconsistencies will not mend.
fn worth_waiting(e: &kube_lease_manager::LeaseManagerError) -> bool {
    use kube_lease_manager::LeaseManagerError as E;
    match e {
        E::KubeError(kube::Error::Api(s)) => {
            !(400..500).contains(&s.code) || s.code == 409 || s.code == 429
        }
        E::KubeError(_) | E::LeaseAlreadyExists(_) | E::NonexistentLease(_) => true,
        E::InconsistentState(_) | E::ControlChannelError(_) => false,
    }
}

/// What it takes to make a lease manager.
struct Candidate {
    client: Client,
    settings: Settings,
    params: LeaseParams,
}

impl Candidate {
    /// A manager with a freshly read Lease (the crate re-reads a Lease only once the
    /// one it knows has expired).
    async fn manager(&self) -> Result<LeaseManager, kube_lease_manager::LeaseManagerError> {
        LeaseManager::new(
            self.client.clone(),
            &self.settings.lease_name,
            &self.settings.namespace,
            self.params.clone(),
            LeaseCreateMode::AutoCreate,
        )
        .await
    }
}

/// Runs `manager.changed()` in a task of its own, never cancelled mid-way (a renewal
/// is a PATCH followed by a read of the result), and reports each transition.
fn drive(
    manager: Arc<LeaseManager>,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<bool>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match manager.changed().await {
                Ok(leads) => {
                    if tx.send(leads).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "leader election: the Lease could not be read or written; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    (task, rx)
}

async fn elect(
    candidate: Candidate,
    manager: LeaseManager,
    leases: Api<Lease>,
    tx: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let settings = &candidate.settings;
    let mut manager = Arc::new(manager);
    let (mut driver, mut transitions) = drive(manager.clone());
    let wc = watcher::Config::default().fields(&format!("metadata.name={}", settings.lease_name));
    let mut lease_events = watcher(leases, wc)
        .backoff(crate::runtime::watch::WatchBackoff::default())
        .applied_objects()
        .boxed();
    let mut manager_leads = false;
    // Until when this process may act as leader, from the last renewal it saw.
    let mut valid_until: Option<Instant> = None;
    loop {
        let leading = manager_leads && valid_until.is_some_and(|t| Instant::now() < t);
        tx.send_if_modified(|v| {
            let changed = *v != leading;
            if changed {
                if leading {
                    info!(identity = %settings.identity, lease = %settings.lease_name, "acquired the leader Lease");
                } else {
                    warn!(identity = %settings.identity, lease = %settings.lease_name, "not leading (Lease lost, not renewed in time, or held by another)");
                }
            }
            *v = leading;
            changed
        });
        if *stop.borrow() {
            break;
        }
        // When to ask the apiserver: at the deadline while leading; every two seconds
        // while the manager leads but no renewal is confirmed (a Lease read that timed
        // out, or another holder seen), so that a Lease this process does hold is led
        // again even while its watch is broken.
        let deadline = if leading {
            valid_until
        } else if manager_leads {
            Some(Instant::now() + RECHECK)
        } else {
            None
        };
        tokio::select! {
            biased;
            _ = stop.changed() => {}
            leads = transitions.recv() => {
                let leads = leads.unwrap_or(false);
                manager_leads = leads;
                valid_until = None;
                if leads {
                    // From the renewal on record: a restarted process with the same
                    // identity may find its own Lease close to expiry.
                    valid_until = confirmed_until(&candidate, Duration::from_secs(2)).await;
                }
            },
            event = lease_events.next() => match event {
                Some(Ok(lease)) => {
                    // A renewal of ours extends the deadline; another holder, confirmed
                    // by a read, ends it. A release wakes the loop: a standby's manager then looks again at
                    // once (a release is taken over without waiting for expiry). A
                    // leader's manager finds out itself at its next renewal; until then
                    // the deadline keeps a leader from acting on a Lease it no longer
                    // renews.
                    let spec = lease.spec.unwrap_or_default();
                    if !manager_leads && spec.holder_identity.is_none() {
                        // Released (the leader shut down): take it now.
                        match candidate.manager().await {
                            Ok(m) => {
                                driver.abort();
                                manager = Arc::new(m);
                                (driver, transitions) = drive(manager.clone());
                            }
                            Err(e) => warn!(error = %e, "cannot read the released Lease; waiting for it to expire"),
                        }
                    }
                    let ours = spec.holder_identity.as_deref() == Some(settings.identity.as_str());
                    if manager_leads && ours && let Some(renewed) = spec.renew_time {
                        let seen = valid_until_from(renewed.0, settings.duration);
                        valid_until = valid_until.max(seen);
                    }
                    if leading && !ours && spec.holder_identity.is_some() {
                        // Another replica holds it (two took it at once after an
                        // outage, and the other's write came last), or this is an old
                        // event of a watch that resumed behind the manager: the
                        // apiserver says which (a quorum read). Another holder stops
                        // this one now, not at the manager's next renewal.
                        valid_until = confirmed_until(&candidate, SAFETY_MARGIN / 2).await;
                        if valid_until.is_none() {
                            warn!(holder = ?spec.holder_identity, "the leader Lease is held by another replica");
                        }
                    }
                }
                Some(Err(e)) => warn!(error = %e, "watch of the leader Lease failed (may the operator list and watch Leases?); retrying"),
                None => {}
            },
            _ = sleep_until_opt(deadline) => {
                // No renewal seen in time (the Lease watch may be broken): ask the
                // apiserver; without a confirmed renewal the loop stops leading.
                valid_until = valid_until.max(confirmed_until(&candidate, SAFETY_MARGIN / 2).await);
            }
        }
    }
    driver.abort();
    tx.send_replace(false);
    match tokio::time::timeout(Duration::from_secs(3), manager.release()).await {
        Ok(Ok(())) => info!("released the leader Lease"),
        Ok(Err(e)) => warn!(error = %e, "could not release the leader Lease"),
        Err(_) => warn!("releasing the leader Lease timed out"),
    }
}

/// Until when the Lease on record lets this process act: from its `renewTime` when this
/// process holds it; None when it does not, or the apiserver does not answer within
/// `timeout`.
async fn confirmed_until(candidate: &Candidate, timeout: Duration) -> Option<Instant> {
    let s = &candidate.settings;
    let api = Api::<Lease>::namespaced(candidate.client.clone(), &s.namespace);
    let lease = tokio::time::timeout(timeout, api.get_opt(&s.lease_name))
        .await
        .ok()?
        .ok()??;
    let spec = lease.spec?;
    if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
        return None;
    }
    valid_until_from(spec.renew_time?.0, s.duration)
}

/// The instant until which a Lease renewed at `renewed` may be acted on.
fn valid_until_from(renewed: jiff::Timestamp, duration: Duration) -> Option<Instant> {
    let expires = renewed
        .checked_add(jiff::SignedDuration::try_from(duration).ok()?)
        .ok()?;
    let left = jiff::Timestamp::now().duration_until(expires);
    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
    Some(Instant::now() + left.saturating_sub(SAFETY_MARGIN))
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_lease_manager::LeaseManagerError as E;

    fn answer(code: u16) -> E {
        E::KubeError(kube::Error::Api(Box::new(
            kube::core::Status::failure("no", "Reason").with_code(code),
        )))
    }

    #[test]
    fn a_start_waits_for_what_can_mend_and_stops_at_what_cannot() {
        for code in [409, 429, 500, 503, 504] {
            assert!(worth_waiting(&answer(code)), "{code}");
        }
        assert!(worth_waiting(&E::LeaseAlreadyExists("l".into())));
        assert!(worth_waiting(&E::NonexistentLease("l".into())));
        for code in [400, 401, 403, 404, 422] {
            assert!(!worth_waiting(&answer(code)), "{code}");
        }
        assert!(!worth_waiting(&E::InconsistentState("bug".into())));
    }
}
