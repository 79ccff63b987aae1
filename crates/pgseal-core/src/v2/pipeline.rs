//! A three-stage pipeline — produce, transform, consume — over bounded channels.
//!
//! Reading, the crypto and writing each get a thread, so I/O overlaps with hashing and AES
//! instead of taking turns. When one stage fails the others see their channel close and stop;
//! the error reported is the one that caused the stop, not the "channel closed" it set off.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use crate::error::{Error, Result};

/// Chunks in flight between two stages; with 64 KiB chunks this is well under a MiB in total.
const DEPTH: usize = 8;

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

/// The sending end handed to a producer.
pub(crate) struct Sender<T>(SyncSender<T>);

impl<T> Sender<T> {
    pub(crate) fn send(&self, item: T) -> StageResult<()> {
        self.0.send(item).map_err(|_| StageError::Closed)
    }
}

/// Runs `producer` and `consumer` on their own threads and `transform` on this one, item by item
/// in order. Returns both end stages' results, or the error that stopped the pipeline.
pub(crate) fn run<T, U, PR, CR>(
    producer: impl FnOnce(&Sender<T>) -> StageResult<PR> + Send,
    mut transform: impl FnMut(T) -> Result<U>,
    consumer: impl FnOnce(Receiver<U>) -> StageResult<CR> + Send,
) -> Result<(PR, CR)>
where
    T: Send,
    U: Send,
    PR: Send,
    CR: Send,
{
    thread::scope(|scope| {
        let (in_tx, in_rx) = sync_channel::<T>(DEPTH);
        let (out_tx, out_rx) = sync_channel::<U>(DEPTH);
        let producer = scope.spawn(move || producer(&Sender(in_tx)));
        let consumer = scope.spawn(move || consumer(out_rx));

        let middle: StageResult<()> = (|| {
            for item in in_rx {
                let out = transform(item)?;
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
