// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//! A blocking client of luod, the Linux Live Update Orchestrator daemon.
//!
//! luod is the single owner of `/dev/liveupdate`: VMMs ask it to create
//! LUO sessions, preserve files (guest memory in memfds, vfio devices) in
//! them, and after the kexec to retrieve and finish them. luod keeps every
//! session itself, so a VMM may crash, restart or be upgraded without
//! losing what it preserved. The protocol is [`luod_proto`] (re-exported
//! as [`proto`]); `PROTOCOL.md` in `tools/liveupdate` specifies it.
//!
//! ```no_run
//! use luod_client::{Client, DEFAULT_SOCKET};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let guest_memfd = std::fs::File::open("/dev/null")?;
//! // Before the kexec: preserve guest memory through luod.
//! let luod = Client::connect(DEFAULT_SOCKET)?;
//! luod.create("vm-42")?;
//! luod.preserve("vm-42", 1, &guest_memfd)?;
//!
//! // After it, in the new VMM process:
//! let luod = Client::connect(DEFAULT_SOCKET)?;
//! luod.retrieve_session("vm-42")?;
//! let guest_memfd = luod.retrieve_fd("vm-42", 1)?;
//! luod.finish("vm-42")?;
//! # Ok(())
//! # }
//! ```
//!
//! A [`Client`] may be shared between threads (it is `Send` and `Sync`):
//! each call holds the connection for its request and its reply, so calls
//! of several threads are served one after the other. Every call has a
//! timeout ([`Client::set_timeout`], [`DEFAULT_TIMEOUT`]); a call that
//! timed out waiting for its reply leaves the connection unusable (the late
//! reply would otherwise answer the next call), and later calls fail with
//! [`ClientError::Unusable`]: connect again.
//!
//! A VMM that wants to quiesce before a kexec [subscribes](Client::subscribe)
//! on a connection of its own and acknowledges each
//! [`EventKind::KexecImminent`] event.
#![warn(missing_docs)]

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use luod_proto::fdpass;
pub use luod_proto::{
    self as proto, Entry, ErrorReply, Event, EventKind, HandOver, Keeper, Op, Reply, Request, State,
    StatusInfo, KEXEC_DROP_INCOMING, KEXEC_UNVERIFIED, REBOOT_FORCE,
};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::sockopt::{self, Timeout};

/// Default socket path of luod.
pub const DEFAULT_SOCKET: &str = "/run/luod.sock";

/// Default timeout of a call (sending the request, and waiting for the
/// reply).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How much longer than its own `timeout_ms` a [`Client::reboot`] call
/// waits for luod's answer.
pub const REBOOT_MARGIN: Duration = Duration::from_secs(30);

/// A client error: transport, protocol, or an error reply from luod.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket failed.
    Io(io::Error),
    /// luod's reply could not be decoded.
    Protocol(String),
    /// luod refused or failed the request.
    Refused(ErrorReply),
    /// luod did not answer (or, for events, send anything) in time.
    TimedOut {
        /// The request (or [`Op::Event`] for [`Subscription::next_event`]).
        op: Op,
        /// How long the call waited.
        after: Duration,
    },
    /// An earlier call on this connection failed half-way (it timed out,
    /// or the socket failed, after the request was sent): the connection
    /// may still get that call's reply, so it takes no more requests.
    Unusable(String),
}

impl ClientError {
    /// The errno of the failure: luod's for a refusal, `EPROTO` for
    /// protocol errors, `ETIMEDOUT`, `ENOTCONN` for an unusable connection.
    pub fn errno(&self) -> i32 {
        match self {
            Self::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            Self::Protocol(_) => libc::EPROTO,
            Self::Refused(e) => e.errno as i32,
            Self::TimedOut { .. } => libc::ETIMEDOUT,
            Self::Unusable(_) => libc::ENOTCONN,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "luod socket: {e}"),
            Self::Protocol(e) => write!(f, "luod protocol: {e}"),
            Self::Refused(e) => write!(f, "luod: {e}"),
            Self::TimedOut { op: Op::Event, after } => {
                write!(f, "luod sent no event within {:.1} s", after.as_secs_f64())
            }
            Self::TimedOut { op, after } => write!(
                f,
                "luod did not answer {} within {:.1} s; this connection takes no more requests",
                op.as_str(),
                after.as_secs_f64()
            ),
            Self::Unusable(why) => write!(f, "luod connection unusable: {why}; connect again"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Refused(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<ClientError> for io::Error {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Io(e) => e,
            e => io::Error::from_raw_os_error(e.errno()),
        }
    }
}

/// Result of client calls.
pub type Result<T> = std::result::Result<T, ClientError>;

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

fn unexpected(r: &Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {r:?}"))
}

/// What the lock of a [`Client`] guards besides the socket's traffic.
#[derive(Debug)]
struct Conn {
    /// The timeout set on the socket.
    timeout: Option<Duration>,
    /// Why the connection takes no more requests.
    broken: Option<String>,
}

/// A connection to luod.
///
/// Calls are synchronous; a `Client` shared between threads serves them
/// one at a time (each holds the connection from its request to its
/// reply). Use one connection per thread for parallel requests.
#[derive(Debug)]
pub struct Client {
    sock: OwnedFd,
    conn: Mutex<Conn>,
}

impl Client {
    /// Connect to the luod socket at `path`, with the [`DEFAULT_TIMEOUT`].
    pub fn connect(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_fd(fdpass::connect_path(path.as_ref())?)
    }

    /// Wrap an already connected `SOCK_SEQPACKET` socket, and set the
    /// [`DEFAULT_TIMEOUT`] on it.
    pub fn from_fd(sock: OwnedFd) -> Result<Self> {
        let c = Self { sock, conn: Mutex::new(Conn { timeout: None, broken: None }) };
        c.set_timeout(Some(DEFAULT_TIMEOUT))?;
        Ok(c)
    }

    /// The socket. Traffic sent on it directly bypasses the client's
    /// serialization of calls: for tests.
    pub fn socket(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    fn lock(&self) -> MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Set the timeout of each call, for sending the request and for
    /// waiting for the reply (`SO_SNDTIMEO`, `SO_RCVTIMEO`); `None` waits
    /// forever. A zero duration is refused (`EINVAL`). Waits for a call
    /// running in another thread.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        if timeout == Some(Duration::ZERO) {
            return Err(ClientError::Io(io::Error::from_raw_os_error(libc::EINVAL)));
        }
        let mut conn = self.lock();
        sockopt::set_socket_timeout(&self.sock, Timeout::Recv, timeout).map_err(io::Error::from)?;
        sockopt::set_socket_timeout(&self.sock, Timeout::Send, timeout).map_err(io::Error::from)?;
        conn.timeout = timeout;
        Ok(())
    }

    /// The timeout of each call.
    pub fn timeout(&self) -> Option<Duration> {
        self.lock().timeout
    }

    /// Send a request with `fds`, get the reply and the fds that came with
    /// it. [`Request::Ack`] gets no reply: `Reply::Done` once it is sent.
    /// Prefer the typed methods; [`Request::Subscribe`] belongs to
    /// [`Client::subscribe`].
    pub fn call(&self, req: &Request, fds: &[BorrowedFd<'_>]) -> Result<(Reply, Vec<OwnedFd>)> {
        self.call_waiting(req, fds, None)
    }

    /// [`Client::call`], waiting at least `wait` for the reply.
    fn call_waiting(
        &self,
        req: &Request,
        fds: &[BorrowedFd<'_>],
        wait: Option<Duration>,
    ) -> Result<(Reply, Vec<OwnedFd>)> {
        let mut conn = self.lock();
        if let Some(why) = &conn.broken {
            return Err(ClientError::Unusable(why.clone()));
        }
        let op = req.op();
        let timeout = conn.timeout;
        match fdpass::send(&self.sock, &proto::encode_request(req), fds) {
            Ok(()) => {}
            // Nothing was sent (a packet is sent whole or not at all).
            Err(e) if is_timeout(&e) => {
                return Err(ClientError::TimedOut { op, after: timeout.unwrap_or_default() })
            }
            Err(e) => return Err(ClientError::Io(e)),
        }
        if !req.has_reply() {
            return Ok((Reply::Done, Vec::new()));
        }
        let longer = match (timeout, wait) {
            (Some(t), Some(w)) if w > t => Some(w),
            _ => None,
        };
        if let Some(w) = longer {
            if let Err(e) = sockopt::set_socket_timeout(&self.sock, Timeout::Recv, Some(w)) {
                conn.broken = Some(format!("setting the timeout of a {} call failed: {e}", op.as_str()));
                return Err(ClientError::Io(e.into()));
            }
        }
        let got = fdpass::recv(&self.sock, proto::MAX_REPLY);
        if longer.is_some() {
            if let Err(e) = sockopt::set_socket_timeout(&self.sock, Timeout::Recv, timeout) {
                conn.broken = Some(format!("restoring the timeout after a {} call failed: {e}", op.as_str()));
            }
        }
        let p = match got {
            Ok(Some(p)) => p,
            Ok(None) => {
                conn.broken = Some("luod closed the connection".into());
                return Err(ClientError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "luod closed")));
            }
            Err(e) if is_timeout(&e) => {
                let after = longer.or(timeout).unwrap_or_default();
                conn.broken = Some(format!(
                    "a {} call timed out after {:.1} s waiting for luod's reply, which may still come",
                    op.as_str(),
                    after.as_secs_f64()
                ));
                return Err(ClientError::TimedOut { op, after });
            }
            Err(e) => {
                conn.broken = Some(format!("receiving the reply to a {} call failed: {e}", op.as_str()));
                return Err(ClientError::Io(e));
            }
        };
        drop(conn);
        if p.truncated {
            return Err(ClientError::Protocol("reply too long".into()));
        }
        match proto::decode_reply(&p.data, op) {
            Err(e) => Err(ClientError::Protocol(e.to_string())),
            Ok(Err(e)) => Err(ClientError::Refused(e)),
            Ok(Ok(r)) => Ok((r, p.fds)),
        }
    }

    fn done(&self, req: Request, fds: &[BorrowedFd<'_>]) -> Result<()> {
        match self.call(&req, fds)? {
            (Reply::Done, _) => Ok(()),
            (r, _) => Err(unexpected(&r)),
        }
    }

    /// Daemon and device status (counts of what the caller may see).
    pub fn status(&self) -> Result<StatusInfo> {
        match self.call(&Request::Status, &[])?.0 {
            Reply::Status(s) => Ok(s),
            r => Err(unexpected(&r)),
        }
    }

    /// Every session the caller may see (all pages).
    pub fn list(&self) -> Result<Vec<Entry>> {
        let mut all = Vec::new();
        loop {
            let (r, _) = self.call(&Request::List { offset: all.len() as u32 }, &[])?;
            let Reply::List { total, entries } = r else {
                return Err(unexpected(&r));
            };
            let done = entries.is_empty();
            all.extend(entries);
            if done || all.len() >= total as usize {
                return Ok(all);
            }
        }
    }

    /// Create the outgoing session `name` (in the caller's namespace).
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

    /// Load the next kernel (needs `CAP_SYS_BOOT`): `kernel`, an optional
    /// `initrd`, its command line (which must enable `liveupdate`), and
    /// [`KEXEC_DROP_INCOMING`] / [`KEXEC_UNVERIFIED`] in `flags`. Returns
    /// what the kexec will hand over.
    pub fn kexec_load(
        &self,
        kernel: impl AsFd,
        initrd: Option<BorrowedFd<'_>>,
        cmdline: &str,
        flags: u32,
    ) -> Result<HandOver> {
        let mut fds = vec![kernel.as_fd()];
        fds.extend(initrd);
        match self.call(&Request::KexecLoad { cmdline: cmdline.into(), flags }, &fds)?.0 {
            Reply::Kexec(h) => Ok(h),
            r => Err(unexpected(&r)),
        }
    }

    /// Kexec into the loaded kernel (needs `CAP_SYS_BOOT`): luod sends
    /// `kexec imminent` to every subscriber and waits up to `timeout_ms`
    /// for their acknowledgements; a missing one cancels the kexec
    /// (`ETIMEDOUT`) unless `flags` has [`REBOOT_FORCE`].
    ///
    /// On success the machine kexecs and this does not return (or returns
    /// an error when the connection dies first); `Ok(())` means luod
    /// answered success without rebooting. The call waits for luod's
    /// answer at least `timeout_ms` plus [`REBOOT_MARGIN`], whatever
    /// [`Client::set_timeout`] says.
    pub fn reboot(&self, timeout_ms: u32, flags: u32) -> Result<()> {
        let wait = Duration::from_millis(timeout_ms.into()) + REBOOT_MARGIN;
        match self.call_waiting(&Request::Reboot { timeout_ms, flags }, &[], Some(wait))?.0 {
            Reply::Done => Ok(()),
            r => Err(unexpected(&r)),
        }
    }

    /// Turn this connection into an event channel: luod sends an
    /// [`Event`] when a kexec is imminent (acknowledge it with
    /// [`Subscription::ack`] once quiesced) or cancelled. Use a connection
    /// of its own: an event channel takes no other request.
    pub fn subscribe(self) -> Result<Subscription> {
        match self.call(&Request::Subscribe, &[])?.0 {
            Reply::Done => Ok(Subscription { sock: self.sock }),
            r => Err(unexpected(&r)),
        }
    }
}

/// An event channel to luod (see [`Client::subscribe`]).
#[derive(Debug)]
pub struct Subscription {
    sock: OwnedFd,
}

impl Subscription {
    /// The socket, to wait for events in an event loop (it is readable when
    /// an event came, or when luod hung up).
    pub fn socket(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Wait up to `timeout` (`None`: forever) for the next event.
    /// [`ClientError::TimedOut`] when none came; an error reply from luod
    /// (to something sent on the channel) is [`ClientError::Refused`].
    pub fn next_event(&mut self, timeout: Option<Duration>) -> Result<Event> {
        let start = Instant::now();
        loop {
            let left = match timeout {
                None => None,
                Some(t) => match t.checked_sub(start.elapsed()) {
                    Some(left) => Some(left),
                    None => return Err(ClientError::TimedOut { op: Op::Event, after: t }),
                },
            };
            let ts = left.map(|d| Timespec { tv_sec: d.as_secs() as _, tv_nsec: d.subsec_nanos() as _ });
            let mut pfd = [PollFd::new(&self.sock, PollFlags::IN)];
            match rustix::event::poll(&mut pfd, ts.as_ref()) {
                Ok(0) => {
                    return Err(ClientError::TimedOut { op: Op::Event, after: timeout.unwrap_or_default() })
                }
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(ClientError::Io(e.into())),
            }
        }
        let p = fdpass::recv(&self.sock, proto::MAX_REPLY)?
            .ok_or_else(|| ClientError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "luod closed")))?;
        if p.truncated {
            return Err(ClientError::Protocol("event too long".into()));
        }
        match proto::decode_event(&p.data) {
            Ok(ev) => Ok(ev),
            Err(e) => match proto::decode_error_reply(&p.data) {
                Ok(Some(refusal)) => Err(ClientError::Refused(refusal)),
                _ => Err(ClientError::Protocol(e.to_string())),
            },
        }
    }

    /// Acknowledge the event `seq` (luod does not answer).
    pub fn ack(&mut self, seq: u32) -> Result<()> {
        fdpass::send(&self.sock, &proto::encode_request(&Request::Ack { seq }), &[])?;
        Ok(())
    }
}

/// Raw access for tests: send arbitrary bytes (and fds) on `sock` and
/// return luod's error reply, if its reply is one (`None` for a success
/// reply).
pub fn send_raw(sock: impl AsFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<Option<ErrorReply>> {
    fdpass::send(sock.as_fd(), bytes, fds)?;
    let p = fdpass::recv(sock.as_fd(), proto::MAX_REPLY)?
        .ok_or_else(|| ClientError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "luod closed")))?;
    proto::decode_error_reply(&p.data).map_err(|e| ClientError::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const _: () = {
        const fn shareable<T: Send + Sync>() {}
        shareable::<Client>();
    };

    fn refusal(errno: i32, message: impl Into<String>) -> std::result::Result<Reply, ErrorReply> {
        Err(ErrorReply { errno: errno as u32, message: message.into() })
    }

    /// A fake luod on the other end of a socketpair: answers each Create
    /// with an error whose message is the name it was asked for. It counts
    /// the requests that arrive while one is still unanswered (a client
    /// that serializes its calls never sends one: the reply to the first
    /// would go to whichever thread reads first).
    fn fake_luod(sock: OwnedFd, overlapping: Arc<AtomicUsize>) -> std::thread::JoinHandle<usize> {
        std::thread::spawn(move || {
            let mut served = 0;
            while let Ok(Some(p)) = fdpass::recv(&sock, proto::MAX_REQUEST) {
                let reply = match proto::decode_request(&p.data) {
                    Ok(Request::Create { name }) => refusal(libc::EEXIST, String::from_utf8_lossy(&name)),
                    _ => refusal(libc::EPROTO, "unexpected"),
                };
                let mut pfd = [PollFd::new(&sock, PollFlags::IN)];
                let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
                if matches!(rustix::event::poll(&mut pfd, Some(&zero)), Ok(1))
                    && pfd[0].revents().contains(PollFlags::IN)
                {
                    overlapping.fetch_add(1, Ordering::SeqCst);
                }
                if fdpass::send(&sock, &proto::encode_reply(Op::Create as u16, &reply), &[]).is_err() {
                    break;
                }
                served += 1;
            }
            served
        })
    }

    #[test]
    fn threads_sharing_a_client_get_their_own_replies() {
        const THREADS: usize = 16;
        const CALLS: usize = 500;
        let (a, b) = fdpass::socketpair().unwrap();
        let overlapping = Arc::new(AtomicUsize::new(0));
        let server = fake_luod(b, Arc::clone(&overlapping));
        let client = Arc::new(Client::from_fd(a).unwrap());
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let client = Arc::clone(&client);
                std::thread::spawn(move || {
                    let mut crossed = 0;
                    for i in 0..CALLS {
                        let name = format!("t{t}-{i}");
                        match client.create(&name) {
                            Err(ClientError::Refused(e)) if e.message == name => {}
                            Err(ClientError::Refused(e)) => {
                                crossed += 1;
                                eprintln!("thread {t} asked for {name}, got the reply for {}", e.message);
                            }
                            other => panic!("thread {t}: {other:?}"),
                        }
                    }
                    crossed
                })
            })
            .collect();
        let crossed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        drop(client);
        assert_eq!(server.join().unwrap(), THREADS * CALLS);
        assert_eq!(crossed, 0, "{crossed} replies went to the wrong thread");
        assert_eq!(overlapping.load(Ordering::SeqCst), 0, "requests sent before the previous reply");
    }

    #[test]
    fn a_timed_out_call_makes_the_connection_unusable() {
        let (a, b) = fdpass::socketpair().unwrap();
        let client = Client::from_fd(a).unwrap();
        assert_eq!(client.timeout(), Some(DEFAULT_TIMEOUT));
        assert!(client.set_timeout(Some(Duration::ZERO)).is_err());
        client.set_timeout(Some(Duration::from_millis(50))).unwrap();
        let start = Instant::now();
        match client.status() {
            Err(ClientError::TimedOut { op: Op::Status, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(start.elapsed() >= Duration::from_millis(50));
        // The late reply comes; it must not answer the next call.
        let p = fdpass::recv(&b, proto::MAX_REQUEST).unwrap().unwrap();
        assert_eq!(proto::decode_request(&p.data), Ok(Request::Status));
        let late = Reply::Status(StatusInfo { version: proto::VERSION, ..StatusInfo::default() });
        fdpass::send(&b, &proto::encode_reply(Op::Status as u16, &Ok(late)), &[]).unwrap();
        let e = client.status().unwrap_err();
        assert!(matches!(e, ClientError::Unusable(_)), "{e:?}");
        assert_eq!(e.errno(), libc::ENOTCONN);
        assert!(e.to_string().contains("timed out"), "{e}");
        // Nothing more was sent.
        let mut pfd = [PollFd::new(&b, PollFlags::IN)];
        let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
        assert_eq!(rustix::event::poll(&mut pfd, Some(&zero)).unwrap(), 0);
    }

    #[test]
    fn refusals_keep_the_connection() {
        let (a, b) = fdpass::socketpair().unwrap();
        let client = Client::from_fd(a).unwrap();
        let server = std::thread::spawn(move || {
            let p = fdpass::recv(&b, proto::MAX_REQUEST).unwrap().unwrap();
            let e = proto::decode_request(&p.data).unwrap();
            assert_eq!(e, Request::Create { name: b"luod.x".to_vec() });
            fdpass::send(&b, &proto::encode_reply(3, &refusal(libc::EPERM, "luod's own")), &[]).unwrap();
            let p = fdpass::recv(&b, proto::MAX_REQUEST).unwrap().unwrap();
            let kexec = Request::KexecLoad { cmdline: "liveupdate=on".into(), flags: KEXEC_UNVERIFIED };
            assert_eq!(proto::decode_request(&p.data), Ok(kexec));
            assert_eq!(p.fds.len(), 1);
            let h = HandOver { sessions: 1, files: 2, bytes: 3, dropped: 0 };
            fdpass::send(&b, &proto::encode_reply(9, &Ok(Reply::Kexec(h))), &[]).unwrap();
        });
        let e = client.create("luod.x").unwrap_err();
        assert_eq!(e.errno(), libc::EPERM);
        assert_eq!(
            e.to_string(),
            format!("luod: luod's own ({})", io::Error::from_raw_os_error(libc::EPERM))
        );
        let kernel = fdpass::socketpair().unwrap().0;
        let h = client.kexec_load(&kernel, None, "liveupdate=on", KEXEC_UNVERIFIED).unwrap();
        assert_eq!(h.files, 2);
        server.join().unwrap();
        // luod hung up: the next calls fail.
        assert!(matches!(client.status(), Err(ClientError::Io(_))));
        assert!(matches!(client.status(), Err(ClientError::Io(_))));
    }

    #[test]
    fn subscription_gets_events_and_sends_acks() {
        let (a, b) = fdpass::socketpair().unwrap();
        let client = Client::from_fd(a).unwrap();
        let server = std::thread::spawn(move || {
            let p = fdpass::recv(&b, proto::MAX_REQUEST).unwrap().unwrap();
            assert_eq!(proto::decode_request(&p.data), Ok(Request::Subscribe));
            fdpass::send(&b, &proto::encode_reply(Op::Subscribe as u16, &Ok(Reply::Done)), &[]).unwrap();
            let ev = Event { seq: 7, kind: EventKind::KexecImminent, deadline_ms: 5000 };
            fdpass::send(&b, &proto::encode_event(&ev), &[]).unwrap();
            let p = fdpass::recv(&b, proto::MAX_REQUEST).unwrap().unwrap();
            assert_eq!(proto::decode_request(&p.data), Ok(Request::Ack { seq: 7 }));
            let refused = proto::encode_reply(0, &refusal(libc::EPROTO, "only acks here"));
            fdpass::send(&b, &refused, &[]).unwrap();
            b
        });
        let mut sub = client.subscribe().unwrap();
        let ev = sub.next_event(Some(Duration::from_secs(10))).unwrap();
        assert_eq!((ev.seq, ev.kind, ev.deadline_ms), (7, EventKind::KexecImminent, 5000));
        sub.ack(ev.seq).unwrap();
        let e = sub.next_event(None).unwrap_err();
        assert_eq!(e.errno(), libc::EPROTO, "{e}");
        assert!(matches!(e, ClientError::Refused(_)));
        let b = server.join().unwrap();
        let start = Instant::now();
        let e = sub.next_event(Some(Duration::from_millis(30))).unwrap_err();
        assert!(matches!(e, ClientError::TimedOut { op: Op::Event, .. }), "{e:?}");
        assert!(start.elapsed() >= Duration::from_millis(30));
        drop(b);
        assert!(matches!(sub.next_event(None), Err(ClientError::Io(_))));
    }

    #[test]
    fn send_raw_reads_error_replies_of_other_versions() {
        let (a, b) = fdpass::socketpair().unwrap();
        let server = std::thread::spawn(move || {
            let p = fdpass::recv(&b, proto::MAX_REQUEST).unwrap().unwrap();
            let e = proto::decode_request(&p.data).unwrap_err();
            fdpass::send(&b, &proto::encode_decode_error(&p.data, &e), &[]).unwrap();
        });
        let e = send_raw(&a, b"LUOD\x01\x00\x01\x00", &[]).unwrap().unwrap();
        assert_eq!(e.errno, libc::EPROTO as u32);
        assert!(e.message.contains("version 1"), "{e}");
        server.join().unwrap();
    }
}
