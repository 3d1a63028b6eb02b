// SPDX-License-Identifier: GPL-2.0

//! `/dev/liveupdate`: creating and retrieving sessions.

use crate::{
    luo,
    session,
    ucmd::{
        self,
        Ioctl, //
    }, //
};
use kernel::{
    fs::{
        file::{
            flags::O_CLOEXEC,
            FileDescriptorReservation, //
        },
        File, //
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
        LIVEUPDATE_CMD_CREATE_SESSION,
        LIVEUPDATE_CMD_RETRIEVE_SESSION, //
    }, //
};

/// The ioctls of `/dev/liveupdate`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DeviceCmd {
    Create,
    Retrieve,
}

/// Both commands use the same 72-byte layout.
const IOCTLS: [Ioctl<DeviceCmd>; 2] = [
    Ioctl::new::<uapi::CreateSession>(LIVEUPDATE_CMD_CREATE_SESSION, DeviceCmd::Create),
    Ioctl::new::<uapi::CreateSession>(LIVEUPDATE_CMD_RETRIEVE_SESSION, DeviceCmd::Retrieve),
];

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
        // The sessions of the previous kernel are rebuilt on first open; if that fails, this
        // open and every later one fail with `EIO` (as with the C LUO), so userspace notices.
        if let Err(e) = luo().and_then(|l| l.deserialize()) {
            IN_USE.store(0, Release);
            return Err(e);
        }
        Ok(())
    }

    fn release((): (), _file: &File) {
        IN_USE.store(0, Release);
    }

    fn ioctl((): (), _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let (op, ucmd) = ucmd::decode(&IOCTLS, cmd, arg)?;
        let mut a: uapi::CreateSession = ucmd.read()?;
        let fd = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
        let luo = luo()?;
        let state = luo.enter()?;
        let (file, retrieved) = if op == DeviceCmd::Create {
            (session::create(luo, &a.name)?, None)
        } else {
            let (file, r) = session::retrieve(luo, &a.name)?;
            (file, Some(r))
        };
        drop(state);
        a.fd = fd.reserved_fd() as i32;
        if let Err(e) = ucmd.respond(&a) {
            // A new outgoing session is closed again when `file` is dropped. A retrieve is
            // taken back, so the session stays retrievable (the C LUO closes the file, which
            // finishes the session and loses its data).
            if let Some(r) = retrieved {
                session::unretrieve(r);
            }
            return Err(e);
        }
        fd.fd_install(file);
        Ok(0)
    }
}
