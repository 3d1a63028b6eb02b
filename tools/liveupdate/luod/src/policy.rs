// SPDX-License-Identifier: GPL-2.0
//! The authorization policy: which names each uid may use, and its quotas.
//!
//! TOML, parsed strictly (`deny_unknown_fields`; the `toml` crate refuses
//! duplicate keys): luod refuses to start with a policy it does not fully
//! understand. See luod.8.md, section POLICY:
//!
//! ```toml
//! ungranted = "deny"
//!
//! [limits]
//! sessions = 64
//!
//! [[grant]]
//! uid = 1001
//! names = ["vm-a", "vm-b"]
//! sessions = 256
//! ```
//!
//! A grant covers a name on whole `/`-separated components: `vm-42` covers
//! `vm-42` and `vm-42/disk`, not `vm-420`. Grants of different uids may not
//! overlap, so every name has at most one owner uid host-wide.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// Longest session name the kernel takes (63 bytes plus the NUL).
pub const MAX_NAME_LEN: usize = 63;

/// What to do with a uid that has no grant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ungranted {
    /// Refuse it (the default).
    #[default]
    Deny,
    /// Let it use any name no other uid's grant covers.
    Allow,
}

/// Per-uid limits. Root has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Outgoing sessions.
    pub sessions: u64,
    /// Preserved files over all the uid's sessions.
    pub files: u64,
    /// Preserved bytes (`st_size` at preserve) over all its sessions.
    pub bytes: u64,
    /// Concurrent connections.
    pub connections: u64,
    /// Seconds without a request before luod hangs up (0: never).
    pub idle_timeout: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { sessions: 64, files: 4096, bytes: 1 << 40, connections: 16, idle_timeout: 600 }
    }
}

/// The limits as written in a table: every key optional.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    sessions: Option<u64>,
    files: Option<u64>,
    bytes: Option<u64>,
    connections: Option<u64>,
    idle_timeout: Option<u64>,
}

impl LimitsFile {
    fn over(&self, base: Limits) -> Limits {
        Limits {
            sessions: self.sessions.unwrap_or(base.sessions),
            files: self.files.unwrap_or(base.files),
            bytes: self.bytes.unwrap_or(base.bytes),
            connections: self.connections.unwrap_or(base.connections),
            idle_timeout: self.idle_timeout.unwrap_or(base.idle_timeout),
        }
    }

    fn is_empty(&self) -> bool {
        self.sessions.is_none()
            && self.files.is_none()
            && self.bytes.is_none()
            && self.connections.is_none()
            && self.idle_timeout.is_none()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantFile {
    uid: u32,
    names: Vec<String>,
    #[serde(flatten)]
    limits: LimitsFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    ungranted: Ungranted,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    grant: Vec<GrantFile>,
}

/// What one uid may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The names (and everything below them) it may use.
    pub names: Vec<Vec<u8>>,
    /// Its limits.
    pub limits: Limits,
}

/// The parsed policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Uids without a grant.
    pub ungranted: Ungranted,
    /// Limits of uids that set none of their own.
    pub limits: Limits,
    /// The grants, by uid.
    pub grants: BTreeMap<u32, Grant>,
}

/// A policy error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError(pub String);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyError {}

/// Does the grant `g` cover `name` (equal, or `g` followed by `/`)?
pub fn covers(g: &[u8], name: &[u8]) -> bool {
    name.strip_prefix(g).is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
}

fn check_name(n: &str) -> Result<Vec<u8>, PolicyError> {
    let b = n.as_bytes();
    if b.is_empty() || b.len() > MAX_NAME_LEN || b.contains(&0) {
        return Err(PolicyError(format!("grant name {n:?}: 1 to {MAX_NAME_LEN} bytes, no NUL")));
    }
    if b.starts_with(crate::names::RESERVED_PREFIX) || b.ends_with(b"/") {
        return Err(PolicyError(format!("grant name {n:?}: reserved (luod.) or ends with /")));
    }
    Ok(b.to_vec())
}

impl Policy {
    /// Parse the text of a policy file.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let f: PolicyFile = toml::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        let limits = f.limits.over(Limits::default());
        let mut grants: BTreeMap<u32, Grant> = BTreeMap::new();
        for g in f.grant {
            if g.names.is_empty() {
                return Err(PolicyError(format!("grant of uid {}: no names", g.uid)));
            }
            let names = g.names.iter().map(|n| check_name(n)).collect::<Result<Vec<_>, _>>()?;
            match grants.get_mut(&g.uid) {
                Some(e) => {
                    if !g.limits.is_empty() {
                        return Err(PolicyError(format!(
                            "uid {}: limits in more than one of its grants",
                            g.uid
                        )));
                    }
                    e.names.extend(names);
                }
                None => {
                    grants.insert(g.uid, Grant { names, limits: g.limits.over(limits) });
                }
            }
        }
        // No name may have two owners.
        let all: Vec<(u32, &Vec<u8>)> =
            grants.iter().flat_map(|(&u, g)| g.names.iter().map(move |n| (u, n))).collect();
        for (i, (ua, a)) in all.iter().enumerate() {
            for (ub, b) in &all[i + 1..] {
                if ua != ub && (covers(a, b) || covers(b, a)) {
                    return Err(PolicyError(format!(
                        "grants overlap: {:?} of uid {ua} and {:?} of uid {ub}",
                        String::from_utf8_lossy(a),
                        String::from_utf8_lossy(b)
                    )));
                }
            }
        }
        Ok(Self { ungranted: f.ungranted, limits, grants })
    }

    /// May `uid` (not root) use the name `name` of its namespace?
    pub fn allows(&self, uid: u32, name: &[u8]) -> bool {
        match self.grants.get(&uid) {
            Some(g) => g.names.iter().any(|n| covers(n, name)),
            None => {
                self.ungranted == Ungranted::Allow
                    && !self.grants.values().any(|g| g.names.iter().any(|n| covers(n, name)))
            }
        }
    }

    /// May `uid` (not root) use luod at all?
    pub fn knows(&self, uid: u32) -> bool {
        self.grants.contains_key(&uid) || self.ungranted == Ungranted::Allow
    }

    /// The limits of `uid` (not root).
    pub fn limits(&self, uid: u32) -> Limits {
        self.grants.get(&uid).map_or(self.limits, |g| g.limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grants_and_limits() {
        let p = Policy::parse(
            "ungranted = \"allow\"\n[limits]\nsessions = 3\n\n[[grant]]\nuid = 1001\nnames = [\"vm-a\", \"x/y\"]\nfiles = 9\n\n[[grant]]\nuid = 7\nnames = [\"b\"]\n",
        )
        .unwrap();
        assert_eq!(p.ungranted, Ungranted::Allow);
        assert_eq!(p.limits(1001).files, 9);
        assert_eq!(p.limits(1001).sessions, 3);
        assert_eq!(p.limits(7).files, 4096);
        assert_eq!(p.limits(5).sessions, 3);
        assert!(p.allows(1001, b"vm-a"));
        assert!(p.allows(1001, b"vm-a/disk"));
        assert!(!p.allows(1001, b"vm-ab"));
        assert!(p.allows(1001, b"x/y/z"));
        assert!(!p.allows(1001, b"x"));
        assert!(!p.allows(7, b"vm-a"));
        // ungranted uids: anything no grant covers.
        assert!(p.allows(5, b"free"));
        assert!(!p.allows(5, b"vm-a/1"));
    }

    #[test]
    fn components_not_prefixes() {
        let p = Policy::parse("[[grant]]\nuid = 1\nnames = [\"vm-42\"]\n").unwrap();
        assert!(p.allows(1, b"vm-42"));
        assert!(!p.allows(1, b"vm-420"));
        assert!(!p.allows(2, b"vm-42"), "deny is the default");
        assert!(!p.knows(2));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for bad in [
            "uid = 1",
            "[[grant]]\nuid = 1",
            "[[grant]]\nuid = -1\nnames = [\"a\"]",
            "[[grant]]\nuid = 1\nnames = \"a\"",
            "[[grant]]\nuid = 1\nnames = [\"\"]",
            "[[grant]]\nuid = 1\nnames = []",
            "[[grant]]\nuid = 1\nnames = [\"a\"]\nextra = 2",
            "[[grant]]\nuid = 1\nuid = 2\nnames = [\"a\"]",
            "[[grant]]\nuid = 1\nnames = [\"luod.x\"]",
            "[[grant]]\nuid = 1\nnames = [\"a/\"]",
            "ungranted = \"maybe\"",
            "[limits]\nsessions = \"many\"",
            "[limits]\nsession = 1",
            "[[grant]]\nuid = 1\nnames = [\"a\"]\nfiles = 1\n[[grant]]\nuid = 1\nnames = [\"b\"]\nfiles = 2",
            "[grant]",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overlapping_grants_of_two_uids() {
        for (a, b) in [("vm", "vm"), ("vm", "vm/1"), ("vm/1/2", "vm")] {
            let t = format!("[[grant]]\nuid = 1\nnames = [\"{a}\"]\n[[grant]]\nuid = 2\nnames = [\"{b}\"]\n");
            let e = Policy::parse(&t).unwrap_err();
            assert!(e.0.contains("overlap"), "{e}");
        }
        // Same uid, or a name that only shares a prefix: fine.
        Policy::parse("[[grant]]\nuid = 1\nnames = [\"vm\", \"vm/1\"]\n").unwrap();
        Policy::parse("[[grant]]\nuid = 1\nnames = [\"vm-42\"]\n[[grant]]\nuid = 2\nnames = [\"vm-420\"]\n")
            .unwrap();
    }
}
