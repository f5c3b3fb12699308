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
use futures_util::future::BoxFuture;
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

struct Pending<T> {
    item: T,
    answer: oneshot::Sender<Answer>,
}

/// What a [`Queue`] does with each batch it takes: one answer per item, in order.
pub type Submit<T> = Arc<dyn Fn(Vec<T>) -> BoxFuture<'static, Vec<Answer>> + Send + Sync + 'static>;

/// A queue whose items are taken in batches by a task: up to `max` items per batch, at most
/// `in_flight` batches submitted at once, an item that `solo` accepts always alone. The
/// leader's group commit and a follower's forwarding of writes are each one. Cheap to clone.
pub struct Queue<T> {
    queue: mpsc::Sender<Pending<T>>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            queue: self.queue.clone(),
        }
    }
}

impl<T: Send + 'static> Queue<T> {
    /// Starts the task that drains the queue through `submit`. It ends when every handle is
    /// dropped.
    pub fn start(in_flight: usize, max: usize, solo: fn(&T) -> bool, submit: Submit<T>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(drain(rx, in_flight, max, solo, submit));
        Queue { queue }
    }

    /// Queues `item` and waits for its answer.
    pub async fn call(&self, item: T) -> Answer {
        self.enqueue(item).await.answer().await
    }

    /// Queues `item` (waiting while the queue is full); the answer comes through the ticket.
    async fn enqueue(&self, item: T) -> Ticket {
        let (answer, rx) = oneshot::channel();
        match self.queue.send(Pending { item, answer }).await {
            Ok(()) => Ticket(Some(rx)),
            Err(_) => Ticket(None),
        }
    }
}

/// A queued item's claim on its answer.
struct Ticket(Option<oneshot::Receiver<Answer>>);

impl Ticket {
    async fn answer(self) -> Answer {
        let shut = || WriteError::Fatal("the node is shutting down".into());
        match self.0 {
            Some(rx) => rx.await.unwrap_or_else(|_| Err(shut())),
            None => Err(shut()),
        }
    }
}

async fn drain<T: Send + 'static>(
    mut rx: mpsc::Receiver<Pending<T>>,
    in_flight: usize,
    max: usize,
    solo: fn(&T) -> bool,
    submit: Submit<T>,
) {
    let slots = Arc::new(Semaphore::new(in_flight.max(1)));
    let mut carry: Option<Pending<T>> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        // Waiting for a slot is what lets the queue fill while earlier batches are out.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        if !solo(&batch[0].item) {
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(p) if solo(&p.item) => {
                        carry = Some(p);
                        break;
                    }
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
        }
        let submit = submit.clone();
        tokio::spawn(async move {
            let (items, answers): (Vec<T>, Vec<_>) =
                batch.into_iter().map(|p| (p.item, p.answer)).unzip();
            let n = items.len();
            let got = submit(items).await;
            if got.len() == n {
                for (answer, got) in answers.into_iter().zip(got) {
                    let _ = answer.send(got);
                }
            } else {
                let e = WriteError::Fatal(format!("{n} writes were answered {} times", got.len()));
                for answer in answers {
                    let _ = answer.send(Err(e.clone()));
                }
            }
            drop(slot);
        });
    }
}

/// The leader's group commit: commands queued by concurrent writers, each batch one entry.
pub fn commit_queue(me: NodeId, raft: Raft) -> Queue<Command> {
    let submit: Submit<Command> = Arc::new(move |batch| {
        let raft = raft.clone();
        Box::pin(async move { submit_entry(me, &raft, batch).await })
    });
    Queue::start(IN_FLIGHT, MAX_COMMANDS, is_bulk, submit)
}

/// A bulk command never shares an entry or a forwarded request.
pub fn is_bulk(cmd: &Command) -> bool {
    matches!(cmd, Command::BulkUpsert { .. })
}

/// Sends `batch` as one entry (a lone command as itself); one answer per command.
async fn submit_entry(me: NodeId, raft: &Raft, mut batch: Vec<Command>) -> Vec<Answer> {
    if batch.len() == 1 {
        return match batch.pop() {
            Some(cmd) => vec![client_write(me, raft, cmd).await],
            None => Vec::new(),
        };
    }
    let n = batch.len();
    match client_write(me, raft, Command::Batch { commands: batch }).await {
        Ok(Executed {
            seq,
            outcome: Outcome::Batch { outcomes },
        }) if outcomes.len() == n => outcomes
            .into_iter()
            .map(|outcome| Ok(Executed { seq, outcome }))
            .collect(),
        Ok(other) => {
            let e = WriteError::Fatal(format!("a batch of commands was answered {other:?}"));
            vec![Err(e); n]
        }
        Err(e) => vec![Err(e); n],
    }
}

/// One `client_write`, with the node's write timeout and its errors in [`WriteError`] terms.
async fn client_write(me: NodeId, raft: &Raft, cmd: Command) -> Answer {
    let written = tokio::time::timeout(WRITE_WAIT, raft.client_write(Request::from(cmd))).await;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::sync::Notify;

    type Batches = Arc<Mutex<Vec<Vec<u64>>>>;

    fn executed(seq: u64) -> Answer {
        Ok(Executed {
            seq,
            outcome: Outcome::AlreadyApplied { applied: seq },
        })
    }

    /// A queue whose submit records each batch, answers item `i` with sequence `i`, and holds
    /// its first batch until `gate` is opened.
    fn recording(in_flight: usize) -> (Queue<u64>, Batches, Arc<Notify>) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Notify::new());
        let (b, g) = (batches.clone(), gate.clone());
        let submit: Submit<u64> = Arc::new(move |items: Vec<u64>| {
            let (b, g) = (b.clone(), g.clone());
            Box::pin(async move {
                let first = {
                    let mut b = b.lock().unwrap_or_else(|p| p.into_inner());
                    b.push(items.clone());
                    b.len() == 1
                };
                if first {
                    g.notified().await;
                }
                items.into_iter().map(executed).collect()
            })
        });
        let solo = |i: &u64| *i >= 1000;
        (Queue::start(in_flight, 8, solo, submit), batches, gate)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queued_while_a_batch_is_out_go_together_and_each_gets_its_own_answer() {
        let (queue, batches, gate) = recording(1);
        let first = tokio::spawn({
            let q = queue.clone();
            async move { q.call(0).await }
        });
        // The first batch is out (and held) once submit has recorded it.
        while batches.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            tokio::task::yield_now().await;
        }
        // Eleven more writers queue, in this order, while it is out: 1..=10, and a solo item.
        let mut waiting = Vec::new();
        for i in (1..=10).chain([1000]) {
            waiting.push((i, queue.enqueue(i).await));
        }
        gate.notify_one();
        assert_eq!(first.await.unwrap().unwrap().seq, 0);
        for (i, ticket) in waiting {
            assert_eq!(
                ticket.answer().await.unwrap().seq,
                i,
                "writer {i} got another's answer"
            );
        }
        let batches = batches.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // At most 8 per batch, in queue order, and the solo item alone.
        assert_eq!(
            batches,
            vec![
                vec![0],
                vec![1, 2, 3, 4, 5, 6, 7, 8],
                vec![9, 10],
                vec![1000]
            ]
        );
    }

    #[tokio::test]
    async fn a_batch_answered_with_the_wrong_count_fails_each_writer_instead_of_misanswering() {
        let submit: Submit<u64> = Arc::new(|_items: Vec<u64>| Box::pin(async { Vec::new() }));
        let queue = Queue::start(1, 8, |_| false, submit);
        let e = queue.call(7).await.unwrap_err();
        assert!(matches!(e, WriteError::Fatal(_)), "{e:?}");
    }
}
