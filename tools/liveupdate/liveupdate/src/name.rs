// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//! Session names: 1 to 63 bytes, no NUL, stored NUL-padded in 64 bytes.

use crate::error::NameError;
use crate::uapi::LIVEUPDATE_SESSION_NAME_LENGTH;

/// Longest session name, in bytes (the buffer holds a NUL too).
pub const MAX_NAME_LEN: usize = LIVEUPDATE_SESSION_NAME_LENGTH - 1;

/// Check a session name and put it in a NUL-padded kernel buffer.
///
/// This mirrors the kernel's check (`strnlen(name, 64)` must be 1..=63),
/// and refuses embedded NULs, which the kernel would silently cut at. Any
/// other byte is allowed, as in the kernel.
pub fn encode_name(name: &[u8]) -> Result<[u8; LIVEUPDATE_SESSION_NAME_LENGTH], NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    if let Some(pos) = name.iter().position(|&b| b == 0) {
        return Err(NameError::ContainsNul { pos });
    }
    let mut buf = [0u8; LIVEUPDATE_SESSION_NAME_LENGTH];
    buf[..name.len()].copy_from_slice(name);
    Ok(buf)
}

/// The name in a kernel buffer: the bytes before the first NUL (all 64 if
/// there is none).
pub fn decode_name(buf: &[u8; LIVEUPDATE_SESSION_NAME_LENGTH]) -> &[u8] {
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    &buf[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_1_to_63_bytes() {
        for len in [1, 2, 62, 63] {
            let name = vec![b'a'; len];
            let buf = encode_name(&name).unwrap();
            assert_eq!(decode_name(&buf), &name[..]);
            assert_eq!(buf[len], 0);
        }
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(encode_name(b""), Err(NameError::Empty));
        assert_eq!(encode_name(&[b'X'; 64]), Err(NameError::TooLong { len: 64 }));
        assert_eq!(encode_name(b"a\0b"), Err(NameError::ContainsNul { pos: 1 }));
    }

    #[test]
    fn any_other_byte_is_fine() {
        let name = [0xff, b' ', b'/', 0x01];
        assert_eq!(decode_name(&encode_name(&name).unwrap()), &name);
    }

    #[test]
    fn decode_unterminated() {
        assert_eq!(decode_name(&[b'Y'; 64]).len(), 64);
    }
}
