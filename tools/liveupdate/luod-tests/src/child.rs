// SPDX-License-Identifier: GPL-2.0
//! Clients in forked children: a uid is per process, and a test often needs
//! two clients of different uids at once, or a client whose request is
//! left pending while others run. A child runs a closure (as a given uid,
//! or as root), can tell the parent it is ready and wait for its go, and
//! sends its result back over a pipe. Everything has a deadline: a child
//! that does not answer is killed and the case fails.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::{panic_text, s, wire, R};

fn pipe() -> Result<(File, File), String> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(s)?;
    Ok((File::from(r), File::from(w)))
}

/// The child's side: tell the parent it is ready, wait for its go.
pub struct Side {
    ready: File,
    go: File,
}

impl Side {
    /// Tell the parent that the child reached its rendezvous.
    pub fn ready(&mut self) -> R {
        self.ready.write_all(b"R").map_err(|e| format!("telling the parent: {e}"))
    }

    /// Wait until the parent says go.
    pub fn wait_go(&mut self) -> R {
        let mut b = [0u8; 1];
        self.go.read_exact(&mut b).map_err(|e| format!("waiting for the parent: {e}"))
    }
}

/// A forked child running a closure.
pub struct Forked {
    pid: libc::pid_t,
    result: File,
    ready: File,
    go: File,
    what: String,
    reaped: bool,
}

/// Run `f` in a forked child, as `uid` (uid and gid, no supplementary
/// groups) or, with `None`, as this process is.
pub fn fork_as(uid: Option<u32>, f: impl FnOnce(&mut Side) -> R) -> Result<Forked, String> {
    let (res_r, res_w) = pipe()?;
    let (rdy_r, rdy_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let _ = std::io::stdout().flush();
    // SAFETY: this test program is single-threaded (luod runs in its own
    // process), so the child may run arbitrary code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop((res_r, rdy_r, go_w));
        let ok = match uid {
            // SAFETY: plain system calls on integers.
            Some(uid) => unsafe {
                libc::setgroups(0, std::ptr::null()) == 0 && libc::setgid(uid) == 0 && libc::setuid(uid) == 0
            },
            None => true,
        };
        let r = if !ok {
            Err(format!("setuid({uid:?}): {}", std::io::Error::last_os_error()))
        } else {
            let mut side = Side { ready: rdy_w, go: go_r };
            catch_unwind(AssertUnwindSafe(|| f(&mut side)))
                .unwrap_or_else(|p| Err(format!("panicked: {}", panic_text(&p))))
        };
        let msg = match &r {
            Ok(()) => "OK".to_string(),
            Err(e) => format!("ERR {e}"),
        };
        let mut res_w = res_w;
        let _ = res_w.write_all(msg.as_bytes());
        let _ = std::io::stdout().flush();
        // SAFETY: leave the child without running the parent's atexit
        // handlers or destructors.
        unsafe { libc::_exit(0) };
    }
    drop((res_w, rdy_w, go_r));
    let what = uid.map_or("a root child".to_string(), |u| format!("uid {u}"));
    Ok(Forked { pid, result: res_r, ready: rdy_r, go: go_w, what, reaped: false })
}

/// Run `f` as `uid` in a child and wait for its result (two minutes at most).
pub fn as_uid(uid: u32, f: impl FnOnce() -> R) -> R {
    fork_as(Some(uid), |_| f())?.join(Duration::from_secs(120))
}

/// Run `f` in a child that keeps root's uid (to change its capabilities,
/// or to be a second root client at the same time as the parent).
pub fn as_root_child(f: impl FnOnce() -> R) -> R {
    fork_as(None, |_| f())?.join(Duration::from_secs(120))
}

impl Forked {
    /// Wait until the child says it is ready; its failure if it ended first.
    pub fn wait_ready(&mut self, timeout: Duration) -> R {
        if !wire::readable(self.ready.as_fd(), timeout).map_err(s)? {
            return Err(format!("{} not ready within {timeout:?}", self.what));
        }
        let mut b = [0u8; 1];
        match self.ready.read(&mut b) {
            Ok(1) => Ok(()),
            _ => Err(self
                .take_result(Duration::from_secs(10))
                .err()
                .unwrap_or_else(|| format!("{} ended before it was ready, without an error", self.what))),
        }
    }

    /// Let the child go on.
    pub fn go(&mut self) -> R {
        self.go.write_all(b"G").map_err(|e| format!("telling {}: {e}", self.what))
    }

    /// Has the child sent its result (or died)?
    pub fn finished(&self) -> bool {
        wire::readable(self.result.as_fd(), Duration::ZERO).unwrap_or(true)
    }

    fn take_result(&mut self, timeout: Duration) -> R {
        let answered = wire::readable(self.result.as_fd(), timeout).map_err(s)?;
        if !answered {
            self.kill();
            return Err(format!("{} did not finish within {timeout:?} (killed)", self.what));
        }
        let mut out = String::new();
        let _ = self.result.read_to_string(&mut out);
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
        self.reaped = true;
        match out.strip_prefix("ERR ") {
            _ if out == "OK" => Ok(()),
            Some(e) => Err(format!("{}: {e}", self.what)),
            None => Err(format!("{}: died (status {status:#x})", self.what)),
        }
    }

    /// The child's result, waiting at most `timeout` (then it is killed).
    pub fn join(mut self, timeout: Duration) -> R {
        self.take_result(timeout)
    }

    fn kill(&mut self) {
        if !self.reaped {
            let mut st = 0;
            // SAFETY: signalling and reaping our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, &mut st, 0);
            }
            self.reaped = true;
        }
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        self.kill();
    }
}
