// SPDX-License-Identifier: GPL-2.0

//! The root of the handover (`struct luo_ser`): written at reboot, read at early boot.
//!
//! Outgoing: `struct luo_ser` is published at boot as the KHO subtree "LUO", with the FLB page
//! next to it; at reboot every outgoing session is frozen and written into the blocks reserved
//! while sessions were created and files preserved, so the reboot path does not allocate.
//! Sessions, their files and the FLB table each write and read their own part (`session`,
//! `file_set`, `flb_table`); this module ties them to the root.
//!
//! Incoming: the previous kernel's data is parsed at early boot and copied into Rust values;
//! all its pages are freed. The parser reads pages only through a [`PageSource`], so every
//! corruption it must survive is also tested without a kexec (the KUnit suite
//! `luo_rs_handover`). Every address, count and string is checked; what does not validate is
//! dropped with a warning and the boot goes on. See
//! `Documentation/core-api/liveupdate-rust.rst` for the policy.

use crate::{
    abi::{
        self,
        get_u64,
        luo_ser,
        put_u64, //
    },
    block::KhoPages,
    file_set::InFile,
    flb_table::{
        self,
        InFlb, //
    },
    orchestrator::Luo,
    parse::PageSource,
    session::InSession,
    timeline::{
        self,
        OutPoint,
        RunClock,
        Spans, //
    }, //
};
use kernel::{
    kho::{
        IncomingPage,
        IncomingPhys,
        PreservedPage,
        Subtree,
        SubtreeName, //
    },
    prelude::*, //
};

/// What the reboot path changes, under `Luo::state`.
pub(crate) struct State {
    /// The sessions are serialized for the kexec: LUO refuses every change (`EBUSY`) and
    /// closing a session keeps it for the next kernel.
    frozen: bool,
    /// This kernel's handover root (set up at late boot).
    root: Option<Handover>,
}

impl State {
    /// Before the reboot path, with no handover root yet.
    pub(crate) fn new() -> Self {
        Self {
            frozen: false,
            root: None,
        }
    }

    /// Whether the reboot path serialized the sessions.
    pub(crate) fn frozen(&self) -> bool {
        self.frozen
    }

    /// Sets the handover root, published at late boot.
    pub(crate) fn set_root(&mut self, root: Handover) {
        self.root = Some(root);
    }
}

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
        let mut state = self.write_state();
        if state.frozen {
            return Ok(());
        }
        self.timeline().mark_out(OutPoint::Reboot, start);
        let mut freeze = Spans::new();
        let mut clock = RunClock::new(&mut freeze);
        let mut sessions = self.sessions();
        let Some(root) = state.root.as_mut() else {
            return Err(ENODEV);
        };
        let head = match sessions.freeze(&mut clock) {
            Ok(head) => head,
            Err(e) => {
                root.set_sessions_pa(0);
                return Err(e);
            }
        };
        root.set_sessions_pa(head);
        flb_table::write(&self.read_registry(), root.flbs.bytes_mut());
        state.frozen = true;
        let end = timeline::now();
        clock.close(end);
        drop(clock);
        self.timeline().serialized(end, &freeze);
        Ok(())
    }
}

#[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
impl Luo {
    /// Calls `f` with the handover the reboot path wrote (the root, the blocks of the session
    /// chain, the FLB table), for the test handler to corrupt on purpose before the kexec (see
    /// `test_handler::luo_rs_test_corrupt`); does nothing if it wrote none.
    pub(crate) fn with_written(
        &self,
        f: impl FnOnce(&mut [u8], &mut [kernel::kho::PreservedPage], &mut [u8]),
    ) {
        let mut state = self.write_state();
        let mut sessions = self.sessions();
        if !state.frozen {
            return;
        }
        let Some(root) = state.root.as_mut() else {
            return;
        };
        f(
            root.ser.page_mut().bytes_mut(),
            sessions.blocks_mut(),
            root.flbs.bytes_mut(),
        );
    }
}

/// What the previous kernel handed over.
#[derive(Default)]
pub(crate) struct Incoming {
    liveupdate_num: u64,
    sessions: KVVec<InSession>,
    /// Files of the sessions that were dropped, to be finished (not retrieved) by their
    /// handlers: a corrupt session is given up on, but what its files hold is given back.
    dropped: KVVec<InFile>,
    /// `None` if there was no usable FLB table.
    flbs: Option<KVVec<InFlb>>,
}

/// The parts of an [`Incoming`]: the live update number, the sessions, the files of dropped
/// sessions, and the FLB table.
pub(crate) type IncomingParts = (u64, KVVec<InSession>, KVVec<InFile>, Option<KVVec<InFlb>>);

impl Incoming {
    /// Takes the handover apart.
    pub(crate) fn into_parts(self) -> IncomingParts {
        (self.liveupdate_num, self.sessions, self.dropped, self.flbs)
    }
}

/// LUO's KHO subtree, holding the root of the handover (`struct luo_ser`).
// SAFETY: `LUO_KHO_ENTRY_NAME` ("LUO") is the name the luo-v5 ABI gives to LUO's root. A kernel
// builds one LUO (not the C one, `luo_core.c`, with `CONFIG_LIVEUPDATE_RUST`), and of this one
// only `read_incoming` retrieves it; no other code of this kernel uses that name.
const LUO_SUBTREE: SubtreeName = unsafe { SubtreeName::new(abi::KHO_ENTRY_NAME) };

/// Early boot: reads the previous kernel's handover. Never fails: whatever does not validate
/// is dropped with a warning.
pub(crate) fn read_incoming() -> Incoming {
    // The root page stays for the kernel's life: KHO's debugfs shows it.
    let (b, len) = match IncomingPage::retrieve_subtree(&LUO_SUBTREE) {
        Ok(v) => v,
        Err(e) if e == ENOENT => return Incoming::default(),
        Err(e) => {
            pr_warn!(
                "rejected handover: cannot retrieve the LUO state: {:?}\n",
                e
            );
            return Incoming::default();
        }
    };
    parse(b.get(..len).unwrap_or(b), &mut KhoPages)
}

/// Parses the previous kernel's handover: `root`, the bytes of its `struct luo_ser`, and the
/// pages it points to, taken from `src`. Never fails: whatever does not validate is dropped
/// with a warning.
pub(crate) fn parse<S: PageSource>(root: &[u8], src: &mut S) -> Incoming {
    let mut inc = Incoming::default();
    if root.len() < abi::LUO_SER_SIZE {
        pr_warn!(
            "rejected handover: LUO state is too small ({} < {})\n",
            root.len(),
            abi::LUO_SER_SIZE
        );
        return inc;
    }
    if !abi::compatible_matches(root) {
        pr_warn!("rejected handover: LUO state is incompatible with 'luo-v5'\n");
        return inc;
    }
    inc.liveupdate_num = get_u64(root, luo_ser::LIVEUPDATE_NUM);
    pr_info!(
        "Retrieved live update data, liveupdate number: {}\n",
        inc.liveupdate_num
    );
    let sessions_pa = IncomingPhys(get_u64(root, luo_ser::SESSIONS_PA));
    let flbs_pa = IncomingPhys(get_u64(root, luo_ser::FLBS_PA));

    if let Err(e) = InSession::read_list(src, sessions_pa, &mut inc.sessions, &mut inc.dropped) {
        pr_warn!(
            "session list is unusable ({}): kept the {} sessions read before\n",
            e,
            inc.sessions.len()
        );
    }
    match flb_table::read(src, flbs_pa) {
        Ok(flbs) => inc.flbs = flbs,
        Err(e) => pr_warn!("dropped all FLBs: {}\n", e),
    }
    inc
}

#[kunit_tests(luo_rs_handover)]
mod tests {
    //! The parser over made-up pages: a sound handover, and every way the previous kernel's
    //! data can be corrupt that the kexec tests (`luo_rs_corrupt`) also make at reboot.

    use super::*;
    use crate::{
        abi::{
            file_ser,
            flb_ser,
            put_str,
            session_ser, //
        },
        block::{
            per_block,
            HEADER_SIZE, //
        },
        name::NAME_LEN,
        parse::PageBytes, //
    };
    use kernel::{
        kho::bytes,
        page::PAGE_SIZE, //
    };

    /// Where the made-up pages are: page-aligned, above what a test VM has.
    const BASE: u64 = 0x10_0000_0000;
    const HANDLER: &[u8] = b"memfd-v2";
    const FLB: &[u8] = b"test-flb";

    /// Pages made up for a test, each at its own address; a page can be taken once, as KHO
    /// restores a preserved page once.
    struct Pages {
        pages: KVec<(u64, Option<KVec<u8>>)>,
    }

    impl PageBytes for KVec<u8> {
        fn bytes(&self) -> &[u8] {
            self
        }
    }

    impl PageSource for Pages {
        type Page = KVec<u8>;

        fn take(&mut self, phys: IncomingPhys) -> Result<KVec<u8>> {
            self.pages
                .iter_mut()
                .find(|(pa, _)| *pa == phys.0)
                .and_then(|(_, p)| p.take())
                .ok_or(EINVAL)
        }
    }

    impl Pages {
        fn alloc(&mut self) -> Result<u64> {
            let pa = BASE + (self.pages.len() * PAGE_SIZE) as u64;
            let page = KVec::from_elem(0u8, PAGE_SIZE, GFP_KERNEL)?;
            self.pages.push((pa, Some(page)), GFP_KERNEL)?;
            Ok(pa)
        }

        fn get(&mut self, pa: u64) -> Result<&mut [u8]> {
            self.pages
                .iter_mut()
                .find(|(p, _)| *p == pa)
                .and_then(|(_, p)| p.as_deref_mut())
                .ok_or(ENOENT)
        }

        /// Pages the parser did not take.
        fn left(&self) -> usize {
            self.pages.iter().filter(|(_, p)| p.is_some()).count()
        }

        /// Writes a chain of `n` entries of `size` bytes, filled by `fill`: its address.
        fn write_chain(
            &mut self,
            size: usize,
            n: usize,
            mut fill: impl FnMut(usize, &mut [u8]),
        ) -> Result<u64> {
            let per = per_block(size);
            let mut pas = KVec::new();
            for _ in 0..n.div_ceil(per) {
                pas.push(self.alloc()?, GFP_KERNEL)?;
            }
            for (b, &pa) in pas.iter().enumerate() {
                let next = pas.get(b + 1).copied().unwrap_or(0);
                let count = per.min(n - b * per);
                let page = self.get(pa)?;
                put_u64(page, 0, next);
                put_u64(page, 8, count as u64);
                for i in 0..count {
                    let off = HEADER_SIZE + i * size;
                    fill(b * per + i, &mut page[off..off + size]);
                }
            }
            Ok(pas.first().copied().unwrap_or(0))
        }
    }

    /// A handover as the previous kernel wrote it.
    struct Image {
        root: [u8; abi::LUO_SER_SIZE],
        pages: Pages,
    }

    impl Image {
        /// Session `i` is `s<i>` with `files[i]` files; file `j` has token `j + 1` and data
        /// `data(i, j)`. One FLB, with two users.
        fn new(files: &[usize]) -> Result<Self> {
            let mut pages = Pages { pages: KVec::new() };
            let mut lists = KVec::new();
            for (i, &n) in files.iter().enumerate() {
                let pa = pages.write_chain(file_ser::SIZE, n, |j, e| {
                    put_str(&mut e[..abi::COMPAT_LEN], HANDLER);
                    put_u64(e, file_ser::DATA, data(i, j));
                    put_u64(e, file_ser::TOKEN, j as u64 + 1);
                })?;
                lists.push(pa, GFP_KERNEL)?;
            }
            let sessions = pages.write_chain(session_ser::SIZE, files.len(), |i, e| {
                // The page is zeroed: the name is NUL padded.
                if let Ok(name) = kernel::str::CString::try_from_fmt(fmt!("s{i}")) {
                    e[..name.to_bytes().len()].copy_from_slice(name.to_bytes());
                }
                put_u64(e, session_ser::FILES, lists.get(i).copied().unwrap_or(0));
                put_u64(
                    e,
                    session_ser::COUNT,
                    files.get(i).copied().unwrap_or(0) as u64,
                );
            })?;
            let flbs = pages.alloc()?;
            let t = pages.get(flbs)?;
            put_u64(t, 0, 1);
            put_u64(t, 8, 1);
            let e = &mut t[flb_ser::HEADER..flb_ser::HEADER + flb_ser::SIZE];
            put_str(&mut e[..abi::FLB_COMPAT_LEN], FLB);
            put_u64(e, flb_ser::DATA, 0xf1b);
            put_u64(e, flb_ser::COUNT, 2);
            let mut root = [0u8; abi::LUO_SER_SIZE];
            root[..8].copy_from_slice(&abi::COMPATIBLE);
            put_u64(&mut root, luo_ser::LIVEUPDATE_NUM, 7);
            put_u64(&mut root, luo_ser::SESSIONS_PA, sessions);
            put_u64(&mut root, luo_ser::FLBS_PA, flbs);
            Ok(Self { root, pages })
        }

        /// The first block of the session chain.
        fn sessions(&mut self) -> Result<&mut [u8]> {
            let pa = get_u64(&self.root, luo_ser::SESSIONS_PA);
            self.pages.get(pa)
        }

        /// Session entry `i` of the first block.
        fn session(&mut self, i: usize) -> Result<&mut [u8]> {
            let off = HEADER_SIZE + i * session_ser::SIZE;
            Ok(&mut self.sessions()?[off..off + session_ser::SIZE])
        }

        /// The FLB table.
        fn flbs(&mut self) -> Result<&mut [u8]> {
            let pa = get_u64(&self.root, luo_ser::FLBS_PA);
            self.pages.get(pa)
        }

        fn parse(&mut self) -> Incoming {
            parse(&self.root, &mut self.pages)
        }
    }

    fn data(session: usize, file: usize) -> u64 {
        ((session as u64) << 32) | file as u64
    }

    /// The names of the sessions kept, as numbers (`s<n>`), in order.
    fn kept(inc: &Incoming) -> KVec<usize> {
        let mut out = KVec::new();
        for s in inc.sessions.iter() {
            let v = core::str::from_utf8(s.name().as_bytes().get(1..).unwrap_or(&[]))
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            let _ = out.push(v, GFP_KERNEL);
        }
        out
    }

    #[test]
    fn a_sound_handover_is_read_whole() -> Result {
        let mut img = Image::new(&[1, 2, 0])?;
        let inc = img.parse();
        assert_eq!(inc.liveupdate_num, 7);
        assert_eq!(&kept(&inc)[..], &[0, 1, 2]);
        for (i, s) in inc.sessions.iter().enumerate() {
            for (j, f) in s.files().iter().enumerate() {
                assert_eq!(f.token(), j as u64 + 1);
                assert_eq!(f.data(), data(i, j));
                assert_eq!(
                    abi::get_str(f.compat()).map(|c| c.to_bytes()),
                    Some(HANDLER)
                );
            }
        }
        assert_eq!(inc.sessions[1].files().len(), 2);
        assert_eq!(inc.dropped.len(), 0);
        let flbs = inc.flbs.as_deref().unwrap_or(&[]);
        assert_eq!(flbs.len(), 1);
        assert!(flbs[0].is(c"test-flb"));
        assert_eq!((flbs[0].data(), flbs[0].count()), (0xf1b, 2));
        // Every page was taken, so every page is freed.
        assert_eq!(img.pages.left(), 0);
        Ok(())
    }

    #[test]
    fn chains_of_several_blocks_are_read_in_order() -> Result {
        // 51 sessions fill a block and 63 files fill a block: both chains take two blocks.
        let mut files = KVec::from_elem(0usize, per_block(session_ser::SIZE) + 2, GFP_KERNEL)?;
        files[1] = per_block(file_ser::SIZE) + 1;
        let mut img = Image::new(&files)?;
        let inc = img.parse();
        let kept = kept(&inc);
        assert_eq!(kept.len(), files.len());
        assert!(kept.iter().enumerate().all(|(i, &n)| i == n));
        let f = inc.sessions[1].files();
        assert_eq!(f.len(), per_block(file_ser::SIZE) + 1);
        assert!(f.iter().enumerate().all(|(j, f)| f.data() == data(1, j)));
        assert_eq!(img.pages.left(), 0);
        Ok(())
    }

    /// Mode 1 of the kexec tests.
    #[test]
    fn a_wrong_compatible_string_rejects_everything() -> Result {
        let mut img = Image::new(&[1, 1])?;
        img.root[..8].copy_from_slice(b"luo-v0\0\0");
        let inc = img.parse();
        assert_eq!(inc.liveupdate_num, 0);
        assert_eq!(inc.sessions.len(), 0);
        assert!(inc.flbs.is_none());
        Ok(())
    }

    #[test]
    fn a_short_root_is_rejected() -> Result {
        let mut img = Image::new(&[1])?;
        let inc = parse(&img.root[..abi::LUO_SER_SIZE - 1], &mut img.pages);
        assert_eq!((inc.sessions.len(), inc.flbs.is_none()), (0, true));
        Ok(())
    }

    /// Modes 2 and 9: a session whose file count is not its list's is dropped, and the files
    /// it has go to be finished.
    #[test]
    fn a_wrong_file_count_drops_that_session() -> Result {
        for count in [2, 0, u64::MAX] {
            let mut img = Image::new(&[1, 1, 1])?;
            put_u64(img.session(0)?, session_ser::COUNT, count);
            let inc = img.parse();
            assert_eq!(&kept(&inc)[..], &[1, 2]);
            assert_eq!(inc.dropped.len(), 1);
            assert_eq!(inc.dropped[0].data(), data(0, 0));
        }
        Ok(())
    }

    #[test]
    fn a_file_count_without_files_drops_that_session() -> Result {
        let mut img = Image::new(&[0, 1])?;
        put_u64(img.session(0)?, session_ser::COUNT, 1);
        let inc = img.parse();
        assert_eq!(&kept(&inc)[..], &[1]);
        Ok(())
    }

    /// Mode 3: a chain that loops back is caught (its first page cannot be taken twice), and
    /// the sessions read before are kept.
    #[test]
    fn a_looping_chain_keeps_what_was_read() -> Result {
        let mut img = Image::new(&[1, 1, 1])?;
        let head = get_u64(&img.root, luo_ser::SESSIONS_PA);
        put_u64(img.sessions()?, 0, head);
        let inc = img.parse();
        assert_eq!(&kept(&inc)[..], &[0, 1, 2]);
        Ok(())
    }

    /// Mode 4: a file list at an address that is no page of the handover.
    #[test]
    fn files_at_a_wild_address_drop_that_session() -> Result {
        let mut img = Image::new(&[1, 1, 1])?;
        put_u64(img.session(0)?, session_ser::FILES, 0x1000);
        let inc = img.parse();
        assert_eq!(&kept(&inc)[..], &[1, 2]);
        assert_eq!(inc.dropped.len(), 0);
        Ok(())
    }

    /// Mode 5: a name without its NUL, and an empty name.
    #[test]
    fn a_bad_name_drops_that_session() -> Result {
        for fill in [b'X', 0] {
            let mut img = Image::new(&[1, 1, 1])?;
            img.session(1)?[..NAME_LEN].fill(fill);
            let inc = img.parse();
            assert_eq!(&kept(&inc)[..], &[0, 2]);
            assert_eq!(inc.dropped.len(), 1);
        }
        Ok(())
    }

    #[test]
    fn a_duplicate_name_drops_the_later_session() -> Result {
        let mut img = Image::new(&[1, 1, 1])?;
        let first: [u8; NAME_LEN] = bytes::get(img.session(0)?, 0).ok_or(EINVAL)?;
        img.session(2)?[..NAME_LEN].copy_from_slice(&first);
        let inc = img.parse();
        assert_eq!(&kept(&inc)[..], &[0, 1]);
        assert_eq!(inc.dropped.len(), 1);
        assert_eq!(inc.dropped[0].data(), data(2, 0));
        Ok(())
    }

    #[test]
    fn a_duplicate_token_drops_that_session() -> Result {
        let mut img = Image::new(&[1, 3])?;
        let list = get_u64(img.session(1)?, session_ser::FILES);
        let b = img.pages.get(list)?;
        put_u64(b, HEADER_SIZE + 2 * file_ser::SIZE + file_ser::TOKEN, 1);
        let inc = img.parse();
        assert_eq!(&kept(&inc)[..], &[0]);
        // The two files read before the duplicate are finished.
        assert_eq!(inc.dropped.len(), 2);
        Ok(())
    }

    /// Modes 6 and 12: a table header out of range, or a table at no page of the handover.
    #[test]
    fn a_bad_flb_table_drops_every_flb() -> Result {
        for (pgcnt, count, moved) in [(1, 1000, false), (2, 1, false), (1, 1, true)] {
            let mut img = Image::new(&[1])?;
            put_u64(img.flbs()?, 0, pgcnt);
            put_u64(img.flbs()?, 8, count);
            if moved {
                put_u64(&mut img.root, luo_ser::FLBS_PA, 0x1234);
            }
            let inc = img.parse();
            assert!(inc.flbs.is_none());
            assert_eq!(&kept(&inc)[..], &[0]);
        }
        Ok(())
    }

    /// Mode 8: an FLB user count of 0 or beyond a `refcount_t`.
    #[test]
    fn a_bad_flb_user_count_drops_that_flb() -> Result {
        for count in [0, i32::MAX as u64 + 1, u64::MAX] {
            let mut img = Image::new(&[1])?;
            put_u64(img.flbs()?, flb_ser::HEADER + flb_ser::COUNT, count);
            let inc = img.parse();
            assert_eq!(inc.flbs.as_ref().map(|f| f.len()), Some(0));
            assert_eq!(&kept(&inc)[..], &[0]);
        }
        Ok(())
    }

    /// Mode 7: the number is the previous kernel's business; it wraps when incremented.
    #[test]
    fn any_liveupdate_number_is_taken() -> Result {
        let mut img = Image::new(&[1])?;
        put_u64(&mut img.root, luo_ser::LIVEUPDATE_NUM, u64::MAX);
        let inc = img.parse();
        assert_eq!(inc.liveupdate_num, u64::MAX);
        assert_eq!(&kept(&inc)[..], &[0]);
        Ok(())
    }

    /// Modes 10 and 11: a session list at no page of the handover, or a block whose count is
    /// out of range, gives no session.
    #[test]
    fn a_bad_session_list_gives_no_session() -> Result {
        for (pa, count) in [(Some(0x7fff_ffff_f000), None), (None, Some(u64::MAX))] {
            let mut img = Image::new(&[1, 1])?;
            if let Some(pa) = pa {
                put_u64(&mut img.root, luo_ser::SESSIONS_PA, pa);
            }
            if let Some(count) = count {
                put_u64(img.sessions()?, 8, count);
            }
            let inc = img.parse();
            assert_eq!(inc.sessions.len(), 0);
            assert_eq!(inc.flbs.as_ref().map(|f| f.len()), Some(1));
        }
        Ok(())
    }

    /// The C LUO can leave an empty block at the end of a chain; it holds nothing.
    #[test]
    fn an_empty_last_block_is_accepted() -> Result {
        let mut img = Image::new(&[1, 1])?;
        let empty = img.pages.alloc()?;
        put_u64(img.sessions()?, 0, empty);
        let inc = img.parse();
        assert_eq!(&kept(&inc)[..], &[0, 1]);
        assert_eq!(img.pages.left(), 0);
        // But an empty first block is corrupt.
        let mut img = Image::new(&[1])?;
        put_u64(img.sessions()?, 8, 0);
        assert_eq!(img.parse().sessions.len(), 0);
        Ok(())
    }
}
