// SPDX-License-Identifier: GPL-2.0
//! luod, the Live Update Orchestrator daemon, and its client library.
//!
//! luod is the single owner of `/dev/liveupdate`. VMMs (and `luoctl`)
//! talk to it over a `SOCK_SEQPACKET` Unix socket (default
//! [`client::DEFAULT_SOCKET`]) with the protocol of [`proto`], passing
//! file descriptors with `SCM_RIGHTS`. See tools/liveupdate/README.md.
#![warn(missing_docs)]

pub mod backend;
pub mod client;
pub mod fdpass;
pub mod keeper;
pub mod notify;
pub mod policy;
pub mod proto;
pub mod server;

/// Log a line to stderr (the journal under systemd).
pub fn log(msg: &str) {
    use std::io::Write;
    // One write per line, so lines do not interleave with other writers.
    let line = format!("luod[{}]: {msg}\n", std::process::id());
    let _ = std::io::stderr().write_all(line.as_bytes());
}
