// SPDX-License-Identifier: GPL-2.0

//! Session names.

use kernel::{
    kho::bytes,
    prelude::*,
    uapi, //
};

/// Size of a session name buffer, including the terminating NUL.
pub(crate) const NAME_LEN: usize = uapi::LIVEUPDATE_SESSION_NAME_LENGTH as usize;

/// A session name: the bytes up to the first NUL of a 64-byte buffer, zero padded.
///
/// Two names are equal exactly when C's `strncmp(a, b, 64)` says so, so the type can key the
/// session maps. Any byte value but NUL is allowed, as in the C LUO.
///
/// The bytes are kept as eight native-endian words: the session tables only need equality and
/// a hash ([`Name::hash`]), and comparing or hashing words is a few instructions per name where
/// a `[u8; 64]` costs a `memcmp()` call (a third of closing a session, measured).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Name([u64; NAME_LEN / 8]);

impl Name {
    /// Normalizes a user buffer without checking its length (for lookups).
    pub(crate) fn lookup_key(buf: &[u8; NAME_LEN]) -> Self {
        let len = buf.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        let mut n = Self([0; NAME_LEN / 8]);
        n.0.as_mut_bytes()[..len].copy_from_slice(&buf[..len]);
        n
    }

    /// Validates a name for a new session: 1 to 63 bytes before the NUL (`EINVAL` otherwise).
    pub(crate) fn new(buf: &[u8; NAME_LEN]) -> Result<Self> {
        match buf.iter().position(|&b| b == 0) {
            Some(len) if len > 0 => Ok(Self::lookup_key(buf)),
            _ => Err(EINVAL),
        }
    }

    /// Writes the name as the handover stores it: its bytes, then zeroes to `NAME_LEN`.
    pub(crate) fn write_padded(&self, dst: &mut [u8; NAME_LEN]) {
        for (i, w) in self.0.iter().enumerate() {
            let _ = bytes::put(dst, i * 8, w.to_ne_bytes());
        }
    }

    /// A hash of the name with the secret `seed` of a session table: the eight words folded
    /// with a multiply-xorshift each, seeded at the start and mixed at the end, so every bit of
    /// the seed reaches every bit of the hash (a name chosen without the seed lands in a bucket
    /// it cannot predict).
    pub(crate) fn hash(&self, seed: u64) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h = seed;
        for w in self.0 {
            h = (h ^ w).wrapping_mul(K);
            h ^= h >> 29;
        }
        h = (h ^ seed.rotate_left(32)).wrapping_mul(K);
        h ^ (h >> 32)
    }

    /// The name bytes without the NUL.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        let bytes = self.0.as_bytes();
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        &bytes[..len]
    }
}

#[kunit_tests(luo_rs_name)]
mod tests {
    use super::*;

    fn buf(s: &[u8]) -> [u8; NAME_LEN] {
        let mut b = [0u8; NAME_LEN];
        b[..s.len()].copy_from_slice(s);
        b
    }

    #[test]
    fn empty_and_unterminated_names_are_rejected() {
        assert_eq!(Name::new(&buf(b"")).err(), Some(EINVAL));
        assert_eq!(Name::new(&[b'X'; NAME_LEN]).err(), Some(EINVAL));
    }

    #[test]
    fn longest_name_is_accepted() {
        let b = buf(&[b'A'; NAME_LEN - 1]);
        assert_eq!(
            Name::new(&b).map(|n| n.as_bytes().len()).ok(),
            Some(NAME_LEN - 1)
        );
    }

    #[test]
    fn bytes_come_back_as_given() {
        let b = buf(b"vm-1\xff/guest ram");
        assert_eq!(
            Name::new(&b)
                .map(|n| n.as_bytes() == b"vm-1\xff/guest ram")
                .ok(),
            Some(true)
        );
        let long = buf(&[b'A'; NAME_LEN - 1]);
        assert_eq!(
            Name::new(&long)
                .map(|n| n.as_bytes() == &long[..NAME_LEN - 1])
                .ok(),
            Some(true)
        );
    }

    #[test]
    fn padded_form_is_the_bytes_then_zeroes() {
        let b = buf(b"vm-7/ram");
        let mut out = [0xffu8; NAME_LEN];
        if let Ok(n) = Name::new(&b) {
            n.write_padded(&mut out);
        }
        assert_eq!(out, b);
    }

    #[test]
    fn bytes_after_the_nul_do_not_matter() {
        let mut a = buf(b"vm-1");
        a[10] = b'z';
        assert!(Name::new(&a).ok() == Name::new(&buf(b"vm-1")).ok());
        assert!(Name::lookup_key(&a) != Name::lookup_key(&buf(b"vm-2")));
    }
}
