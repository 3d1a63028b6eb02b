// SPDX-License-Identifier: GPL-2.0
//! The luod wire protocol, version 1.
//!
//! Transport: a `SOCK_SEQPACKET` Unix socket, one request and one reply
//! per packet (so message boundaries are the kernel's, and file
//! descriptors travel with the packet they belong to, as `SCM_RIGHTS`).
//!
//! Every message starts with a header of 8 bytes: the magic `LUOD`, the
//! protocol version (`u16`, little endian; [`VERSION`]) and the operation
//! code (`u16`, [`Op`]). All integers are little endian. A *name* is a
//! `u16` length followed by that many bytes (1..=63 for session names);
//! a *string* is the same with up to [`MAX_STRING`] bytes of UTF-8.
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
//! | 9 `KexecLoad` | cmdline string (1 fd kernel, optional 2nd fd initrd) | [`HandOver`] |
//!
//! A reply repeats the header (with the request's op) and then has an
//! errno `u32`: 0 and the body above on success, or an errno and a
//! message string. A request luod cannot decode gets a reply with op 0,
//! errno `EPROTO`, `EMSGSIZE` or `EINVAL`, and a message; the connection
//! stays open. A request is at most [`MAX_REQUEST`] bytes with at most
//! [`MAX_FDS`] fds; a reply at most [`MAX_REPLY`] bytes.

use std::fmt;

/// First bytes of every message.
pub const MAGIC: [u8; 4] = *b"LUOD";
/// The protocol version this code speaks.
pub const VERSION: u16 = 1;
/// Largest request, in bytes.
pub const MAX_REQUEST: usize = 4096;
/// Largest reply, in bytes.
pub const MAX_REPLY: usize = 64 * 1024;
/// Most fds a request may carry.
pub const MAX_FDS: usize = 2;
/// Longest string (error message, command line).
pub const MAX_STRING: usize = 2048;
/// Most list entries in one reply (page with `List { offset }`).
pub const LIST_PAGE: usize = 256;
/// Header size: magic, version, op.
pub const HEADER_LEN: usize = 8;

/// Operation codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// Load the next kernel (root only).
    KexecLoad = 9,
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
            _ => return None,
        })
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
    /// See [`Op::Preserve`].
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
    /// See [`Op::KexecLoad`].
    KexecLoad {
        /// Command line of the next kernel.
        cmdline: String,
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
        }
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

/// One session in a [`Reply::List`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Session name.
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
}

/// A successful reply's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// No body (create, preserve, close, retrieve, finish).
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

/// Why a message could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for DecodeError {}

// ---------------------------------------------------------------------------
// Encoding

struct W(Vec<u8>);

impl W {
    fn header(op: u16) -> Self {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&MAGIC);
        v.extend_from_slice(&VERSION.to_le_bytes());
        v.extend_from_slice(&op.to_le_bytes());
        Self(v)
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
}

/// Encode a request (the fds it needs travel separately).
pub fn encode_request(req: &Request) -> Vec<u8> {
    let mut w = W::header(req.op() as u16);
    match req {
        Request::Status => {}
        Request::List { offset } => w.u32(*offset),
        Request::Create { name }
        | Request::Close { name }
        | Request::RetrieveSession { name }
        | Request::Finish { name } => w.bytes(name, u16::MAX as usize),
        Request::Preserve { name, token } | Request::RetrieveFd { name, token } => {
            w.bytes(name, u16::MAX as usize);
            w.u64(*token);
        }
        Request::KexecLoad { cmdline } => w.string(cmdline),
    }
    w.0
}

/// Encode a reply to a request with op code `op`.
pub fn encode_reply(op: u16, reply: &Result<Reply, ErrorReply>) -> Vec<u8> {
    let mut w = W::header(op);
    match reply {
        Err(e) => {
            w.u32(if e.errno == 0 { libc::EIO as u32 } else { e.errno });
            w.string(&e.message);
        }
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
                }
                Reply::List { total, entries } => {
                    w.u32(*total);
                    w.u32(entries.len() as u32);
                    for e in entries {
                        w.bytes(&e.name, 255);
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

// ---------------------------------------------------------------------------
// Decoding: total functions over arbitrary bytes.

struct Rd<'a> {
    b: &'a [u8],
}

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError("message too short"));
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
            return Err(DecodeError("field too long"));
        }
        self.take(len)
    }
    fn name(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.bytes(liveupdate::MAX_NAME_LEN)?;
        liveupdate::encode_name(n).map_err(|_| DecodeError("bad session name (1 to 63 bytes, no NUL)"))?;
        Ok(n.to_vec())
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes(MAX_STRING)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError("string is not UTF-8"))
    }
    fn end(&self) -> Result<(), DecodeError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
    fn handover(&mut self) -> Result<HandOver, DecodeError> {
        Ok(HandOver { sessions: self.u32()?, files: self.u32()?, bytes: self.u64()?, dropped: self.u32()? })
    }
}

/// Check the header; returns the op code and the body.
pub fn decode_header(msg: &[u8]) -> Result<(u16, &[u8]), DecodeError> {
    let mut r = Rd { b: msg };
    if r.arr::<4>()? != MAGIC {
        return Err(DecodeError("bad magic (not a luod message)"));
    }
    if r.u16()? != VERSION {
        return Err(DecodeError("unsupported protocol version"));
    }
    let op = r.u16()?;
    Ok((op, r.b))
}

/// Decode a request.
pub fn decode_request(msg: &[u8]) -> Result<Request, DecodeError> {
    if msg.len() > MAX_REQUEST {
        return Err(DecodeError("request too long"));
    }
    let (op, body) = decode_header(msg)?;
    let mut r = Rd { b: body };
    let op = Op::from_u16(op).ok_or(DecodeError("unknown operation"))?;
    let req = match op {
        Op::Status => Request::Status,
        Op::List => Request::List { offset: r.u32()? },
        Op::Create => Request::Create { name: r.name()? },
        Op::Preserve => Request::Preserve { name: r.name()?, token: r.u64()? },
        Op::Close => Request::Close { name: r.name()? },
        Op::RetrieveSession => Request::RetrieveSession { name: r.name()? },
        Op::RetrieveFd => Request::RetrieveFd { name: r.name()?, token: r.u64()? },
        Op::Finish => Request::Finish { name: r.name()? },
        Op::KexecLoad => Request::KexecLoad { cmdline: r.string()? },
    };
    r.end()?;
    Ok(req)
}

/// Decode a reply to a request of op `expect`.
pub fn decode_reply(msg: &[u8], expect: Op) -> Result<Result<Reply, ErrorReply>, DecodeError> {
    if msg.len() > MAX_REPLY {
        return Err(DecodeError("reply too long"));
    }
    let (op, body) = decode_header(msg)?;
    let mut r = Rd { b: body };
    let errno = r.u32()?;
    if errno != 0 {
        let message = r.string()?;
        r.end()?;
        return Ok(Err(ErrorReply { errno, message }));
    }
    if op != expect as u16 {
        return Err(DecodeError("reply to another operation"));
    }
    let reply = match expect {
        Op::Status => {
            let version = r.u16()?;
            let device_ok = r.u8()? != 0;
            let device_error = r.string()?;
            let handed_over = match r.u8()? {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            };
            let n = r.u64()?;
            Reply::Status(StatusInfo {
                version,
                device_ok,
                device_error,
                handed_over,
                live_update_number: (n != u64::MAX).then_some(n),
                outgoing: r.handover()?,
                incoming: r.u32()?,
                retrieved: r.u32()?,
            })
        }
        Op::List => {
            let total = r.u32()?;
            let count = r.u32()? as usize;
            if count > LIST_PAGE {
                return Err(DecodeError("too many entries"));
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let name = r.bytes(255)?.to_vec();
                let state = State::from_u8(r.u8()?).ok_or(DecodeError("bad session state"))?;
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
        _ => Reply::Done,
    };
    r.end()?;
    Ok(Ok(reply))
}

/// Render bytes of a session name for humans and JSON: printable ASCII
/// as is, anything else as `\xNN`.
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

/// Quote a string for JSON output.
pub fn json_string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
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
            Request::Finish { name: b"a".to_vec() },
            Request::KexecLoad { cmdline: "console=ttyS0 liveupdate=on".into() },
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
        let status = StatusInfo {
            version: 1,
            device_ok: true,
            device_error: String::new(),
            handed_over: Some(true),
            live_update_number: Some(3),
            outgoing: HandOver { sessions: 1, files: 2, bytes: 3, dropped: 4 },
            incoming: 5,
            retrieved: 6,
        };
        let entry = Entry { name: b"vm".to_vec(), state: State::Retrieved, owner: None, files: 1, bytes: 9 };
        let cases = [
            (Op::Create, Ok(Reply::Done)),
            (Op::Status, Ok(Reply::Status(status))),
            (Op::List, Ok(Reply::List { total: 3, entries: vec![entry.clone(), entry] })),
            (Op::KexecLoad, Ok(Reply::Kexec(HandOver { sessions: 9, files: 8, bytes: 7, dropped: 0 }))),
            (Op::Finish, Err(ErrorReply { errno: libc::EPERM as u32, message: "no".into() })),
        ];
        for (op, reply) in cases {
            let b = encode_reply(op as u16, &reply);
            assert_eq!(decode_reply(&b, op), Ok(reply));
        }
    }

    #[test]
    fn bad_requests_are_refused() {
        let ok = encode_request(&Request::Create { name: b"vm".to_vec() });
        let mut bad_magic = ok.clone();
        bad_magic[0] = b'X';
        let mut bad_version = ok.clone();
        bad_version[4] = 9;
        let mut bad_op = ok.clone();
        bad_op[6] = 99;
        let mut trailing = ok.clone();
        trailing.push(0);
        let empty_name = encode_request(&Request::Create { name: Vec::new() });
        let long_name = encode_request(&Request::Create { name: vec![b'a'; 64] });
        let nul_name = encode_request(&Request::Create { name: b"a\0b".to_vec() });
        let huge = vec![0u8; MAX_REQUEST + 1];
        for b in [bad_magic, bad_version, bad_op, trailing, empty_name, long_name, nul_name, huge] {
            assert!(decode_request(&b).is_err(), "{b:?}");
        }
        for n in 0..ok.len() {
            assert!(decode_request(&ok[..n]).is_err(), "truncated to {n}");
        }
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
        let valid: Vec<Vec<u8>> = all_requests().iter().map(encode_request).collect();
        for i in 0..20_000 {
            let mut b = if i % 2 == 0 {
                valid[(next() % valid.len() as u64) as usize].clone()
            } else {
                (0..next() % 64).map(|_| next() as u8).collect()
            };
            if !b.is_empty() {
                for _ in 0..1 + next() % 3 {
                    let len = b.len() as u64;
                    b[(next() % len) as usize] = next() as u8;
                }
            }
            let _ = decode_request(&b);
            for op in [Op::Status, Op::List, Op::KexecLoad, Op::Create] {
                let _ = decode_reply(&b, op);
            }
        }
    }

    #[test]
    fn display_and_json() {
        assert_eq!(display_name(b"a\xff\\"), "a\\xff\\x5c");
        assert_eq!(json_string("a\"b\\\n"), "\"a\\\"b\\\\\\u000a\"");
    }
}
