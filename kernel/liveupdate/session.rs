// SPDX-License-Identifier: GPL-2.0

//! Sessions: named sets of preserved files, each handed to userspace as a file descriptor.
//!
//! Outgoing sessions are created in this kernel and serialized at reboot; incoming sessions
//! come from the previous kernel and are retrieved by name. Both kinds are kept by name in an
//! intrusive hash table (O(1) lookup with a secret seed; no allocation but a larger bucket
//! array now and then, and removal is an unlink, as cheap as the C LUO's list unlink), and
//! outgoing ones also in creation order, which is the handover order, on an intrusive list (no
//! allocation, O(1) removal).

use crate::{
    abi::{
        get_u64,
        put_u64,
        session_ser, //
    },
    block::{
        read_chain,
        BlockSet, //
    },
    file_set::{
        FileSet,
        InFile, //
    },
    luo,
    name::{
        Name,
        NAME_LEN, //
    },
    orchestrator::Luo,
    parse::{
        PageSource,
        ParseError,
        ParseResult, //
    },
    timeline::RunClock,
    ucmd::{
        self,
        Ioctl, //
    }, //
};
use kernel::{
    fs::{
        anon_inode::{
            self,
            AnonInodeOps, //
        },
        file::{
            flags::{
                O_CLOEXEC,
                O_RDWR, //
            },
            FileDescriptorReservation, //
        },
        File, //
    },
    hashtable::{
        impl_has_hash_links,
        HashItem,
        HashLinks,
        HashTable, //
    },
    kho::{
        bytes,
        IncomingPhys, //
    },
    list::{
        impl_list_arc_safe,
        impl_list_item,
        List,
        ListArc,
        ListLinks, //
    },
    liveupdate::uapi,
    new_mutex,
    prelude::*,
    rbtree::RBTree,
    sync::{
        aref::ARef,
        atomic::{
            Acquire,
            Atomic,
            Release, //
        },
        Arc,
        ArcBorrow,
        Mutex,
        UniqueArc, //
    },
    uapi::{
        LIVEUPDATE_CMD_SESSION_FINISH,
        LIVEUPDATE_CMD_SESSION_GET_NAME,
        LIVEUPDATE_CMD_SESSION_PRESERVE_FD,
        LIVEUPDATE_CMD_SESSION_RETRIEVE_FD, //
    }, //
};

/// Size of one serialized session entry (`struct luo_session_ser`).
pub(crate) const SESSION_SER_SIZE: usize = crate::abi::session_ser::SIZE;

/// Mutable state of a session.
struct SessionInner {
    files: FileSet,
    /// Incoming sessions: a file descriptor was handed out by RETRIEVE_SESSION.
    retrieved: bool,
    /// Incoming sessions: the address of the file of the last RETRIEVE_SESSION, so that the
    /// release of a file of an earlier, taken-back retrieve (see [`unretrieve`]) does not finish
    /// the session. Only retrieves make files of an incoming session, and a file is released
    /// before it is freed: if the file being released is not the last retrieve's, both were
    /// live when the later one was made, so their addresses differ. Never used as a pointer.
    retrieved_file: usize,
}

/// A session.
#[pin_data]
pub(crate) struct Session {
    name: Name,
    /// The session came from the previous kernel.
    incoming: bool,
    /// Outgoing sessions: a PRESERVE_FD was made, so the session may have files. Closing a
    /// session without takes no lock for its files.
    may_have_files: Atomic<bool>,
    /// Outgoing sessions: the links of `Sessions::out` (creation order). Protected by
    /// `Luo::sessions`.
    #[pin]
    links: ListLinks,
    /// The node of `Sessions::out_by_name` (outgoing sessions) or `Sessions::incoming`.
    /// Protected by `Luo::sessions`.
    #[pin]
    by_name: HashLinks<1>,
    /// Lock order: after `Luo::sessions`, before `Luo::registry`.
    #[pin]
    inner: Mutex<SessionInner>,
}

impl_list_arc_safe! {
    impl ListArcSafe<0> for Session { untracked; }
    impl ListArcSafe<1> for Session { untracked; }
}
impl_list_item! {
    impl ListItem<0> for Session { using ListLinks { self.links }; }
}
impl_has_hash_links! {
    impl HasHashLinks<1> for Session { self.by_name }
}
impl HashItem<1> for Session {
    type Key = Name;

    fn key(&self) -> &Name {
        &self.name
    }

    fn hash(key: &Name, seed: u64) -> u64 {
        key.hash(seed)
    }
}

/// A new session's two tokens: for `Sessions::out` (ID 0) and for a by-name table (ID 1).
struct NewSession {
    list: ListArc<Session, 0>,
    by_name: ListArc<Session, 1>,
}

impl NewSession {
    /// A new session, with its tokens for the list and the table.
    fn new(name: Name, incoming: bool, files: FileSet) -> Result<Self> {
        let unique = UniqueArc::pin_init(
            try_pin_init!(Session {
                name,
                incoming,
                may_have_files: Atomic::new(false),
                links <- ListLinks::new(),
                by_name <- HashLinks::new(),
                inner <- new_mutex!(
                    SessionInner {
                        files,
                        retrieved: false,
                        retrieved_file: 0,
                    },
                    "luo_session::inner"
                ),
            }),
            GFP_KERNEL,
        )?;
        let (list, by_name) = ListArc::pair_from_pin_unique::<1>(unique);
        Ok(Self { list, by_name })
    }
}

/// All sessions. Protected by `Luo::sessions`.
pub(crate) struct Sessions {
    /// Outgoing sessions by name.
    out_by_name: HashTable<Session, 1>,
    /// Outgoing sessions in creation order: every session of `out_by_name`, and no other.
    out: List<Session>,
    out_count: usize,
    /// Handover pages reserved for the outgoing session entries.
    blocks: BlockSet,
    /// Incoming sessions by name, until they are finished.
    incoming: HashTable<Session, 1>,
}

impl Sessions {
    pub(crate) fn new() -> Self {
        Self {
            out_by_name: HashTable::new(),
            out: List::new(),
            out_count: 0,
            blocks: BlockSet::new(SESSION_SER_SIZE),
            incoming: HashTable::new(),
        }
    }

    /// Number of outgoing sessions.
    pub(crate) fn out_count(&self) -> usize {
        self.out_count
    }

    /// Adds session `name` of the previous kernel, with its `files` (`EEXIST` on a duplicate
    /// name).
    pub(crate) fn add_incoming(&mut self, name: Name, files: FileSet) -> Result {
        // An incoming session is never on `Sessions::out`: only the by-name token is kept.
        let session = NewSession::new(name, true, files)?.by_name;
        self.incoming.reserve()?;
        self.incoming.insert(session).map_err(|_| EEXIST)
    }

    /// Freezes every outgoing session's files and writes the session entries into the
    /// reserved blocks, in creation order (the reboot path). Returns the address of the
    /// chain, 0 if there are no sessions.
    ///
    /// On failure every session frozen is unfrozen again.
    pub(crate) fn freeze(&mut self, clock: &mut RunClock<'_>) -> Result<u64> {
        let total = self.out_count;
        // Closing sessions leaves a spare block (`shrink_lazily`); the chain has none.
        self.blocks.shrink(total);
        let mut w = self.blocks.writer(total)?;
        let head = w.head();
        let mut done = 0;
        let mut err = None;
        for session in self.out.iter() {
            let res = w
                .next_slot::<SESSION_SER_SIZE>()
                .ok_or(ENOSPC)
                .and_then(|e| session.freeze(e, clock));
            if let Err(e) = res {
                err = Some(e);
                break;
            }
            done += 1;
        }
        let Some(e) = err else {
            return Ok(head);
        };
        // Unlike the C LUO (newest first), sessions are unfrozen oldest first (see
        // "Differences" in Documentation/core-api/liveupdate-rust.rst).
        for session in self.out.iter().take(done) {
            session.inner.lock().files.unfreeze();
        }
        Err(e)
    }

    /// The blocks of the session chain, for the test handler to corrupt once written.
    #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
    pub(crate) fn blocks_mut(&mut self) -> &mut [kernel::kho::PreservedPage] {
        self.blocks.pages_mut()
    }
}

impl Session {
    /// Freezes the session's files and writes its handover entry `e`, every byte of it (the
    /// name, the file list's address and its count tile the entry: see `abi`). On failure
    /// the files are unfrozen again.
    fn freeze(&self, e: &mut [u8; SESSION_SER_SIZE], clock: &mut RunClock<'_>) -> Result {
        let (pa, count) = self.inner.lock().files.freeze(clock)?;
        if let Some(name) = e.first_chunk_mut::<NAME_LEN>() {
            self.name.write_padded(name);
        }
        put_u64(e, session_ser::FILES, pa);
        put_u64(e, session_ser::COUNT, count);
        Ok(())
    }
}

/// A session from the previous kernel, as read from the handover.
pub(crate) struct InSession {
    name: Name,
    files: KVVec<InFile>,
}

impl InSession {
    /// The session's name.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn name(&self) -> &Name {
        &self.name
    }

    /// The session's files.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn files(&self) -> &[InFile] {
        &self.files
    }

    /// The session's name and its files.
    pub(crate) fn into_parts(self) -> (Name, KVVec<InFile>) {
        (self.name, self.files)
    }

    /// Reads the previous kernel's session chain at `head` into `out`. A session that does
    /// not validate (its name, or its file list) is dropped with a warning, and its files
    /// that could be read go to `dropped`, to be finished. Fails only if the chain itself is
    /// corrupt or memory runs out; `out` keeps the sessions read until then.
    pub(crate) fn read_list<S: PageSource>(
        src: &mut S,
        head: IncomingPhys,
        out: &mut KVVec<InSession>,
        dropped: &mut KVVec<InFile>,
    ) -> ParseResult {
        if head.0 == 0 {
            return Ok(());
        }
        let mut names: RBTree<Name, ()> = RBTree::new();
        read_chain(src, head, SESSION_SER_SIZE, |src, e| {
            let raw: [u8; NAME_LEN] = bytes::get(e, 0).ok_or(ParseError::Corrupt("short entry"))?;
            let files_pa = IncomingPhys(get_u64(e, session_ser::FILES));
            let count = get_u64(e, session_ser::COUNT);
            // The files are read whatever the name: those of a dropped session are finished.
            let mut files = KVVec::new();
            let read = match InFile::read_list(src, files_pa, count, &mut files) {
                // Out of memory: the rest of the list cannot be kept either.
                Err(ParseError::NoMemory) => return Err(ParseError::NoMemory),
                r => r,
            };
            let Ok(name) = Name::new(&raw) else {
                pr_warn!("dropped a session: its name is empty or not NUL-terminated\n");
                return drop_files(files, dropped);
            };
            let shown = kernel::str::BStr::from_bytes(name.as_bytes());
            if names.get(&name).is_some() {
                pr_warn!("dropped session [{}]: duplicate name\n", shown);
                return drop_files(files, dropped);
            }
            if let Err(why) = read {
                pr_warn!("dropped session [{}]: {}\n", shown, why);
                return drop_files(files, dropped);
            }
            names.try_create_and_insert(name, (), GFP_KERNEL)?;
            out.push(InSession { name, files }, GFP_KERNEL)?;
            Ok(())
        })?;
        Ok(())
    }
}

/// Keeps the files of a dropped session (those read before its file list went bad, if it
/// did), for LUO to finish once their handlers are registered.
fn drop_files(files: KVVec<InFile>, dropped: &mut KVVec<InFile>) -> ParseResult {
    dropped.reserve(files.len(), GFP_KERNEL)?;
    for f in files.into_iter() {
        // Cannot fail: reserved above.
        dropped.push(f, GFP_KERNEL)?;
    }
    Ok(())
}

/// CREATE_SESSION: a new outgoing session and the file that holds it.
///
/// The caller holds `Luo::state` for reading.
pub(crate) fn create(luo: &Luo, name: &[u8; crate::name::NAME_LEN]) -> Result<ARef<File>> {
    let name = Name::new(name)?;
    let mut s = luo.sessions();
    let count = s.out_count();
    // Room in the handover first (as the C LUO, so ENOSPC wins over EEXIST), but unlike it,
    // give the room back on EEXIST: a trailing empty block would corrupt the handover.
    s.blocks.grow(count + 1)?;
    let res = s.insert_outgoing(name);
    if res.is_err() {
        s.blocks.shrink(count);
    }
    res
}

impl Sessions {
    fn insert_outgoing(&mut self, name: Name) -> Result<ARef<File>> {
        // The name first, so that EEXIST allocates nothing.
        if self.out_by_name.get(&name).is_some() {
            return Err(EEXIST);
        }
        self.out_by_name.reserve()?;
        let NewSession { list, by_name } = NewSession::new(name, false, FileSet::new())?;
        let file = session_file::<OutgoingFile>(&name, list.clone_arc())?;
        // The name is still free: `self` was not unlocked since the check.
        self.out_by_name.insert(by_name).map_err(|_| EEXIST)?;
        self.out.push_back(list);
        self.out_count += 1;
        Ok(file)
    }
}

/// What [`unretrieve`] needs to take a retrieve back.
pub(crate) struct Retrieved {
    session: Arc<Session>,
    /// The address of the retrieve's file (see `SessionInner::retrieved_file`).
    file: usize,
}

/// RETRIEVE_SESSION: the file for an incoming session (`ENOENT`, or `EINVAL` if retrieved).
///
/// The caller holds `Luo::state` for reading.
pub(crate) fn retrieve(
    luo: &Luo,
    name: &[u8; crate::name::NAME_LEN],
) -> Result<(ARef<File>, Retrieved)> {
    let key = Name::lookup_key(name);
    let session = luo
        .sessions()
        .incoming
        .get(&key)
        .map(Arc::from)
        .ok_or(ENOENT)?;
    let mut inner = session.inner.lock();
    if inner.retrieved {
        return Err(EINVAL);
    }
    let file = session_file::<IncomingFile>(&session.name, session.clone())?;
    let addr = file_addr(&file);
    inner.retrieved = true;
    inner.retrieved_file = addr;
    drop(inner);
    Ok((
        file,
        Retrieved {
            session,
            file: addr,
        },
    ))
}

/// Takes back a retrieve whose reply could not be copied to userspace: the session stays
/// retrievable, and closing its file does not finish it.
///
/// The caller still holds the retrieve's file (so its address names no other file).
pub(crate) fn unretrieve(r: Retrieved) {
    let mut inner = r.session.inner.lock();
    if inner.retrieved && inner.retrieved_file == r.file {
        inner.retrieved = false;
    }
}

/// The address of `file`, to tell files apart (never turned back into a pointer).
fn file_addr(file: &File) -> usize {
    core::ptr::from_ref(file) as usize
}

/// A new session file of type `T` owning `data`, named `[luo_session] NAME`.
fn session_file<T: AnonInodeOps>(name: &Name, data: T::Ptr) -> Result<ARef<File>> {
    const PREFIX: &[u8] = b"[luo_session] ";
    let mut buf = [0u8; PREFIX.len() + crate::name::NAME_LEN];
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let n = name.as_bytes();
    buf[PREFIX.len()..PREFIX.len() + n.len()].copy_from_slice(n);
    let name = CStr::from_bytes_until_nul(&buf).map_err(|_| EINVAL)?;
    anon_inode::create_file::<T>(name, data, O_RDWR)
}

/// Closing the last reference to a session file, `file` (inlined into the two file types'
/// `release`, a call less on every close).
#[inline(always)]
fn release(luo: &Luo, session: Arc<Session>, file: &File) {
    // Excludes the reboot path for the whole release, as the C LUO's serialize rwsem does:
    // the handover never sees a half-closed session.
    let state = luo.read_state();
    if state.frozen() {
        // The session is in the handover already: keep everything for the next kernel. An
        // outgoing session stays on `Sessions::out` and `out_by_name`, whose tokens hold it,
        // so this reference can go.
        return;
    }
    if session.incoming {
        // Finish without holding the global session lock: releasing the preserved memory
        // may take a while, and other sessions need not wait for it.
        let mut inner = session.inner.lock();
        if !inner.retrieved || inner.retrieved_file != file_addr(file) {
            // A retrieve that was taken back (see `unretrieve`).
            return;
        }
        inner.retrieved_file = 0;
        if inner.files.finish(luo).is_err() {
            pr_warn!(
                "Unable to finish session [{}] on release\n",
                kernel::str::BStr::from_bytes(session.name.as_bytes())
            );
            return;
        }
        drop(inner);
        // SAFETY: Incoming sessions are only ever put on `Sessions::incoming` (ID 1).
        drop(unsafe { luo.sessions().incoming.remove(&session) });
        return;
    }
    // As the C LUO: the files go first, and the name stays taken until they are gone. A
    // session that never had a PRESERVE_FD has none, and none can come: this is the release
    // of its only file, after every ioctl on it, and the reboot path is held off.
    if session.may_have_files.load(Acquire) {
        session.inner.lock().files.unpreserve_all(luo);
    }
    let mut s = luo.sessions();
    // SAFETY: Outgoing sessions are only ever put on `Sessions::out_by_name` (ID 1).
    drop(unsafe { s.out_by_name.remove(&session) });
    // SAFETY: Sessions are only ever put on `Sessions::out`, the one list with ID 0.
    if unsafe { s.out.remove(&session) }.is_some() {
        s.out_count -= 1;
    }
    let count = s.out_count;
    s.blocks.shrink_lazily(count);
}

/// The file operations of outgoing session files: the file holds a reference on the session.
struct OutgoingFile;

#[vtable]
impl AnonInodeOps for OutgoingFile {
    type Ptr = Arc<Session>;

    fn release(session: Arc<Session>, file: &File) {
        if let Ok(luo) = luo() {
            release(luo, session, file);
        }
    }

    fn ioctl(session: ArcBorrow<'_, Session>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        session_ioctl(&session, cmd, arg).map(|()| 0)
    }
}

/// The file operations of incoming session files: the file holds a reference on the session.
struct IncomingFile;

#[vtable]
impl AnonInodeOps for IncomingFile {
    type Ptr = Arc<Session>;

    fn release(session: Arc<Session>, file: &File) {
        if let Ok(luo) = luo() {
            release(luo, session, file);
        }
    }

    fn ioctl(session: ArcBorrow<'_, Session>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        session_ioctl(&session, cmd, arg).map(|()| 0)
    }
}

/// The session ioctls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SessionCmd {
    PreserveFd,
    RetrieveFd,
    Finish,
    GetName,
}

const IOCTLS: [Ioctl<SessionCmd>; 4] = [
    Ioctl::new::<uapi::PreserveFd>(LIVEUPDATE_CMD_SESSION_PRESERVE_FD, SessionCmd::PreserveFd),
    Ioctl::new::<uapi::RetrieveFd>(LIVEUPDATE_CMD_SESSION_RETRIEVE_FD, SessionCmd::RetrieveFd),
    Ioctl::new::<uapi::Finish>(LIVEUPDATE_CMD_SESSION_FINISH, SessionCmd::Finish),
    Ioctl::new::<uapi::GetName>(LIVEUPDATE_CMD_SESSION_GET_NAME, SessionCmd::GetName),
];

impl SessionCmd {
    /// Whether the command applies to a session of this kind.
    fn applies_to(self, incoming: bool) -> bool {
        match self {
            Self::PreserveFd => !incoming,
            Self::RetrieveFd | Self::Finish => incoming,
            Self::GetName => true,
        }
    }
}

/// A session ioctl, with its checks in the C LUO's order: unknown number (`EINVAL`), unreadable
/// size (`EFAULT`), wrong encoding (`ENOTTY`), wrong kind of session or short struct (both
/// `EINVAL`, so their order does not show), non-zero tail (`E2BIG`), then frozen (`EBUSY`) and
/// the command itself.
fn session_ioctl(session: &Session, cmd: u32, arg: usize) -> Result {
    let (op, ucmd) = ucmd::decode(&IOCTLS, cmd, arg)?;
    if !op.applies_to(session.incoming) {
        return Err(EINVAL);
    }
    let luo = luo()?;
    match op {
        SessionCmd::PreserveFd => {
            let a: uapi::PreserveFd = ucmd.read()?;
            {
                let _state = luo.enter()?;
                session.may_have_files.store(true, Release);
                session.inner.lock().files.preserve(luo, a.token, a.fd)?;
            }
            ucmd.respond(&a).inspect_err(|_| {
                pr_warn!("The file was successfully preserved, but response to user failed\n")
            })
        }
        SessionCmd::RetrieveFd => {
            let mut a: uapi::RetrieveFd = ucmd.read()?;
            let state = luo.enter()?;
            let fd = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
            let file = session.inner.lock().files.retrieve(luo, a.token)?;
            drop(state);
            a.fd = fd.reserved_fd() as i32;
            ucmd.respond(&a)?;
            fd.fd_install(file);
            Ok(())
        }
        SessionCmd::Finish => {
            let a: uapi::Finish = ucmd.read()?;
            if a.reserved != 0 {
                return Err(EINVAL);
            }
            {
                let _state = luo.enter()?;
                session.inner.lock().files.finish(luo)?;
            }
            ucmd.respond(&a)
        }
        SessionCmd::GetName => {
            let mut a: uapi::GetName = ucmd.read()?;
            if a.reserved != 0 {
                return Err(EINVAL);
            }
            drop(luo.enter()?);
            // Byte for byte what the C LUO's strscpy() gives on 64-bit: the name, then zeroes
            // to the end of the 8-byte word that holds its NUL (strscpy() copies words);
            // the caller's bytes after that word are echoed back.
            let n = session.name.as_bytes();
            let end = ((n.len() / 8 + 1) * 8).min(a.name.len());
            if let Some(dst) = a.name.get_mut(..end) {
                dst.fill(0);
                dst[..n.len()].copy_from_slice(n);
            }
            ucmd.respond(&a)
        }
    }
}
