// SPDX-License-Identifier: GPL-2.0

//! `/dev/liveupdate`: creating and retrieving sessions.

use crate::{
    luo,
    session,
    ucmd::Ucmd, //
};
use kernel::{
    fs::{
        file::{
            flags::O_CLOEXEC,
            FileDescriptorReservation, //
        },
        File, //
    },
    ioctl::{
        _IO, //
        _IOC_NR,
    },
    liveupdate::uapi,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    prelude::*,
    sync::atomic::{
        Atomic,
        Full,
        Release, //
    },
    uapi::{
        LIVEUPDATE_CMD_BASE,
        LIVEUPDATE_CMD_CREATE_SESSION,
        LIVEUPDATE_CMD_RETRIEVE_SESSION,
        LIVEUPDATE_IOCTL_TYPE, //
    }, //
};

/// Set while `/dev/liveupdate` is open: it has a single opener.
static IN_USE: Atomic<i32> = Atomic::new(0);

/// The misc device.
pub(crate) struct LuoDevice;

impl LuoDevice {
    /// Registers `/dev/liveupdate`. It stays registered for the life of the kernel.
    pub(crate) fn register() -> Result {
        let reg = KBox::pin_init(
            MiscDeviceRegistration::<LuoDevice>::register(MiscDeviceOptions {
                name: c"liveupdate",
            }),
            GFP_KERNEL,
        )?;
        core::mem::forget(reg);
        Ok(())
    }
}

#[vtable]
impl MiscDevice for LuoDevice {
    type Ptr = ();

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<()> {
        if IN_USE.cmpxchg(0, 1, Full).is_err() {
            return Err(EBUSY);
        }
        // The sessions of the previous kernel are rebuilt on first open; if that failed the
        // device stays unusable (as with the C LUO), so userspace notices.
        if luo().and_then(|l| l.deserialize()).is_err() {
            IN_USE.store(0, Release);
            return Err(EIO);
        }
        Ok(())
    }

    fn release((): (), _file: &File) {
        IN_USE.store(0, Release);
    }

    fn ioctl((): (), _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        const T: u32 = LIVEUPDATE_IOCTL_TYPE;
        const CREATE: u32 = _IO(T, LIVEUPDATE_CMD_CREATE_SESSION);
        const RETRIEVE: u32 = _IO(T, LIVEUPDATE_CMD_RETRIEVE_SESSION);
        let nr = _IOC_NR(cmd);
        let expected = match nr.wrapping_sub(LIVEUPDATE_CMD_BASE) {
            0 => CREATE,
            1 => RETRIEVE,
            _ => return Err(EINVAL),
        };
        let ucmd = Ucmd::new(arg)?;
        if cmd != expected {
            return Err(ENOIOCTLCMD);
        }
        // Both commands use the same 72-byte layout.
        ucmd.check_min(size_of::<uapi::CreateSession>())?;
        let mut a: uapi::CreateSession = ucmd.read()?;
        let fd = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
        let luo = luo()?;
        luo.check_not_frozen()?;
        let file = if cmd == CREATE {
            session::create(luo, &a.name)?
        } else {
            session::retrieve(luo, &a.name)?
        };
        a.fd = fd.reserved_fd() as i32;
        // On EFAULT the file is dropped: an outgoing session is closed again. An incoming one
        // stays retrievable (unlike the C LUO, which finishes it and loses its data).
        if let Err(e) = ucmd.respond(&a) {
            if cmd == RETRIEVE {
                session::unretrieve(luo, file);
            }
            return Err(e);
        }
        fd.fd_install(file);
        Ok(0)
    }
}
