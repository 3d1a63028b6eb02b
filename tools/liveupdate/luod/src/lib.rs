// SPDX-License-Identifier: GPL-2.0
//! luod, the Live Update Orchestrator daemon, and its client library.
//!
//! luod is the single owner of `/dev/liveupdate`. VMMs (and `luoctl`)
//! talk to it over a `SOCK_SEQPACKET` Unix socket (default
//! [`client::DEFAULT_SOCKET`]) with the protocol of [`proto`], passing
//! file descriptors with `SCM_RIGHTS`. See tools/liveupdate/README.md.
#![warn(missing_docs)]

pub mod backend;
// The protocol and the client are crates of their own (licensed
// Apache-2.0 OR BSD-3-Clause for VMMs); these paths stay for luod's code.
pub use luod_client as client;
pub use luod_proto as proto;
pub use luod_proto::fdpass;
pub mod daemon;
pub mod events;
pub mod image;
pub mod instance;
pub mod keeper;
pub mod names;
pub mod notify;
pub mod peer;
pub mod policy;
pub mod server;
pub mod session;

/// Log a line to stderr (the journal under systemd). Lines that start
/// with `warning:` have the journal's warning priority, others info: under
/// journald (`JOURNAL_STREAM` set) each line starts with its `<N>` prefix
/// (sd-daemon(3)); elsewhere with `luod[pid]:`.
pub fn log(msg: &str) {
    use std::io::Write;
    let warning = msg.starts_with("warning:") || msg.starts_with("cannot ");
    let line = if std::env::var_os("JOURNAL_STREAM").is_some() {
        format!("<{}>{msg}\n", if warning { 4 } else { 6 })
    } else {
        format!("luod[{}]: {msg}\n", std::process::id())
    };
    // One write per line, so lines do not interleave with other writers.
    let _ = std::io::stderr().write_all(line.as_bytes());
}
