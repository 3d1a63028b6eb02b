// SPDX-License-Identifier: GPL-2.0

//! The "luo-v5" handover format (`include/linux/kho/abi/luo.h`), byte for byte.
//!
//! All structures are packed and host-endian. They are written and read as bytes at fixed
//! offsets, so nothing from the previous kernel is ever reinterpreted as a Rust type.

use crate::name::NAME_LEN;
use kernel::prelude::*;

/// Name of the KHO subtree holding [`LUO_SER_SIZE`] bytes of `struct luo_ser`.
pub(crate) const KHO_ENTRY_NAME: &CStr = c"LUO";
/// `LUO_ABI_COMPATIBLE`, NUL padded to `LUO_ABI_COMPAT_LEN` (8) bytes.
pub(crate) const COMPATIBLE: [u8; 8] = *b"luo-v5\0\0";
/// Size of `struct luo_ser`: compatible[8], liveupdate_num, sessions_pa, flbs_pa.
pub(crate) const LUO_SER_SIZE: usize = 32;
/// Length of handler and FLB compatible strings, including the NUL.
pub(crate) const COMPAT_LEN: usize = kernel::liveupdate::COMPAT_LEN;

/// Offsets in `struct luo_ser`.
pub(crate) mod luo_ser {
    pub(crate) const LIVEUPDATE_NUM: usize = 8;
    pub(crate) const SESSIONS_PA: usize = 16;
    pub(crate) const FLBS_PA: usize = 24;
}

/// `struct luo_session_ser`: name[64], files (PA of the first file block), count.
pub(crate) mod session_ser {
    pub(crate) const SIZE: usize = super::NAME_LEN + 16;
    pub(crate) const FILES: usize = super::NAME_LEN;
    pub(crate) const COUNT: usize = super::NAME_LEN + 8;
}

/// `struct luo_file_ser`: compatible[48], data, token.
pub(crate) mod file_ser {
    pub(crate) const SIZE: usize = super::COMPAT_LEN + 16;
    pub(crate) const DATA: usize = super::COMPAT_LEN;
    pub(crate) const TOKEN: usize = super::COMPAT_LEN + 8;
}

/// The FLB page: `struct luo_flb_header_ser { pgcnt, count }` then `struct luo_flb_ser`
/// entries: name[48], data, count.
pub(crate) mod flb_ser {
    pub(crate) const HEADER: usize = 16;
    pub(crate) const SIZE: usize = super::COMPAT_LEN + 16;
    pub(crate) const DATA: usize = super::COMPAT_LEN;
    pub(crate) const COUNT: usize = super::COMPAT_LEN + 8;
}

/// Writes `v` at `off` (host endian). Out-of-range offsets are ignored.
pub(crate) fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    if let Some(d) = buf.get_mut(off..off + 8) {
        d.copy_from_slice(&v.to_ne_bytes());
    }
}

/// Reads the `u64` at `off` (host endian); 0 if out of range.
pub(crate) fn get_u64(buf: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = buf.get(off..off + 8) {
        b.copy_from_slice(s);
    }
    u64::from_ne_bytes(b)
}

/// Copies `s` into `buf` as a NUL-padded string (truncated to leave room for the NUL).
pub(crate) fn put_str(buf: &mut [u8], s: &[u8]) {
    let n = s.len().min(buf.len().saturating_sub(1));
    buf[..n].copy_from_slice(&s[..n]);
    buf[n..].fill(0);
}

/// A NUL-terminated string field from the previous kernel: `None` if it has no NUL or is
/// empty.
pub(crate) fn get_str(buf: &[u8]) -> Option<&CStr> {
    CStr::from_bytes_until_nul(buf)
        .ok()
        .filter(|s| !s.is_empty())
}

#[kunit_tests(luo_rs_abi)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_c_headers() {
        assert_eq!(LUO_SER_SIZE, 32);
        assert_eq!(session_ser::SIZE, 80);
        assert_eq!(file_ser::SIZE, 64);
        assert_eq!(flb_ser::SIZE, 64);
        assert_eq!(
            size_of::<kernel::bindings::luo_session_ser>(),
            session_ser::SIZE
        );
        assert_eq!(size_of::<kernel::bindings::luo_file_ser>(), file_ser::SIZE);
        assert_eq!(size_of::<kernel::bindings::luo_flb_ser>(), flb_ser::SIZE);
        assert_eq!(size_of::<kernel::bindings::luo_ser>(), LUO_SER_SIZE);
    }

    #[test]
    fn strings_must_be_terminated() {
        assert!(get_str(b"memfd-v2\0\0").is_some());
        assert!(get_str(b"\0abc").is_none());
        assert!(get_str(b"abcd").is_none());
        let mut b = [0xffu8; 8];
        put_str(&mut b, b"0123456789");
        assert_eq!(&b, b"0123456\0");
    }

    #[test]
    fn integers_round_trip() {
        let mut b = [0u8; 24];
        put_u64(&mut b, 8, 0x1122_3344_5566_7788);
        assert_eq!(get_u64(&b, 8), 0x1122_3344_5566_7788);
        assert_eq!(get_u64(&b, 20), 0);
    }
}
