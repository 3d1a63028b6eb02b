// SPDX-License-Identifier: GPL-2.0

//! The FLB table of the handover (`struct luo_flb_header_ser` and its `struct luo_flb_ser`
//! entries, one page): written at reboot from the preserved FLBs, read at boot into
//! [`InFlb`]s that FLBs retrieve on demand.

use crate::{
    abi::{
        self,
        flb_ser,
        get_str,
        get_u64,
        put_str,
        put_u64, //
    },
    block::HEADER_SIZE,
    flb::FLB_MAX,
    parse::{
        PageBytes,
        PageSource,
        ParseError,
        ParseResult, //
    },
    registry::Registry, //
};
use kernel::{
    kho::{
        bytes,
        IncomingPhys, //
    },
    prelude::*,
    sync::atomic::{
        Atomic,
        Full,
        Release, //
    }, //
};

/// The largest user count an incoming FLB entry may have: the C LUO counts with a
/// `refcount_t`, which saturates below `INT_MAX`.
const FLB_COUNT_MAX: u64 = i32::MAX as u64;

/// An FLB entry from the previous kernel.
pub(crate) struct InFlb {
    compat: [u8; abi::FLB_COMPAT_LEN],
    data: u64,
    count: u64,
    /// 0 until an FLB takes the entry to retrieve it, then 1, or the negative errno of a
    /// failed `retrieve`: the entry is retrieved at most once per boot.
    taken: Atomic<i32>,
}

impl InFlb {
    /// Whether the entry is that of the FLB with compatible string `compat`.
    pub(crate) fn is(&self, compat: &CStr) -> bool {
        get_str(&self.compat) == Some(compat)
    }

    /// The FLB's handle, for its `retrieve`.
    pub(crate) fn data(&self) -> u64 {
        self.data
    }

    /// The number of users the previous kernel recorded (1 to `i32::MAX`).
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

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

/// Writes the table of the preserved FLBs of `reg` into `b`, the table's page.
pub(crate) fn write(reg: &Registry, b: &mut [u8]) {
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
            flb.ops().compatible().to_bytes(),
        );
        put_u64(e, flb_ser::DATA, data);
        put_u64(e, flb_ser::COUNT, count);
        n += 1;
    }
    put_u64(b, 0, 1);
    put_u64(b, 8, n as u64);
}

/// Reads the previous kernel's FLB table at `head`: `None` if there is none. An entry that
/// does not validate is dropped with a warning; the others are kept.
pub(crate) fn read<S: PageSource>(
    src: &mut S,
    head: IncomingPhys,
) -> ParseResult<Option<KVVec<InFlb>>> {
    if head.0 == 0 {
        return Ok(None);
    }
    let page = src
        .take(head)
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
