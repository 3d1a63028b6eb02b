// SPDX-License-Identifier: GPL-2.0
//! The authorization policy file.
//!
//! A small subset of TOML: any number of `[[grant]]` tables, each with a
//! `uid` (integer) and a `prefix` (basic string), plus `#` comments:
//!
//! ```toml
//! # uid 1001 may manage every session whose name starts with "vm-a"
//! [[grant]]
//! uid = 1001
//! prefix = "vm-a"
//! ```
//!
//! Anything else is an error: luod refuses to start with a policy it does
//! not fully understand (fail closed).

use std::fmt;

/// One grant: `uid` may manage sessions named `prefix*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The uid.
    pub uid: u32,
    /// The session name prefix (bytes).
    pub prefix: Vec<u8>,
}

/// The parsed policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Every grant, in file order.
    pub grants: Vec<Grant>,
}

/// A policy file error, with its line number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

impl std::error::Error for PolicyError {}

fn parse_string(v: &str) -> Option<String> {
    let inner = v.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                _ => return None,
            },
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

impl Policy {
    /// Parse the text of a policy file.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let mut grants = Vec::new();
        let mut cur: Option<(Option<u32>, Option<String>, usize)> = None;
        let finish = |cur: Option<(Option<u32>, Option<String>, usize)>,
                      grants: &mut Vec<Grant>|
         -> Result<(), PolicyError> {
            if let Some((uid, prefix, line)) = cur {
                match (uid, prefix) {
                    (Some(uid), Some(prefix)) => grants.push(Grant { uid, prefix: prefix.into_bytes() }),
                    _ => return Err(PolicyError { line, what: "[[grant]] needs uid and prefix".into() }),
                }
            }
            Ok(())
        };
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if l == "[[grant]]" {
                finish(cur.take(), &mut grants)?;
                cur = Some((None, None, line));
                continue;
            }
            let err = |what: &str| PolicyError { line, what: what.into() };
            let (k, v) = l.split_once('=').ok_or_else(|| err("expected key = value"))?;
            let Some(entry) = cur.as_mut() else {
                return Err(err("key outside a [[grant]] table"));
            };
            match k.trim() {
                "uid" => {
                    let uid = v.trim().parse::<u32>().map_err(|_| err("uid must be an integer"))?;
                    entry.0 = Some(uid);
                }
                "prefix" => {
                    let p = parse_string(v.trim()).ok_or_else(|| err("prefix must be a \"string\""))?;
                    if p.is_empty() {
                        return Err(err("an empty prefix would grant every session: say so with uid 0"));
                    }
                    entry.1 = Some(p);
                }
                _ => return Err(err("unknown key (expected uid or prefix)")),
            }
        }
        finish(cur, &mut grants)?;
        Ok(Self { grants })
    }

    /// Does the policy grant `uid` the session `name`?
    pub fn grants(&self, uid: u32, name: &[u8]) -> bool {
        self.grants.iter().any(|g| g.uid == uid && name.starts_with(&g.prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grants() {
        let p = Policy::parse(
            "# c\n[[grant]]\nuid = 1001\nprefix = \"vm-\"\n\n[[grant]]\n prefix = \"a\\\"b\" \nuid=7\n",
        )
        .unwrap();
        assert_eq!(
            p.grants,
            vec![Grant { uid: 1001, prefix: b"vm-".to_vec() }, Grant { uid: 7, prefix: b"a\"b".to_vec() }]
        );
        assert!(p.grants(1001, b"vm-x"));
        assert!(!p.grants(1002, b"vm-x"));
        assert!(!p.grants(1001, b"vx"));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for bad in [
            "uid = 1",
            "[[grant]]\nuid = 1",
            "[[grant]]\nuid = x\nprefix = \"a\"",
            "[[grant]]\nuid = 1\nprefix = a",
            "[[grant]]\nuid = 1\nprefix = \"\"",
            "[[grant]]\nuid = 1\nprefix = \"a\"\nextra = 2",
            "[grant]",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
    }
}
