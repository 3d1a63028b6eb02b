// SPDX-License-Identifier: GPL-2.0
//! Keeping session fds open in a background process.
//!
//! A session lives as long as its fd, and the sessions that are still open
//! when the system kexecs are the ones carried over. A short-lived program
//! (a CLI, a test stage) can therefore hand its session fds to a *holder*:
//! a copy of the current executable, started in its own session (`setsid`)
//! with the fds inherited and stdio on `/dev/null`, that just sleeps until
//! it is killed or the kexec happens.
//!
//! Programs that use [`spawn`] must call [`serve_if_holder`] first thing in
//! `main`, before parsing arguments: in the holder it never returns.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// Environment variable that marks a holder process.
pub const HOLDER_ENV: &str = "LIVEUPDATE_HOLDER";

/// If this process was started by [`spawn`], hold the inherited fds
/// forever (never returns); otherwise return at once.
pub fn serve_if_holder() {
    if std::env::var_os(HOLDER_ENV).as_deref() != Some(OsStr::new("1")) {
        return;
    }
    // Detach from the caller's terminal and process group, so its job
    // control signals do not reach us. The inherited fds need no action:
    // being open in this process is what keeps the sessions alive.
    let _ = rustix::process::setsid();
    // Do not keep the caller's working directory (a mount) busy. (Done
    // here rather than with Command::current_dir, which makes std spawn
    // differently and fails with ENOSYS on small test kernels.)
    let _ = rustix::process::chdir("/");
    loop {
        std::thread::park();
    }
}

/// Start a holder process that keeps `fds` open until it is killed.
///
/// `label` appears as the holder's arguments (e.g. in `ps`); the holder's
/// `argv[0]` is `luo-holder`. Returns the child (its `id()` is the pid to
/// kill to release the sessions). The fds are duplicated for the child; the
/// caller can drop its own copies afterwards.
///
/// The duplicates exist without close-on-exec while the child is being
/// spawned, so another thread spawning a process at the same moment could
/// inherit them too.
pub fn spawn<I, S>(fds: &[BorrowedFd<'_>], label: I) -> io::Result<Child>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    // dup() gives fds without FD_CLOEXEC, so the child inherits them.
    let inherited: Vec<OwnedFd> = fds
        .iter()
        .map(|fd| rustix::io::dup(fd.as_fd()).map_err(io::Error::from))
        .collect::<io::Result<_>>()?;
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .arg0("luo-holder")
        .args(label)
        .env(HOLDER_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    drop(inherited);
    Ok(child)
}
