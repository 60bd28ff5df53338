//! One live session per machine id.
//!
//! Every session that says Hello gets a fresh generation number for its
//! machine; the writer stores a batch only while its generation is still
//! the machine's current one. A new Hello therefore fences the older
//! session in two ways: its fence token fires (the older stream ends with
//! ABORTED) and any of its batches still queued are refused by the writer.
//! The new session then reads the committed cursor through the writer's
//! queue, behind everything queued before it, so the cursor it is welcomed
//! with already accounts for every older batch, stored or refused.

use crate::db::hosts::HostHello;
use crate::db::writer::{Position, Request, Response, WriterHandle};
use crate::error::Error;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

struct Slot {
    generation: u64,
    fence: CancellationToken,
}

/// The machines that have a live session, and their generations.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<Arc<str>, Slot>>,
    /// Generations are unique over all machines and never reused, so a
    /// stale batch can never match a later session by accident.
    next_generation: AtomicU64,
}

/// A session's hold on its machine; releases it when dropped.
pub struct Claim {
    sessions: Arc<Sessions>,
    pub machine_id: Arc<str>,
    pub generation: u64,
    /// Fires when a newer session takes the machine over.
    pub fenced: CancellationToken,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut live = self.sessions.lock();
        if live
            .get(&self.machine_id)
            .is_some_and(|s| s.generation == self.generation)
        {
            live.remove(&self.machine_id);
        }
    }
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Slot>> {
        // A panic while holding this lock cannot leave the map half
        // updated (every change is one insert or remove), so a poisoned
        // lock is still usable.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the machine over, fencing any older session.
    pub fn claim(self: &Arc<Self>, machine_id: &str) -> Claim {
        let machine_id: Arc<str> = Arc::from(machine_id);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) + 1;
        let fenced = CancellationToken::new();
        let old = self.lock().insert(
            machine_id.clone(),
            Slot {
                generation,
                fence: fenced.clone(),
            },
        );
        if let Some(old) = old {
            tracing::info!(machine_id = %machine_id, "a new session fences the older one");
            old.fence.cancel();
        }
        Claim {
            sessions: self.clone(),
            machine_id,
            generation,
            fenced,
        }
    }

    /// Whether `machine_id` has a live session.
    pub fn is_live(&self, machine_id: &str) -> bool {
        self.lock().contains_key(machine_id)
    }

    /// Whether `generation` still holds `machine_id`.
    pub fn is_current(&self, machine_id: &str, generation: u64) -> bool {
        self.lock()
            .get(machine_id)
            .is_some_and(|s| s.generation == generation)
    }

    /// Starts a session: fence older ones, then read the committed cursor
    /// through the writer.
    pub async fn open(
        self: &Arc<Self>,
        writer: &WriterHandle,
        hello: HostHello,
    ) -> Result<(Claim, Position), Error> {
        let claim = self.claim(&hello.machine_id);
        let rx = writer
            .submit(|reply| Request::Hello { hello, reply })
            .await?;
        match rx.await.map_err(|_| Error::ShuttingDown)?? {
            Response::Position(p) => Ok((claim, p)),
            Response::Ack(_) | Response::Recorded => Err(Error::Storage),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_claim_fences_the_old_one() {
        let s = Arc::new(Sessions::default());
        let a = s.claim("m");
        assert!(s.is_current("m", a.generation));
        let b = s.claim("m");
        assert!(a.fenced.is_cancelled());
        assert!(!s.is_current("m", a.generation));
        assert!(s.is_current("m", b.generation));
        drop(a);
        assert!(
            s.is_current("m", b.generation),
            "the old claim must not release the new one"
        );
        drop(b);
        assert!(!s.is_current("m", 2));
    }
}
