// SPDX-License-Identifier: GPL-2.0
//! Session names: a uid's namespace inside the kernel's flat one.
//!
//! The session uid `U` (not 0) calls `vm-42` is the kernel session
//! `u<U>/vm-42`. The kernel hands that name over, so after a kexec the
//! owner of a session is read from the kernel's own handover, never from
//! luod's manifest (which another uid could have made stale). Root's names
//! are kernel names.

use crate::policy::MAX_NAME_LEN;

/// Session names with this prefix are luod's own: clients cannot use them.
pub const RESERVED_PREFIX: &[u8] = b"luod.";

/// Why a name is refused: (errno, message).
pub type NameError = (i32, String);

/// The kernel name of the session `uid` calls `name`.
pub fn kernel_name(uid: u32, name: &[u8]) -> Result<Vec<u8>, NameError> {
    if name.is_empty() || name.contains(&0) {
        return Err((libc::EINVAL, "a session name is 1 to 63 bytes without NUL".into()));
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err((libc::EPERM, "session names starting with \"luod.\" are luod's own".into()));
    }
    let mut k = if uid == 0 { Vec::new() } else { format!("u{uid}/").into_bytes() };
    let prefix = k.len();
    k.extend_from_slice(name);
    if k.len() > MAX_NAME_LEN {
        return Err((
            libc::ENAMETOOLONG,
            format!("a session name of uid {uid} is at most {} bytes", MAX_NAME_LEN - prefix),
        ));
    }
    Ok(k)
}

/// The owner of the kernel session `kname`: `Some(U)` for `u<U>/...`
/// (canonical decimal, U not 0), `None` for root's names.
pub fn owner(kname: &[u8]) -> Option<u32> {
    let rest = kname.strip_prefix(b"u")?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    let digits = &rest[..slash];
    if digits.is_empty() || digits[0] == b'0' || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// How `uid` sees the kernel session `kname`: without its own prefix;
/// root sees kernel names. `None`: not `uid`'s session.
pub fn shown_to(uid: u32, kname: &[u8]) -> Option<Vec<u8>> {
    if uid == 0 {
        return Some(kname.to_vec());
    }
    if owner(kname) != Some(uid) {
        return None;
    }
    let n = format!("u{uid}/").len();
    Some(kname[n..].to_vec())
}

/// A name for log lines.
pub fn show(name: &[u8]) -> String {
    crate::proto::display_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        assert_eq!(kernel_name(1001, b"vm-42").unwrap(), b"u1001/vm-42");
        assert_eq!(kernel_name(0, b"vm-42").unwrap(), b"vm-42");
        assert_eq!(owner(b"u1001/vm-42"), Some(1001));
        assert_eq!(owner(b"vm-42"), None);
        assert_eq!(owner(b"u01/x"), None);
        assert_eq!(owner(b"u0/x"), None);
        assert_eq!(owner(b"u/x"), None);
        assert_eq!(owner(b"u99999999999/x"), None);
        assert_eq!(shown_to(1001, b"u1001/vm-42").unwrap(), b"vm-42");
        assert_eq!(shown_to(1002, b"u1001/vm-42"), None);
        assert_eq!(shown_to(0, b"u1001/vm-42").unwrap(), b"u1001/vm-42");
        // A uid's own names nest: u1/u2/x is uid 1's.
        assert_eq!(owner(&kernel_name(1, b"u2/x").unwrap()), Some(1));
    }

    #[test]
    fn refusals() {
        assert_eq!(kernel_name(1, b"").unwrap_err().0, libc::EINVAL);
        assert_eq!(kernel_name(1, b"a\0b").unwrap_err().0, libc::EINVAL);
        assert_eq!(kernel_name(1, b"luod.x").unwrap_err().0, libc::EPERM);
        assert_eq!(kernel_name(0, &[b'a'; 63]).unwrap().len(), 63);
        assert_eq!(kernel_name(0, &[b'a'; 64]).unwrap_err().0, libc::ENAMETOOLONG);
        assert_eq!(kernel_name(1001, &[b'a'; 57]).unwrap().len(), 63);
        assert_eq!(kernel_name(1001, &[b'a'; 58]).unwrap_err().0, libc::ENAMETOOLONG);
    }
}
