// SPDX-License-Identifier: GPL-2.0

//! The files of one session.
//!
//! Files are kept in preservation order (the order of the handover) in a vector, with an index
//! by token so that PRESERVE_FD's duplicate check and RETRIEVE_FD are O(log n). Files leave a
//! set only all together (closing an outgoing session, finishing an incoming one), so the
//! vector never has holes.

use crate::{
    abi::{
        self,
        file_ser,
        get_u64,
        put_u64, //
    },
    block::{
        read_chain,
        BlockSet, //
    },
    orchestrator::Luo,
    parse::{
        PageSource,
        ParseError,
        ParseResult, //
    },
    registered::PrivateData,
    registry::Handler,
    timeline::{
        self,
        Phase,
        RunClock,
        Spans, //
    },
    token_index::TokenIndex, //
};
use kernel::{
    fs::{
        File,
        LocalFile, //
    },
    kho::{
        bytes,
        IncomingPhys, //
    },
    liveupdate::RetrieveStatus,
    module::ModuleRef,
    prelude::*,
    rbtree::{
        RBTree,
        RBTreeNodeReservation, //
    },
    sync::{
        aref::ARef,
        Arc, //
    }, //
};

/// Size of one serialized file entry (`struct luo_file_ser`).
pub(crate) const FILE_SER_SIZE: usize = file_ser::SIZE;

/// A file from the previous kernel, as read from the handover.
pub(crate) struct InFile {
    compat: [u8; abi::COMPAT_LEN],
    data: u64,
    token: u64,
}

impl InFile {
    /// The compatible string of the file's handler (NUL-padded, checked to hold a NUL).
    pub(crate) fn compat(&self) -> &[u8; abi::COMPAT_LEN] {
        &self.compat
    }

    /// The token userspace gave the file.
    pub(crate) fn token(&self) -> u64 {
        self.token
    }

    /// The handler's handle.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn data(&self) -> u64 {
        self.data
    }

    /// Reads a session's file list (`count` entries in the chain at `head`) into `files`. On
    /// failure, `files` holds the files read before the list went bad (each with a valid
    /// handler name and a token of its own).
    pub(crate) fn read_list<S: PageSource>(
        src: &mut S,
        head: IncomingPhys,
        count: u64,
        files: &mut KVVec<InFile>,
    ) -> ParseResult {
        if head.0 == 0 {
            return if count == 0 {
                Ok(())
            } else {
                Err(ParseError::Corrupt("file count without files"))
            };
        }
        let mut tokens: RBTree<u64, ()> = RBTree::new();
        let n = read_chain(src, head, FILE_SER_SIZE, |_, e| {
            let compat: [u8; abi::COMPAT_LEN] =
                bytes::get(e, 0).ok_or(ParseError::Corrupt("short entry"))?;
            if abi::get_str(&compat).is_none() {
                return Err(ParseError::Corrupt(
                    "a file's handler name is empty or not NUL-terminated",
                ));
            }
            let token = get_u64(e, file_ser::TOKEN);
            if tokens.get(&token).is_some() {
                return Err(ParseError::Corrupt("duplicate file token"));
            }
            tokens.try_create_and_insert(token, (), GFP_KERNEL)?;
            files.push(
                InFile {
                    compat,
                    data: get_u64(e, file_ser::DATA),
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
}

/// One preserved file.
pub(crate) struct LuoFile {
    /// The handler's entry when the file was preserved (outgoing files: the FLBs it holds) or
    /// when the incoming sessions were built (incoming files: see [`FileSet::finish`]).
    handler: Arc<Handler>,
    token: u64,
    /// The handler's 64-bit handle, written into the handover.
    data: u64,
    /// The file: always set for outgoing files, set once retrieved for incoming ones.
    file: Option<ARef<File>>,
    /// The handler's per-file state (outgoing files only).
    state: Option<PrivateData>,
    /// Incoming files: what happened when userspace asked for the file.
    retrieve: RetrieveStatus,
    /// The file's id (`get_id`) is in `Luo::preserved` on this file's behalf, so the file
    /// releases it when it leaves its set: always for outgoing files; for incoming ones once
    /// retrieved, unless another file already held that id (or memory ran out).
    id_claimed: bool,
    /// A reference on the handler's module, held as long as the file: it keeps the handler
    /// valid. Given back last (see [`FileSet::unpreserve_all`] and [`FileSet::finish`]).
    owner: ModuleRef,
}

impl LuoFile {
    /// File `f` of the previous kernel, not retrieved yet, of `handler`, holding `owner`, a
    /// reference on that handler's module.
    pub(crate) fn incoming(f: InFile, handler: Arc<Handler>, owner: ModuleRef) -> Self {
        Self {
            handler,
            token: f.token,
            data: f.data,
            file: None,
            state: None,
            retrieve: RetrieveStatus::NotRetrieved,
            id_claimed: false,
            owner,
        }
    }
}

impl LuoFile {
    /// Finishes an incoming file: the handler's `finish`, then the FLB puts.
    fn finish(self, luo: &Luo) {
        self.handler
            .ops()
            .finish(self.file.as_deref(), self.data, self.retrieve);
        {
            // As `luo_flb_file_finish()`: the registry held for reading across the puts.
            let reg = luo.read_registry();
            if let Some(h) = reg.current(&self.handler) {
                for flb in h.flbs().iter().rev() {
                    flb.put_incoming();
                }
            }
        }
        if let (true, Some(file)) = (self.id_claimed, self.file.as_deref()) {
            luo.release_id(self.handler.ops().get_id(file));
        }
        // As the C LUO: LUO's reference on the file, then the module reference.
        let LuoFile { file, owner, .. } = self;
        drop(file);
        drop(owner);
    }

    /// Finishes a file of a session dropped at boot, as a file that is never retrieved is
    /// finished (`can_finish` asked first: a file its handler cannot finish is only dropped).
    pub(crate) fn finish_dropped(self, luo: &Luo) {
        if self
            .handler
            .ops()
            .can_finish(None, self.data, RetrieveStatus::NotRetrieved)
        {
            self.finish(luo);
        }
    }
}

/// What PRESERVE_FD takes before the handler's `preserve`, once it holds a reference on the
/// handler's module: the file's id (system-wide, `EBUSY` if taken) and a reference on each FLB
/// linked to the handler, in link order. Dropped, it gives back what it took, in reverse order;
/// kept, it is owned by the preserved file until `unpreserve_all`.
struct Claim<'a> {
    luo: &'a Luo,
    handler: &'a Handler,
    id: Option<usize>,
    /// How many of `handler.flbs` were preserved.
    flbs: usize,
}

impl<'a> Claim<'a> {
    fn take(luo: &'a Luo, handler: &'a Handler, file: &File) -> Result<Self> {
        let mut claim = Self {
            luo,
            handler,
            id: None,
            flbs: 0,
        };
        let id = handler.ops().get_id(file);
        luo.claim_id(id)?;
        claim.id = Some(id);
        for flb in handler.flbs().iter() {
            flb.file_preserve()?;
            claim.flbs += 1;
        }
        Ok(claim)
    }

    /// The file is preserved: what was taken now belongs to it.
    fn keep(self) {
        core::mem::forget(self);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        for flb in self.handler.flbs().iter().take(self.flbs).rev() {
            flb.put_outgoing();
        }
        if let Some(id) = self.id {
            self.luo.release_id(id);
        }
    }
}

/// A session's files: none until the first PRESERVE_FD (or an incoming session with files),
/// then a [`Files`] of their own, so that a session without files is a third smaller (its
/// `Arc` fits `kmalloc-192`, as the C LUO's session does) and closes without freeing anything.
///
/// # Invariants
///
/// `files` is `None` or holds at least one file, except between a PRESERVE_FD that failed and
/// its clean-up in [`FileSet::preserve`].
pub(crate) struct FileSet {
    files: Option<KBox<Files>>,
}

impl FileSet {
    /// No file.
    pub(crate) const fn new() -> Self {
        // INVARIANT: None.
        Self { files: None }
    }

    /// The files of an incoming session, all at once, in the previous kernel's order. `EEXIST`
    /// if two have the same token; the files are then dropped, which gives their references back
    /// to their handlers' modules.
    pub(crate) fn incoming(files: KVVec<LuoFile>) -> Result<Self> {
        if files.is_empty() {
            return Ok(Self::new());
        }
        let files = KBox::new(Files::incoming(files)?, GFP_KERNEL)?;
        // INVARIANT: At least one file.
        Ok(Self { files: Some(files) })
    }

    /// Reboot path: see [`Files::freeze`]; `(0, 0)` for no file.
    pub(crate) fn freeze(&mut self, clock: &mut RunClock<'_>) -> Result<(u64, u64)> {
        match &mut self.files {
            Some(f) => f.freeze(clock),
            None => Ok((0, 0)),
        }
    }

    /// Reboot path: undoes [`FileSet::freeze`] after a later failure.
    pub(crate) fn unfreeze(&mut self) {
        if let Some(f) = &mut self.files {
            f.unfreeze();
        }
    }

    /// PRESERVE_FD: see [`Files::preserve`]. On failure nothing changes.
    pub(crate) fn preserve(&mut self, luo: &Luo, token: u64, fd: i32) -> Result {
        if self.files.is_none() {
            self.files = Some(KBox::new(Files::new(), GFP_KERNEL)?);
        }
        let Some(files) = &mut self.files else {
            return Err(ENOMEM);
        };
        let res = files.preserve(luo, token, fd);
        if files.len() == 0 {
            // INVARIANT: Back to no file.
            self.files = None;
        }
        res
    }

    /// Unpreserves every file, newest first (an outgoing session was closed).
    #[inline]
    pub(crate) fn unpreserve_all(&mut self, luo: &Luo) {
        if let Some(mut f) = self.files.take() {
            f.unpreserve_all(luo);
        }
    }

    /// RETRIEVE_FD: see [`Files::retrieve`].
    pub(crate) fn retrieve(&mut self, luo: &Luo, token: u64) -> Result<ARef<File>> {
        self.files.as_mut().ok_or(ENOENT)?.retrieve(luo, token)
    }

    /// FINISH: see [`Files::finish`].
    #[inline]
    pub(crate) fn finish(&mut self, luo: &Luo) -> Result {
        let Some(f) = &mut self.files else {
            return Ok(());
        };
        f.finish(luo)?;
        // INVARIANT: Finished: no file left.
        self.files = None;
        Ok(())
    }
}

/// The files of a session. Protected by the session's mutex.
///
/// # Invariants
///
/// `tokens` maps the token of every file of `files` to its index in `files`, and has no other
/// entry.
struct Files {
    /// Files in preservation order. Grown by doubling, so a PRESERVE_FD allocates for it only
    /// now and then.
    files: KVVec<LuoFile>,
    /// Index in `files` of the file with each token.
    tokens: TokenIndex,
    /// Handover pages reserved for the outgoing entries.
    blocks: BlockSet,
}

impl Files {
    fn new() -> Self {
        // INVARIANT: Both are empty.
        Self {
            files: KVVec::new(),
            tokens: TokenIndex::new(),
            blocks: BlockSet::new(FILE_SER_SIZE),
        }
    }

    /// The files of an incoming session, all at once, in the previous kernel's order. `EEXIST`
    /// if two have the same token; the files are then dropped, which gives their references back
    /// to their handlers' modules.
    fn incoming(files: KVVec<LuoFile>) -> Result<Self> {
        let tokens = TokenIndex::sorted(files.iter().map(|f| f.token))?;
        // INVARIANT: The index was built from `files`, position by position.
        Ok(Self {
            files,
            tokens,
            blocks: BlockSet::new(FILE_SER_SIZE),
        })
    }

    /// Number of files.
    fn len(&self) -> usize {
        self.files.len()
    }

    /// Reboot path: freezes every file in preservation order and writes the file entries
    /// into the reserved blocks. Returns `(first block PA, count)`.
    ///
    /// If a freeze fails, the files frozen before it are unfrozen and its error returned.
    fn freeze(&mut self, clock: &mut RunClock<'_>) -> Result<(u64, u64)> {
        if self.files.is_empty() {
            // What an empty chain's writer gives, without setting one up for each empty
            // session on the reboot path.
            return Ok((0, 0));
        }
        let mut frozen = 0;
        let mut res = Ok(());
        for f in self.files.iter_mut() {
            clock.file(&f.handler);
            if let (Some(file), Some(state)) = (&f.file, &mut f.state) {
                if let Err(e) = f.handler.ops().freeze(file, &mut f.data, state) {
                    pr_warn!(
                        "Freeze failed for token[{:#x}] handler[{}] err[{:?}]\n",
                        f.token,
                        f.handler.ops().compatible(),
                        e
                    );
                    res = Err(e);
                    break;
                }
            }
            frozen += 1;
        }
        if let Err(e) = res {
            self.unfreeze_first(frozen);
            return Err(e);
        }
        let count = self.len();
        match self.write_entries() {
            Ok(head) => Ok((head, count as u64)),
            Err(e) => {
                self.unfreeze_first(count);
                Err(e)
            }
        }
    }

    /// Reboot path: writes an entry for every file into the reserved blocks, in preservation
    /// order. Returns the first block's address.
    fn write_entries(&mut self) -> Result<u64> {
        let mut w = self.blocks.writer(self.files.len())?;
        for f in self.files.iter() {
            // Written in place, every byte (the fields tile the entry: see `abi`), so no
            // string, memset or second copy per file.
            let e = w.next_slot::<FILE_SER_SIZE>().ok_or(ENOSPC)?;
            f.handler.write_compat(e);
            put_u64(e, file_ser::DATA, f.data);
            put_u64(e, file_ser::TOKEN, f.token);
        }
        Ok(w.head())
    }

    /// Reboot path: undoes [`Files::freeze`] after a later failure.
    fn unfreeze(&mut self) {
        let n = self.len();
        self.unfreeze_first(n);
    }

    fn unfreeze_first(&mut self, n: usize) {
        for f in self.files.iter_mut().take(n) {
            if let (Some(file), Some(state)) = (&f.file, &mut f.state) {
                f.handler.ops().unfreeze(file, f.data, state);
            }
        }
    }

    /// Makes room for one more file: afterwards [`Files::insert`] cannot fail.
    fn reserve(&mut self) -> Result<RBTreeNodeReservation<u64, usize>> {
        self.files.reserve(1, GFP_KERNEL)?;
        RBTreeNodeReservation::new(GFP_KERNEL)
    }

    /// Adds `f`, whose token is not in the set. After a [`Files::reserve`] with no change to
    /// the set since, there is room; otherwise `f` is given back.
    fn insert(
        &mut self,
        f: LuoFile,
        node: RBTreeNodeReservation<u64, usize>,
    ) -> Result<(), LuoFile> {
        let index = self.files.len();
        let token = f.token;
        self.files.push_within_capacity(f).map_err(|e| e.0)?;
        // INVARIANT: `token` was not in the set, and the file is at `index`.
        if self.tokens.insert(token, index, node).is_err() {
            // Not an outgoing set: take the file back out.
            return self.files.pop().map_or(Ok(()), Err);
        }
        Ok(())
    }

    /// PRESERVE_FD: preserves the file behind `fd` under `token`.
    ///
    /// The checks run in the C LUO's order: duplicate token (`EEXIST`), handover room
    /// (`ENOMEM`/`ENOSPC`), bad fd (`EBADF`), no handler (`ENOENT`), already preserved
    /// anywhere (`EBUSY`), FLB and handler errors. On failure nothing changes.
    fn preserve(&mut self, luo: &Luo, token: u64, fd: i32) -> Result {
        if self.tokens.get(token).is_some() {
            return Err(EEXIST);
        }
        let count = self.len();
        self.blocks.grow(count + 1)?;
        let res = self.preserve_new(luo, token, fd);
        if res.is_err() {
            self.blocks.shrink(count);
        }
        res
    }

    fn preserve_new(&mut self, luo: &Luo, token: u64, fd: i32) -> Result {
        let fd = u32::try_from(fd).map_err(|_| EBADF)?;
        let file = LocalFile::fget(fd)?;
        // SAFETY: This runs in the ioctl handler of a session file, which `ioctl(2)` took with
        // `fdget()`, not `fdget_pos()`, and LUO never calls `fdget_pos()`: there is no active
        // `fdget_pos` call on this thread.
        let file = unsafe { LocalFile::assume_no_fdget_pos(file) };

        // Held for reading from the lookup, which calls `can_preserve`, to the claim, as the C
        // LUO holds its register rwsem: the handler cannot be unregistered (and its module
        // unloaded) before the file holds a reference on its module, and the FLBs the claim
        // preserves are the ones linked to it now.
        let reg = luo.read_registry();
        let handler = reg.find_for_file(&file).ok_or(ENOENT)?;
        // On every error path below, `claim` is dropped before `owner`: the module reference
        // goes last.
        let owner = handler.ops().try_get_owner().ok_or(ENOENT)?;
        let claim = Claim::take(luo, &handler, &file)?;
        drop(reg);
        let node = self.reserve()?;
        let (data, state) = handler.ops().preserve(&file)?;
        let f = LuoFile {
            handler: handler.clone(),
            token,
            data,
            file: Some(file),
            state: Some(state),
            retrieve: RetrieveStatus::NotRetrieved,
            // The claim, kept below, holds the id.
            id_claimed: true,
            owner,
        };
        // Cannot fail: `reserve` made room. If it did, undo the preserve and give back what
        // the claim took, then the module reference.
        if let Err(f) = self.insert(f, node) {
            let LuoFile {
                file,
                state,
                data,
                owner,
                ..
            } = f;
            if let (Some(file), Some(state)) = (file, state) {
                handler.ops().unpreserve(&file, data, state);
            }
            drop(claim);
            drop(owner);
            return Err(ENOMEM);
        }
        claim.keep();
        Ok(())
    }

    /// Unpreserves every file, newest first (an outgoing session was closed). Out of line: a
    /// session without files does not pay for its stack frame.
    #[inline(never)]
    fn unpreserve_all(&mut self, luo: &Luo) {
        if self.files.is_empty() {
            return;
        }
        // INVARIANT: The index goes first, in one go (no lookup or rebalancing per file), and
        // every file below, all under this one `&mut self`.
        self.tokens = TokenIndex::new();
        while let Some(f) = self.files.pop() {
            let LuoFile {
                handler,
                file,
                state,
                data,
                owner,
                ..
            } = f;
            if let (Some(file), Some(state)) = (file, state) {
                handler.ops().unpreserve(&file, data, state);
                for flb in handler.flbs().iter().rev() {
                    flb.put_outgoing();
                }
                if f.id_claimed {
                    luo.release_id(handler.ops().get_id(&file));
                }
            }
            // Last: the handler may not be called without it.
            drop(owner);
        }
        self.files = KVVec::new();
        self.blocks.shrink(0);
    }

    /// RETRIEVE_FD: the file with `token` from the previous kernel.
    ///
    /// Idempotent: a retrieved file is returned again (a new reference to the same file); a
    /// failed retrieve returns the same error again without calling the handler.
    fn retrieve(&mut self, luo: &Luo, token: u64) -> Result<ARef<File>> {
        let index = self.tokens.get(token).ok_or(ENOENT)?;
        let f = self.files.get_mut(index).ok_or(ENOENT)?;
        match f.retrieve {
            RetrieveStatus::Failed(e) => return Err(e),
            RetrieveStatus::Retrieved => return f.file.clone().ok_or(ENOENT),
            RetrieveStatus::NotRetrieved => {}
        }
        let start = timeline::now();
        let res = f.handler.ops().retrieve(f.data);
        luo.timeline()
            .add(Phase::Retrieve, &f.handler, start, timeline::now());
        let file = match res {
            Ok(file) => file,
            Err(e) => {
                f.retrieve = RetrieveStatus::Failed(e);
                return Err(e);
            }
        };
        // If another file holds the id (a handler whose files share an object), the claim stays
        // that file's: this one must not release it when it is finished.
        f.id_claimed = luo.claim_id(f.handler.ops().get_id(&file)).is_ok();
        if !f.id_claimed {
            pr_warn!(
                "retrieved file for token {:#x} is already preserved\n",
                token
            );
        }
        f.retrieve = RetrieveStatus::Retrieved;
        f.file = Some(file.clone());
        Ok(file)
    }

    /// FINISH: asks every file whether it can finish (`EBUSY` if one cannot, and nothing
    /// happens), then finishes all of them, newest first.
    ///
    /// Each file puts the incoming FLBs linked to its handler now, as the C LUO does
    /// (`luo_flb_file_finish()`), not those linked when the incoming sessions were built (an
    /// incoming file took no reference in this kernel: it puts one of the previous kernel's
    /// count). A file whose handler is unregistered puts none (unregistering unlinks its FLBs).
    #[inline(never)]
    fn finish(&mut self, luo: &Luo) -> Result {
        if self.files.is_empty() {
            // Nothing to finish, and the index is empty too (built from `files`).
            return Ok(());
        }
        for f in self.files.iter() {
            if !f
                .handler
                .ops()
                .can_finish(f.file.as_deref(), f.data, f.retrieve)
            {
                return Err(EBUSY);
            }
        }
        // INVARIANT: As in `unpreserve_all`: the index in one go, then every file.
        self.tokens = TokenIndex::new();
        let mut spans = Spans::new();
        let mut clock = RunClock::new(&mut spans);
        while let Some(f) = self.files.pop() {
            clock.file(&f.handler);
            f.finish(luo);
        }
        drop(clock);
        luo.timeline().merge(Phase::Finish, &spans);
        self.files = KVVec::new();
        Ok(())
    }
}
