// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//! The luod wire protocol, version 2.
//!
//! luod is the Linux Live Update Orchestrator daemon, the single owner of
//! `/dev/liveupdate`. This crate is its message codec and the packet
//! helpers of [`fdpass`]; the specification is `PROTOCOL.md` in
//! `tools/liveupdate` of the source repository, and this summary follows
//! it.
//!
//! Transport: a `SOCK_SEQPACKET` Unix socket, one message per packet (so
//! message boundaries are the kernel's, and file descriptors travel with
//! the packet they belong to, as `SCM_RIGHTS`).
//!
//! Every message starts with a header of 8 bytes: the magic `LUOD`, the
//! protocol version (`u16`, little endian; [`VERSION`]) and the operation
//! code (`u16`, [`Op`]). All integers are little endian. A *name* is a
//! `u16` length followed by that many bytes (1 to [`MAX_NAME`], no NUL); a
//! *string* is the same with up to [`MAX_STRING`] bytes of UTF-8.
//!
//! | op | request body (fds) | reply body (fds) |
//! |----|--------------------|------------------|
//! | 1 `Status` | - | [`StatusInfo`] |
//! | 2 `List` | offset `u32` | total `u32`, count `u32`, count × [`Entry`] |
//! | 3 `Create` | name | - |
//! | 4 `Preserve` | name, token `u64` (1 fd: the file) | - |
//! | 5 `Close` | name | - |
//! | 6 `RetrieveSession` | name | - |
//! | 7 `RetrieveFd` | name, token `u64` | - (1 fd: the file) |
//! | 8 `Finish` | name | - |
//! | 9 `KexecLoad` | cmdline string, flags `u32` (1 fd kernel, optional 2nd fd initrd) | [`HandOver`] |
//! | 10 `Subscribe` | - | - (the connection becomes an event channel) |
//! | 11 `Ack` | seq `u32` | no reply at all |
//! | 12 `Reboot` | timeout_ms `u32`, flags `u32` | - (never seen on success: the machine kexecs) |
//! | 100 `Event` | sent by luod only: seq `u32`, kind `u32`, deadline_ms `u32` | - |
//!
//! A reply repeats the header (with the request's op) and then has an
//! errno `u32`: 0 and the body above on success, or an errno and a message
//! string. A request luod cannot decode gets an error reply with op 0 and
//! the errno of its [`DecodeError`]; the connection stays open. A request
//! is at most [`MAX_REQUEST`] bytes with at most [`MAX_FDS`] fds; a reply
//! at most [`MAX_REPLY`] bytes.
//!
//! Every decoder here is total: any input gives a value or an error, never
//! a panic, and allocates at most in proportion to its input.
#![warn(missing_docs)]

use std::borrow::Cow;
use std::fmt;
use std::ops::RangeInclusive;

pub mod fdpass;

/// First bytes of every message.
pub const MAGIC: [u8; 4] = *b"LUOD";
/// The protocol version this code speaks.
pub const VERSION: u16 = 2;
/// Largest request, in bytes.
pub const MAX_REQUEST: usize = 4096;
/// Largest reply (or event), in bytes.
pub const MAX_REPLY: usize = 64 * 1024;
/// Most fds a request may carry.
pub const MAX_FDS: usize = 2;
/// Longest string (error message, command line), in bytes.
pub const MAX_STRING: usize = 2048;
/// Longest session name in a request, in bytes (the kernel's limit; luod
/// takes the owner prefix of a non-root caller off it).
pub const MAX_NAME: usize = 63;
/// Longest session name in a [`Reply::List`] entry, in bytes.
pub const MAX_ENTRY_NAME: usize = 255;
/// Most list entries in one reply (page with `List { offset }`).
pub const LIST_PAGE: usize = 256;
/// Header size: magic, version, op.
pub const HEADER_LEN: usize = 8;

/// [`Request::KexecLoad`] flag: load even though incoming sessions are not
/// finished (they are dropped by the kexec).
pub const KEXEC_DROP_INCOMING: u32 = 1;
/// [`Request::KexecLoad`] flag: load a kernel whose support for the
/// preserved files cannot be verified.
pub const KEXEC_UNVERIFIED: u32 = 2;
/// Every [`Request::KexecLoad`] flag this version knows.
pub const KEXEC_FLAGS: u32 = KEXEC_DROP_INCOMING | KEXEC_UNVERIFIED;
/// [`Request::Reboot`] flag: kexec even if a subscriber did not
/// acknowledge `kexec imminent` in time.
pub const REBOOT_FORCE: u32 = 1;
/// Every [`Request::Reboot`] flag this version knows.
pub const REBOOT_FLAGS: u32 = REBOOT_FORCE;

/// Operation codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Op {
    /// Daemon and device status.
    Status = 1,
    /// List the sessions the caller may see.
    List = 2,
    /// Create an outgoing session.
    Create = 3,
    /// Preserve an fd (passed along) in an outgoing session.
    Preserve = 4,
    /// Close an outgoing session (unpreserves all its files).
    Close = 5,
    /// Retrieve an incoming session (after a kexec).
    RetrieveSession = 6,
    /// Retrieve a file from a retrieved session.
    RetrieveFd = 7,
    /// Finish a retrieved session and forget it.
    Finish = 8,
    /// Load the next kernel (needs `CAP_SYS_BOOT`).
    KexecLoad = 9,
    /// Turn the connection into an event channel.
    Subscribe = 10,
    /// Acknowledge an event (event channel only; never answered).
    Ack = 11,
    /// Notify the subscribers, then kexec into the loaded kernel (needs
    /// `CAP_SYS_BOOT`).
    Reboot = 12,
    /// An event, sent by luod on an event channel. Not a request.
    Event = 100,
}

impl Op {
    /// The op for a wire code.
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::Status,
            2 => Self::List,
            3 => Self::Create,
            4 => Self::Preserve,
            5 => Self::Close,
            6 => Self::RetrieveSession,
            7 => Self::RetrieveFd,
            8 => Self::Finish,
            9 => Self::KexecLoad,
            10 => Self::Subscribe,
            11 => Self::Ack,
            12 => Self::Reboot,
            100 => Self::Event,
            _ => return None,
        })
    }

    /// Lower-case name, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::List => "list",
            Self::Create => "create",
            Self::Preserve => "preserve",
            Self::Close => "close",
            Self::RetrieveSession => "retrieve-session",
            Self::RetrieveFd => "retrieve-fd",
            Self::Finish => "finish",
            Self::KexecLoad => "kexec-load",
            Self::Subscribe => "subscribe",
            Self::Ack => "ack",
            Self::Reboot => "reboot",
            Self::Event => "event",
        }
    }
}

/// A request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// See [`Op::Status`].
    Status,
    /// See [`Op::List`]; entries from `offset` on.
    List {
        /// Index of the first entry wanted.
        offset: u32,
    },
    /// See [`Op::Create`].
    Create {
        /// Session name.
        name: Vec<u8>,
    },
    /// See [`Op::Preserve`]; the file travels as the request's one fd.
    Preserve {
        /// Session name.
        name: Vec<u8>,
        /// Token of the file in the session.
        token: u64,
    },
    /// See [`Op::Close`].
    Close {
        /// Session name.
        name: Vec<u8>,
    },
    /// See [`Op::RetrieveSession`].
    RetrieveSession {
        /// Session name.
        name: Vec<u8>,
    },
    /// See [`Op::RetrieveFd`].
    RetrieveFd {
        /// Session name.
        name: Vec<u8>,
        /// Token of the file.
        token: u64,
    },
    /// See [`Op::Finish`].
    Finish {
        /// Session name.
        name: Vec<u8>,
    },
    /// See [`Op::KexecLoad`]; the kernel (and the initrd, if any) travel as
    /// the request's fds.
    KexecLoad {
        /// Command line of the next kernel.
        cmdline: String,
        /// [`KEXEC_DROP_INCOMING`], [`KEXEC_UNVERIFIED`]; other bits are
        /// refused.
        flags: u32,
    },
    /// See [`Op::Subscribe`].
    Subscribe,
    /// See [`Op::Ack`].
    Ack {
        /// The [`Event::seq`] acknowledged.
        seq: u32,
    },
    /// See [`Op::Reboot`].
    Reboot {
        /// How long luod waits for the subscribers' acknowledgements.
        timeout_ms: u32,
        /// [`REBOOT_FORCE`]; other bits are refused.
        flags: u32,
    },
}

impl Request {
    /// The request's op code.
    pub fn op(&self) -> Op {
        match self {
            Self::Status => Op::Status,
            Self::List { .. } => Op::List,
            Self::Create { .. } => Op::Create,
            Self::Preserve { .. } => Op::Preserve,
            Self::Close { .. } => Op::Close,
            Self::RetrieveSession { .. } => Op::RetrieveSession,
            Self::RetrieveFd { .. } => Op::RetrieveFd,
            Self::Finish { .. } => Op::Finish,
            Self::KexecLoad { .. } => Op::KexecLoad,
            Self::Subscribe => Op::Subscribe,
            Self::Ack { .. } => Op::Ack,
            Self::Reboot { .. } => Op::Reboot,
        }
    }

    /// How many fds must come with the request.
    pub fn fds(&self) -> RangeInclusive<usize> {
        match self {
            Self::Preserve { .. } => 1..=1,
            Self::KexecLoad { .. } => 1..=2,
            _ => 0..=0,
        }
    }

    /// Whether luod answers the request ([`Request::Ack`] is never
    /// answered).
    pub fn has_reply(&self) -> bool {
        !matches!(self, Self::Ack { .. })
    }
}

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Created in this kernel; its files go to the next one.
    Outgoing = 1,
    /// Handed over by the previous kernel, not retrieved yet.
    Incoming = 2,
    /// Handed over and retrieved (by luod, on a client's request).
    Retrieved = 3,
}

impl State {
    /// The state for a wire code.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Outgoing),
            2 => Some(Self::Incoming),
            3 => Some(Self::Retrieved),
            _ => None,
        }
    }

    /// Lower-case name, as in `luoctl list`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outgoing => "outgoing",
            Self::Incoming => "incoming",
            Self::Retrieved => "retrieved",
        }
    }
}

/// What keeps luod's session fds when luod itself exits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum Keeper {
    /// Nothing: the sessions die with luod.
    #[default]
    None = 0,
    /// luod's holder process.
    Holder = 1,
    /// systemd's fd store.
    FdStore = 2,
}

impl Keeper {
    /// The keeper for a wire code.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::Holder),
            2 => Some(Self::FdStore),
            _ => None,
        }
    }

    /// Lower-case name, as in `luoctl status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Holder => "holder",
            Self::FdStore => "fdstore",
        }
    }
}

/// One session in a [`Reply::List`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Session name: relative to the caller's namespace (root sees kernel
    /// names).
    pub name: Vec<u8>,
    /// State.
    pub state: State,
    /// The uid that owns it, if known.
    pub owner: Option<u32>,
    /// Number of files luod knows of.
    pub files: u32,
    /// Their total size in bytes (at preserve time).
    pub bytes: u64,
}

/// What a kexec would hand over (or lose).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandOver {
    /// Outgoing sessions.
    pub sessions: u32,
    /// Files in them.
    pub files: u32,
    /// Their size in bytes.
    pub bytes: u64,
    /// Incoming sessions not retrieved or finished: they are dropped.
    pub dropped: u32,
}

/// Reply to [`Request::Status`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusInfo {
    /// Protocol version of the daemon.
    pub version: u16,
    /// luod holds an open `/dev/liveupdate`.
    pub device_ok: bool,
    /// Why not, when `device_ok` is false.
    pub device_error: String,
    /// The previous kernel handed sessions over (None: unknown).
    pub handed_over: Option<bool>,
    /// The live update number of this boot, if known.
    pub live_update_number: Option<u64>,
    /// Outgoing sessions visible to the caller, and their files and bytes.
    pub outgoing: HandOver,
    /// Incoming (not retrieved) sessions visible to the caller.
    pub incoming: u32,
    /// Retrieved sessions visible to the caller.
    pub retrieved: u32,
    /// What keeps the sessions if luod exits.
    pub keeper: Keeper,
    /// A next kernel is loaded (by luod or anyone else).
    pub kexec_loaded: bool,
    /// The caller's uid, as luod saw it on this request.
    pub uid: u32,
    /// Connections subscribed to events.
    pub subscribers: u32,
}

/// A successful reply's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// No body (create, preserve, close, retrieve, finish, subscribe,
    /// reboot).
    Done,
    /// [`Op::Status`].
    Status(StatusInfo),
    /// [`Op::List`].
    List {
        /// All entries visible to the caller.
        total: u32,
        /// The page asked for.
        entries: Vec<Entry>,
    },
    /// [`Op::KexecLoad`]: what the kexec will hand over.
    Kexec(HandOver),
}

/// An error reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorReply {
    /// errno (never 0).
    pub errno: u32,
    /// What went wrong, for humans.
    pub message: String,
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = std::io::Error::from_raw_os_error(self.errno as i32);
        write!(f, "{} ({})", self.message, e)
    }
}

impl std::error::Error for ErrorReply {}

/// What kind of event an [`Event`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum EventKind {
    /// A kexec is about to happen: quiesce (vCPUs, DMA), then acknowledge
    /// within [`Event::deadline_ms`].
    KexecImminent = 1,
    /// The kexec announced before does not happen (a subscriber did not
    /// acknowledge, or `reboot()` failed): resume.
    KexecCancelled = 2,
}

impl EventKind {
    /// The kind for a wire code.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::KexecImminent),
            2 => Some(Self::KexecCancelled),
            _ => None,
        }
    }

    /// Lower-case name, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KexecImminent => "kexec imminent",
            Self::KexecCancelled => "kexec cancelled",
        }
    }
}

/// A message luod sends on an event channel (see [`Op::Subscribe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Sequence number, to acknowledge with [`Request::Ack`].
    pub seq: u32,
    /// What happens.
    pub kind: EventKind,
    /// Milliseconds left to acknowledge (0 when no acknowledgement is
    /// awaited).
    pub deadline_ms: u32,
}

/// Why a message could not be decoded, with the errno luod answers it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    errno: u32,
    what: Cow<'static, str>,
}

impl DecodeError {
    fn new(errno: i32, what: impl Into<Cow<'static, str>>) -> Self {
        Self { errno: errno as u32, what: what.into() }
    }

    fn proto(what: &'static str) -> Self {
        Self::new(libc::EPROTO, what)
    }

    /// The errno of the refusal: `EPROTO` (not a message of this
    /// version, truncated, trailing bytes), `EOPNOTSUPP` (unknown op),
    /// `EMSGSIZE` (too long), `EINVAL` (bad name, non-UTF-8 string,
    /// unknown flag bits).
    pub fn errno(&self) -> u32 {
        self.errno
    }

    /// What is wrong, for humans.
    pub fn message(&self) -> &str {
        &self.what
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for DecodeError {}

// ---------------------------------------------------------------------------
// Encoding

struct W(Vec<u8>);

impl W {
    fn header_v(version: u16, op: u16) -> Self {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&MAGIC);
        v.extend_from_slice(&version.to_le_bytes());
        v.extend_from_slice(&op.to_le_bytes());
        Self(v)
    }
    fn header(op: u16) -> Self {
        Self::header_v(VERSION, op)
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// Bytes with a u16 length; longer input is cut at `max` (callers pass
    /// bounded data; cutting keeps the encoder total).
    fn bytes(&mut self, b: &[u8], max: usize) {
        let b = &b[..b.len().min(max).min(u16::MAX as usize)];
        self.u16(b.len() as u16);
        self.0.extend_from_slice(b);
    }
    fn string(&mut self, s: &str) {
        let mut end = s.len().min(MAX_STRING);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes(&s.as_bytes()[..end], MAX_STRING);
    }
    fn handover(&mut self, h: &HandOver) {
        self.u32(h.sessions);
        self.u32(h.files);
        self.u64(h.bytes);
        self.u32(h.dropped);
    }
    fn error(&mut self, e: &ErrorReply) {
        self.u32(if e.errno == 0 { libc::EIO as u32 } else { e.errno });
        self.string(&e.message);
    }
}

/// Encode a request (the fds it needs travel separately).
///
/// A name is sent as given up to 65535 bytes (luod refuses a bad one), a
/// command line is cut at [`MAX_STRING`] bytes.
pub fn encode_request(req: &Request) -> Vec<u8> {
    let mut w = W::header(req.op() as u16);
    match req {
        Request::Status | Request::Subscribe => {}
        Request::List { offset } => w.u32(*offset),
        Request::Create { name }
        | Request::Close { name }
        | Request::RetrieveSession { name }
        | Request::Finish { name } => w.bytes(name, u16::MAX as usize),
        Request::Preserve { name, token } | Request::RetrieveFd { name, token } => {
            w.bytes(name, u16::MAX as usize);
            w.u64(*token);
        }
        Request::KexecLoad { cmdline, flags } => {
            w.string(cmdline);
            w.u32(*flags);
        }
        Request::Ack { seq } => w.u32(*seq),
        Request::Reboot { timeout_ms, flags } => {
            w.u32(*timeout_ms);
            w.u32(*flags);
        }
    }
    w.0
}

/// Encode a reply to a request with op code `op`.
pub fn encode_reply(op: u16, reply: &Result<Reply, ErrorReply>) -> Vec<u8> {
    let mut w = W::header(op);
    match reply {
        Err(e) => w.error(e),
        Ok(r) => {
            w.u32(0);
            match r {
                Reply::Done => {}
                Reply::Status(s) => {
                    w.u16(s.version);
                    w.u8(s.device_ok as u8);
                    w.string(&s.device_error);
                    w.u8(match s.handed_over {
                        Some(false) => 0,
                        Some(true) => 1,
                        None => 2,
                    });
                    w.u64(s.live_update_number.unwrap_or(u64::MAX));
                    w.handover(&s.outgoing);
                    w.u32(s.incoming);
                    w.u32(s.retrieved);
                    w.u8(s.keeper as u8);
                    w.u8(s.kexec_loaded as u8);
                    w.u32(s.uid);
                    w.u32(s.subscribers);
                }
                Reply::List { total, entries } => {
                    let entries = &entries[..entries.len().min(LIST_PAGE)];
                    w.u32(*total);
                    w.u32(entries.len() as u32);
                    for e in entries {
                        w.bytes(&e.name, MAX_ENTRY_NAME);
                        w.u8(e.state as u8);
                        w.u32(e.owner.unwrap_or(u32::MAX));
                        w.u32(e.files);
                        w.u64(e.bytes);
                    }
                }
                Reply::Kexec(h) => w.handover(h),
            }
        }
    }
    w.0
}

/// Encode the error reply to a request that could not be decoded
/// (`request`, the bytes received): op 0, the errno and message of `err`.
///
/// The header carries the request's version when the request starts with
/// [`MAGIC`] and a non-zero version, so a client of another version can
/// still read why it was refused (the layout of an error reply is the same
/// in every version); otherwise [`VERSION`].
pub fn encode_decode_error(request: &[u8], err: &DecodeError) -> Vec<u8> {
    let version = match request {
        [a, b, c, d, lo, hi, ..] if [*a, *b, *c, *d] == MAGIC => match u16::from_le_bytes([*lo, *hi]) {
            0 => VERSION,
            v => v,
        },
        _ => VERSION,
    };
    let mut w = W::header_v(version, 0);
    w.error(&ErrorReply { errno: err.errno, message: err.what.to_string() });
    w.0
}

/// Encode an event (sent by luod on an event channel).
pub fn encode_event(ev: &Event) -> Vec<u8> {
    let mut w = W::header(Op::Event as u16);
    w.u32(ev.seq);
    w.u32(ev.kind as u32);
    w.u32(ev.deadline_ms);
    w.0
}

// ---------------------------------------------------------------------------
// Decoding: total functions over arbitrary bytes.

struct Rd<'a> {
    b: &'a [u8],
}

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError::proto("message too short"));
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.arr::<1>()?[0])
    }
    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::proto("boolean is neither 0 nor 1")),
        }
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn bytes(&mut self, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()? as usize;
        if len > max {
            return Err(DecodeError::new(libc::EMSGSIZE, "field too long"));
        }
        self.take(len)
    }
    fn name(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = self.u16()? as usize;
        let n = self.take(len)?;
        if n.is_empty() || n.len() > MAX_NAME || n.contains(&0) {
            return Err(DecodeError::new(libc::EINVAL, "bad session name (1 to 63 bytes, no NUL)"));
        }
        Ok(n.to_vec())
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes(MAX_STRING)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::new(libc::EINVAL, "string is not UTF-8"))
    }
    fn flags(&mut self, known: u32, what: &'static str) -> Result<u32, DecodeError> {
        let f = self.u32()?;
        if f & !known != 0 {
            return Err(DecodeError::new(libc::EINVAL, format!("unknown {what} flags {:#x}", f & !known)));
        }
        Ok(f)
    }
    fn end(&self) -> Result<(), DecodeError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::proto("trailing bytes"))
        }
    }
    fn handover(&mut self) -> Result<HandOver, DecodeError> {
        Ok(HandOver { sessions: self.u32()?, files: self.u32()?, bytes: self.u64()?, dropped: self.u32()? })
    }
}

/// Split a header of any version: (version, op, body).
fn split_header(msg: &[u8]) -> Result<(u16, u16, &[u8]), DecodeError> {
    let mut r = Rd { b: msg };
    if r.arr::<4>()? != MAGIC {
        return Err(DecodeError::proto("bad magic (not a luod message)"));
    }
    let version = r.u16()?;
    let op = r.u16()?;
    Ok((version, op, r.b))
}

/// Check the header (magic and [`VERSION`]); returns the op code and the
/// body.
pub fn decode_header(msg: &[u8]) -> Result<(u16, &[u8]), DecodeError> {
    let (version, op, body) = split_header(msg)?;
    if version != VERSION {
        return Err(DecodeError::new(
            libc::EPROTO,
            format!("unsupported protocol version {version} (this side speaks version {VERSION})"),
        ));
    }
    Ok((op, body))
}

/// Decode a request.
pub fn decode_request(msg: &[u8]) -> Result<Request, DecodeError> {
    if msg.len() > MAX_REQUEST {
        return Err(DecodeError::new(libc::EMSGSIZE, "request too long"));
    }
    let (op, body) = decode_header(msg)?;
    let mut r = Rd { b: body };
    let op = Op::from_u16(op)
        .ok_or_else(|| DecodeError::new(libc::EOPNOTSUPP, format!("unknown operation {op}")))?;
    let req = match op {
        Op::Status => Request::Status,
        Op::List => Request::List { offset: r.u32()? },
        Op::Create => Request::Create { name: r.name()? },
        Op::Preserve => Request::Preserve { name: r.name()?, token: r.u64()? },
        Op::Close => Request::Close { name: r.name()? },
        Op::RetrieveSession => Request::RetrieveSession { name: r.name()? },
        Op::RetrieveFd => Request::RetrieveFd { name: r.name()?, token: r.u64()? },
        Op::Finish => Request::Finish { name: r.name()? },
        Op::KexecLoad => Request::KexecLoad { cmdline: r.string()?, flags: r.flags(KEXEC_FLAGS, "kexec")? },
        Op::Subscribe => Request::Subscribe,
        Op::Ack => Request::Ack { seq: r.u32()? },
        Op::Reboot => Request::Reboot { timeout_ms: r.u32()?, flags: r.flags(REBOOT_FLAGS, "reboot")? },
        Op::Event => return Err(DecodeError::proto("an event is sent by luod, not a request")),
    };
    r.end()?;
    Ok(req)
}

/// Decode an error reply of any version (their layout never changes):
/// `Ok(Some(_))` for an error reply, `Ok(None)` for a success reply of
/// this version (whatever its op and body).
pub fn decode_error_reply(msg: &[u8]) -> Result<Option<ErrorReply>, DecodeError> {
    if msg.len() > MAX_REPLY {
        return Err(DecodeError::new(libc::EMSGSIZE, "reply too long"));
    }
    let (version, _, body) = split_header(msg)?;
    let mut r = Rd { b: body };
    let errno = r.u32()?;
    if errno == 0 {
        decode_header(msg)?;
        return Ok(None);
    }
    if version == 0 {
        return Err(DecodeError::proto("protocol version 0"));
    }
    let message = r.string()?;
    r.end()?;
    Ok(Some(ErrorReply { errno, message }))
}

/// Decode a reply to a request of op `expect`.
///
/// An error reply is accepted with any op and any version (an undecodable
/// request is answered with op 0; a luod of another version answers with
/// its own or the request's version); a success reply must be of this
/// version and repeat `expect`.
pub fn decode_reply(msg: &[u8], expect: Op) -> Result<Result<Reply, ErrorReply>, DecodeError> {
    if let Some(e) = decode_error_reply(msg)? {
        return Ok(Err(e));
    }
    let (op, body) = decode_header(msg)?;
    let mut r = Rd { b: body };
    r.u32()?; // errno, 0
    if op != expect as u16 {
        return Err(DecodeError::proto("reply to another operation"));
    }
    let reply = match expect {
        Op::Status => {
            let version = r.u16()?;
            let device_ok = r.bool()?;
            let device_error = r.string()?;
            let handed_over = match r.u8()? {
                0 => Some(false),
                1 => Some(true),
                2 => None,
                _ => return Err(DecodeError::proto("bad handed-over value")),
            };
            let n = r.u64()?;
            let outgoing = r.handover()?;
            let incoming = r.u32()?;
            let retrieved = r.u32()?;
            let keeper = Keeper::from_u8(r.u8()?).ok_or(DecodeError::proto("bad keeper"))?;
            Reply::Status(StatusInfo {
                version,
                device_ok,
                device_error,
                handed_over,
                live_update_number: (n != u64::MAX).then_some(n),
                outgoing,
                incoming,
                retrieved,
                keeper,
                kexec_loaded: r.bool()?,
                uid: r.u32()?,
                subscribers: r.u32()?,
            })
        }
        Op::List => {
            let total = r.u32()?;
            let count = r.u32()? as usize;
            if count > LIST_PAGE {
                return Err(DecodeError::proto("too many entries"));
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let name = r.bytes(MAX_ENTRY_NAME)?.to_vec();
                let state = State::from_u8(r.u8()?).ok_or(DecodeError::proto("bad session state"))?;
                let owner = r.u32()?;
                entries.push(Entry {
                    name,
                    state,
                    owner: (owner != u32::MAX).then_some(owner),
                    files: r.u32()?,
                    bytes: r.u64()?,
                });
            }
            Reply::List { total, entries }
        }
        Op::KexecLoad => Reply::Kexec(r.handover()?),
        Op::Ack | Op::Event => return Err(DecodeError::proto("this operation has no reply")),
        Op::Create
        | Op::Preserve
        | Op::Close
        | Op::RetrieveSession
        | Op::RetrieveFd
        | Op::Finish
        | Op::Subscribe
        | Op::Reboot => Reply::Done,
    };
    r.end()?;
    Ok(Ok(reply))
}

/// Decode an event. A message with another op (an error reply, say) is a
/// [`DecodeError`]; see [`decode_error_reply`] for those.
pub fn decode_event(msg: &[u8]) -> Result<Event, DecodeError> {
    if msg.len() > MAX_REPLY {
        return Err(DecodeError::new(libc::EMSGSIZE, "event too long"));
    }
    let (op, body) = decode_header(msg)?;
    if op != Op::Event as u16 {
        return Err(DecodeError::proto("not an event"));
    }
    let mut r = Rd { b: body };
    let seq = r.u32()?;
    let kind = EventKind::from_u32(r.u32()?).ok_or(DecodeError::proto("unknown event kind"))?;
    let deadline_ms = r.u32()?;
    r.end()?;
    Ok(Event { seq, kind, deadline_ms })
}

/// Render bytes of a session name for humans: printable ASCII as is,
/// anything else (and `\`) as `\xNN`.
pub fn display_name(name: &[u8]) -> String {
    let mut s = String::with_capacity(name.len());
    for &b in name {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_requests() -> Vec<Request> {
        vec![
            Request::Status,
            Request::List { offset: 7 },
            Request::Create { name: b"vm-1".to_vec() },
            Request::Preserve { name: b"vm-1".to_vec(), token: u64::MAX },
            Request::Close { name: vec![b'x'; 63] },
            Request::RetrieveSession { name: vec![0xff, 1] },
            Request::RetrieveFd { name: b"a".to_vec(), token: 0 },
            Request::Finish { name: b"a/b".to_vec() },
            Request::KexecLoad { cmdline: "console=ttyS0 liveupdate=on".into(), flags: 0 },
            Request::KexecLoad { cmdline: String::new(), flags: KEXEC_FLAGS },
            Request::Subscribe,
            Request::Ack { seq: u32::MAX },
            Request::Reboot { timeout_ms: 5000, flags: 0 },
            Request::Reboot { timeout_ms: 0, flags: REBOOT_FORCE },
        ]
    }

    fn all_replies() -> Vec<(Op, Result<Reply, ErrorReply>)> {
        let status = StatusInfo {
            version: VERSION,
            device_ok: true,
            device_error: String::new(),
            handed_over: Some(true),
            live_update_number: Some(3),
            outgoing: HandOver { sessions: 1, files: 2, bytes: 3, dropped: 4 },
            incoming: 5,
            retrieved: 6,
            keeper: Keeper::FdStore,
            kexec_loaded: true,
            uid: 1001,
            subscribers: 7,
        };
        let unknown = StatusInfo {
            device_error: "no such device".into(),
            handed_over: None,
            keeper: Keeper::Holder,
            ..StatusInfo::default()
        };
        let entry = Entry { name: b"vm".to_vec(), state: State::Retrieved, owner: None, files: 1, bytes: 9 };
        let owned =
            Entry { name: b"u1/vm".to_vec(), state: State::Outgoing, owner: Some(1), files: 0, bytes: 0 };
        vec![
            (Op::Create, Ok(Reply::Done)),
            (Op::Subscribe, Ok(Reply::Done)),
            (Op::Reboot, Ok(Reply::Done)),
            (Op::Status, Ok(Reply::Status(status))),
            (Op::Status, Ok(Reply::Status(unknown))),
            (Op::List, Ok(Reply::List { total: 3, entries: vec![entry, owned] })),
            (Op::List, Ok(Reply::List { total: 0, entries: vec![] })),
            (Op::KexecLoad, Ok(Reply::Kexec(HandOver { sessions: 9, files: 8, bytes: 7, dropped: 0 }))),
            (Op::Finish, Err(ErrorReply { errno: libc::EPERM as u32, message: "no".into() })),
            (
                Op::Reboot,
                Err(ErrorReply { errno: libc::ETIMEDOUT as u32, message: "vm-1 did not ack".into() }),
            ),
        ]
    }

    fn all_events() -> Vec<Event> {
        vec![
            Event { seq: 1, kind: EventKind::KexecImminent, deadline_ms: 10_000 },
            Event { seq: u32::MAX, kind: EventKind::KexecCancelled, deadline_ms: 0 },
        ]
    }

    #[test]
    fn requests_round_trip() {
        for req in all_requests() {
            let b = encode_request(&req);
            assert!(b.len() <= MAX_REQUEST);
            assert_eq!(decode_request(&b), Ok(req));
        }
    }

    #[test]
    fn replies_round_trip() {
        for (op, reply) in all_replies() {
            let b = encode_reply(op as u16, &reply);
            assert!(b.len() <= MAX_REPLY);
            assert_eq!(decode_reply(&b, op), Ok(reply));
        }
    }

    #[test]
    fn events_round_trip() {
        for ev in all_events() {
            let b = encode_event(&ev);
            assert_eq!(decode_event(&b), Ok(ev));
            // An event is neither a request nor a reply.
            assert_eq!(decode_request(&b).map_err(|e| e.errno()), Err(libc::EPROTO as u32));
            assert!(decode_reply(&b, Op::Status).is_err());
            for n in 0..b.len() {
                assert!(decode_event(&b[..n]).is_err(), "truncated to {n}");
            }
            let mut long = b.clone();
            long.push(0);
            assert!(decode_event(&long).is_err());
        }
        let mut bad_kind = encode_event(&all_events()[0]);
        bad_kind[12] = 3;
        assert!(decode_event(&bad_kind).is_err());
        let reply = encode_reply(Op::Subscribe as u16, &Ok(Reply::Done));
        assert!(decode_event(&reply).is_err());
    }

    #[test]
    fn replies_truncated_or_extended_are_refused() {
        for (op, reply) in all_replies() {
            let b = encode_reply(op as u16, &reply);
            for n in 0..b.len() {
                assert!(decode_reply(&b[..n], op).is_err(), "{op:?} truncated to {n}");
            }
            let mut long = b.clone();
            long.push(0);
            assert!(decode_reply(&long, op).is_err(), "{op:?} with a trailing byte");
        }
    }

    #[test]
    fn reply_to_another_op_is_refused() {
        let b = encode_reply(Op::Create as u16, &Ok(Reply::Done));
        assert!(decode_reply(&b, Op::Close).is_err());
        assert!(decode_reply(&b, Op::Ack).is_err());
    }

    fn errno_of(b: &[u8]) -> u32 {
        match decode_request(b) {
            Ok(r) => panic!("{b:02x?} decoded to {r:?}"),
            Err(e) => e.errno(),
        }
    }

    #[test]
    fn bad_requests_are_refused_with_their_errno() {
        let ok = encode_request(&Request::Create { name: b"vm".to_vec() });
        let with = |i: usize, v: u8| {
            let mut b = ok.clone();
            b[i] = v;
            b
        };
        let mut trailing = ok.clone();
        trailing.push(0);
        let hdr = |op: u8| vec![b'L', b'U', b'O', b'D', 2, 0, op, 0];
        let cat = |a: Vec<u8>, b: &[u8]| [a, b.to_vec()].concat();
        let eproto = libc::EPROTO as u32;
        let einval = libc::EINVAL as u32;
        let cases: Vec<(&str, Vec<u8>, u32)> = vec![
            ("bad magic", with(0, b'X'), eproto),
            ("version 1", with(4, 1), eproto),
            ("version 3", with(4, 3), eproto),
            ("unknown op 99", with(6, 99), libc::EOPNOTSUPP as u32),
            ("unknown op 0", hdr(0), libc::EOPNOTSUPP as u32),
            ("event as a request", cat(hdr(100), &[0; 12]), eproto),
            ("trailing byte", trailing, eproto),
            ("empty name", encode_request(&Request::Create { name: Vec::new() }), einval),
            ("64-byte name", encode_request(&Request::Create { name: vec![b'a'; 64] }), einval),
            ("NUL in name", encode_request(&Request::Create { name: b"a\0b".to_vec() }), einval),
            ("too long", vec![0u8; MAX_REQUEST + 1], libc::EMSGSIZE as u32),
            ("cmdline not UTF-8", cat(hdr(9), &[2, 0, 0xff, 0xfe, 0, 0, 0, 0]), einval),
            ("cmdline too long", cat(hdr(9), &[0x01, 0x08]), libc::EMSGSIZE as u32),
            ("kexec flag 4", cat(hdr(9), &[0, 0, 4, 0, 0, 0]), einval),
            ("kexec flag 1<<31", cat(hdr(9), &[0, 0, 0, 0, 0, 0x80]), einval),
            ("kexec without flags", cat(hdr(9), &[1, 0, b'x']), eproto),
            ("reboot flag 2", cat(hdr(12), &[0, 0, 0, 0, 2, 0, 0, 0]), einval),
            ("reboot without flags", cat(hdr(12), &[0, 0, 0, 0]), eproto),
            ("ack without seq", hdr(11), eproto),
            ("subscribe with a body", cat(hdr(10), &[0]), eproto),
        ];
        for (what, b, errno) in cases {
            assert_eq!(errno_of(&b), errno, "{what}");
        }
        for req in all_requests() {
            let b = encode_request(&req);
            for n in 0..b.len() {
                assert!(decode_request(&b[..n]).is_err(), "{req:?} truncated to {n}");
            }
        }
    }

    #[test]
    fn error_replies_of_any_version_decode() {
        let refusal =
            ErrorReply { errno: libc::EPROTO as u32, message: "unsupported protocol version".into() };
        let mut v1 = encode_reply(0, &Err(refusal.clone()));
        v1[4] = 1;
        assert_eq!(decode_reply(&v1, Op::Status), Ok(Err(refusal.clone())));
        assert_eq!(decode_error_reply(&v1), Ok(Some(refusal)));
        // A success reply of another version is not.
        let mut ok = encode_reply(Op::Create as u16, &Ok(Reply::Done));
        ok[4] = 1;
        assert!(decode_reply(&ok, Op::Create).is_err());
        assert!(decode_error_reply(&ok).is_err());
        ok[4] = 2;
        assert_eq!(decode_error_reply(&ok), Ok(None));
    }

    #[test]
    fn decode_errors_answer_in_the_request_version() {
        let v1_status = b"LUOD\x01\x00\x01\x00";
        let e = decode_request(v1_status).unwrap_err();
        let b = encode_decode_error(v1_status, &e);
        assert_eq!(&b[..8], b"LUOD\x01\x00\x00\x00");
        // What a version 1 client reads: header, errno, message.
        let errno = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        assert_eq!(errno, libc::EPROTO as u32);
        assert!(String::from_utf8_lossy(&b[14..]).contains("version 1"), "{b:?}");
        assert_eq!(decode_error_reply(&b).unwrap().unwrap().errno, libc::EPROTO as u32);
        for junk in [&b"XUOD\x01\x00\x01\x00"[..], b"LUOD\x00\x00", b"", b"LU"] {
            let e = decode_request(junk).unwrap_err();
            let b = encode_decode_error(junk, &e);
            assert_eq!(&b[..8], b"LUOD\x02\x00\x00\x00", "{junk:?}");
            assert_eq!(
                decode_reply(&b, Op::Status),
                Ok(Err(ErrorReply { errno: e.errno(), message: e.to_string() }))
            );
        }
    }

    #[test]
    fn fd_counts() {
        for req in all_requests() {
            let want = match req.op() {
                Op::Preserve => 1..=1,
                Op::KexecLoad => 1..=2,
                _ => 0..=0,
            };
            assert_eq!(req.fds(), want);
            assert_eq!(req.has_reply(), req.op() != Op::Ack);
        }
    }

    #[test]
    fn op_codes_round_trip() {
        for v in 0..=u16::MAX {
            if let Some(op) = Op::from_u16(v) {
                assert_eq!(op as u16, v);
                assert!(!op.as_str().is_empty());
            }
        }
        assert_eq!(Op::from_u16(13), None);
        assert_eq!(Op::from_u16(100), Some(Op::Event));
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift, seeded: deterministic.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut valid: Vec<Vec<u8>> = all_requests().iter().map(encode_request).collect();
        valid.extend(all_replies().iter().map(|(op, r)| encode_reply(*op as u16, r)));
        valid.extend(all_events().iter().map(encode_event));
        let ops: Vec<Op> = (0..=u16::MAX).filter_map(Op::from_u16).collect();
        for i in 0..40_000 {
            let mut b = if i % 2 == 0 {
                valid[(next() % valid.len() as u64) as usize].clone()
            } else {
                (0..next() % 96).map(|_| next() as u8).collect()
            };
            if i % 4 == 1 && b.len() >= HEADER_LEN {
                // Random bytes behind a valid header of a random op.
                b[..4].copy_from_slice(&MAGIC);
                b[4..6].copy_from_slice(&VERSION.to_le_bytes());
                b[6..8].copy_from_slice(&(ops[(next() % ops.len() as u64) as usize] as u16).to_le_bytes());
            }
            if !b.is_empty() {
                for _ in 0..1 + next() % 3 {
                    let len = b.len() as u64;
                    b[(next() % len) as usize] = next() as u8;
                }
                if next() % 4 == 0 {
                    b.truncate((next() % b.len() as u64) as usize);
                }
            }
            if let Ok(req) = decode_request(&b) {
                // Whatever decodes encodes back to the same bytes.
                assert_eq!(encode_request(&req), b, "{req:?}");
            }
            let _ = decode_event(&b);
            let _ = decode_error_reply(&b);
            for &op in &ops {
                if let Ok(reply) = decode_reply(&b, op) {
                    if b[4..6] == VERSION.to_le_bytes() {
                        assert_eq!(encode_reply(u16::from_le_bytes([b[6], b[7]]), &reply), b, "{reply:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn protocol_md_example() {
        // PROTOCOL.md, section 3.
        let req = encode_request(&Request::Create { name: b"vm-42".to_vec() });
        assert_eq!(req, b"LUOD\x02\x00\x03\x00\x05\x00vm-42");
        assert_eq!(encode_reply(3, &Ok(Reply::Done)), b"LUOD\x02\x00\x03\x00\x00\x00\x00\x00");
        let e = ErrorReply { errno: libc::EEXIST as u32, message: "an outgoing session vm-42 exists".into() };
        let b = encode_reply(3, &Err(e));
        assert_eq!(&b[..14], b"LUOD\x02\x00\x03\x00\x11\x00\x00\x00\x20\x00");
        assert_eq!(&b[14..18], b"an o");
    }

    #[test]
    fn display() {
        assert_eq!(display_name(b"a\xff\\"), "a\\xff\\x5c");
    }
}
