// SPDX-License-Identifier: GPL-2.0
//! systemd integration: socket activation, readiness, the watchdog and
//! `BARRIER=1`, over the `sd-notify` crate.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Is luod running under systemd (`NOTIFY_SOCKET` set)?
pub fn under_systemd() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|v| !v.is_empty())
}

/// Take the fds systemd passed (`LISTEN_FDS`, for this pid) with their
/// names, close-on-exec, and clear the variables.
///
/// # Safety
///
/// Call it before luod starts any thread (it changes the environment).
pub unsafe fn listen_fds() -> Vec<(OwnedFd, String)> {
    // SAFETY: no other thread runs yet (the caller's precondition), so no
    // thread reads the environment while this clears LISTEN_*.
    let fds = match unsafe { sd_notify::listen_fds_with_names_and_unset_env() } {
        Ok(it) => it.collect::<Vec<_>>(),
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    for (raw, name) in fds {
        // SAFETY: sd_notify returns the fds systemd passed to this process
        // (`LISTEN_PID` is ours), numbered from 3; nothing else in luod owns
        // them: this runs first thing in main(), and the environment
        // variables that name them are cleared so nobody takes them twice.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if rustix::io::fcntl_getfd(&fd).is_err() {
            // Not open after all: forget the number without closing it.
            std::mem::forget(fd);
            continue;
        }
        let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
        out.push((fd, name));
    }
    out
}

/// Tell systemd luod is ready (no-op outside systemd).
pub fn ready() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
}

/// `BARRIER=1`: wait until systemd has processed every message sent
/// before (it closes the fd we pass when it gets here). A no-op outside
/// systemd; at most five seconds.
pub fn barrier() -> io::Result<()> {
    if !under_systemd() {
        return Ok(());
    }
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    sd_notify::notify_with_fds(&[sd_notify::NotifyState::Custom("BARRIER=1")], &[w.as_fd()])?;
    drop(w);
    let mut fds = [rustix::event::PollFd::new(&r, rustix::event::PollFlags::IN)];
    let t = rustix::event::Timespec { tv_sec: 5, tv_nsec: 0 };
    loop {
        match rustix::event::poll(&mut fds, Some(&t)) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::TimedOut, "systemd did not answer BARRIER=1")),
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// If systemd watches luod (`WatchdogSec=`), ping it from a thread at half
/// the interval for as long as `alive()` returns; `alive` must block or
/// fail when luod is wedged (it takes the global lock).
pub fn watchdog(alive: impl Fn() -> bool + Send + 'static) {
    let Some(every) = sd_notify::watchdog_enabled() else { return };
    let every = (every / 2).max(Duration::from_millis(100));
    let spawned = std::thread::Builder::new().name("watchdog".into()).spawn(move || loop {
        if alive() {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        }
        std::thread::sleep(every);
    });
    if let Err(e) = spawned {
        crate::log(&format!("warning: no watchdog thread: {e}"));
    }
}
