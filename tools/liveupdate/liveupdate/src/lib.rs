// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//! Safe, typed access to the Linux Live Update Orchestrator (LUO).
//!
//! LUO lets a VMM keep resources (today memfds, e.g. guest memory) across a
//! kexec into a new kernel. Userspace talks to it through `/dev/liveupdate`
//! ([`Device`]) and per-session fds: an [`OutgoingSession`] (created here,
//! handed to the next kernel) or an [`IncomingSession`] (handed over by the
//! previous one); [`Session`] is the untyped fd for sessions received from
//! elsewhere.
//!
//! ```no_run
//! use liveupdate::{Device, Error};
//! use rustix::fs::{memfd_create, MemfdFlags};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Before the live update: preserve a memfd in a named session.
//! let dev = Device::open()?;
//! let session = dev.create_session("vm-42")?;
//! let mem = memfd_create("guest-ram", MemfdFlags::CLOEXEC)?;
//! session.preserve_fd(&mem, 0x1)?;
//! // ... keep `session` open and kexec (see `kexec`).
//!
//! // After the live update, in the new kernel:
//! let dev = Device::open()?;
//! match dev.retrieve_session("vm-42") {
//!     Ok(session) => {
//!         let mem = session.retrieve_fd(0x1)?;
//!         session.finish()?;
//!     }
//!     Err(Error::NotFound { .. }) => { /* a fresh boot: nothing handed over */ }
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Errors are [`Error`] values, one variant per errno LUO documents, with
//! the failed [`Op`]; they convert into [`std::io::Error`] keeping the
//! errno. Session names are checked on the client side (1 to 63 bytes, no
//! NUL) before the kernel sees them; [`Device::create_session_raw`]
//! skips that check.
//!
//! Every type is `Send` and `Sync` (they are fds; the kernel serializes
//! operations on a device or session). [`IncomingSession::finish`] can block
//! while the kernel releases the files: call it from `spawn_blocking` in
//! async code. `/dev/liveupdate` allows a single opener: on a host with
//! many VMMs, let `luod` own it and use its client.
//!
//! [`kexec`] loads the next kernel; [`cmdline`] reads and edits kernel
//! command lines, whose kernel parameters end at a standalone `--`.
//!
//! The raw kernel ABI is in [`uapi`]; its layout is checked against the
//! kernel header by this crate's tests. All `unsafe` code is in one private
//! module that issues the ioctls.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cmdline;
mod device;
mod error;
pub mod holder;
pub mod kexec;
mod name;
mod session;
#[allow(unsafe_code)]
mod sys;
pub mod timeline;
pub mod uapi;

pub use device::Device;
pub use error::{Error, NameError, Op, Result};
pub use name::{decode_name, encode_name, MAX_NAME_LEN};
pub use session::{IncomingSession, OutgoingSession, Session};
