// SPDX-License-Identifier: GPL-2.0
//! One luod per state directory.
//!
//! The state directory (default `/run/luod`) is luod's own: mode 0700,
//! owned by luod's euid, created if missing and refused if anyone else
//! could write to it. It holds `luod.lock`, which luod keeps locked
//! (`flock`, released by the kernel when luod dies however it dies), and
//! the holder's socket. A second luod on the same directory exits instead
//! of unlinking and rebinding the socket under the first one.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{flock, FlockOperation, Mode, OFlags};

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/run/luod";

/// The lock of a state directory, held for luod's life.
#[derive(Debug)]
pub struct Instance {
    _lock: OwnedFd,
}

/// Make sure `dir` is a private directory of ours, creating it if needed.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let md = std::fs::symlink_metadata(dir)?;
    if !md.is_dir() {
        return Err(io::Error::other(format!("{} is not a directory", dir.display())));
    }
    if md.uid() != rustix::process::geteuid().as_raw() {
        return Err(io::Error::other(format!("{} belongs to uid {}, not to luod", dir.display(), md.uid())));
    }
    if md.permissions().mode() & 0o077 != 0 {
        return Err(io::Error::other(format!(
            "{} is open to others (mode {:o}): it must be 0700",
            dir.display(),
            md.permissions().mode() & 0o7777
        )));
    }
    Ok(())
}

impl Instance {
    /// Take the state directory `dir`, or fail if another luod has it.
    pub fn take(dir: &Path) -> io::Result<Self> {
        private_dir(dir)?;
        let lock = rustix::fs::open(
            dir.join("luod.lock"),
            OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )?;
        match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Self { _lock: lock }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another luod serves state directory {}", dir.display()),
            )),
            Err(e) => Err(io::Error::other(format!(
                "flock({}): {e}{}",
                dir.join("luod.lock").display(),
                if e == rustix::io::Errno::NOSYS { " (the kernel lacks CONFIG_FILE_LOCKING)" } else { "" }
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_instance() {
        let dir = std::env::temp_dir().join(format!("luod-inst-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = Instance::take(&dir).unwrap();
        let e = Instance::take(&dir).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        drop(a);
        Instance::take(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(Instance::take(&dir).is_err(), "a directory open to others is refused");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
