// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//! Session fds.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};

use crate::error::{Error, Op, Result};
use crate::name::decode_name;
use crate::sys;

/// A LUO session: a named set of preserved files, owned through its fd.
///
/// A session is either *outgoing* (made by [`Device::create_session`]: you
/// preserve files into it for the next kernel) or *incoming* (from
/// [`Device::retrieve_session`]: you retrieve the files the previous kernel
/// handed over, then [`finish`](Session::finish) it).
///
/// The session lives as long as its fd: dropping the last fd of an
/// outgoing session unpreserves its files; dropping a retrieved one
/// finishes it. The fd can be handed to other processes (fork, exec,
/// `SCM_RIGHTS`, systemd's fdstore) through [`AsFd`], [`IntoRawFd`],
/// [`FromRawFd`](std::os::fd::FromRawFd) and the [`OwnedFd`] conversions.
///
/// [`Device::create_session`]: crate::Device::create_session
/// [`Device::retrieve_session`]: crate::Device::retrieve_session
#[derive(Debug)]
pub struct Session {
    pub(crate) fd: OwnedFd,
}

impl Session {
    /// Preserve the file behind `fd` under `token` (any u64, unique in
    /// this session), for the next kernel. Outgoing sessions only.
    ///
    /// LUO keeps its own reference: `fd` may be closed afterwards. Errors:
    /// [`Error::AlreadyExists`] (token used), [`Error::BadFd`],
    /// [`Error::NotFound`] (no handler for this kind of file, e.g.
    /// `/dev/null`), [`Error::Busy`] (the file is already preserved in some
    /// session), [`Error::InvalidArgument`] (an incoming session),
    /// [`Error::NoSpace`], [`Error::OutOfMemory`], or the file handler's own
    /// error (memfd: [`Error::NotSupported`], [`Error::FileTooBig`]).
    pub fn preserve_fd(&self, fd: impl AsFd, token: u64) -> Result<()> {
        sys::preserve_fd(self.fd.as_fd(), fd.as_fd(), token)
            .map_err(|e| Error::from_errno(Op::PreserveFd, e.raw_os_error()))
    }

    /// Get a new fd (close-on-exec) for the file preserved under `token`
    /// by the previous kernel. Incoming sessions only.
    ///
    /// Retrieving the same token again gives another fd for the same file;
    /// a failed retrieve fails the same way every time. [`Error::NotFound`]
    /// if there is no such token (or the session was finished).
    pub fn retrieve_fd(&self, token: u64) -> Result<OwnedFd> {
        sys::retrieve_fd(self.fd.as_fd(), token)
            .map_err(|e| Error::from_errno(Op::RetrieveFd, e.raw_os_error()))
    }

    /// Tell the kernel the restore is complete: it drops its own references
    /// to the session's files. Incoming sessions only; calling it again is
    /// fine. Files that were never retrieved are released, and their
    /// contents lost. [`Error::Busy`] (nothing done) if a file cannot
    /// finish yet. Dropping a retrieved session does this implicitly.
    pub fn finish(&self) -> Result<()> {
        sys::finish(self.fd.as_fd()).map_err(|e| Error::from_errno(Op::Finish, e.raw_os_error()))
    }

    /// The session's name, as raw bytes (names may hold any byte but NUL).
    pub fn name_bytes(&self) -> Result<Vec<u8>> {
        let reply =
            sys::get_name(self.fd.as_fd()).map_err(|e| Error::from_errno(Op::GetName, e.raw_os_error()))?;
        Ok(decode_name(&reply.name).to_vec())
    }

    /// The session's name (invalid UTF-8 is replaced, see
    /// [`Session::name_bytes`] for the raw bytes).
    pub fn name(&self) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.name_bytes()?).into_owned())
    }

    /// Another fd for the same session (close-on-exec); the session lives
    /// until both are closed.
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(Self { fd: self.fd.try_clone()? })
    }
}

impl AsFd for Session {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Session {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl IntoRawFd for Session {
    fn into_raw_fd(self) -> RawFd {
        self.fd.into_raw_fd()
    }
}

impl From<OwnedFd> for Session {
    /// Wrap a session fd received from elsewhere (fork, `SCM_RIGHTS`,
    /// fdstore). Nothing is checked here: an fd that is not a session makes
    /// the operations fail, typically with [`Error::NotLuoFd`].
    fn from(fd: OwnedFd) -> Self {
        Self { fd }
    }
}

impl From<Session> for OwnedFd {
    fn from(session: Session) -> Self {
        session.fd
    }
}

/// An **outgoing** session: created in this kernel with
/// [`Device::create_session`](crate::Device::create_session); files
/// preserved in it are handed to the next kernel.
///
/// Only the operations valid on an outgoing session exist here (there is
/// no `retrieve_fd` or `finish`).
///
/// # Drop
///
/// Dropping it closes its fd. If that was the last fd of the session (no
/// dup, no other process holding it, e.g. luod or a holder), the kernel
/// **unpreserves every file** in it and the session is gone: nothing is
/// handed over. [`unpreserve`](Self::unpreserve) does the same, explicitly.
/// To keep the session alive beyond this value, hand its fd on with
/// [`into_raw_fd`](IntoRawFd::into_raw_fd) / [`OwnedFd::from`] (to luod, a
/// holder, systemd's fd store), or [`std::mem::forget`] it.
///
/// # Threads
///
/// `Send` and `Sync` (it is an fd): the kernel serializes operations on a
/// session with a mutex. None of its operations block for long.
#[must_use = "dropping an outgoing session unpreserves its files"]
#[derive(Debug)]
pub struct OutgoingSession(Session);

/// An **incoming** session: handed over by the previous kernel and
/// retrieved with [`Device::retrieve_session`](crate::Device::retrieve_session).
///
/// Only the operations valid on an incoming session exist here (there is
/// no `preserve_fd`).
///
/// # Drop
///
/// Dropping the last fd of a retrieved session **finishes it implicitly**:
/// files that were not retrieved are released and their contents lost. If
/// a file cannot finish yet, the kernel logs a warning and leaks the
/// session until the next reboot. Call [`finish`](Self::finish) explicitly
/// to see that error.
///
/// # Threads
///
/// `Send` and `Sync`. [`finish`](Self::finish) can block while the kernel
/// finishes the files (e.g. freeing large memfds): in async code run it
/// with `spawn_blocking` or on a dedicated thread.
#[must_use = "dropping an incoming session finishes it, releasing files not retrieved"]
#[derive(Debug)]
pub struct IncomingSession(Session);

impl OutgoingSession {
    /// Preserve the file behind `fd` under `token` (unique in the
    /// session), for the next kernel. See [`Session::preserve_fd`] for the
    /// errors.
    pub fn preserve_fd(&self, fd: impl AsFd, token: u64) -> Result<()> {
        self.0.preserve_fd(fd, token)
    }

    /// Close the session: if this was its last fd, every file is
    /// unpreserved (the same as dropping it, spelled out).
    pub fn unpreserve(self) {
        drop(self)
    }

    /// The session's name, as raw bytes.
    pub fn name_bytes(&self) -> Result<Vec<u8>> {
        self.0.name_bytes()
    }

    /// The session's name (invalid UTF-8 replaced).
    pub fn name(&self) -> Result<String> {
        self.0.name()
    }

    /// Another fd for the same session.
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(Self(self.0.try_clone()?))
    }

    /// Give up the direction type (e.g. to test the kernel's own checks).
    pub fn into_session(self) -> Session {
        self.0
    }
}

impl IncomingSession {
    /// Get a new fd for the file preserved under `token`. See
    /// [`Session::retrieve_fd`].
    pub fn retrieve_fd(&self, token: u64) -> Result<OwnedFd> {
        self.0.retrieve_fd(token)
    }

    /// Tell the kernel the restore is complete (may be called again).
    /// **Can block**; see the type's documentation. See [`Session::finish`].
    pub fn finish(&self) -> Result<()> {
        self.0.finish()
    }

    /// The session's name, as raw bytes.
    pub fn name_bytes(&self) -> Result<Vec<u8>> {
        self.0.name_bytes()
    }

    /// The session's name (invalid UTF-8 replaced).
    pub fn name(&self) -> Result<String> {
        self.0.name()
    }

    /// Another fd for the same session.
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(Self(self.0.try_clone()?))
    }

    /// Give up the direction type (e.g. to test the kernel's own checks).
    pub fn into_session(self) -> Session {
        self.0
    }
}

macro_rules! fd_traits {
    ($t:ident) => {
        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0.as_fd()
            }
        }

        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.0.as_raw_fd()
            }
        }

        impl IntoRawFd for $t {
            /// Hand the session fd over (to luod, a holder, the fd store):
            /// the session stays alive as long as that fd.
            fn into_raw_fd(self) -> RawFd {
                self.0.into_raw_fd()
            }
        }

        impl From<$t> for OwnedFd {
            fn from(s: $t) -> Self {
                s.0.fd
            }
        }

        impl From<$t> for Session {
            fn from(s: $t) -> Self {
                s.0
            }
        }
    };
}

fd_traits!(OutgoingSession);
fd_traits!(IncomingSession);

impl OutgoingSession {
    /// Wrap a session fd known to be outgoing (received from luod, a
    /// holder or the fd store). Nothing is checked: the kernel refuses the
    /// wrong operations with `EINVAL`.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self(Session { fd })
    }
}

impl IncomingSession {
    /// Wrap a session fd known to be a retrieved incoming one. Nothing is
    /// checked: the kernel refuses the wrong operations with `EINVAL`.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self(Session { fd })
    }
}
