// SPDX-License-Identifier: GPL-2.0
//! `luo-vmm-demo`: a VM host across a live update, for `make demo`.
//!
//! Usage: `luo-vmm-demo -s 1|2 [--size SIZE] [--seed N]`
//!
//! - `-s 1` (the old kernel): creates the VM's guest RAM, a memfd of SIZE
//!   bytes (`--size`, else `luo.demo_size=` on the kernel command line,
//!   else 256M; K/M/G/T suffixes), fills it with a reproducible pattern
//!   through a shared mapping, writes the VM state (vCPU registers, seed,
//!   size; a small JSON text) into a second memfd, preserves both in the
//!   LUO session `vm-demo` and leaves the session to a holder process. Its
//!   last line is `DEMO: reboot`; the caller then kexecs.
//! - `-s 2` (the new kernel): retrieves the session and both memfds, checks
//!   the VM state and every byte of guest RAM, finishes the session and
//!   prints a report.
//!
//! Session `vm-demo`, tokens: `0x1` guest RAM, `0x2` VM state.
//!
//! Every line starts with `DEMO: `; the host harness (`scripts/demo.sh`)
//! reads `DEMO: preserved N bytes ... in T ms`, `DEMO: reboot`,
//! `DEMO: restored ...` and `DEMO: verified N bytes OK`. Exit status 0 on
//! success, 1 on any error or mismatch (reported as `DEMO: error: ...` /
//! `DEMO: MISMATCH ...`), 2 for a usage error.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod mapping;
mod pattern;
mod state;
mod units;

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use liveupdate::{Device, Error};
use rustix::fs::{fstat, ftruncate, memfd_create, MemfdFlags};

use mapping::Mapping;
use state::Vm;
use units::{human, mib_per_s, ms, parse_size};

/// The LUO session that carries the VM.
const SESSION: &str = "vm-demo";
/// Token of the guest RAM memfd.
const TOKEN_RAM: u64 = 0x1;
/// Token of the VM state memfd.
const TOKEN_STATE: u64 = 0x2;
/// Guest RAM size without `--size` or `luo.demo_size=`.
const DEFAULT_SIZE: u64 = 256 << 20;
/// Kernel command line parameter with the guest RAM size.
const CMDLINE_SIZE: &str = "luo.demo_size";
/// Smallest guest RAM accepted.
const MIN_SIZE: u64 = 4096;

type R<T = ()> = Result<T, String>;

macro_rules! say {
    ($($arg:tt)*) => {{
        println!("DEMO: {}", format_args!($($arg)*));
    }};
}

struct Args {
    stage: u32,
    size: Option<u64>,
    seed: Option<u64>,
}

fn usage() -> ! {
    eprintln!("usage: luo-vmm-demo -s 1|2 [--size SIZE] [--seed N]");
    eprintln!("  -s 1: create, fill and preserve guest RAM and VM state in LUO session \"{SESSION}\"");
    eprintln!("  -s 2: after the kexec, retrieve and verify them, then finish the session");
    eprintln!(
        "  SIZE: bytes with optional K/M/G/T suffix (default: {CMDLINE_SIZE}= on /proc/cmdline, else 256M)"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut a = Args { stage: 0, size: None, seed: None };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "-s" => a.stage = value().parse().unwrap_or_else(|_| usage()),
            "--size" => {
                a.size = Some(parse_size(&value()).unwrap_or_else(|e| {
                    eprintln!("luo-vmm-demo: {e}");
                    usage()
                }))
            }
            "--seed" => {
                let v = value();
                let n = match v.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16).ok(),
                    None => v.parse().ok(),
                };
                a.seed = Some(n.unwrap_or_else(|| usage()));
            }
            _ => usage(),
        }
    }
    if !(1..=2).contains(&a.stage) {
        usage();
    }
    a
}

fn main() {
    liveupdate::holder::serve_if_holder();
    let args = parse_args();
    let result = match args.stage {
        1 => stage1(&args),
        _ => stage2(&args),
    };
    if let Err(e) = result {
        say!("error: {e}");
        std::process::exit(1);
    }
}

/// `luo.demo_size=` from the kernel command line, if present.
fn cmdline_size() -> R<Option<u64>> {
    let cmdline =
        std::fs::read_to_string("/proc/cmdline").map_err(|e| format!("cannot read /proc/cmdline: {e}"))?;
    let key = format!("{CMDLINE_SIZE}=");
    match cmdline.split_whitespace().find_map(|w| w.strip_prefix(&key)) {
        Some(v) => parse_size(v).map(Some).map_err(|e| format!("{CMDLINE_SIZE}=: {e}")),
        None => Ok(None),
    }
}

fn memfd(name: &str) -> R<OwnedFd> {
    memfd_create(name, MemfdFlags::CLOEXEC).map_err(|e| format!("memfd_create({name}): {e}"))
}

fn to_usize(n: u64) -> R<usize> {
    usize::try_from(n).map_err(|_| format!("{n} bytes do not fit in the address space"))
}

fn stage1(args: &Args) -> R {
    let size = match args.size {
        Some(s) => s,
        None => cmdline_size()?.unwrap_or(DEFAULT_SIZE),
    };
    if size < MIN_SIZE {
        return Err(format!("guest RAM of {size} bytes is too small (at least {MIN_SIZE})"));
    }
    let seed = args.seed.unwrap_or_else(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        pattern::word(nanos, u64::from(std::process::id()))
    });
    let vm = Vm { seed, ram_bytes: size };
    say!(
        "stage 1: VM host, session \"{SESSION}\": {} of guest RAM ({size} bytes), seed {seed:#018x}",
        human(size)
    );

    // Guest RAM: a memfd, mapped shared like a VMM maps it, filled.
    let t = Instant::now();
    let ram = memfd("vm-demo-ram")?;
    ftruncate(&ram, size).map_err(|e| format!("cannot size guest RAM to {size} bytes: {e}"))?;
    let alloc;
    {
        // MAP_POPULATE: the kernel allocates (and zeroes) every page here.
        let mut map = Mapping::new(&ram, to_usize(size)?, true)
            .map_err(|e| format!("cannot map {} of guest RAM: {e}", human(size)))?;
        alloc = t.elapsed();
        pattern::fill(map.bytes_mut(), seed);
    }
    let fill = t.elapsed();
    say!(
        "filled {} in {} ms: allocate {} ms, write {} ms ({} MiB/s)",
        human(size),
        ms(fill),
        ms(alloc),
        ms(fill - alloc),
        mib_per_s(size, fill - alloc)
    );

    // VM state: a small text in its own memfd.
    let text = vm.render(SESSION, TOKEN_RAM);
    let st = memfd("vm-demo-state")?;
    File::from(st.try_clone().map_err(|e| e.to_string())?)
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot write the VM state: {e}"))?;
    say!("VM state: {} bytes ({} vCPUs, registers, seed, RAM size)", text.len(), state::VCPUS);

    // Preserve both in one session.
    let t = Instant::now();
    let dev = Device::open().map_err(|e| e.to_string())?;
    let session = dev.create_session(SESSION).map_err(|e| e.to_string())?;
    session.preserve_fd(&ram, TOKEN_RAM).map_err(|e| format!("guest RAM: {e}"))?;
    session.preserve_fd(&st, TOKEN_STATE).map_err(|e| format!("VM state: {e}"))?;
    let preserve = t.elapsed();
    let total = size + text.len() as u64;
    say!(
        "preserved 2 fds ({total} bytes) in {} ms: session \"{SESSION}\", token {TOKEN_RAM:#x} guest RAM, \
         token {TOKEN_STATE:#x} VM state",
        ms(preserve)
    );

    // The session lives as long as its fd: a holder keeps it to the kexec.
    let holder = liveupdate::holder::spawn(&[session.as_fd()], [SESSION])
        .map_err(|e| format!("cannot start the session holder: {e}"))?;
    say!("holder pid {} keeps session \"{SESSION}\" open across the kexec", holder.id());
    drop(session);
    drop(dev);
    say!("reboot");
    Ok(())
}

fn stage2(args: &Args) -> R {
    let uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()));
    match uptime {
        Some(u) => say!("stage 2: new kernel, userspace {u:.2} s after it started"),
        None => say!("stage 2: new kernel"),
    }

    let t = Instant::now();
    let dev = Device::open().map_err(|e| e.to_string())?;
    let session = match dev.retrieve_session(SESSION) {
        Ok(s) => s,
        Err(e @ Error::NotFound { .. }) => {
            return Err(format!("{e}: the previous kernel handed over no session \"{SESSION}\""))
        }
        Err(e) => return Err(e.to_string()),
    };
    let ram = session.retrieve_fd(TOKEN_RAM).map_err(|e| format!("guest RAM (token {TOKEN_RAM:#x}): {e}"))?;
    let st =
        session.retrieve_fd(TOKEN_STATE).map_err(|e| format!("VM state (token {TOKEN_STATE:#x}): {e}"))?;
    let restore = t.elapsed();
    let ram_size = fstat(&ram).map_err(|e| format!("fstat(guest RAM): {e}"))?.st_size as u64;
    // Read from offset 0: a memfd comes back with its file position (here
    // at the end, where stage 1's write left it).
    let st_size = fstat(&st).map_err(|e| format!("fstat(VM state): {e}"))?.st_size as u64;
    let mut text = vec![0u8; to_usize(st_size)?];
    File::from(st).read_exact_at(&mut text, 0).map_err(|e| format!("cannot read the VM state: {e}"))?;
    let total = ram_size + text.len() as u64;
    say!(
        "restored 2 fds ({total} bytes) in {} ms: session \"{SESSION}\", guest RAM {} ({ram_size} bytes), \
         VM state {} bytes",
        ms(restore),
        human(ram_size),
        text.len()
    );

    // The VM state: parse it, then rebuild it and compare every byte.
    let t = Instant::now();
    let text = String::from_utf8(text).map_err(|_| "MISMATCH: the VM state is not text".to_string())?;
    let vm = Vm::parse(&text).map_err(|e| format!("MISMATCH: {e}"))?;
    let expected = vm.render(SESSION, TOKEN_RAM);
    if text != expected {
        let at = text.bytes().zip(expected.bytes()).take_while(|(a, b)| a == b).count();
        say!(
            "MISMATCH: VM state differs from byte {at} on ({} bytes, expected {})",
            text.len(),
            expected.len()
        );
        return Err("VM state corrupted".into());
    }
    say!("VM state OK: seed {:#018x}, {} vCPUs, guest RAM {} bytes", vm.seed, state::VCPUS, vm.ram_bytes);
    if ram_size != vm.ram_bytes {
        say!("MISMATCH: guest RAM memfd has {ram_size} bytes, the VM state says {}", vm.ram_bytes);
        return Err("guest RAM has the wrong size".into());
    }
    let wanted = match args.size {
        Some(s) => Some(s),
        None => cmdline_size()?,
    };
    if let Some(w) = wanted.filter(|&w| w != ram_size) {
        say!("MISMATCH: guest RAM has {ram_size} bytes, {CMDLINE_SIZE}= (or --size) says {w}");
        return Err("guest RAM has the wrong size".into());
    }
    if ram_size < MIN_SIZE {
        return Err(format!("guest RAM of {ram_size} bytes is too small (at least {MIN_SIZE})"));
    }

    // Guest RAM: every byte against the pattern.
    {
        let map = Mapping::new(&ram, to_usize(ram_size)?, false)
            .map_err(|e| format!("cannot map {} of guest RAM: {e}", human(ram_size)))?;
        if let Err(m) = pattern::verify(map.bytes(), vm.seed) {
            say!("MISMATCH: {} of {} words of guest RAM differ; the first:", m.words, ram_size.div_ceil(8));
            for b in &m.first {
                say!(
                    "MISMATCH:   offset {:#012x} (page {}): expected {:#018x}, found {:#018x}",
                    b.offset,
                    b.offset / 4096,
                    b.expected,
                    b.found
                );
            }
            return Err("guest RAM corrupted".into());
        }
    }
    let verify = t.elapsed();
    say!(
        "verified {total} bytes OK in {} ms ({} MiB/s): every byte of guest RAM and VM state",
        ms(verify),
        mib_per_s(total, verify)
    );

    let t = Instant::now();
    session.finish().map_err(|e| e.to_string())?;
    let finish = t.elapsed();
    say!("finished session \"{SESSION}\" in {} ms: the VM now runs on the restored memory", ms(finish));
    drop(session);
    drop(dev);
    say!(
        "report: {total} bytes ({} guest RAM + {} bytes VM state) came through the kexec; \
         retrieve {} ms, verify {} ms, finish {} ms",
        human(ram_size),
        text.len(),
        ms(restore),
        ms(verify),
        ms(finish)
    );
    Ok(())
}
