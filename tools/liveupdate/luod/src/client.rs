// SPDX-License-Identifier: GPL-2.0
//! A blocking client of luod, for VMMs, `luoctl` and tests.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use crate::fdpass;
use crate::proto::{self, Entry, ErrorReply, HandOver, Op, Reply, Request, StatusInfo};

/// Default socket path of luod.
pub const DEFAULT_SOCKET: &str = "/run/luod.sock";

/// A client error: transport, protocol, or an error reply from luod.
#[derive(Debug)]
pub enum ClientError {
    /// The socket failed.
    Io(io::Error),
    /// luod's reply could not be decoded.
    Protocol(String),
    /// luod refused or failed the request.
    Refused(ErrorReply),
}

impl ClientError {
    /// The errno of the failure (`EPROTO` for protocol errors).
    pub fn errno(&self) -> i32 {
        match self {
            Self::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            Self::Protocol(_) => libc::EPROTO,
            Self::Refused(e) => e.errno as i32,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "luod socket: {e}"),
            Self::Protocol(e) => write!(f, "luod protocol: {e}"),
            Self::Refused(e) => write!(f, "luod: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Result of client calls.
pub type Result<T> = std::result::Result<T, ClientError>;

/// A connection to luod. Requests are synchronous: one at a time.
#[derive(Debug)]
pub struct Client {
    sock: OwnedFd,
}

impl Client {
    /// Connect to the luod socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self { sock: fdpass::connect_path(path.as_ref())? })
    }

    /// Wrap an already connected socket.
    pub fn from_fd(sock: OwnedFd) -> Self {
        Self { sock }
    }

    /// The socket.
    pub fn socket(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Send a request with `fds`, get the reply and the fds that came with it.
    pub fn call(&self, req: &Request, fds: &[BorrowedFd<'_>]) -> Result<(Reply, Vec<OwnedFd>)> {
        fdpass::send(&self.sock, &proto::encode_request(req), fds)?;
        let p = fdpass::recv(&self.sock, proto::MAX_REPLY)?
            .ok_or_else(|| ClientError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "luod closed")))?;
        if p.truncated {
            return Err(ClientError::Protocol("reply too long".into()));
        }
        match proto::decode_reply(&p.data, req.op()) {
            Err(e) => Err(ClientError::Protocol(e.to_string())),
            Ok(Err(e)) => Err(ClientError::Refused(e)),
            Ok(Ok(r)) => Ok((r, p.fds)),
        }
    }

    fn done(&self, req: Request, fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.call(&req, fds).map(drop)
    }

    /// Daemon and device status.
    pub fn status(&self) -> Result<StatusInfo> {
        match self.call(&Request::Status, &[])?.0 {
            Reply::Status(s) => Ok(s),
            _ => Err(ClientError::Protocol("unexpected reply".into())),
        }
    }

    /// Every session the caller may see (all pages).
    pub fn list(&self) -> Result<Vec<Entry>> {
        let mut all = Vec::new();
        loop {
            let (r, _) = self.call(&Request::List { offset: all.len() as u32 }, &[])?;
            let Reply::List { total, entries } = r else {
                return Err(ClientError::Protocol("unexpected reply".into()));
            };
            let done = entries.is_empty();
            all.extend(entries);
            if done || all.len() >= total as usize {
                return Ok(all);
            }
        }
    }

    /// Create the outgoing session `name`.
    pub fn create(&self, name: impl AsRef<[u8]>) -> Result<()> {
        self.done(Request::Create { name: name.as_ref().to_vec() }, &[])
    }

    /// Preserve `fd` in the outgoing session `name` under `token`.
    pub fn preserve(&self, name: impl AsRef<[u8]>, token: u64, fd: impl AsFd) -> Result<()> {
        self.done(Request::Preserve { name: name.as_ref().to_vec(), token }, &[fd.as_fd()])
    }

    /// Close the outgoing session `name`: its files are unpreserved.
    pub fn close(&self, name: impl AsRef<[u8]>) -> Result<()> {
        self.done(Request::Close { name: name.as_ref().to_vec() }, &[])
    }

    /// Retrieve the incoming session `name` (idempotent for its owner).
    pub fn retrieve_session(&self, name: impl AsRef<[u8]>) -> Result<()> {
        self.done(Request::RetrieveSession { name: name.as_ref().to_vec() }, &[])
    }

    /// Get the file preserved under `token` in the retrieved session `name`.
    pub fn retrieve_fd(&self, name: impl AsRef<[u8]>, token: u64) -> Result<OwnedFd> {
        let (_, mut fds) = self.call(&Request::RetrieveFd { name: name.as_ref().to_vec(), token }, &[])?;
        if fds.len() != 1 {
            return Err(ClientError::Protocol(format!("{} fds in the reply, expected 1", fds.len())));
        }
        fds.pop().ok_or_else(|| ClientError::Protocol("no fd in the reply".into()))
    }

    /// Finish the retrieved session `name`; luod forgets it. This can
    /// block while the kernel finishes the files.
    pub fn finish(&self, name: impl AsRef<[u8]>) -> Result<()> {
        self.done(Request::Finish { name: name.as_ref().to_vec() }, &[])
    }

    /// Load the next kernel (root only); see the protocol documentation.
    pub fn kexec_load(
        &self,
        kernel: impl AsFd,
        initrd: Option<BorrowedFd<'_>>,
        cmdline: &str,
    ) -> Result<HandOver> {
        let mut fds = vec![kernel.as_fd()];
        fds.extend(initrd);
        match self.call(&Request::KexecLoad { cmdline: cmdline.into() }, &fds)?.0 {
            Reply::Kexec(h) => Ok(h),
            _ => Err(ClientError::Protocol("unexpected reply".into())),
        }
    }
}

/// Raw access for tests: send arbitrary bytes (and fds) and return the
/// decoded error reply, if the reply is one.
pub fn send_raw(sock: impl AsFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<Option<ErrorReply>> {
    fdpass::send(sock.as_fd(), bytes, fds)?;
    let p = fdpass::recv(sock.as_fd(), proto::MAX_REPLY)?
        .ok_or_else(|| ClientError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "luod closed")))?;
    let (_, body) = proto::decode_header(&p.data).map_err(|e| ClientError::Protocol(e.to_string()))?;
    if body.len() < 4 {
        return Err(ClientError::Protocol("reply too short".into()));
    }
    let errno = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
    if errno == 0 {
        return Ok(None);
    }
    // Decode the message with any op: error replies do not depend on it.
    match proto::decode_reply(&p.data, Op::Status) {
        Ok(Err(e)) => Ok(Some(e)),
        _ => Err(ClientError::Protocol("undecodable error reply".into())),
    }
}
