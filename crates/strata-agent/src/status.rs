//! [`StatusReporter`]: instances' statuses sent to the control plane in batches. A supervisor
//! hands over its instance's new status and waits for the outcome; while one report is on its
//! way, the next ones queue and leave together in the next (`PUT /v1/nodes/{name}/status`),
//! as Nomad's clients batch their allocation updates. A node whose instances all change at
//! once (a deploy, a restart) sends a few requests, not one per instance.

use strata_core::api::StatusReports;
use strata_core::{InstanceId, InstanceStatus, NodeName};
use tokio::sync::{mpsc, oneshot};

use crate::client::ControlClient;

/// What became of one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// The control plane stored it.
    Stored,
    /// The instance is no longer wanted on this node: stop it, nothing to report to.
    NotWanted,
    /// The report did not reach the control plane (why); send it again later.
    Failed(String),
}

type Waiting = (InstanceStatus, oneshot::Sender<Reported>);

/// A cheap handle that sends statuses through the node's batching task.
#[derive(Debug, Clone)]
pub struct StatusReporter {
    queue: mpsc::UnboundedSender<Waiting>,
}

impl StatusReporter {
    /// Starts the task that reports node `node`'s statuses through `client`. Must be called
    /// within a tokio runtime; the task ends when every handle is dropped.
    pub fn start(client: ControlClient, node: NodeName) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(send_loop(client, node, waiting));
        Self { queue }
    }

    /// Reports `status` with whatever else is waiting; returns what became of it.
    pub async fn report(&self, status: InstanceStatus) -> Reported {
        let (done, outcome) = oneshot::channel();
        if self.queue.send((status, done)).is_err() {
            return Reported::Failed("the node's status reporter stopped".into());
        }
        outcome
            .await
            .unwrap_or_else(|_| Reported::Failed("the node's status reporter stopped".into()))
    }
}

async fn send_loop(
    client: ControlClient,
    node: NodeName,
    mut waiting: mpsc::UnboundedReceiver<Waiting>,
) {
    while let Some(first) = waiting.recv().await {
        let mut batch = vec![first];
        while batch.len() < StatusReports::MAX {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (statuses, waiters): (Vec<InstanceStatus>, Vec<_>) = batch.into_iter().unzip();
        let ids: Vec<InstanceId> = statuses.iter().map(|s| s.id.clone()).collect();
        let report = StatusReports { statuses };
        let outcomes: Vec<Reported> = match client.report_statuses(&node, &report).await {
            Ok(stored) => ids
                .iter()
                .map(|id| match stored.not_wanted.contains(id) {
                    true => Reported::NotWanted,
                    false => Reported::Stored,
                })
                .collect(),
            Err(error) => {
                let why = error.to_string();
                ids.iter().map(|_| Reported::Failed(why.clone())).collect()
            }
        };
        for (waiter, outcome) in waiters.into_iter().zip(outcomes) {
            let _ = waiter.send(outcome);
        }
    }
}
