//! Group commit on the leader: concurrent client writes become one Raft entry.
//!
//! openraft 0.9 appends (and fsyncs) each `client_write` on its own, one after the other in its
//! core task, so a leader writing one command per entry spends its core on one `fdatasync` per
//! write and tops out near the disk's sync rate. Here writes queue in a channel; a task takes
//! whatever has queued, sends it as one entry (a lone command as itself, several as a
//! [`Command::Batch`]), and answers each writer with its own outcome. At most [`IN_FLIGHT`]
//! entries are in flight at once, so under load the queue fills while earlier entries commit:
//! the busier the leader, the larger the batches, and an idle leader sends each write at once.
//!
//! Promises:
//! - Each writer gets exactly the outcome of its own command, as if written alone; the
//!   commands of one batch apply in queue order, each seeing the ones before it, and share the
//!   entry's sequence number (a refused command does not stop the others).
//! - A failure of the entry (no longer leader, timeout, storage) is every writer's failure, with
//!   the same meaning as for a lone write: `NoLeader` means not taken, `Unknown` may have been.
//! - A bulk command never shares an entry (it may be megabytes on its own).

use crate::node::{WriteError, WRITE_WAIT};
use crate::types::{NodeId, Raft, Reply, Request};
use mussikon_engine::{Command, Executed, Outcome, MAX_BATCH};
use openraft::error::{ClientWriteError, RaftError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Most entries of this node's writes in flight (appended, not yet applied) at once.
pub const IN_FLIGHT: usize = 4;
/// Most commands in one entry.
pub const MAX_COMMANDS: usize = 256;
/// Writers that may wait in the queue; more wait to enqueue.
const QUEUE: usize = 4096;

const _: () = assert!(MAX_COMMANDS <= MAX_BATCH);

type Answer = Result<Executed, WriteError>;

struct Pending {
    cmd: Command,
    answer: oneshot::Sender<Answer>,
}

/// The queue in front of this node's `client_write`. Cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the task that drains the queue into `raft`. It ends when every handle is dropped.
    pub fn start(me: NodeId, raft: Raft) -> GroupCommit {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(drain(me, raft, rx));
        GroupCommit { queue }
    }

    /// Writes `cmd` through this node's Raft (which must be the leader, else `NoLeader`), in an
    /// entry shared with whatever other writes are queued.
    pub async fn write(&self, cmd: Command) -> Answer {
        let (answer, rx) = oneshot::channel();
        if self.queue.send(Pending { cmd, answer }).await.is_err() {
            return Err(WriteError::Fatal("the node is shutting down".into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(WriteError::Fatal("the node is shutting down".into())))
    }
}

fn is_bulk(cmd: &Command) -> bool {
    matches!(cmd, Command::BulkUpsert { .. })
}

async fn drain(me: NodeId, raft: Raft, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        // Waiting for a slot is what lets the queue fill while earlier entries commit.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        if !is_bulk(&batch[0].cmd) {
            while batch.len() < MAX_COMMANDS {
                match rx.try_recv() {
                    Ok(p) if is_bulk(&p.cmd) => {
                        carry = Some(p);
                        break;
                    }
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            submit(me, &raft, batch).await;
            drop(slot);
        });
    }
}

/// Sends `batch` as one entry and answers each writer.
async fn submit(me: NodeId, raft: &Raft, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        if let Some(p) = batch.pop() {
            let answer = client_write(me, raft, p.cmd).await;
            let _ = p.answer.send(answer);
        }
        return;
    }
    let mut answers = Vec::with_capacity(batch.len());
    let commands = batch
        .into_iter()
        .map(|p| {
            answers.push(p.answer);
            p.cmd
        })
        .collect();
    match client_write(me, raft, Command::Batch { commands }).await {
        Ok(Executed {
            seq,
            outcome: Outcome::Batch { outcomes },
        }) if outcomes.len() == answers.len() => {
            for (answer, outcome) in answers.into_iter().zip(outcomes) {
                let _ = answer.send(Ok(Executed { seq, outcome }));
            }
        }
        Ok(other) => {
            let e = WriteError::Fatal(format!("a batch of commands was answered {other:?}"));
            for answer in answers {
                let _ = answer.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for answer in answers {
                let _ = answer.send(Err(e.clone()));
            }
        }
    }
}

/// One `client_write`, with the node's write timeout and its errors in [`WriteError`] terms.
async fn client_write(me: NodeId, raft: &Raft, cmd: Command) -> Answer {
    let written = tokio::time::timeout(WRITE_WAIT, raft.client_write(Request(cmd))).await;
    let Ok(written) = written else {
        return Err(WriteError::Unknown {
            leader: format!("node {me}"),
            reason: format!(
                "not committed within {} s (is this leader cut from its quorum?)",
                WRITE_WAIT.as_secs()
            ),
        });
    };
    match written {
        Ok(resp) => match resp.data {
            Reply(Some(done)) => Ok(done),
            Reply(None) => Err(WriteError::Fatal("no command was applied".into())),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(WriteError::NoLeader),
        Err(e) => Err(WriteError::Fatal(e.to_string())),
    }
}
