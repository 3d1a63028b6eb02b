// SPDX-License-Identifier: GPL-2.0
//! "kexec imminent / cancelled" for the clients that subscribed.
//!
//! A client sends `Subscribe`; from then on its connection carries events
//! from luod and `Ack`s from the client. Before `Reboot` kexecs, luod sends
//! `KexecImminent` to every subscriber and waits until each acknowledged
//! that sequence number (its VMM has paused vCPUs and DMA) or the timeout
//! passed. Events are sent without blocking: a subscriber that does not
//! read its socket only fails to acknowledge.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::proto::{self, Event, EventKind};

#[derive(Debug)]
struct Subscriber {
    id: u64,
    sock: OwnedFd,
    acked: u32,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    seq: u32,
    subs: Vec<Subscriber>,
}

/// The subscribers. A leaf lock, except that [`Events::announce`] waits
/// on it (releasing it) for acknowledgements.
#[derive(Debug, Default)]
pub struct Events {
    state: Mutex<State>,
    acked: Condvar,
}

fn send(sock: &OwnedFd, e: &Event) -> bool {
    let bytes = proto::encode_event(e);
    rustix::net::send(sock, &bytes, rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL)
        .is_ok_and(|n| n == bytes.len())
}

impl Events {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribe the connection `sock`; returns its id.
    pub fn subscribe(&self, sock: impl AsFd) -> std::io::Result<u64> {
        let sock = sock.as_fd().try_clone_to_owned()?;
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        let acked = st.seq;
        st.subs.push(Subscriber { id, sock, acked });
        Ok(id)
    }

    /// The subscriber `id` hung up.
    pub fn unsubscribe(&self, id: u64) {
        self.lock().subs.retain(|s| s.id != id);
        self.acked.notify_all();
    }

    /// The subscriber `id` acknowledged event `seq`.
    pub fn ack(&self, id: u64, seq: u32) {
        let mut st = self.lock();
        let cur = st.seq;
        if let Some(s) = st.subs.iter_mut().find(|s| s.id == id) {
            if seq <= cur {
                s.acked = s.acked.max(seq);
            }
        }
        drop(st);
        self.acked.notify_all();
    }

    /// How many subscribe.
    pub fn count(&self) -> u32 {
        self.lock().subs.len() as u32
    }

    /// Send `KexecImminent` and wait up to `timeout` for every subscriber
    /// to acknowledge it. Returns how many did not.
    pub fn announce(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        st.seq = st.seq.wrapping_add(1).max(1);
        let seq = st.seq;
        let deadline_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let e = Event { seq, kind: EventKind::KexecImminent, deadline_ms };
        for s in &st.subs {
            send(&s.sock, &e);
        }
        loop {
            let missing = st.subs.iter().filter(|s| s.acked != seq).count();
            let now = Instant::now();
            if missing == 0 || now >= deadline {
                return missing;
            }
            st = match self.acked.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Send `KexecCancelled` to every subscriber.
    pub fn cancel(&self) {
        let st = self.lock();
        let e = Event { seq: st.seq, kind: EventKind::KexecCancelled, deadline_ms: 0 };
        for s in &st.subs {
            send(&s.sock, &e);
        }
    }
}
