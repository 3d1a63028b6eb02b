// SPDX-License-Identifier: GPL-2.0

//! The "luo-v5" handover format (`include/linux/kho/abi/luo.h`), byte for byte.
//!
//! All structures are packed and host-endian. They are written and read as bytes at fixed
//! offsets, so nothing from the previous kernel is ever reinterpreted as a Rust type.

use crate::name::NAME_LEN;
use kernel::{
    bindings as b,
    kho::bytes,
    prelude::*, //
};

/// Name of the KHO subtree holding [`LUO_SER_SIZE`] bytes of `struct luo_ser`.
pub(crate) const KHO_ENTRY_NAME: &CStr = c"LUO";
/// `LUO_ABI_COMPATIBLE`, NUL padded to `LUO_ABI_COMPAT_LEN` (8) bytes.
pub(crate) const COMPATIBLE: [u8; 8] = *b"luo-v5\0\0";
/// Size of `struct luo_ser`.
pub(crate) const LUO_SER_SIZE: usize = size_of::<b::luo_ser>();
/// Length of a file handler's compatible string, including the NUL
/// (`LIVEUPDATE_HNDL_COMPAT_LENGTH`).
pub(crate) const COMPAT_LEN: usize = kernel::liveupdate::COMPAT_LEN;
/// Length of an FLB's compatible string, including the NUL (`LIVEUPDATE_FLB_COMPAT_LENGTH`).
pub(crate) const FLB_COMPAT_LEN: usize = b::LIVEUPDATE_FLB_COMPAT_LENGTH as usize;

/// Offsets in `struct luo_ser`: compatible[8], liveupdate_num, sessions_pa, flbs_pa.
pub(crate) mod luo_ser {
    use super::b;
    pub(crate) const LIVEUPDATE_NUM: usize = core::mem::offset_of!(b::luo_ser, liveupdate_num);
    pub(crate) const SESSIONS_PA: usize = core::mem::offset_of!(b::luo_ser, sessions_pa);
    pub(crate) const FLBS_PA: usize = core::mem::offset_of!(b::luo_ser, flbs_pa);
}

/// `struct luo_session_ser`: name[64], then `struct luo_file_set_ser` { files (PA of the first
/// file block), count }.
pub(crate) mod session_ser {
    use super::b;
    use core::mem::offset_of;
    pub(crate) const SIZE: usize = size_of::<b::luo_session_ser>();
    pub(crate) const FILES: usize =
        offset_of!(b::luo_session_ser, file_set_ser) + offset_of!(b::luo_file_set_ser, files);
    pub(crate) const COUNT: usize =
        offset_of!(b::luo_session_ser, file_set_ser) + offset_of!(b::luo_file_set_ser, count);
}

/// `struct luo_file_ser`: compatible[48], data, token.
pub(crate) mod file_ser {
    use super::b;
    pub(crate) const SIZE: usize = size_of::<b::luo_file_ser>();
    pub(crate) const DATA: usize = core::mem::offset_of!(b::luo_file_ser, data);
    pub(crate) const TOKEN: usize = core::mem::offset_of!(b::luo_file_ser, token);
}

/// The FLB page: `struct luo_flb_header_ser { pgcnt, count }` then `struct luo_flb_ser`
/// entries: name[48], data, count.
pub(crate) mod flb_ser {
    use super::b;
    pub(crate) const HEADER: usize = size_of::<b::luo_flb_header_ser>();
    pub(crate) const SIZE: usize = size_of::<b::luo_flb_ser>();
    pub(crate) const DATA: usize = core::mem::offset_of!(b::luo_flb_ser, data);
    pub(crate) const COUNT: usize = core::mem::offset_of!(b::luo_flb_ser, count);
}

// The layout, byte for byte, as the C headers define it (checked against bindgen above, and
// against the documented ABI here).
const _: () = {
    use core::mem::offset_of;
    assert!(LUO_SER_SIZE == 32);
    assert!(offset_of!(b::luo_ser, compatible) == 0);
    assert!(size_of::<[core::ffi::c_char; 8]>() == COMPATIBLE.len());
    assert!(luo_ser::LIVEUPDATE_NUM == 8 && luo_ser::SESSIONS_PA == 16 && luo_ser::FLBS_PA == 24);
    assert!(session_ser::SIZE == 80 && offset_of!(b::luo_session_ser, name) == 0);
    assert!(session_ser::FILES == NAME_LEN && session_ser::COUNT == NAME_LEN + 8);
    assert!(size_of::<b::luo_file_set_ser>() == 16);
    assert!(file_ser::SIZE == 64 && offset_of!(b::luo_file_ser, compatible) == 0);
    assert!(file_ser::DATA == COMPAT_LEN && file_ser::TOKEN == COMPAT_LEN + 8);
    assert!(flb_ser::HEADER == 16);
    assert!(offset_of!(b::luo_flb_header_ser, pgcnt) == 0);
    assert!(offset_of!(b::luo_flb_header_ser, count) == 8);
    assert!(flb_ser::SIZE == 64 && offset_of!(b::luo_flb_ser, name) == 0);
    assert!(flb_ser::DATA == FLB_COMPAT_LEN && flb_ser::COUNT == FLB_COMPAT_LEN + 8);
    assert!(size_of::<b::kho_block_header_ser>() == crate::block::HEADER_SIZE);
    assert!(offset_of!(b::kho_block_header_ser, next) == 0);
    assert!(offset_of!(b::kho_block_header_ser, count) == 8);
};

/// Whether the `compatible` field at the start of `luo_ser` is "luo-v5", compared as the C LUO
/// does (`strncmp` over 8 bytes: bytes after a NUL do not matter).
pub(crate) fn compatible_matches(ser: &[u8]) -> bool {
    let Some(field) = ser.get(..COMPATIBLE.len()) else {
        return false;
    };
    for (a, b) in field.iter().zip(COMPATIBLE.iter()) {
        if a != b {
            return false;
        }
        if *a == 0 {
            break;
        }
    }
    true
}

/// Writes `v` at `off` (host endian). Out-of-range offsets are ignored.
pub(crate) fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    let _ = bytes::put_ne_u64(buf, off, v);
}

/// Reads the `u64` at `off` (host endian); 0 if out of range.
pub(crate) fn get_u64(buf: &[u8], off: usize) -> u64 {
    bytes::ne_u64(buf, off).unwrap_or(0)
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
    fn compatible_is_compared_as_strncmp() {
        let mut ser = [0u8; 32];
        ser[..8].copy_from_slice(&COMPATIBLE);
        assert!(compatible_matches(&ser));
        // Bytes after the NUL are ignored, as with strncmp().
        ser[7] = b'x';
        assert!(compatible_matches(&ser));
        ser[..8].copy_from_slice(b"luo-v0\0\0");
        assert!(!compatible_matches(&ser));
        ser[..8].copy_from_slice(b"luo-v5xx");
        assert!(!compatible_matches(&ser));
        assert!(!compatible_matches(&ser[..4]));
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
