// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//! A VMM-side flow against the raw device (no luod): preserve guest RAM
//! before the kexec, get it back after.
//!
//! Run as root, with LUO: `raw_device save` (then keep the process alive,
//! or hand the session fd on, until the kexec) and `raw_device restore`.

use std::io::{Read, Seek, SeekFrom, Write};

use liveupdate::{Device, Error};
use rustix::fs::{memfd_create, MemfdFlags};

const SESSION: &str = "example-vm";
const RAM: u64 = 1;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::open()?;
    match std::env::args().nth(1).as_deref() {
        Some("save") => {
            let mut ram = std::fs::File::from(memfd_create("guest-ram", MemfdFlags::CLOEXEC)?);
            ram.write_all(b"guest memory contents")?;
            let session = dev.create_session(SESSION)?;
            session.preserve_fd(&ram, RAM)?;
            println!("preserved; holding the session until killed or kexec'd");
            // The session must stay open: park this thread forever.
            loop {
                std::thread::park();
            }
        }
        Some("restore") => match dev.retrieve_session(SESSION) {
            Ok(session) => {
                let mut ram = std::fs::File::from(session.retrieve_fd(RAM)?);
                ram.seek(SeekFrom::Start(0))?;
                let mut data = String::new();
                ram.read_to_string(&mut data)?;
                println!("restored guest RAM: {data:?}");
                // Finishing can block: in async code use spawn_blocking.
                session.finish()?;
                Ok(())
            }
            Err(Error::NotFound { .. }) => {
                println!("nothing handed over (fresh boot)");
                Ok(())
            }
            Err(e) => Err(e.into()),
        },
        _ => Err("usage: raw_device save|restore".into()),
    }
}
