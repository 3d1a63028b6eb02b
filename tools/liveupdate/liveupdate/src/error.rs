// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//! Typed errors for LUO operations.

use core::fmt;
use std::io;

/// The LUO operation that failed, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Opening `/dev/liveupdate`.
    OpenDevice,
    /// `LIVEUPDATE_IOCTL_CREATE_SESSION`.
    CreateSession,
    /// `LIVEUPDATE_IOCTL_RETRIEVE_SESSION`.
    RetrieveSession,
    /// `LIVEUPDATE_SESSION_PRESERVE_FD`.
    PreserveFd,
    /// `LIVEUPDATE_SESSION_RETRIEVE_FD`.
    RetrieveFd,
    /// `LIVEUPDATE_SESSION_FINISH`.
    Finish,
    /// `LIVEUPDATE_SESSION_GET_NAME`.
    GetName,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::OpenDevice => "open the LUO device",
            Op::CreateSession => "create session",
            Op::RetrieveSession => "retrieve session",
            Op::PreserveFd => "preserve fd",
            Op::RetrieveFd => "retrieve fd",
            Op::Finish => "finish session",
            Op::GetName => "get session name",
        })
    }
}

/// Why a session name was refused before it reached the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("session name is empty")]
    Empty,
    /// The name is longer than 63 bytes.
    #[error("session name is {len} bytes, the limit is 63")]
    TooLong {
        /// The name's length in bytes.
        len: usize,
    },
    /// The name has a NUL byte.
    #[error("session name has a NUL byte at offset {pos}")]
    ContainsNul {
        /// Offset of the first NUL.
        pos: usize,
    },
}

/// An error from a LUO operation.
///
/// Every errno that LUO (or the VFS around it) documents or can return has
/// its own variant; each keeps the [`Op`] that failed, and
/// [`Error::errno`] gives the raw errno back. Display says what the errno
/// means for that operation, e.g. `preserve fd: the file is already
/// preserved, in this or another session (EBUSY)`.
///
/// `From<Error> for std::io::Error` keeps the raw errno
/// ([`std::io::Error::raw_os_error`]); format the `Error` first if you need
/// the operation in the message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `EBUSY`: the device is already open (single opener), the file is
    /// already preserved (in any session), or a file cannot finish yet.
    #[error("{op}: {} (EBUSY)", meaning(*.op, libc::EBUSY))]
    Busy {
        /// The failed operation.
        op: Op,
    },
    /// `EEXIST`: the session name or the token is already used.
    #[error("{op}: {} (EEXIST)", meaning(*.op, libc::EEXIST))]
    AlreadyExists {
        /// The failed operation.
        op: Op,
    },
    /// `ENOENT`: no such session or token, no file handler for this kind of
    /// file, or no `/dev/liveupdate`.
    #[error("{op}: {} (ENOENT)", meaning(*.op, libc::ENOENT))]
    NotFound {
        /// The failed operation.
        op: Op,
    },
    /// `EINVAL`: a bad name, a non-zero reserved field, the wrong session
    /// kind for the operation, or an already retrieved session.
    #[error("{op}: {} (EINVAL)", meaning(*.op, libc::EINVAL))]
    InvalidArgument {
        /// The failed operation.
        op: Op,
    },
    /// `E2BIG`: the request struct has non-zero bytes the kernel does not
    /// understand (a newer userspace on an older kernel).
    #[error("{op}: {} (E2BIG)", meaning(*.op, libc::E2BIG))]
    TooBig {
        /// The failed operation.
        op: Op,
    },
    /// `EFAULT`: the kernel could not read or write the request.
    #[error("{op}: {} (EFAULT)", meaning(*.op, libc::EFAULT))]
    BadAddress {
        /// The failed operation.
        op: Op,
    },
    /// `EBADF`: the fd to preserve is not open (or is an `O_PATH` fd).
    #[error("{op}: {} (EBADF)", meaning(*.op, libc::EBADF))]
    BadFd {
        /// The failed operation.
        op: Op,
    },
    /// `ENOSPC`: too many sessions (510,000) or files in a session (630,000).
    #[error("{op}: {} (ENOSPC)", meaning(*.op, libc::ENOSPC))]
    NoSpace {
        /// The failed operation.
        op: Op,
    },
    /// `ENOMEM`: the kernel is out of memory.
    #[error("{op}: {} (ENOMEM)", meaning(*.op, libc::ENOMEM))]
    OutOfMemory {
        /// The failed operation.
        op: Op,
    },
    /// `EMFILE`: this process has no free fd for the new session or file.
    #[error("{op}: {} (EMFILE)", meaning(*.op, libc::EMFILE))]
    TooManyOpenFiles {
        /// The failed operation.
        op: Op,
    },
    /// `ENFILE`: the system-wide file table is full.
    #[error("{op}: {} (ENFILE)", meaning(*.op, libc::ENFILE))]
    FileTableFull {
        /// The failed operation.
        op: Op,
    },
    /// `ENOTTY`: the fd is not a LUO device or session fd (or the ioctl
    /// encoding is unknown).
    #[error("{op}: {} (ENOTTY)", meaning(*.op, libc::ENOTTY))]
    NotLuoFd {
        /// The failed operation.
        op: Op,
    },
    /// `EIO`: the state handed over by the previous kernel could not be
    /// restored (every open of `/dev/liveupdate` fails from then on).
    #[error("{op}: {} (EIO)", meaning(*.op, libc::EIO))]
    Io {
        /// The failed operation.
        op: Op,
    },
    /// `EOPNOTSUPP`: a known field has a value the kernel does not support
    /// (e.g. memfd seals the handler cannot preserve).
    #[error("{op}: {} (EOPNOTSUPP)", meaning(*.op, libc::EOPNOTSUPP))]
    NotSupported {
        /// The failed operation.
        op: Op,
    },
    /// `EOVERFLOW`: arithmetic overflowed.
    #[error("{op}: {} (EOVERFLOW)", meaning(*.op, libc::EOVERFLOW))]
    Overflow {
        /// The failed operation.
        op: Op,
    },
    /// `ENODEV`: a module providing part of the preservation is going away.
    #[error("{op}: {} (ENODEV)", meaning(*.op, libc::ENODEV))]
    NoDevice {
        /// The failed operation.
        op: Op,
    },
    /// `EFBIG`: the file is too large to preserve.
    #[error("{op}: {} (EFBIG)", meaning(*.op, libc::EFBIG))]
    FileTooBig {
        /// The failed operation.
        op: Op,
    },
    /// `EPERM` or `EACCES`: not allowed (the device node is root-only).
    #[error("{op}: {} ({})", meaning(*.op, *.errno), errno_name(*.errno))]
    PermissionDenied {
        /// The failed operation.
        op: Op,
        /// `EPERM` or `EACCES`.
        errno: i32,
    },
    /// `EINTR`: interrupted by a signal.
    #[error("{op}: {} (EINTR)", meaning(*.op, libc::EINTR))]
    Interrupted {
        /// The failed operation.
        op: Op,
    },
    /// Any other errno.
    #[error("{op}: {} ({})", meaning(*.op, *.errno), errno_name(*.errno))]
    Os {
        /// The failed operation.
        op: Op,
        /// The raw errno.
        errno: i32,
    },
    /// The session name was refused on the client side (it would get
    /// `EINVAL` from the kernel). [`Error::errno`] returns `EINVAL`.
    #[error("{op}: {reason}")]
    InvalidName {
        /// The operation the name was meant for.
        op: Op,
        /// What is wrong with it.
        reason: NameError,
    },
}

/// Result of LUO operations.
pub type Result<T, E = Error> = core::result::Result<T, E>;

impl Error {
    /// Map a raw errno returned for `op` to its variant.
    pub fn from_errno(op: Op, errno: i32) -> Self {
        match errno {
            libc::EBUSY => Error::Busy { op },
            libc::EEXIST => Error::AlreadyExists { op },
            libc::ENOENT => Error::NotFound { op },
            libc::EINVAL => Error::InvalidArgument { op },
            libc::E2BIG => Error::TooBig { op },
            libc::EFAULT => Error::BadAddress { op },
            libc::EBADF => Error::BadFd { op },
            libc::ENOSPC => Error::NoSpace { op },
            libc::ENOMEM => Error::OutOfMemory { op },
            libc::EMFILE => Error::TooManyOpenFiles { op },
            libc::ENFILE => Error::FileTableFull { op },
            libc::ENOTTY => Error::NotLuoFd { op },
            libc::EIO => Error::Io { op },
            libc::EOPNOTSUPP => Error::NotSupported { op },
            libc::EOVERFLOW => Error::Overflow { op },
            libc::ENODEV => Error::NoDevice { op },
            libc::EFBIG => Error::FileTooBig { op },
            libc::EPERM | libc::EACCES => Error::PermissionDenied { op, errno },
            libc::EINTR => Error::Interrupted { op },
            _ => Error::Os { op, errno },
        }
    }

    /// Map an I/O error from `op`; errors without an errno become `EIO`.
    pub fn from_io(op: Op, err: &io::Error) -> Self {
        Self::from_errno(op, err.raw_os_error().unwrap_or(libc::EIO))
    }

    /// The raw errno (`EINVAL` for [`Error::InvalidName`]).
    pub fn errno(&self) -> i32 {
        match self {
            Error::Busy { .. } => libc::EBUSY,
            Error::AlreadyExists { .. } => libc::EEXIST,
            Error::NotFound { .. } => libc::ENOENT,
            Error::InvalidArgument { .. } | Error::InvalidName { .. } => libc::EINVAL,
            Error::TooBig { .. } => libc::E2BIG,
            Error::BadAddress { .. } => libc::EFAULT,
            Error::BadFd { .. } => libc::EBADF,
            Error::NoSpace { .. } => libc::ENOSPC,
            Error::OutOfMemory { .. } => libc::ENOMEM,
            Error::TooManyOpenFiles { .. } => libc::EMFILE,
            Error::FileTableFull { .. } => libc::ENFILE,
            Error::NotLuoFd { .. } => libc::ENOTTY,
            Error::Io { .. } => libc::EIO,
            Error::NotSupported { .. } => libc::EOPNOTSUPP,
            Error::Overflow { .. } => libc::EOVERFLOW,
            Error::NoDevice { .. } => libc::ENODEV,
            Error::FileTooBig { .. } => libc::EFBIG,
            Error::Interrupted { .. } => libc::EINTR,
            Error::PermissionDenied { errno, .. } | Error::Os { errno, .. } => *errno,
        }
    }

    /// The operation that failed.
    pub fn op(&self) -> Op {
        match self {
            Error::Busy { op }
            | Error::AlreadyExists { op }
            | Error::NotFound { op }
            | Error::InvalidArgument { op }
            | Error::TooBig { op }
            | Error::BadAddress { op }
            | Error::BadFd { op }
            | Error::NoSpace { op }
            | Error::OutOfMemory { op }
            | Error::TooManyOpenFiles { op }
            | Error::FileTableFull { op }
            | Error::NotLuoFd { op }
            | Error::Io { op }
            | Error::NotSupported { op }
            | Error::Overflow { op }
            | Error::NoDevice { op }
            | Error::FileTooBig { op }
            | Error::Interrupted { op }
            | Error::PermissionDenied { op, .. }
            | Error::Os { op, .. }
            | Error::InvalidName { op, .. } => *op,
        }
    }

    /// The symbolic errno name, e.g. `"EBUSY"`.
    pub fn errno_name(&self) -> String {
        errno_name(self.errno()).to_string()
    }
}

impl From<Error> for io::Error {
    /// Keeps the errno: `raw_os_error()` of the result is `err.errno()`,
    /// except for [`Error::InvalidName`], which becomes an
    /// `InvalidInput` error carrying the `Error` itself.
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidName { .. } => io::Error::new(io::ErrorKind::InvalidInput, err),
            _ => io::Error::from_raw_os_error(err.errno()),
        }
    }
}

/// The symbolic name of the errnos LUO uses.
fn errno_name(errno: i32) -> ErrnoName {
    ErrnoName(errno)
}

struct ErrnoName(i32);

impl fmt::Display for ErrnoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::EINTR => "EINTR",
            libc::EIO => "EIO",
            libc::E2BIG => "E2BIG",
            libc::EBADF => "EBADF",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::ENODEV => "ENODEV",
            libc::EINVAL => "EINVAL",
            libc::ENFILE => "ENFILE",
            libc::EMFILE => "EMFILE",
            libc::ENOTTY => "ENOTTY",
            libc::EFBIG => "EFBIG",
            libc::ENOSPC => "ENOSPC",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::EOVERFLOW => "EOVERFLOW",
            libc::ENXIO => "ENXIO",
            libc::EAGAIN => "EAGAIN",
            n => return write!(f, "errno {n}"),
        };
        f.write_str(name)
    }
}

/// What `errno` means for `op`, as LUO documents it.
fn meaning(op: Op, errno: i32) -> MeaningText {
    MeaningText(op, errno)
}

struct MeaningText(Op, i32);

impl fmt::Display for MeaningText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Op::*;
        let text = match (self.0, self.1) {
            (OpenDevice, libc::ENOENT) => {
                "no such device node (kernel without CONFIG_LIVEUPDATE, or not booted with liveupdate=on)"
            }
            (OpenDevice, libc::EBUSY) => "the LUO device is already open (it allows a single opener)",
            (OpenDevice, libc::EIO) => "the state handed over by the previous kernel could not be restored",
            (OpenDevice, libc::EACCES) => "permission denied (the device node is root-only)",
            (CreateSession, libc::EEXIST) => "a session with this name already exists",
            (CreateSession, libc::EINVAL) => "invalid session name (1 to 63 bytes, no NUL)",
            (CreateSession, libc::ENOSPC) => "too many sessions",
            (RetrieveSession, libc::ENOENT) => {
                "no session with this name was handed over by the previous kernel"
            }
            (RetrieveSession, libc::EINVAL) => {
                "the session was already retrieved (it is open elsewhere, or could not be finished when it \
                 was closed), or the name is invalid"
            }
            (PreserveFd, libc::EEXIST) => "this token is already used in the session",
            (PreserveFd, libc::EBADF) => "the fd is not open (or is an O_PATH fd)",
            (PreserveFd, libc::ENOENT) => "this kind of file cannot be preserved",
            (PreserveFd, libc::EBUSY) => "the file is already preserved, in this or another session",
            (PreserveFd, libc::EINVAL) => "files can only be preserved in sessions created in this kernel",
            (PreserveFd, libc::ENOSPC) => "too many files in this session",
            (PreserveFd, libc::EOPNOTSUPP) => "the file has properties (e.g. seals) that cannot be preserved",
            (PreserveFd, libc::EFBIG) => "the file is too large to preserve",
            (PreserveFd, libc::ENODEV) => "a module needed for the preservation is going away",
            (RetrieveFd, libc::ENOENT) => {
                "no file with this token in the session (or the session is finished)"
            }
            (RetrieveFd, libc::EINVAL) => {
                "files can only be retrieved from sessions handed over by the previous kernel"
            }
            (Finish, libc::EBUSY) => "a file of the session cannot finish yet",
            (Finish, libc::EINVAL) => "only sessions handed over by the previous kernel can be finished",
            (_, libc::ENOTTY) => "not a LUO fd of the right kind (inappropriate ioctl)",
            (_, libc::EFAULT) => "the kernel could not access the request",
            (_, libc::E2BIG) => "the request has non-zero bytes the kernel does not understand",
            (_, libc::EMFILE) => "no free file descriptor in this process",
            (_, libc::ENFILE) => "the system file table is full",
            (_, libc::ENOMEM) => "out of memory",
            (_, libc::EINTR) => "interrupted by a signal",
            (_, libc::EPERM) | (_, libc::EACCES) => "permission denied",
            (_, libc::EBUSY) => "device or resource busy",
            (_, libc::EEXIST) => "already exists",
            (_, libc::ENOENT) => "not found",
            (_, libc::EINVAL) => "invalid argument",
            (_, libc::EBADF) => "bad file descriptor",
            (_, libc::ENOSPC) => "no space left",
            (_, libc::EIO) => "I/O error",
            (_, libc::EOPNOTSUPP) => "operation not supported",
            (_, libc::EOVERFLOW) => "value too large",
            (_, libc::ENODEV) => "no such device",
            (_, libc::EFBIG) => "file too large",
            (_, errno) => return write!(f, "{}", io::Error::from_raw_os_error(errno)),
        };
        f.write_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ERRNOS: &[i32] = &[
        libc::EBUSY,
        libc::EEXIST,
        libc::ENOENT,
        libc::EINVAL,
        libc::E2BIG,
        libc::EFAULT,
        libc::EBADF,
        libc::ENOSPC,
        libc::ENOMEM,
        libc::EMFILE,
        libc::ENFILE,
        libc::ENOTTY,
        libc::EIO,
        libc::EOPNOTSUPP,
        libc::EOVERFLOW,
        libc::ENODEV,
        libc::EFBIG,
        libc::EPERM,
        libc::EACCES,
        libc::EINTR,
        libc::ENXIO,
        4095,
    ];

    #[test]
    fn errno_round_trips() {
        for &e in ERRNOS {
            let err = Error::from_errno(Op::PreserveFd, e);
            assert_eq!(err.errno(), e, "{err:?}");
            assert_eq!(err.op(), Op::PreserveFd);
        }
    }

    #[test]
    fn documented_errnos_have_their_own_variant() {
        for &e in &ERRNOS[..ERRNOS.len() - 2] {
            let err = Error::from_errno(Op::CreateSession, e);
            assert!(!matches!(err, Error::Os { .. }), "errno {e} fell through to Os");
        }
        assert!(matches!(Error::from_errno(Op::CreateSession, libc::EEXIST), Error::AlreadyExists { .. }));
        assert!(matches!(Error::from_errno(Op::PreserveFd, libc::EBUSY), Error::Busy { .. }));
        assert!(matches!(Error::from_errno(Op::OpenDevice, 4095), Error::Os { errno: 4095, .. }));
    }

    #[test]
    fn io_error_keeps_errno() {
        for &e in ERRNOS {
            let io: io::Error = Error::from_errno(Op::RetrieveFd, e).into();
            assert_eq!(io.raw_os_error(), Some(e));
        }
        let io: io::Error = Error::InvalidName { op: Op::CreateSession, reason: NameError::Empty }.into();
        assert_eq!(io.kind(), io::ErrorKind::InvalidInput);
        let inner = io.get_ref().and_then(|e| e.downcast_ref::<Error>()).unwrap();
        assert_eq!(inner.errno(), libc::EINVAL);
    }

    #[test]
    fn from_io_maps_errno() {
        let err = Error::from_io(Op::OpenDevice, &io::Error::from_raw_os_error(libc::EBUSY));
        assert_eq!(err, Error::Busy { op: Op::OpenDevice });
        let err = Error::from_io(Op::OpenDevice, &io::Error::other("x"));
        assert_eq!(err.errno(), libc::EIO);
    }

    #[test]
    fn messages_say_what_happened() {
        let m = Error::from_errno(Op::PreserveFd, libc::EBUSY).to_string();
        assert_eq!(m, "preserve fd: the file is already preserved, in this or another session (EBUSY)");
        let m = Error::from_errno(Op::CreateSession, libc::EEXIST).to_string();
        assert_eq!(m, "create session: a session with this name already exists (EEXIST)");
        let m = Error::from_errno(Op::OpenDevice, libc::EACCES).to_string();
        assert!(m.ends_with("(EACCES)"), "{m}");
        let m = Error::from_errno(Op::GetName, 4095).to_string();
        assert!(m.contains("errno 4095"), "{m}");
        assert_eq!(Error::from_errno(Op::Finish, libc::EBUSY).errno_name(), "EBUSY");
    }
}
