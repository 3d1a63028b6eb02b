// SPDX-License-Identifier: GPL-2.0
//! A VMM-side flow against luod: preserve guest RAM through the daemon
//! (which keeps the session, so this process may exit or crash), and get
//! it back after the kexec.
//!
//! `vmm_flow save [SOCKET]` / `vmm_flow restore [SOCKET]`.

use std::io::{Read, Seek, SeekFrom, Write};

use luod::client::{Client, ClientError, DEFAULT_SOCKET};
use rustix::fs::{memfd_create, MemfdFlags};

const SESSION: &str = "example-vm";
const RAM: u64 = 1;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let socket = std::env::args().nth(2).unwrap_or_else(|| DEFAULT_SOCKET.into());
    let luod = Client::connect(&socket)?;
    match mode.as_str() {
        "save" => {
            let mut ram = std::fs::File::from(memfd_create("guest-ram", MemfdFlags::CLOEXEC)?);
            ram.write_all(b"guest memory contents")?;
            luod.create(SESSION)?;
            luod.preserve(SESSION, RAM, &ram)?;
            println!("preserved through luod: this process may exit now");
            Ok(())
        }
        "restore" => match luod.retrieve_session(SESSION) {
            Ok(()) => {
                let mut ram = std::fs::File::from(luod.retrieve_fd(SESSION, RAM)?);
                ram.seek(SeekFrom::Start(0))?;
                let mut data = String::new();
                ram.read_to_string(&mut data)?;
                println!("restored guest RAM: {data:?}");
                luod.finish(SESSION)?;
                Ok(())
            }
            Err(ClientError::Refused(e)) if e.errno == libc::ENOENT as u32 => {
                println!("nothing handed over (fresh boot)");
                Ok(())
            }
            Err(e) => Err(e.into()),
        },
        _ => Err("usage: vmm_flow save|restore [SOCKET]".into()),
    }
}
