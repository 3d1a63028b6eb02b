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
    session::SESSION_SER_SIZE,
    Luo, //
};
use kernel::{
    kho::{
        self,
        IncomingPage,
        IncomingPhys,
        PreservedPage,
        Subtree, //
    },
    liveupdate::Flb,
    prelude::*,
    rbtree::RBTree, //
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
        let mut guard = self.sessions.lock();
        if crate::frozen() {
            return Ok(());
        }
        crate::set_frozen(true);
        let s = &mut *guard;
        let total = s.out_count();
        let Some(handover) = s.handover.as_mut() else {
            crate::set_frozen(false);
            return Err(ENODEV);
        };
        let mut done = 0;
        let mut err = None;
        let mut head = 0;
        match s.blocks.writer(total) {
            Err(e) => err = Some(e),
            Ok(mut w) => {
                for session in s.out.values() {
                    let mut inner = session.inner.lock();
                    // On failure `freeze` has unfrozen this session's files itself.
                    let (pa, count) = match inner.files.freeze() {
                        Ok(v) => v,
                        Err(e) => {
                            err = Some(e);
                            break;
                        }
                    };
                    let Some(e) = w.next_entry() else {
                        inner.files.unfreeze();
                        err = Some(ENOSPC);
                        break;
                    };
                    put_str(&mut e[..NAME_LEN], session.name.as_bytes());
                    put_u64(e, session_ser::FILES, pa);
                    put_u64(e, session_ser::COUNT, count);
                    done += 1;
                }
                if total > 0 {
                    head = w.head();
                }
            }
        }
        if let Some(e) = err {
            // Unlike the C LUO (newest first), sessions are unfrozen oldest first: the tree
            // of sessions cannot be walked backwards without allocating.
            for session in s.out.values().take(done) {
                session.inner.lock().files.unfreeze();
            }
            handover.set_sessions_pa(0);
            crate::set_frozen(false);
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
        Ok(())
    }

    /// Writes the table of preserved FLBs.
    fn serialize_flbs(&self, page: &mut PreservedPage) {
        let reg = self.registry.lock();
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
            put_str(&mut e[..abi::COMPAT_LEN], flb.ops.compatible().to_bytes());
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
    pub(crate) files: KVec<InFile>,
}

/// An FLB entry from the previous kernel.
pub(crate) struct InFlb {
    pub(crate) compat: [u8; abi::COMPAT_LEN],
    pub(crate) data: u64,
    pub(crate) count: u64,
}

/// What the previous kernel handed over.
#[derive(Default)]
pub(crate) struct Incoming {
    pub(crate) liveupdate_num: u64,
    pub(crate) sessions: KVec<InSession>,
    pub(crate) flbs: KVec<InFlb>,
}

/// Early boot: reads the previous kernel's handover. Never fails: whatever does not validate
/// is dropped with a warning.
pub(crate) fn read_incoming() -> Incoming {
    let mut inc = Incoming::default();
    let (phys, len) = match kho::retrieve_subtree(abi::KHO_ENTRY_NAME) {
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
    let page = match IncomingPage::restore(phys) {
        Ok(p) => p,
        Err(_) => {
            pr_warn!(
                "rejected handover: LUO state at {:#x} is not a preserved page\n",
                phys.0
            );
            return inc;
        }
    };
    let b = page.bytes();
    if b[..8] != abi::COMPATIBLE {
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
    drop(page);

    read_sessions(sessions_pa, &mut inc.sessions);
    read_flbs(flbs_pa, &mut inc.flbs);
    inc
}

fn read_sessions(head: IncomingPhys, out: &mut KVec<InSession>) {
    if head.0 == 0 {
        return;
    }
    let mut names: RBTree<Name, ()> = RBTree::new();
    let res = read_chain(head, SESSION_SER_SIZE, |e| {
        let mut raw = [0u8; NAME_LEN];
        raw.copy_from_slice(&e[..NAME_LEN]);
        let Ok(name) = Name::new(&raw) else {
            pr_warn!("dropped a session: its name is empty or not NUL-terminated\n");
            return Ok(());
        };
        let shown = kernel::str::BStr::from_bytes(name.as_bytes());
        if names.get(&name).is_some() {
            pr_warn!("dropped session [{}]: duplicate name\n", shown);
            return Ok(());
        }
        let files_pa = IncomingPhys(get_u64(e, session_ser::FILES));
        let count = get_u64(e, session_ser::COUNT);
        let files = match read_files(files_pa, count) {
            Ok(f) => f,
            Err(why) => {
                pr_warn!("dropped session [{}]: {}\n", shown, why);
                return Ok(());
            }
        };
        names.try_create_and_insert(name, (), GFP_KERNEL)?;
        out.push(InSession { name, files }, GFP_KERNEL)?;
        Ok(())
    });
    if let Err(e) = res {
        pr_warn!(
            "session list is corrupt ({:?}): kept the {} sessions read before the corruption\n",
            e,
            out.len()
        );
    }
}

fn read_files(head: IncomingPhys, count: u64) -> core::result::Result<KVec<InFile>, &'static str> {
    let mut files = KVec::new();
    if head.0 == 0 {
        return if count == 0 {
            Ok(files)
        } else {
            Err("file count without files")
        };
    }
    let mut tokens: RBTree<u64, ()> = RBTree::new();
    let mut bad = None;
    let res = read_chain(head, FILE_SER_SIZE, |e| {
        let mut compat = [0u8; abi::COMPAT_LEN];
        compat.copy_from_slice(&e[..abi::COMPAT_LEN]);
        if get_str(&compat).is_none() {
            bad = Some("a file's handler name is empty or not NUL-terminated");
            return Err(EINVAL);
        }
        let token = get_u64(e, abi::file_ser::TOKEN);
        if tokens.get(&token).is_some() {
            bad = Some("duplicate file token");
            return Err(EINVAL);
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
    });
    match res {
        Err(_) => Err(bad.unwrap_or("its file list is corrupt")),
        Ok(n) if n as u64 != count => Err("file count does not match its file list"),
        Ok(_) => Ok(files),
    }
}

fn read_flbs(head: IncomingPhys, out: &mut KVec<InFlb>) {
    if head.0 == 0 {
        return;
    }
    let Ok(page) = IncomingPage::restore(head) else {
        pr_warn!("dropped all FLBs: {:#x} is not a preserved page\n", head.0);
        return;
    };
    let b = page.bytes();
    let (pgcnt, count) = (get_u64(b, 0), get_u64(b, 8));
    if pgcnt != 1 || count > FLB_MAX as u64 {
        pr_warn!(
            "dropped all FLBs: bad table header ({} pages, {} entries)\n",
            pgcnt,
            count
        );
        return;
    }
    for i in 0..count as usize {
        let off = flb_ser::HEADER + i * flb_ser::SIZE;
        let Some(e) = b.get(off..off + flb_ser::SIZE) else {
            break;
        };
        let mut compat = [0u8; abi::COMPAT_LEN];
        compat.copy_from_slice(&e[..abi::COMPAT_LEN]);
        if get_str(&compat).is_none() {
            pr_warn!("dropped an FLB: its name is empty or not NUL-terminated\n");
            continue;
        }
        let flb = InFlb {
            compat,
            data: get_u64(e, flb_ser::DATA),
            count: get_u64(e, flb_ser::COUNT),
        };
        if out.push(flb, GFP_KERNEL).is_err() {
            return;
        }
    }
}

const _: () = assert!(HEADER_SIZE == flb_ser::HEADER);
