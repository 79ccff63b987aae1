//! A three-stage pipeline — produce, transform, consume — over bounded channels.
//!
//! Reading, the crypto and writing each get a thread, so I/O overlaps with hashing and AES
//! instead of taking turns. Items travel in batches, so the threads hand over work a few times
//! per MiB rather than once per chunk. When one stage fails the others see their channel close
//! and stop; the error reported is the one that caused the stop, not the "channel closed" it set
//! off.

use std::cell::RefCell;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread;

use crate::error::{Error, Result};

/// Items per handoff between stages: 1 MiB of 64 KiB chunks.
const BATCH: usize = 16;
/// Batches in flight between two stages: a few MiB in all, whatever the input size.
const DEPTH: usize = 3;

/// What a consumer stage iterates over: the items, in order, across batches.
pub(crate) type Items<U> = std::iter::Flatten<std::sync::mpsc::IntoIter<Vec<U>>>;

/// Why a stage stopped early.
pub(crate) enum StageError {
    /// The neighbouring stage went away (it failed; its own error is the one to report).
    Closed,
    Failed(Error),
}

impl From<Error> for StageError {
    fn from(e: Error) -> Self {
        StageError::Failed(e)
    }
}

pub(crate) type StageResult<T> = std::result::Result<T, StageError>;

/// The sending end handed to a producer; it batches what it is given.
pub(crate) struct Sender<T> {
    tx: SyncSender<Vec<T>>,
    batch: RefCell<Vec<T>>,
}

impl<T> Sender<T> {
    fn new(tx: SyncSender<Vec<T>>) -> Self {
        Sender {
            tx,
            batch: RefCell::new(Vec::with_capacity(BATCH)),
        }
    }

    pub(crate) fn send(&self, item: T) -> StageResult<()> {
        let mut batch = self.batch.borrow_mut();
        batch.push(item);
        if batch.len() < BATCH {
            return Ok(());
        }
        let full = std::mem::replace(&mut *batch, Vec::with_capacity(BATCH));
        self.tx.send(full).map_err(|_| StageError::Closed)
    }

    fn flush(&self) -> StageResult<()> {
        let rest = std::mem::take(&mut *self.batch.borrow_mut());
        if rest.is_empty() {
            return Ok(());
        }
        self.tx.send(rest).map_err(|_| StageError::Closed)
    }
}

/// Runs `producer` and `consumer` on their own threads and `transform` on this one, item by item
/// in order. Returns both end stages' results, or the error that stopped the pipeline.
pub(crate) fn run<T, U, PR, CR>(
    producer: impl FnOnce(&Sender<T>) -> StageResult<PR> + Send,
    mut transform: impl FnMut(T) -> Result<U>,
    consumer: impl FnOnce(Items<U>) -> StageResult<CR> + Send,
) -> Result<(PR, CR)>
where
    T: Send,
    U: Send,
    PR: Send,
    CR: Send,
{
    thread::scope(|scope| {
        let (in_tx, in_rx) = sync_channel::<Vec<T>>(DEPTH);
        let (out_tx, out_rx) = sync_channel::<Vec<U>>(DEPTH);
        let producer = scope.spawn(move || {
            let sender = Sender::new(in_tx);
            let produced = producer(&sender)?;
            sender.flush()?;
            Ok(produced)
        });
        let consumer = scope.spawn(move || consumer(out_rx.into_iter().flatten()));

        let middle: StageResult<()> = (|| {
            for batch in in_rx {
                let out = batch
                    .into_iter()
                    .map(&mut transform)
                    .collect::<Result<Vec<U>>>()?;
                out_tx.send(out).map_err(|_| StageError::Closed)?;
            }
            Ok(())
        })();
        drop(out_tx);

        let consumed = join(consumer);
        let produced = join(producer);
        // The producer's failure explains everything downstream of it; a transform failure
        // (say, a bad tag) explains the consumer's (say, a cut-off zstd frame).
        match (produced, middle, consumed) {
            (Ok(p), Ok(()), Ok(c)) => Ok((p, c)),
            (Err(StageError::Failed(e)), _, _) => Err(e),
            (_, Err(StageError::Failed(e)), _) => Err(e),
            (_, _, Err(StageError::Failed(e))) => Err(e),
            _ => Err(Error::Crypto("pipeline stage stopped without an error")),
        }
    })
}

fn join<R>(handle: thread::ScopedJoinHandle<'_, R>) -> R {
    match handle.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
