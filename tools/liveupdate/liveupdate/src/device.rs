// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//! `/dev/liveupdate`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::error::{Error, Op, Result};
use crate::name::encode_name;
use crate::uapi::{self, LIVEUPDATE_SESSION_NAME_LENGTH};
use crate::{sys, IncomingSession, OutgoingSession};

/// An open `/dev/liveupdate`.
///
/// The kernel allows one open file description at a time: a second
/// [`Device::open`] anywhere fails with [`Error::Busy`] until this one is
/// dropped. Dropping the device does **not** affect the sessions created
/// or retrieved through it; each session lives as long as its own fd.
///
/// The first open after a live update restores the sessions handed over by
/// the previous kernel; if that fails, every open returns [`Error::Io`].
///
/// `Send` and `Sync`. On a host with several VMMs, let one broker own it
/// (luod, in tools/liveupdate/luod) and talk to that instead.
#[derive(Debug)]
pub struct Device {
    pub(crate) fd: OwnedFd,
}

impl Device {
    /// Path of the LUO device node.
    pub const PATH: &'static str = "/dev/liveupdate";

    /// Open [`Device::PATH`] read-write (close-on-exec).
    ///
    /// Fails with [`Error::NotFound`] when the kernel has no LUO or was not
    /// booted with `liveupdate=on`, and [`Error::Busy`] when another open
    /// file description exists.
    pub fn open() -> Result<Self> {
        Self::open_path(Self::PATH)
    }

    /// Open the LUO device at `path` (for a node created elsewhere).
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self> {
        let fd = rustix::fs::open(path.as_ref(), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::from_errno(Op::OpenDevice, e.raw_os_error()))?;
        Ok(Self { fd })
    }

    /// Create an outgoing session named `name` (1..=63 bytes, no NUL).
    ///
    /// Files preserved in it are carried over by the next kexec, as long as
    /// the returned [`OutgoingSession`] (or a dup of its fd) is still open then.
    /// A name that is already used by an outgoing session gives
    /// [`Error::AlreadyExists`]; a bad name is refused on the client side
    /// with [`Error::InvalidName`].
    pub fn create_session(&self, name: impl AsRef<[u8]>) -> Result<OutgoingSession> {
        let buf = encode_name(name.as_ref())
            .map_err(|reason| Error::InvalidName { op: Op::CreateSession, reason })?;
        self.create_session_raw(&buf)
    }

    /// Create a session from a raw 64-byte name buffer, without any client
    /// side check: the kernel alone judges it (an all-zero or unterminated
    /// buffer gives [`Error::InvalidArgument`]). Meant for tests.
    pub fn create_session_raw(&self, name: &[u8; LIVEUPDATE_SESSION_NAME_LENGTH]) -> Result<OutgoingSession> {
        let mut req = uapi::CreateSession::new(*name);
        sys::create_session(self.fd.as_fd(), &mut req)
            .map(OutgoingSession::from_fd)
            .map_err(|e| Error::from_errno(Op::CreateSession, e.raw_os_error()))
    }

    /// Retrieve the session `name` handed over by the previous kernel.
    ///
    /// [`Error::NotFound`] if there is no such incoming session (which is
    /// also what a first boot sees), [`Error::InvalidArgument`] if it was
    /// already retrieved. Closing a retrieved session finishes it
    /// implicitly (see [`IncomingSession::finish`]).
    pub fn retrieve_session(&self, name: impl AsRef<[u8]>) -> Result<IncomingSession> {
        let buf = encode_name(name.as_ref())
            .map_err(|reason| Error::InvalidName { op: Op::RetrieveSession, reason })?;
        self.retrieve_session_raw(&buf)
    }

    /// Like [`Device::retrieve_session`], but `Ok(None)` when there is no
    /// such incoming session.
    pub fn try_retrieve_session(&self, name: impl AsRef<[u8]>) -> Result<Option<IncomingSession>> {
        match self.retrieve_session(name) {
            Ok(s) => Ok(Some(s)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Retrieve a session from a raw 64-byte name buffer, without any
    /// client side check. Meant for tests.
    pub fn retrieve_session_raw(
        &self,
        name: &[u8; LIVEUPDATE_SESSION_NAME_LENGTH],
    ) -> Result<IncomingSession> {
        let mut req = uapi::RetrieveSession::new(*name);
        sys::retrieve_session(self.fd.as_fd(), &mut req)
            .map(IncomingSession::from_fd)
            .map_err(|e| Error::from_errno(Op::RetrieveSession, e.raw_os_error()))
    }
}

impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Device {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl IntoRawFd for Device {
    fn into_raw_fd(self) -> RawFd {
        self.fd.into_raw_fd()
    }
}

impl From<OwnedFd> for Device {
    /// Wrap an fd of `/dev/liveupdate` (e.g. received over a unix socket).
    fn from(fd: OwnedFd) -> Self {
        Self { fd }
    }
}

impl From<Device> for OwnedFd {
    fn from(dev: Device) -> Self {
        dev.fd
    }
}
