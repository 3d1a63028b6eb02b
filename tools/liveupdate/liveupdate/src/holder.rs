// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//! Keeping session fds open in a background process.
//!
//! A session lives as long as its fd, and the sessions that are still open
//! when the system kexecs are the ones carried over. A short-lived program
//! (a CLI, a test stage) can therefore hand its session fds to a *holder*:
//! a copy of the current executable (`/proc/self/exe`, so it works even
//! after the binary was replaced on disk), started in its own session
//! (`setsid`) with stdio on `/dev/null`, that keeps exactly the session fds
//! it was given (it closes any other inherited fd) and sleeps until it is
//! killed or the kexec happens.
//!
//! For long-lived hosts, prefer luod (tools/liveupdate/luod), which owns
//! the device and keeps every session across its own restarts.
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
/// Environment variable with the fd numbers (comma separated) the holder keeps.
pub const HOLDER_FDS_ENV: &str = "LIVEUPDATE_HOLDER_FDS";

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
    // Keep only the session fds we were given (and stdio): anything else
    // the caller leaked without close-on-exec must not be pinned forever.
    let keep: Vec<i32> =
        std::env::var(HOLDER_FDS_ENV).unwrap_or_default().split(',').filter_map(|n| n.parse().ok()).collect();
    crate::sys::close_fds_except(&keep);
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
    let numbers: Vec<String> =
        inherited.iter().map(|fd| std::os::fd::AsRawFd::as_raw_fd(fd).to_string()).collect();
    // /proc/self/exe, not current_exe(): the latter is a path, which fails
    // (or runs another program) once the binary was replaced on disk.
    let child = Command::new("/proc/self/exe")
        .arg0("luo-holder")
        .args(label)
        .env(HOLDER_ENV, "1")
        .env(HOLDER_FDS_ENV, numbers.join(","))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    drop(inherited);
    Ok(child)
}
