// SPDX-License-Identifier: GPL-2.0
//! What luod drives: the kernel's `/dev/liveupdate`, or (for testing luod
//! itself on a machine without LUO, `--fake-device`) a stand-in whose
//! sessions are plain memfds that preserve nothing.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use liveupdate::{Device, Error, Op, Session};
use rustix::fs::{memfd_create, MemfdFlags};

/// The device luod owns.
#[derive(Debug)]
pub enum Dev {
    /// `/dev/liveupdate`.
    Real(Device),
    /// Test stand-in: no kernel LUO, nothing survives a reboot.
    Fake,
}

/// A session fd.
#[derive(Debug)]
pub enum SessFd {
    /// A LUO session.
    Real(Session),
    /// A memfd standing in for a session (`--fake-device`).
    Fake(OwnedFd),
}

fn errno(op: Op, e: rustix::io::Errno) -> Error {
    Error::from_errno(op, e.raw_os_error())
}

impl Dev {
    /// Create an outgoing session.
    pub fn create(&self, name: &[u8]) -> Result<SessFd, Error> {
        match self {
            Self::Real(d) => d.create_session(name).map(|s| SessFd::Real(s.into_session())),
            Self::Fake => memfd_create("luo_session", MemfdFlags::CLOEXEC)
                .map(SessFd::Fake)
                .map_err(|e| errno(Op::CreateSession, e)),
        }
    }

    /// Retrieve an incoming session (the fake has none).
    pub fn retrieve(&self, name: &[u8]) -> Result<SessFd, Error> {
        match self {
            Self::Real(d) => d.retrieve_session(name).map(|s| SessFd::Real(s.into_session())),
            Self::Fake => Err(Error::from_errno(Op::RetrieveSession, libc::ENOENT)),
        }
    }
}

impl SessFd {
    /// Wrap a held fd.
    pub fn from_fd(fd: OwnedFd, fake: bool) -> Self {
        if fake {
            Self::Fake(fd)
        } else {
            Self::Real(Session::from(fd))
        }
    }

    /// `LIVEUPDATE_SESSION_PRESERVE_FD` (the fake only checks the fd).
    pub fn preserve_fd(&self, fd: BorrowedFd<'_>, token: u64) -> Result<(), Error> {
        match self {
            Self::Real(s) => s.preserve_fd(fd, token),
            Self::Fake(_) => rustix::fs::fstat(fd).map(drop).map_err(|e| errno(Op::PreserveFd, e)),
        }
    }

    /// `LIVEUPDATE_SESSION_RETRIEVE_FD`.
    pub fn retrieve_fd(&self, token: u64) -> Result<OwnedFd, Error> {
        match self {
            Self::Real(s) => s.retrieve_fd(token),
            Self::Fake(_) => Err(Error::from_errno(Op::RetrieveFd, libc::EINVAL)),
        }
    }

    /// `LIVEUPDATE_SESSION_FINISH`.
    pub fn finish(&self) -> Result<(), Error> {
        match self {
            Self::Real(s) => s.finish(),
            Self::Fake(_) => Err(Error::from_errno(Op::Finish, libc::EINVAL)),
        }
    }

    /// The session's name from the kernel (`None` for the fake).
    pub fn name_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Self::Real(s) => s.name_bytes().ok(),
            Self::Fake(_) => None,
        }
    }
}

impl AsFd for SessFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Real(s) => s.as_fd(),
            Self::Fake(f) => f.as_fd(),
        }
    }
}
