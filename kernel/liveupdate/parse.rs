// SPDX-License-Identifier: GPL-2.0

//! What the handover parser reads pages through ([`PageSource`]), and why part of the
//! previous kernel's handover was not used ([`ParseError`]).

use kernel::{
    alloc::AllocError,
    error::Error,
    kho::IncomingPhys,
    prelude::*, //
};

/// A failure to take over part of the handover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Out of memory while copying it: the data itself may be fine.
    NoMemory,
    /// The data is corrupt, for the reason given.
    Corrupt(&'static str),
}

impl From<AllocError> for ParseError {
    fn from(_: AllocError) -> Self {
        Self::NoMemory
    }
}

impl From<Error> for ParseError {
    /// The allocating calls used while parsing fail only for lack of memory.
    fn from(_: Error) -> Self {
        Self::NoMemory
    }
}

impl kernel::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoMemory => f.write_str("out of memory while reading it"),
            Self::Corrupt(why) => f.write_str(why),
        }
    }
}

/// The result of parsing a piece of the handover.
pub(crate) type ParseResult<T = ()> = core::result::Result<T, ParseError>;

/// A page of the previous kernel's handover, as a [`PageSource`] gives it.
pub(crate) trait PageBytes {
    /// The page's bytes.
    fn bytes(&self) -> &[u8];
}

/// Where the handover parser takes the previous kernel's pages from: KHO at boot
/// ([`crate::block::KhoPages`]), or pages a KUnit test made up. The parser only sees bytes
/// through it, so every way the handover can be corrupt can be tested without a kexec.
pub(crate) trait PageSource {
    /// A page taken from the source, given back (freed) when dropped.
    type Page: PageBytes;

    /// Takes the page at `phys`, an address read from the handover. Fails if `phys` names no
    /// page of the handover (unaligned, not preserved, beyond memory), or one taken already,
    /// so that a chain that loops back fails.
    fn take(&mut self, phys: IncomingPhys) -> Result<Self::Page>;
}
