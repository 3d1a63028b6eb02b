// SPDX-License-Identifier: GPL-2.0

//! Session names.

use kernel::{
    prelude::*,
    uapi, //
};

/// Size of a session name buffer, including the terminating NUL.
pub(crate) const NAME_LEN: usize = uapi::LIVEUPDATE_SESSION_NAME_LENGTH as usize;

/// A session name: the bytes up to the first NUL of a 64-byte buffer, zero padded.
///
/// Two names are equal exactly when C's `strncmp(a, b, 64)` says so, so the type can key the
/// session maps. Any byte value but NUL is allowed, as in the C LUO.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Name([u8; NAME_LEN]);

impl Name {
    /// Normalizes a user buffer without checking its length (for lookups).
    pub(crate) fn lookup_key(buf: &[u8; NAME_LEN]) -> Self {
        let len = buf.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        let mut n = [0u8; NAME_LEN];
        n[..len].copy_from_slice(&buf[..len]);
        Self(n)
    }

    /// Validates a name for a new session: 1 to 63 bytes before the NUL (`EINVAL` otherwise).
    pub(crate) fn new(buf: &[u8; NAME_LEN]) -> Result<Self> {
        match buf.iter().position(|&b| b == 0) {
            Some(len) if len > 0 => Ok(Self::lookup_key(buf)),
            _ => Err(EINVAL),
        }
    }

    /// The name bytes without the NUL.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        &self.0[..len]
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
    fn bytes_after_the_nul_do_not_matter() {
        let mut a = buf(b"vm-1");
        a[10] = b'z';
        assert!(Name::new(&a).ok() == Name::new(&buf(b"vm-1")).ok());
        assert!(Name::lookup_key(&a) != Name::lookup_key(&buf(b"vm-2")));
    }
}
