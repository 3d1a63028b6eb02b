// SPDX-License-Identifier: GPL-2.0

//! Writing the handover at reboot, and reading the previous kernel's.
//!
//! Outgoing: `struct luo_ser` is published at boot as the KHO subtree "LUO", with the FLB page
//! next to it; at reboot every outgoing session is frozen and written into the blocks reserved
//! while sessions were created and files preserved, so the reboot path does not allocate.
//!
//! Incoming: the previous kernel's data is parsed at early boot and copied into Rust values;
//! all its pages are freed. Every address, count and string is checked; what does not
//! validate is dropped with a warning and the boot goes on. See
//! `Documentation/core-api/liveupdate-rust.rst` for the policy.

use crate::{
    abi::{
        self,
        flb_ser,
        get_str,
        get_u64,
        luo_ser,
        put_str,
        put_u64,
        session_ser, //
    },
    block::{
        read_chain,
        HEADER_SIZE, //
    },
    file_set::FILE_SER_SIZE,
    flb::FLB_MAX,
    name::{
        Name,
        NAME_LEN, //
    },
    parse::{
        ParseError,
        ParseResult, //
    },
    session::SESSION_SER_SIZE,
    timeline::{
        self,
        OutPoint,
        RunClock,
        Spans, //
    },
    Luo, //
};
use kernel::{
    kho::{
        bytes,
        IncomingPage,
        IncomingPhys,
        PreservedPage,
        Subtree,
        SubtreeName, //
    },
    prelude::*,
    rbtree::RBTree,
    sync::atomic::{
        Atomic,
        Full,
        Release, //
    }, //
};

/// This kernel's handover root: `struct luo_ser` and the FLB page.
pub(crate) struct Handover {
    ser: Subtree,
    flbs: PreservedPage,
}

impl Handover {
    /// Allocates and publishes the root for the next kernel.
    pub(crate) fn new(liveupdate_num: u64) -> Result<Self> {
        let mut flbs = PreservedPage::new()?;
        put_u64(flbs.bytes_mut(), 0, 1);
        let mut page = PreservedPage::new()?;
        let b = page.bytes_mut();
        b[..8].copy_from_slice(&abi::COMPATIBLE);
        put_u64(b, luo_ser::LIVEUPDATE_NUM, liveupdate_num);
        put_u64(b, luo_ser::FLBS_PA, flbs.phys());
        let ser = Subtree::add(abi::KHO_ENTRY_NAME, page, abi::LUO_SER_SIZE)?;
        Ok(Self { ser, flbs })
    }

    fn set_sessions_pa(&mut self, pa: u64) {
        put_u64(self.ser.page_mut().bytes_mut(), luo_ser::SESSIONS_PA, pa);
    }
}

impl Luo {
    /// Freezes and serializes every outgoing session for the kexec (`liveupdate_reboot`).
    ///
    /// On failure everything frozen is unfrozen and the error returned (the kexec is refused
    /// and LUO works as before). On success LUO stays frozen: session ioctls fail with `EBUSY`
    /// and closing a session no longer unpreserves it.
    pub(crate) fn reboot(&self) -> Result {
        let start = timeline::now();
        // Waits for every session operation in flight, and holds off new ones until the
        // handover is written (then they see `frozen` and fail with `EBUSY`).
        let mut state = self.state.write();
        if state.frozen {
            return Ok(());
        }
        self.timeline.lock().mark_out(OutPoint::Reboot, start);
        let mut freeze = Spans::new();
        let mut clock = RunClock::new(&mut freeze);
        let mut guard = self.sessions.lock();
        let s = &mut *guard;
        let total = s.out_count();
        let Some(handover) = s.handover.as_mut() else {
            return Err(ENODEV);
        };
        // Closing sessions leaves a spare block (`shrink_lazily`); the chain has none.
        s.blocks.shrink(total);
        let mut w = s.blocks.writer(total)?;
        let head = w.head();
        let mut done = 0;
        let mut err = None;
        for session in s.out.iter() {
            let mut inner = session.inner.lock();
            // On failure `freeze` has unfrozen this session's files itself.
            let (pa, count) = match inner.files.freeze(&mut clock) {
                Ok(v) => v,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            };
            // Written in place, every byte (name, files, count tile the entry: see `abi`).
            let Some(e) = w.next_slot::<SESSION_SER_SIZE>() else {
                inner.files.unfreeze();
                err = Some(ENOSPC);
                break;
            };
            if let Some(name) = e.first_chunk_mut::<NAME_LEN>() {
                session.name.write_padded(name);
            }
            put_u64(e, session_ser::FILES, pa);
            #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
            let count = crate::test_handler::corrupt_count(&session.name, count);
            put_u64(e, session_ser::COUNT, count);
            done += 1;
        }
        if let Some(e) = err {
            // Unlike the C LUO (newest first), sessions are unfrozen oldest first (see
            // "Differences" in Documentation/core-api/liveupdate-rust.rst).
            for session in s.out.iter().take(done) {
                session.inner.lock().files.unfreeze();
            }
            handover.set_sessions_pa(0);
            return Err(e);
        }
        handover.set_sessions_pa(head);
        self.serialize_flbs(&mut handover.flbs);
        #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
        crate::test_handler::corrupt(
            handover.ser.page_mut().bytes_mut(),
            s.blocks.first_mut(),
            head,
            handover.flbs.bytes_mut(),
        );
        state.frozen = true;
        let end = timeline::now();
        clock.close(end);
        drop(clock);
        self.timeline.lock().serialized(end, &freeze);
        Ok(())
    }

    /// Writes the table of preserved FLBs.
    fn serialize_flbs(&self, page: &mut PreservedPage) {
        let reg = self.registry.read();
        let b = page.bytes_mut();
        let mut n = 0;
        for flb in reg.registered_flbs() {
            let Some((data, count)) = flb.outgoing_entry() else {
                continue;
            };
            let off = flb_ser::HEADER + n * flb_ser::SIZE;
            let Some(e) = b.get_mut(off..off + flb_ser::SIZE) else {
                break;
            };
            put_str(
                &mut e[..abi::FLB_COMPAT_LEN],
                flb.ops.compatible().to_bytes(),
            );
            put_u64(e, flb_ser::DATA, data);
            put_u64(e, flb_ser::COUNT, count);
            n += 1;
        }
        put_u64(b, 0, 1);
        put_u64(b, 8, n as u64);
    }
}

/// A file from the previous kernel, as read from the handover.
pub(crate) struct InFile {
    pub(crate) compat: [u8; abi::COMPAT_LEN],
    pub(crate) data: u64,
    pub(crate) token: u64,
}

/// A session from the previous kernel, as read from the handover.
pub(crate) struct InSession {
    pub(crate) name: Name,
    pub(crate) files: KVVec<InFile>,
}

/// An FLB entry from the previous kernel.
pub(crate) struct InFlb {
    pub(crate) compat: [u8; abi::FLB_COMPAT_LEN],
    pub(crate) data: u64,
    pub(crate) count: u64,
    /// 0 until an FLB takes the entry to retrieve it, then 1, or the negative errno of a
    /// failed `retrieve`: the entry is retrieved at most once per boot.
    pub(crate) taken: Atomic<i32>,
}

impl InFlb {
    /// Takes the entry to retrieve it: `ENODATA` if it was retrieved already, the error of
    /// that `retrieve` if it failed.
    pub(crate) fn take(&self) -> Result<&Self> {
        match self.taken.cmpxchg(0, 1, Full) {
            Ok(_) => Ok(self),
            Err(e) if e < 0 => Err(Error::from_errno(e)),
            Err(_) => Err(ENODATA),
        }
    }

    /// The `retrieve` of a taken entry failed with `e`: later takes get `e`.
    pub(crate) fn failed(&self, e: Error) {
        self.taken.store(e.to_errno(), Release);
    }
}

/// What the previous kernel handed over.
#[derive(Default)]
pub(crate) struct Incoming {
    pub(crate) liveupdate_num: u64,
    pub(crate) sessions: KVVec<InSession>,
    /// Files of the sessions that were dropped, to be finished (not retrieved) by their
    /// handlers: a corrupt session is given up on, but what its files hold is given back.
    pub(crate) dropped: KVVec<InFile>,
    /// `None` if there was no usable FLB table.
    pub(crate) flbs: Option<KVVec<InFlb>>,
}

/// The largest user count an incoming FLB entry may have: the C LUO counts with a
/// `refcount_t`, which saturates below `INT_MAX`.
const FLB_COUNT_MAX: u64 = i32::MAX as u64;

/// LUO's KHO subtree, holding the root of the handover (`struct luo_ser`).
// SAFETY: `LUO_KHO_ENTRY_NAME` ("LUO") is the name the luo-v5 ABI gives to LUO's root. A kernel
// builds one LUO (not the C one, `luo_core.c`, with `CONFIG_LIVEUPDATE_RUST`), and of this one
// only `read_incoming` retrieves it; no other code of this kernel uses that name.
const LUO_SUBTREE: SubtreeName = unsafe { SubtreeName::new(abi::KHO_ENTRY_NAME) };

/// Early boot: reads the previous kernel's handover. Never fails: whatever does not validate
/// is dropped with a warning.
pub(crate) fn read_incoming() -> Incoming {
    let mut inc = Incoming::default();
    // The root page stays for the kernel's life: KHO's debugfs shows it.
    let (b, len) = match IncomingPage::retrieve_subtree(&LUO_SUBTREE) {
        Ok(v) => v,
        Err(e) if e == ENOENT => return inc,
        Err(e) => {
            pr_warn!(
                "rejected handover: cannot retrieve the LUO state: {:?}\n",
                e
            );
            return inc;
        }
    };
    if len < abi::LUO_SER_SIZE {
        pr_warn!(
            "rejected handover: LUO state is too small ({} < {})\n",
            len,
            abi::LUO_SER_SIZE
        );
        return inc;
    }
    if !abi::compatible_matches(b) {
        pr_warn!("rejected handover: LUO state is incompatible with 'luo-v5'\n");
        return inc;
    }
    inc.liveupdate_num = get_u64(b, luo_ser::LIVEUPDATE_NUM);
    pr_info!(
        "Retrieved live update data, liveupdate number: {}\n",
        inc.liveupdate_num
    );
    let sessions_pa = IncomingPhys(get_u64(b, luo_ser::SESSIONS_PA));
    let flbs_pa = IncomingPhys(get_u64(b, luo_ser::FLBS_PA));

    if let Err(e) = read_sessions(sessions_pa, &mut inc.sessions, &mut inc.dropped) {
        pr_warn!(
            "session list is unusable ({}): kept the {} sessions read before\n",
            e,
            inc.sessions.len()
        );
    }
    match read_flbs(flbs_pa) {
        Ok(flbs) => inc.flbs = flbs,
        Err(e) => pr_warn!("dropped all FLBs: {}\n", e),
    }
    inc
}

fn read_sessions(
    head: IncomingPhys,
    out: &mut KVVec<InSession>,
    dropped: &mut KVVec<InFile>,
) -> ParseResult {
    if head.0 == 0 {
        return Ok(());
    }
    let mut names: RBTree<Name, ()> = RBTree::new();
    read_chain(head, SESSION_SER_SIZE, |e| {
        let raw: [u8; NAME_LEN] = bytes::get(e, 0).ok_or(ParseError::Corrupt("short entry"))?;
        let files_pa = IncomingPhys(get_u64(e, session_ser::FILES));
        let count = get_u64(e, session_ser::COUNT);
        // The files are read whatever the name: those of a dropped session are finished.
        let mut files = KVVec::new();
        let read = match read_files(files_pa, count, &mut files) {
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

/// Reads a session's file list into `files`. On failure, `files` holds the files read
/// before the list went bad (each with a valid handler name and a token of its own).
fn read_files(head: IncomingPhys, count: u64, files: &mut KVVec<InFile>) -> ParseResult {
    if head.0 == 0 {
        return if count == 0 {
            Ok(())
        } else {
            Err(ParseError::Corrupt("file count without files"))
        };
    }
    let mut tokens: RBTree<u64, ()> = RBTree::new();
    let n = read_chain(head, FILE_SER_SIZE, |e| {
        let compat: [u8; abi::COMPAT_LEN] =
            bytes::get(e, 0).ok_or(ParseError::Corrupt("short entry"))?;
        if get_str(&compat).is_none() {
            return Err(ParseError::Corrupt(
                "a file's handler name is empty or not NUL-terminated",
            ));
        }
        let token = get_u64(e, abi::file_ser::TOKEN);
        if tokens.get(&token).is_some() {
            return Err(ParseError::Corrupt("duplicate file token"));
        }
        tokens.try_create_and_insert(token, (), GFP_KERNEL)?;
        files.push(
            InFile {
                compat,
                data: get_u64(e, abi::file_ser::DATA),
                token,
            },
            GFP_KERNEL,
        )?;
        Ok(())
    })?;
    if n as u64 != count {
        return Err(ParseError::Corrupt(
            "file count does not match its file list",
        ));
    }
    Ok(())
}

/// The FLB table: `None` if there is none.
fn read_flbs(head: IncomingPhys) -> ParseResult<Option<KVVec<InFlb>>> {
    if head.0 == 0 {
        return Ok(None);
    }
    let page = crate::block::restore_own_page(head)
        .map_err(|_| ParseError::Corrupt("its page is not a preserved page"))?;
    let b = page.bytes();
    let (pgcnt, count) = (get_u64(b, 0), get_u64(b, 8));
    if pgcnt != 1 || count > FLB_MAX as u64 {
        pr_warn!("bad FLB table header: {} pages, {} entries\n", pgcnt, count);
        return Err(ParseError::Corrupt("bad table header"));
    }
    let mut out = KVVec::new();
    for e in b
        .get(flb_ser::HEADER..)
        .unwrap_or(&[])
        .chunks_exact(flb_ser::SIZE)
        .take(count as usize)
    {
        let compat: [u8; abi::FLB_COMPAT_LEN] =
            bytes::get(e, 0).unwrap_or([0; abi::FLB_COMPAT_LEN]);
        let Some(name) = get_str(&compat) else {
            pr_warn!("dropped an FLB: its name is empty or not NUL-terminated\n");
            continue;
        };
        let count = get_u64(e, flb_ser::COUNT);
        if count == 0 || count > FLB_COUNT_MAX {
            pr_warn!("dropped FLB '{}': bad user count {}\n", name, count);
            continue;
        }
        let data = get_u64(e, flb_ser::DATA);
        out.push(
            InFlb {
                compat,
                data,
                count,
                taken: Atomic::new(0),
            },
            GFP_KERNEL,
        )?;
    }
    Ok(Some(out))
}

const _: () = assert!(HEADER_SIZE == flb_ser::HEADER);
