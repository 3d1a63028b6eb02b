// SPDX-License-Identifier: GPL-2.0

//! Sessions: named sets of preserved files, each handed to userspace as a file descriptor.
//!
//! Outgoing sessions are created in this kernel and serialized at reboot; incoming sessions
//! come from the previous kernel and are retrieved by name. Both kinds are kept by name
//! (O(log n) lookup) and outgoing ones also in creation order, which is the handover order.

use crate::{
    block::BlockSet,
    file_set::FileSet,
    luo,
    name::Name,
    ucmd::Ucmd,
    Luo, //
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
    ioctl::{
        _IO, //
        _IOC_NR,
    },
    liveupdate::uapi,
    new_mutex,
    prelude::*,
    rbtree::RBTree,
    sync::{
        aref::ARef,
        Arc,
        ArcBorrow,
        Mutex, //
    },
    uapi::{
        LIVEUPDATE_CMD_SESSION_BASE,
        LIVEUPDATE_CMD_SESSION_FINISH,
        LIVEUPDATE_CMD_SESSION_GET_NAME,
        LIVEUPDATE_CMD_SESSION_PRESERVE_FD,
        LIVEUPDATE_CMD_SESSION_RETRIEVE_FD,
        LIVEUPDATE_IOCTL_TYPE, //
    }, //
};

/// Size of one serialized session entry (`struct luo_session_ser`).
pub(crate) const SESSION_SER_SIZE: usize = crate::abi::session_ser::SIZE;

/// Mutable state of a session.
pub(crate) struct SessionInner {
    pub(crate) files: FileSet,
    /// Incoming sessions: a file descriptor was handed out by RETRIEVE_SESSION.
    pub(crate) retrieved: bool,
    /// Incoming sessions: the `struct file` that holds the retrieved session.
    owner: usize,
}

/// A session.
#[pin_data]
pub(crate) struct Session {
    pub(crate) name: Name,
    /// Creation order (outgoing sessions).
    pub(crate) seq: u64,
    /// The session came from the previous kernel.
    pub(crate) incoming: bool,
    /// Lock order: after `Luo::sessions`, before `Luo::registry`.
    #[pin]
    pub(crate) inner: Mutex<SessionInner>,
}

impl Session {
    pub(crate) fn new(name: Name, seq: u64, incoming: bool) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                name,
                seq,
                incoming,
                inner <- new_mutex!(
                    SessionInner {
                        files: FileSet::new(),
                        retrieved: false,
                        owner: 0,
                    },
                    "luo_session::inner"
                ),
            }),
            GFP_KERNEL,
        )
    }
}

/// All sessions. Protected by `Luo::sessions`.
pub(crate) struct Sessions {
    out_by_name: RBTree<Name, Arc<Session>>,
    /// Outgoing sessions in creation order.
    pub(crate) out: RBTree<u64, Arc<Session>>,
    next_seq: u64,
    out_count: usize,
    /// Handover pages reserved for the outgoing session entries.
    pub(crate) blocks: BlockSet,
    incoming: RBTree<Name, Arc<Session>>,
    /// This kernel's handover root (set up at late boot).
    pub(crate) handover: Option<crate::handover::Handover>,
}

impl Sessions {
    pub(crate) fn new() -> Self {
        Self {
            out_by_name: RBTree::new(),
            out: RBTree::new(),
            next_seq: 0,
            out_count: 0,
            blocks: BlockSet::new(SESSION_SER_SIZE),
            incoming: RBTree::new(),
            handover: None,
        }
    }

    /// Number of outgoing sessions.
    pub(crate) fn out_count(&self) -> usize {
        self.out_count
    }

    /// Adds a session from the previous kernel (`EEXIST` on a duplicate name).
    pub(crate) fn add_incoming(&mut self, session: Arc<Session>) -> Result {
        if self.incoming.get(&session.name).is_some() {
            return Err(EEXIST);
        }
        self.incoming
            .try_create_and_insert(session.name, session, GFP_KERNEL)?;
        Ok(())
    }
}

/// CREATE_SESSION: a new outgoing session and the file that holds it.
pub(crate) fn create(luo: &Luo, name: &[u8; crate::name::NAME_LEN]) -> Result<ARef<File>> {
    let name = Name::new(name)?;
    let mut s = luo.sessions.lock();
    luo.check_not_frozen()?;
    let count = s.out_count();
    // Room in the handover first (as the C LUO, so ENOSPC wins over EEXIST), but unlike it,
    // give the room back on EEXIST: a trailing empty block would corrupt the handover.
    s.blocks.grow(count + 1)?;
    let res = (|| {
        if s.out_by_name.get(&name).is_some() {
            return Err(EEXIST);
        }
        let seq = s.next_seq;
        let session = Session::new(name, seq, false)?;
        let n1 = kernel::rbtree::RBTreeNode::new(name, session.clone(), GFP_KERNEL)?;
        let n2 = kernel::rbtree::RBTreeNode::new(seq, session.clone(), GFP_KERNEL)?;
        let file = session_file(session)?;
        s.out_by_name.insert(n1);
        s.out.insert(n2);
        s.next_seq += 1;
        s.out_count += 1;
        Ok(file)
    })();
    if res.is_err() {
        s.blocks.shrink(count);
    }
    res
}

/// RETRIEVE_SESSION: the file for an incoming session (`ENOENT`, or `EINVAL` if retrieved).
pub(crate) fn retrieve(luo: &Luo, name: &[u8; crate::name::NAME_LEN]) -> Result<ARef<File>> {
    let key = Name::lookup_key(name);
    let s = luo.sessions.lock();
    let session = s.incoming.get(&key).ok_or(ENOENT)?.clone();
    let mut inner = session.inner.lock();
    if inner.retrieved {
        return Err(EINVAL);
    }
    let file = session_file(session.clone())?;
    inner.retrieved = true;
    inner.owner = file.as_ptr() as usize;
    Ok(file)
}

/// Takes back a retrieve whose reply could not be copied to userspace: the session stays
/// retrievable, and closing `file` does not finish it.
pub(crate) fn unretrieve(luo: &Luo, file: ARef<File>) {
    let key = file.as_ptr() as usize;
    let s = luo.sessions.lock();
    for session in s.incoming.values() {
        let mut inner = session.inner.lock();
        if inner.owner == key {
            inner.retrieved = false;
            inner.owner = 0;
            break;
        }
    }
    drop(s);
    drop(file);
}

fn session_file(session: Arc<Session>) -> Result<ARef<File>> {
    let mut buf = [0u8; 14 + crate::name::NAME_LEN + 1];
    let prefix = b"[luo_session] ";
    buf[..prefix.len()].copy_from_slice(prefix);
    let n = session.name.as_bytes();
    buf[prefix.len()..prefix.len() + n.len()].copy_from_slice(n);
    let name = CStr::from_bytes_until_nul(&buf).map_err(|_| EINVAL)?;
    anon_inode::create_file::<SessionFile>(name, session, O_RDWR)
}

/// Closing the last reference to a session file.
fn release(luo: &Luo, session: Arc<Session>, file: &File) {
    if session.incoming {
        if crate::frozen() {
            return;
        }
        // Finish without holding the global session lock: releasing the preserved memory
        // may take a while, and other sessions need not wait for it.
        let mut inner = session.inner.lock();
        if !inner.retrieved || inner.owner != file.as_ptr() as usize {
            // A retrieve that was taken back (see `unretrieve`).
            return;
        }
        if inner.files.finish(luo).is_err() {
            pr_warn!(
                "Unable to finish session [{}] on release\n",
                kernel::str::BStr::from_bytes(session.name.as_bytes())
            );
            return;
        }
        drop(inner);
        luo.sessions.lock().incoming.remove(&session.name);
        return;
    }
    let mut s = luo.sessions.lock();
    if crate::frozen() {
        // The session is in the handover already: keep everything for the next kernel.
        core::mem::forget(session);
        return;
    }
    s.out_by_name.remove(&session.name);
    if s.out.remove(&session.seq).is_some() {
        s.out_count -= 1;
    }
    let count = s.out_count;
    s.blocks.shrink(count);
    drop(s);
    session.inner.lock().files.unpreserve_all(luo);
}

/// The file operations of session files.
struct SessionFile;

#[vtable]
impl AnonInodeOps for SessionFile {
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

/// Which sessions an ioctl applies to.
#[derive(PartialEq, Eq)]
enum Kind {
    Incoming,
    Outgoing,
    All,
}

fn session_ioctl(session: &Session, cmd: u32, arg: usize) -> Result {
    const BASE: u32 = LIVEUPDATE_CMD_SESSION_BASE;
    const T: u32 = LIVEUPDATE_IOCTL_TYPE;
    // (nr - BASE) indexes this table: (command, struct size, sessions it applies to).
    const OPS: [(u32, usize, Kind); 4] = [
        (
            _IO(T, LIVEUPDATE_CMD_SESSION_PRESERVE_FD),
            size_of::<uapi::PreserveFd>(),
            Kind::Outgoing,
        ),
        (
            _IO(T, LIVEUPDATE_CMD_SESSION_RETRIEVE_FD),
            size_of::<uapi::RetrieveFd>(),
            Kind::Incoming,
        ),
        (
            _IO(T, LIVEUPDATE_CMD_SESSION_FINISH),
            size_of::<uapi::Finish>(),
            Kind::Incoming,
        ),
        (
            _IO(T, LIVEUPDATE_CMD_SESSION_GET_NAME),
            size_of::<uapi::GetName>(),
            Kind::All,
        ),
    ];
    let nr = _IOC_NR(cmd);
    let idx = nr.wrapping_sub(BASE) as usize;
    let (num, min, kind) = OPS.get(idx).filter(|_| nr >= BASE).ok_or(EINVAL)?;
    let ucmd = Ucmd::new(arg)?;
    if *num != cmd {
        return Err(ENOIOCTLCMD);
    }
    let valid = match kind {
        Kind::Incoming => session.incoming,
        Kind::Outgoing => !session.incoming,
        Kind::All => true,
    };
    if !valid {
        return Err(EINVAL);
    }
    ucmd.check_min(*min)?;
    let luo = luo()?;
    luo.check_not_frozen()?;
    match nr {
        LIVEUPDATE_CMD_SESSION_PRESERVE_FD => {
            let a: uapi::PreserveFd = ucmd.read()?;
            let mut inner = session.inner.lock();
            luo.check_not_frozen()?;
            inner.files.preserve(luo, a.token, a.fd)?;
            drop(inner);
            ucmd.respond(&a).inspect_err(|_| {
                pr_warn!("The file was successfully preserved, but response to user failed\n")
            })
        }
        LIVEUPDATE_CMD_SESSION_RETRIEVE_FD => {
            let mut a: uapi::RetrieveFd = ucmd.read()?;
            let fd = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
            let file = session.inner.lock().files.retrieve(luo, a.token)?;
            a.fd = fd.reserved_fd() as i32;
            ucmd.respond(&a)?;
            fd.fd_install(file);
            Ok(())
        }
        LIVEUPDATE_CMD_SESSION_FINISH => {
            let a: uapi::Finish = ucmd.read()?;
            if a.reserved != 0 {
                return Err(EINVAL);
            }
            session.inner.lock().files.finish(luo)?;
            ucmd.respond(&a)
        }
        _ => {
            let mut a: uapi::GetName = ucmd.read()?;
            if a.reserved != 0 {
                return Err(EINVAL);
            }
            a.name = *session.name.as_buf();
            ucmd.respond(&a)
        }
    }
}
