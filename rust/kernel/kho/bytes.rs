// SPDX-License-Identifier: GPL-2.0

//! Fixed-size integers and byte arrays at byte offsets of a buffer (the fields of handover
//! data), read and written without a function call.
//!
//! With the toolchain this kernel is built with, `<[u8]>::copy_from_slice` is not inlined: each
//! use is a call to core's out-of-line `copy_from_slice_impl` and from there to `memcpy()`,
//! even for the 8 bytes of an address, and handover writers and readers copy several small
//! fields per file. These helpers copy fixed-size arrays instead, which compile to plain loads
//! and stores. An offset out of range gives `None` and copies nothing.
//!
//! Offsets are byte offsets into the buffer; the `le_` helpers use little-endian order (the
//! order of every KHO ABI on the architectures it supports), the `ne_` ones the host's.

use macros::kunit_tests;

/// The `N` bytes at `off`.
#[inline]
pub fn get<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..)?.first_chunk::<N>().copied()
}

/// Stores `v` at `off`.
#[inline]
pub fn put<const N: usize>(b: &mut [u8], off: usize, v: [u8; N]) -> Option<()> {
    *b.get_mut(off..)?.first_chunk_mut::<N>()? = v;
    Some(())
}

/// The little-endian `u64` at `off`.
#[inline]
pub fn le_u64(b: &[u8], off: usize) -> Option<u64> {
    get(b, off).map(u64::from_le_bytes)
}

/// The little-endian `u32` at `off`.
#[inline]
pub fn le_u32(b: &[u8], off: usize) -> Option<u32> {
    get(b, off).map(u32::from_le_bytes)
}

/// The little-endian `u16` at `off`.
#[inline]
pub fn le_u16(b: &[u8], off: usize) -> Option<u16> {
    get(b, off).map(u16::from_le_bytes)
}

/// Stores `v` at `off`, little-endian.
#[inline]
pub fn put_le_u64(b: &mut [u8], off: usize, v: u64) -> Option<()> {
    put(b, off, v.to_le_bytes())
}

/// Stores `v` at `off`, little-endian.
#[inline]
pub fn put_le_u32(b: &mut [u8], off: usize, v: u32) -> Option<()> {
    put(b, off, v.to_le_bytes())
}

/// Stores `v` at `off`, little-endian.
#[inline]
pub fn put_le_u16(b: &mut [u8], off: usize, v: u16) -> Option<()> {
    put(b, off, v.to_le_bytes())
}

/// The host-endian `u64` at `off`.
#[inline]
pub fn ne_u64(b: &[u8], off: usize) -> Option<u64> {
    get(b, off).map(u64::from_ne_bytes)
}

/// Stores `v` at `off`, host-endian.
#[inline]
pub fn put_ne_u64(b: &mut [u8], off: usize, v: u64) -> Option<()> {
    put(b, off, v.to_ne_bytes())
}

#[kunit_tests(rust_kho_bytes)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_little_endian() {
        let mut b = [0u8; 16];
        assert_eq!(put_le_u64(&mut b, 0, 0x0102_0304_0506_0708), Some(()));
        assert_eq!(put_le_u32(&mut b, 8, 0x0a0b_0c0d), Some(()));
        assert_eq!(put_le_u16(&mut b, 12, 0x1122), Some(()));
        assert_eq!(b[..8], [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(b[8..14], [0x0d, 0x0c, 0x0b, 0x0a, 0x22, 0x11]);
        assert_eq!(le_u64(&b, 0), Some(0x0102_0304_0506_0708));
        assert_eq!(le_u32(&b, 8), Some(0x0a0b_0c0d));
        assert_eq!(le_u16(&b, 12), Some(0x1122));
        assert_eq!(
            ne_u64(&b, 0),
            Some(u64::from_ne_bytes([8, 7, 6, 5, 4, 3, 2, 1]))
        );
    }

    #[test]
    fn out_of_range_is_none_and_writes_nothing() {
        let mut b = [0u8; 10];
        assert_eq!(put_le_u64(&mut b, 3, u64::MAX), None);
        assert_eq!(put_ne_u64(&mut b, usize::MAX, u64::MAX), None);
        assert_eq!(b, [0u8; 10]);
        assert_eq!(le_u64(&b, 3), None);
        assert_eq!(le_u16(&b, 9), None);
        assert_eq!(get::<4>(&b, 11), None);
        assert_eq!(le_u16(&b, 8), Some(0));
    }
}
