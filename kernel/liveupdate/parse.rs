// SPDX-License-Identifier: GPL-2.0

//! Why part of the previous kernel's handover was not used.

use kernel::{
    alloc::AllocError,
    error::Error, //
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
