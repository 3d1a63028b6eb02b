// SPDX-License-Identifier: GPL-2.0
//! `--tenants`: luod as the boundary between the tenants of a shared host
//! (luod.8.md, SECURITY MODEL), one case per attack:
//!
//! - single boot: the uid of each request is its sender's (`SO_PASSCRED`),
//!   grants on whole name components, overlapping grants
//!   refused at start, a client whose fd blocks in `close()` (a TCP socket
//!   with `SO_LINGER`) stalling no other client, connection, session, file
//!   and byte quotas, the idle timeout, files not owned, not open
//!   read-write or not files, `CAP_SYS_BOOT` rather than uid 0, a next
//!   kernel without the LUO format table or without a format a preserved
//!   file needs (with `--hugetlb`, on kernels with the Rust memfd handler
//!   booted with 2 MiB huge pages, also that of a hugetlbfs memfd,
//!   hugetlb-memfd-rs-v1), fd store names that are any kernel name, and a
//!   second luod on the same state directory;
//! - across a kexec (`-s 1`, `-s 2`): a manifest made stale after the
//!   kernel was loaded gives uid A nothing of the session uid B then
//!   created under the same name, and loading refuses to drop unfinished
//!   incoming sessions unless told to.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use luod::client::Client;
use luod::proto::{self, Request, State};

use crate::child::{as_root_child, as_uid, fork_as};
use crate::wire::{self, Got};
use crate::{
    connect, connect_to, junk_kernel, luod_alive, luod_cmd, memfd, names, next_cmdline, paths, pattern,
    read_all, refused, s, start_luod, Case, Ctx, Systemd, R, UID_A, UID_B,
};

/// Granted `vm-42`: whole components only.
const UID_C: u32 = 1003;
/// Small quotas: 2 sessions, 3 files, 8 KiB, 2 connections.
const UID_D: u32 = 1004;
/// An idle timeout of 2 s.
const UID_E: u32 = 1005;

/// The single-boot policy: default deny, a grant per tenant.
pub fn single_policy() -> String {
    format!(
        "# luod-tests --tenants\nungranted = \"deny\"\n\n\
         [[grant]]\nuid = {UID_A}\nnames = [\"vm-a\"]\n\n\
         [[grant]]\nuid = {UID_C}\nnames = [\"vm-42\"]\n\n\
         [[grant]]\nuid = {UID_D}\nnames = [\"q\"]\nsessions = 2\nfiles = 3\nbytes = 8192\nconnections = 2\n\n\
         [[grant]]\nuid = {UID_E}\nnames = [\"idle\"]\nidle_timeout = 2\n"
    )
}

/// The kexec policy: uids A and B have no grant and may use any name, so
/// both can call a session `vm-42` (each in its own namespace).
pub fn kexec_policy() -> String {
    "# luod-tests --tenants -s 1|2\nungranted = \"allow\"\n".to_string()
}

const SECOND: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// Helpers

/// A luod beside the suite's own, on its own socket and state directory
/// (`tag`), with `--fake-device` (the suite's luod holds /dev/liveupdate)
/// and no holder.
fn extra_luod(tag: &str, policy: &str) -> Result<(Child, String), String> {
    let p = paths();
    let sock = format!("{}-{tag}", p.sock);
    let state = format!("{}-{tag}", p.state);
    let pol = format!("{}-{tag}", p.policy);
    std::fs::write(&pol, policy).map_err(s)?;
    let _ = std::fs::remove_file(&sock);
    let child = luod_cmd(&sock, &state, &pol, true)
        .arg("--no-holder")
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting luod: {e}"))?;
    Ok((child, sock))
}

/// Wait up to `t` for `child` to exit.
fn wait_exit(child: &mut Child, t: Duration) -> Result<Option<ExitStatus>, String> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().map_err(s)? {
            return Ok(Some(st));
        }
        if start.elapsed() > t {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait up to `t` for a luod to answer `Status` on `sock`.
fn wait_serving(child: &mut Child, sock: &str, t: Duration) -> R {
    let start = Instant::now();
    loop {
        if let Ok(cl) = Client::connect(sock) {
            if cl.status().is_ok() {
                return Ok(());
            }
        }
        if let Some(st) = child.try_wait().map_err(s)? {
            return Err(format!("luod exited ({st}); see its messages above"));
        }
        ensure!(start.elapsed() < t, "luod did not answer within {t:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// `/sys/kernel/kexec_loaded`; "no kexec" on a kernel without kexec (a
/// `--host` run: there `kexec_file_load` fails with `ENOSYS`).
fn kexec_loaded() -> Result<String, String> {
    match std::fs::read_to_string("/sys/kernel/kexec_loaded") {
        Ok(v) => Ok(v.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && paths().host => Ok("no kexec".into()),
        Err(e) => Err(format!("/sys/kernel/kexec_loaded: {e}")),
    }
}

/// Bring the loopback interface up (`SIOCSIFFLAGS`); Linux gives it
/// 127.0.0.1 when it comes up.
fn loopback_up() -> R {
    let sock = rustix::net::socket(rustix::net::AddressFamily::INET, rustix::net::SocketType::DGRAM, None)
        .map_err(|e| format!("an AF_INET socket (CONFIG_INET?): {e}"))?;
    // SAFETY: ifreq is plain data; the ioctls read and write it.
    unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, b) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *b as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(format!("SIOCGIFFLAGS lo: {}", std::io::Error::last_os_error()));
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(format!("SIOCSIFFLAGS lo up: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn setsockopt_int(fd: &OwnedFd, level: i32, opt: i32, v: i32) -> R {
    // SAFETY: an int option of our own socket.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    ensure!(r == 0, "setsockopt({level}, {opt}): {}", std::io::Error::last_os_error());
    Ok(())
}

/// A loopback TCP connection whose close blocks: the peer (returned, and
/// never read) has a tiny receive buffer, the client's send buffer is full
/// and it has `SO_LINGER` on with `linger` seconds, so its last `close()`
/// waits `linger` seconds for data that cannot leave. Dropping the peer
/// resets the connection and ends the wait.
fn stuck_tcp(linger: i32) -> Result<(OwnedFd, OwnedFd), String> {
    use rustix::net::{AddressFamily, SocketType};
    let lst = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).map_err(s)?;
    setsockopt_int(&lst, libc::SOL_SOCKET, libc::SO_RCVBUF, 2048)?;
    let lo = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0);
    rustix::net::bind(&lst, &lo).map_err(|e| format!("bind 127.0.0.1: {e}"))?;
    rustix::net::listen(&lst, 1).map_err(s)?;
    let addr = rustix::net::getsockname(&lst).map_err(s)?;
    let addr = std::net::SocketAddrV4::try_from(addr).map_err(|e| format!("getsockname: {e:?}"))?;
    let cli = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).map_err(s)?;
    setsockopt_int(&cli, libc::SOL_SOCKET, libc::SO_SNDBUF, 4096)?;
    rustix::net::connect(&cli, &addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let peer = rustix::net::accept(&lst).map_err(s)?;
    drop(lst);
    // Fill: write without blocking until the send buffer stays full.
    let flags = rustix::fs::fcntl_getfl(&cli).map_err(s)?;
    rustix::fs::fcntl_setfl(&cli, flags | rustix::fs::OFlags::NONBLOCK).map_err(s)?;
    let chunk = vec![0x5au8; 16 * 1024];
    let (mut sent, mut full) = (0usize, 0);
    while full < 3 {
        match rustix::io::write(&cli, &chunk) {
            Ok(n) => sent += n,
            Err(rustix::io::Errno::AGAIN) => {
                full += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("filling the socket: {e}")),
        }
        ensure!(sent < 64 << 20, "64 MiB written and the socket is not full");
    }
    rustix::fs::fcntl_setfl(&cli, flags).map_err(s)?;
    let l = libc::linger { l_onoff: 1, l_linger: linger };
    // SAFETY: a struct linger option of our own socket.
    let r = unsafe {
        libc::setsockopt(
            cli.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    ensure!(r == 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    Ok((cli, peer))
}

/// Drop `CAP_SYS_BOOT` from this process's effective set (capset).
fn drop_cap_sys_boot() -> R {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_SYS_BOOT: u32 = 22;
    let mut h = Header { version: VERSION_3, pid: 0 };
    let mut d = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data structs.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) != 0 {
            return Err(format!("capget: {}", std::io::Error::last_os_error()));
        }
        d[0].effective &= !(1 << CAP_SYS_BOOT);
        if libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()) != 0 {
            return Err(format!("capset: {}", std::io::Error::last_os_error()));
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").map_err(s)?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or("no CapEff in /proc/self/status")?;
    ensure!(eff & (1 << CAP_SYS_BOOT) == 0, "CAP_SYS_BOOT still effective: {eff:#x}");
    ensure!(rustix::process::getuid().is_root(), "not uid 0");
    Ok(())
}

/// The fd store name of a session: `o`/`i` and the hex of its kernel name.
fn decode_fdname(n: &str) -> Option<(char, Vec<u8>)> {
    let dir = n.chars().next()?;
    let hex = &n[1..];
    if !matches!(dir, 'o' | 'i') || hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    let kname = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((dir, kname))
}

fn show_fdnames(names: &[String]) -> String {
    let v: Vec<String> = names
        .iter()
        .map(|n| match decode_fdname(n) {
            Some((d, k)) => format!("{n} ({d} {:?})", String::from_utf8_lossy(&k)),
            None => format!("{n} (not o/i + hex)"),
        })
        .collect();
    format!("[{}]", v.join(", "))
}

/// The fd store holds exactly the outgoing sessions `want` (kernel names).
fn store_is(sd: &Systemd, want: &[&[u8]]) -> R {
    let names: Vec<String> = sd.names().iter().map(|n| n.to_string()).collect();
    let mut got: Vec<(char, Vec<u8>)> = names
        .iter()
        .map(|n| decode_fdname(n).ok_or_else(|| n.clone()))
        .collect::<Result<_, _>>()
        .map_err(|n| {
            format!("fd store name {n:?} is not o or i + the hex of a kernel name: {}", show_fdnames(&names))
        })?;
    got.sort();
    let mut exp: Vec<(char, Vec<u8>)> = want.iter().map(|k| ('o', k.to_vec())).collect();
    exp.sort();
    ensure!(got == exp, "fd store holds {}, expected outgoing {:?}", show_fdnames(&names), {
        want.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect::<Vec<_>>()
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// Single boot

fn tenants_luod_start(c: &mut Ctx) -> R {
    start_luod(c)?;
    let st = connect()?.status().map_err(s)?;
    ensure!(st.version == proto::VERSION, "version {}", st.version);
    ensure!(st.device_ok, "device not usable: {}", st.device_error);
    Ok(())
}

/// A request is from whoever sent it (`SO_PASSCRED`), not from whoever
/// connected: root's connection used by uid A (kept across a `setuid()`,
/// or handed over) speaks as uid A. And every request has its sender's
/// credentials, the first one on a fresh connection too (a luod that turns
/// `SO_PASSCRED` on only after `accept()` sees some as the overflow uid).
fn credentials_per_request(_: &mut Ctx) -> R {
    let roots = connect()?;
    let st = roots.status().map_err(s)?;
    ensure!(st.uid == 0, "root's status says uid {}", st.uid);
    as_uid(UID_A, move || {
        refused(
            roots.create("vm-b"),
            libc::EPERM,
            "uid A creates vm-b (not its grant) on root's connection",
        )?;
        let st = roots.status().map_err(s)?;
        ensure!(st.uid == UID_A, "uid A's request on root's connection: luod saw uid {}", st.uid);
        let l = roots.list().map_err(s)?;
        ensure!(l.is_empty(), "uid A lists on root's connection: {l:?}");
        Ok(())
    })?;
    as_uid(UID_A, || {
        for i in 0..300 {
            let cl = connect()?;
            let st = cl.status().map_err(|e| format!("first request on fresh connection {i}: {e}"))?;
            ensure!(st.uid == UID_A, "first request on fresh connection {i}: luod saw uid {}", st.uid);
        }
        Ok(())
    })
}

/// A grant of `vm-42` covers `vm-42` and `vm-42/disk`, not `vm-420`.
fn grant_covers_whole_components(_: &mut Ctx) -> R {
    as_uid(UID_C, || {
        let cl = connect()?;
        for n in ["vm-420", "vm-4", "vm-42x/disk", "vm-42-disk"] {
            refused(cl.create(n), libc::EPERM, &format!("create {n:?} under a grant of vm-42"))?;
        }
        cl.create("vm-42").map_err(|e| format!("create vm-42: {e}"))?;
        cl.create("vm-42/disk").map_err(|e| format!("create vm-42/disk: {e}"))?;
        cl.preserve("vm-42/disk", 1, memfd(b"disk")?)
            .map_err(|e| format!("preserve into vm-42/disk: {e}"))?;
        let mut l = names(&cl.list().map_err(s)?);
        l.sort();
        ensure!(l == ["vm-42", "vm-42/disk"], "uid {UID_C} lists {l:?}");
        Ok(())
    })?;
    // Another tenant's grant does not extend to it.
    as_uid(UID_A, || refused(connect()?.create("vm-42/x"), libc::EPERM, "uid A creates vm-42/x"))?;
    // Root sees them by their kernel names.
    let l = names(&connect()?.list().map_err(s)?);
    for n in ["u1003/vm-42", "u1003/vm-42/disk"] {
        ensure!(l.iter().any(|x| x == n), "root does not see {n}: {l:?}");
    }
    as_uid(UID_C, || {
        let cl = connect()?;
        cl.close("vm-42/disk").map_err(s)?;
        cl.close("vm-42").map_err(s)
    })
}

/// Grants of two uids that overlap stop luod at start; grants that only
/// share a prefix of bytes do not.
fn overlapping_grants_refused(_: &mut Ctx) -> R {
    let grants = |a: &str, b: &str| {
        format!(
            "ungranted = \"deny\"\n[[grant]]\nuid = {UID_C}\nnames = [\"{a}\"]\n\
             [[grant]]\nuid = 1007\nnames = [\"{b}\"]\n"
        )
    };
    for (a, b) in [("vm-42", "vm-42/disk"), ("vm-42", "vm-42"), ("vm-42/disk", "vm-42")] {
        let (mut child, _) = extra_luod("overlap", &grants(a, b))?;
        match wait_exit(&mut child, Duration::from_secs(10))? {
            Some(st) if st.code().is_some_and(|c| c != 0) => {}
            Some(st) => return Err(format!("grants {a:?} (uid {UID_C}) and {b:?} (uid 1007): luod {st}")),
            None => {
                stop(child);
                return Err(format!(
                    "grants {a:?} (uid {UID_C}) and {b:?} (uid 1007) overlap, and luod is still running after 10 s"
                ));
            }
        }
    }
    // The control: vm-42 and vm-420 do not overlap.
    let (mut child, sock) = extra_luod("overlap", &grants("vm-42", "vm-420"))?;
    let r = wait_serving(&mut child, &sock, Duration::from_secs(20))
        .map_err(|e| format!("grants vm-42 and vm-420 (no overlap): {e}"));
    stop(child);
    r
}

/// A client passes a TCP socket whose last `close()` blocks for 10 s
/// (`SO_LINGER`, a full send buffer, a peer that never reads): whatever
/// luod does with it, other clients are served meanwhile.
fn linger_close_does_not_stall(_: &mut Ctx) -> R {
    loopback_up()?;
    let root = connect()?;
    root.create("linger").map_err(s)?;
    let sock = paths().sock.clone();
    let mut child = fork_as(None, move |side| {
        // The control: in this kernel, such a close does block.
        let (cli, peer) = stuck_tcp(1)?;
        let t = Instant::now();
        drop(cli);
        let blocked = t.elapsed();
        drop(peer);
        ensure!(
            blocked >= Duration::from_millis(800),
            "the control close with SO_LINGER 1 s returned after {blocked:?}: the setup does not stall"
        );
        let (cli, peer) = stuck_tcp(10)?;
        let conn = wire::connect(&sock).map_err(s)?;
        let req = proto::encode_request(&Request::Preserve { name: b"linger".to_vec(), token: 1 });
        wire::send(&conn, &req, &[cli.as_fd()]).map_err(s)?;
        // luod's copy is now the last one: its close is the one that waits.
        drop(cli);
        let t = Instant::now();
        side.ready()?;
        side.wait_go()?;
        let pending = !wire::readable(&conn, Duration::ZERO).map_err(s)?;
        // Reset the connection: the lingering close ends.
        drop(peer);
        let got = wire::recv(&conn, Duration::from_secs(20)).map_err(s)?;
        let what = match &got {
            Got::Packet(p) => match wire::reply_header(&p.data) {
                Ok((_, _, 0)) => "success".to_string(),
                Ok((_, _, e)) => format!("errno {e}"),
                Err(e) => e,
            },
            Got::HangUp => "a hang-up".into(),
            Got::Nothing => "nothing".into(),
        };
        println!(
            "# linger_close_does_not_stall: control close blocked {blocked:?}; the lingering client's request was {} \
             while the others ran, then got {what} after {:?}",
            if pending { "pending" } else { "answered" },
            t.elapsed()
        );
        ensure!(!matches!(got, Got::Nothing), "no reply to the lingering client 20 s after its peer reset");
        Ok(())
    })?;
    let r = child.wait_ready(Duration::from_secs(60)).and_then(|()| {
        // Let luod receive the socket and do what it does with it.
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        let cl = connect()?;
        let st = cl.status().map_err(|e| format!("root's status: {e}"));
        let t_status = t.elapsed();
        st?;
        cl.create("linger-other").map_err(|e| format!("root's create: {e}"))?;
        cl.close("linger-other").map_err(|e| format!("root's close: {e}"))?;
        let t_root = t.elapsed();
        ensure!(
            t_root < 2 * SECOND,
            "root's status, create and close took {t_root:?} (status alone {t_status:?}) while a client's fd lingered"
        );
        let t = Instant::now();
        as_uid(UID_A, || {
            let cl = connect()?;
            cl.status().map_err(s)?;
            cl.create("vm-a").map_err(s)?;
            cl.close("vm-a").map_err(s)
        })?;
        let t_a = t.elapsed();
        ensure!(t_a < 2 * SECOND, "uid A's status, create and close took {t_a:?} while a client's fd lingered");
        println!("# linger_close_does_not_stall: root's requests took {t_root:?}, uid A's {t_a:?}");
        Ok(())
    });
    let _ = child.go();
    let cr = child.join(Duration::from_secs(40));
    let _ = root.close("linger");
    r?;
    cr
}

/// A uid at its connection limit gets an error reply (op 0, `EDQUOT`) and
/// the hang-up; another uid still connects.
fn connection_quota(_: &mut Ctx) -> R {
    let sock = paths().sock.clone();
    let mut d = fork_as(Some(UID_D), move |side| {
        let c1 = connect()?;
        c1.status().map_err(|e| format!("first connection: {e}"))?;
        let c2 = connect()?;
        c2.status().map_err(|e| format!("second connection: {e}"))?;
        let c3 = wire::connect(&sock).map_err(s)?;
        let mut got = wire::recv(&c3, SECOND).map_err(s)?;
        if matches!(got, Got::Nothing) {
            // luod may answer only once asked something.
            let _ = wire::send(&c3, &proto::encode_request(&Request::Status), &[]);
            got = wire::recv(&c3, 5 * SECOND).map_err(s)?;
        }
        match got {
            Got::Packet(p) => {
                let (_, op, errno) = wire::reply_header(&p.data)?;
                ensure!(
                    op == 0 && errno == libc::EDQUOT as u32,
                    "third connection (limit 2): reply op {op}, errno {errno}; expected op 0, EDQUOT"
                );
            }
            Got::HangUp => return Err("third connection (limit 2) closed without an error reply".into()),
            Got::Nothing => return Err("third connection (limit 2) served: no refusal within 6 s".into()),
        }
        match wire::recv(&c3, 5 * SECOND).map_err(s)? {
            Got::HangUp => {}
            Got::Packet(p) => {
                return Err(format!("third connection: another packet after the refusal: {:?}", p.data))
            }
            Got::Nothing => return Err("third connection still open 5 s after its refusal".into()),
        }
        c1.status().map_err(|e| format!("first connection after the refusal: {e}"))?;
        c2.status().map_err(|e| format!("second connection after the refusal: {e}"))?;
        side.ready()?;
        side.wait_go()?;
        // A connection closed frees its slot.
        drop(c1);
        let t = Instant::now();
        loop {
            let ok = connect().and_then(|c| c.status().map_err(s));
            match ok {
                Ok(_) => break,
                Err(e) if t.elapsed() > 5 * SECOND => {
                    return Err(format!("no new connection 5 s after one of two was closed: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        drop(c2);
        Ok(())
    })?;
    let r = d.wait_ready(Duration::from_secs(60)).and_then(|()| {
        as_uid(UID_A, || {
            let a1 = connect()?;
            a1.status().map_err(s)?;
            let a2 = connect()?;
            a2.status().map_err(s)?;
            let a3 = connect()?;
            a3.status().map(drop).map_err(s)
        })
        .map_err(|e| format!("while uid {UID_D} is at its connection limit: {e}"))
    });
    let _ = d.go();
    let dr = d.join(Duration::from_secs(60));
    r?;
    dr
}

/// Sessions, files and bytes beyond a uid's quota: `EDQUOT`; freed again
/// by a close.
fn session_quota(_: &mut Ctx) -> R {
    as_uid(UID_D, || {
        let cl = connect()?;
        cl.create("q/1").map_err(s)?;
        cl.create("q/2").map_err(s)?;
        refused(cl.create("q/3"), libc::EDQUOT, "a third session (limit 2)")?;
        cl.preserve("q/1", 1, memfd(&pattern(4096, 1))?).map_err(|e| format!("4096 bytes: {e}"))?;
        cl.preserve("q/2", 1, memfd(&pattern(4096, 2))?).map_err(|e| format!("4096 more bytes: {e}"))?;
        refused(cl.preserve("q/2", 2, memfd(b"x")?), libc::EDQUOT, "byte 8193 (limit 8192)")?;
        cl.preserve("q/2", 3, memfd(b"")?).map_err(|e| format!("a third, empty file: {e}"))?;
        refused(cl.preserve("q/1", 4, memfd(b"")?), libc::EDQUOT, "a fourth file (limit 3)")?;
        // Root has no limits and its sessions do not count for uid D.
        cl.close("q/1").map_err(s)?;
        cl.create("q/3").map_err(|e| format!("create after a close freed a session: {e}"))?;
        cl.preserve("q/3", 1, memfd(&pattern(4096, 3))?)
            .map_err(|e| format!("4096 bytes after a close freed them: {e}"))?;
        cl.close("q/2").map_err(s)?;
        cl.close("q/3").map_err(s)
    })
}

/// A connection without a request for longer than the uid's idle timeout
/// (2 s) is closed; one in use is not.
fn idle_timeout(_: &mut Ctx) -> R {
    let sock = paths().sock.clone();
    as_uid(UID_E, move || {
        let idle = wire::connect(&sock).map_err(s)?;
        wire::send(&idle, &proto::encode_request(&Request::Status), &[]).map_err(s)?;
        match wire::recv(&idle, 10 * SECOND).map_err(s)? {
            Got::Packet(p) if wire::reply_header(&p.data)?.2 == 0 => {}
            g => return Err(format!("status on the idle connection: {g:?}")),
        }
        let busy = connect()?;
        let t = Instant::now();
        let mut closed = None;
        while t.elapsed() < Duration::from_secs(10) {
            busy.status().map_err(|e| format!("the busy connection failed after {:?}: {e}", t.elapsed()))?;
            if closed.is_none() {
                match wire::recv(&idle, Duration::from_millis(250)).map_err(s)? {
                    Got::HangUp => closed = Some(t.elapsed()),
                    // A last word before the hang-up is allowed.
                    Got::Packet(p) => {
                        let (_, op, errno) = wire::reply_header(&p.data)?;
                        ensure!(
                            op == 0 && errno != 0,
                            "unexpected packet on the idle connection: op {op}, errno {errno}"
                        );
                    }
                    Got::Nothing => {}
                }
            } else {
                std::thread::sleep(Duration::from_millis(250));
            }
            if closed.is_some() && t.elapsed() > Duration::from_secs(4) {
                break;
            }
        }
        let at = closed.ok_or("the idle connection is still open after 10 s (idle_timeout = 2)")?;
        ensure!(at >= Duration::from_millis(1500), "the idle connection was closed after {at:?}, before 2 s");
        println!("# idle_timeout: the idle connection was closed after {at:?}; the busy one is still served");
        connect()?.status().map_err(|e| format!("a new connection after the idle one was closed: {e}"))?;
        Ok(())
    })
}

/// A memfd of root's, passed by uid A: `EPERM`.
fn foreign_memfd_refused(_: &mut Ctx) -> R {
    let roots = memfd(b"root's data")?;
    as_uid(UID_A, move || {
        let st = rustix::fs::fstat(&roots).map_err(s)?;
        ensure!(st.st_uid == 0, "the memfd is owned by uid {}, not root", st.st_uid);
        let cl = connect()?;
        cl.create("vm-a").map_err(s)?;
        let r = refused(cl.preserve("vm-a", 1, &roots), libc::EPERM, "uid A preserves a memfd of root's");
        let own = cl.preserve("vm-a", 2, memfd(b"A's own")?).map_err(|e| format!("uid A's own memfd: {e}"));
        cl.close("vm-a").map_err(s)?;
        r.and(own)
    })
}

/// uid A's own memfd reopened read-only (or write-only): `EACCES`.
fn read_only_memfd_refused(_: &mut Ctx) -> R {
    as_uid(UID_A, || {
        let cl = connect()?;
        cl.create("vm-a").map_err(s)?;
        let m = memfd(b"A's data")?;
        let path = format!("/proc/self/fd/{}", m.as_raw_fd());
        let ro = File::open(&path).map_err(|e| format!("{path} O_RDONLY: {e}"))?;
        let wo = OpenOptions::new().write(true).open(&path).map_err(|e| format!("{path} O_WRONLY: {e}"))?;
        let r = refused(cl.preserve("vm-a", 1, &ro), libc::EACCES, "a memfd open O_RDONLY")
            .and_then(|()| refused(cl.preserve("vm-a", 2, &wo), libc::EACCES, "a memfd open O_WRONLY"))
            .and_then(|()| {
                cl.preserve("vm-a", 3, &m).map_err(|e| format!("the same memfd open O_RDWR: {e}"))
            });
        cl.close("vm-a").map_err(s)?;
        r
    })
}

/// What is neither a regular file nor a character device (a socket of
/// uid A's own, open read-write): `EINVAL`.
fn non_file_refused(_: &mut Ctx) -> R {
    as_uid(UID_A, || {
        let cl = connect()?;
        cl.create("vm-a").map_err(s)?;
        let (x, _y) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .map_err(s)?;
        let r = refused(cl.preserve("vm-a", 1, &x), libc::EINVAL, "uid A preserves a Unix socket");
        cl.close("vm-a").map_err(s)?;
        r
    })
}

/// uid 0 without `CAP_SYS_BOOT` in its effective set cannot load a kernel.
fn kexec_needs_cap_sys_boot(_: &mut Ctx) -> R {
    let before = kexec_loaded()?;
    let junk = junk_kernel()?;
    as_root_child(move || {
        drop_cap_sys_boot()?;
        let cl = connect()?;
        refused(
            cl.kexec_load(&junk, None, "liveupdate=on", proto::KEXEC_UNVERIFIED),
            libc::EPERM,
            "KexecLoad by uid 0 without CAP_SYS_BOOT",
        )
    })?;
    let after = kexec_loaded()?;
    ensure!(before == after, "/sys/kernel/kexec_loaded went from {before} to {after}");
    Ok(())
}

/// A minimal ELF64 (little endian) whose one `PT_NOTE` segment holds the
/// `LUO` format table `compats` (the layout of kernel/liveupdate/
/// luo_formats.c): what luod's image reader accepts in place of a bzImage.
fn elf_with_table(compats: &[&str]) -> Vec<u8> {
    let mut desc = 1u32.to_le_bytes().to_vec();
    for c in compats {
        desc.extend(c.as_bytes());
        desc.push(0);
    }
    while desc.len() % 4 != 0 {
        desc.push(0);
    }
    let mut note = 4u32.to_le_bytes().to_vec(); // namesz: "LUO\0"
    note.extend((desc.len() as u32).to_le_bytes());
    note.extend(1u32.to_le_bytes()); // type: the format table
    note.extend(b"LUO\0");
    note.extend(&desc);
    let notes_off = 64u64 + 56;
    let mut f = vec![0u8; 64];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // ELFDATA2LSB
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&1u16.to_le_bytes());
    f[58..60].copy_from_slice(&64u16.to_le_bytes());
    let mut ph = vec![0u8; 56];
    ph[..4].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
    ph[8..16].copy_from_slice(&notes_off.to_le_bytes());
    ph[32..40].copy_from_slice(&(note.len() as u64).to_le_bytes());
    ph[48..56].copy_from_slice(&4u64.to_le_bytes());
    f.extend(ph);
    f.extend(note);
    f
}

/// `bytes` in a /tmp file kept open read-write (see [`junk_kernel`]: the
/// kernel then refuses it with `ETXTBSY` before parsing it).
fn image_file(bytes: &[u8]) -> Result<OwnedFd, String> {
    use std::io::Write;
    let path = format!("/tmp/luod-tests-image-{}", std::process::id());
    let mut f = OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(s)?;
    let _ = std::fs::remove_file(&path);
    f.write_all(bytes).map_err(s)?;
    Ok(f.into())
}

/// A next kernel whose table lacks the format of a preserved file (here
/// memfd-v2, for a preserved memfd): `ENOEXEC` naming the format and the
/// session; with the format in the table the check passes (and
/// `kexec_file_load` refuses the file itself).
fn table_without_a_needed_format(_: &mut Ctx) -> R {
    let before = kexec_loaded()?;
    let cl = connect()?;
    cl.create("table-check").map_err(s)?;
    let m = memfd(&pattern(4096, 5))?;
    let r = (|| {
        cl.preserve("table-check", 1, &m).map_err(s)?;
        let img = image_file(&elf_with_table(&["kho-v4", "luo-v5"]))?;
        match cl.kexec_load(&img, None, "liveupdate=on", 0) {
            Err(e) if e.errno() == libc::ENOEXEC => {
                let msg = e.to_string();
                ensure!(
                    msg.contains("memfd-v2") && msg.contains("table-check"),
                    "the refusal does not name the missing format and its session: {msg}"
                );
            }
            other => {
                return Err(format!("KexecLoad of a kernel without memfd-v2: {other:?}, wanted ENOEXEC"))
            }
        }
        let img = image_file(&elf_with_table(&["kho-v4", "luo-v5", "memfd-v2"]))?;
        let load_errno = if before == "no kexec" { libc::ENOSYS } else { libc::ETXTBSY };
        refused(
            cl.kexec_load(&img, None, "liveupdate=on", 0),
            load_errno,
            "KexecLoad of a kernel whose table has every format (kexec_file_load's own errno)",
        )
    })();
    let closed = cl.close("table-check").map_err(s);
    r.and(closed)?;
    let after = kexec_loaded()?;
    ensure!(before == after, "/sys/kernel/kexec_loaded went from {before} to {after}");
    Ok(())
}

/// A hugetlbfs memfd of 2 MiB pages, 2 MiB long, its first 4 KiB written
/// (through a mapping: hugetlbfs has no `write(2)`). Needs
/// `CONFIG_HUGETLBFS` and a free 2 MiB page (`hugepagesz=2M hugepages=N`).
fn hugetlb_memfd() -> Result<OwnedFd, String> {
    const SZ_2M: usize = 2 << 20;
    use rustix::fs::MemfdFlags;
    let fd = rustix::fs::memfd_create(
        "luod-test-huge",
        MemfdFlags::CLOEXEC | MemfdFlags::HUGETLB | MemfdFlags::HUGE_2MB,
    )
    .map_err(|e| format!("memfd_create(MFD_HUGETLB | MFD_HUGE_2MB) (CONFIG_HUGETLBFS?): {e}"))?;
    rustix::fs::ftruncate(&fd, SZ_2M as u64).map_err(|e| format!("ftruncate of a hugetlbfs memfd: {e}"))?;
    let data = pattern(4096, 9);
    // SAFETY: a new shared mapping of the file's 2 MiB, which nothing else
    // refers to; 4 KiB are written inside it, then it is unmapped.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            SZ_2M,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(format!(
                "mmap of a hugetlbfs memfd (no free 2 MiB page: hugepages= on the command line?): {}",
                std::io::Error::last_os_error()
            ));
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), p.cast::<u8>(), data.len());
        libc::munmap(p, SZ_2M);
    }
    Ok(fd)
}

/// A preserved hugetlbfs memfd needs the next kernel to read
/// hugetlb-memfd-rs-v1, the Rust memfd handler's format, not memfd-v2:
/// upstream's kernels have memfd-v2 only, and their LUO refuses a whole
/// handover holding a file of a format they lack. A table with kho-v4,
/// luo-v5 and memfd-v2 only: `ENOEXEC` naming hugetlb-memfd-rs-v1 and the
/// session; with it added the check passes (and `kexec_file_load` refuses
/// the file itself). Only with `--hugetlb`: a kernel
/// with the Rust memfd handler and CONFIG_HUGETLBFS, 2 MiB huge pages.
fn table_without_the_hugetlb_format(_: &mut Ctx) -> R {
    let before = kexec_loaded()?;
    let m = hugetlb_memfd()?;
    let cl = connect()?;
    cl.create("hugetlb-check").map_err(s)?;
    let r = (|| {
        cl.preserve("hugetlb-check", 1, &m).map_err(|e| {
            format!("preserving a hugetlbfs memfd (a kernel without the Rust memfd handler?): {e}")
        })?;
        let img = image_file(&elf_with_table(&["kho-v4", "luo-v5", "memfd-v2"]))?;
        match cl.kexec_load(&img, None, "liveupdate=on", 0) {
            Err(e) if e.errno() == libc::ENOEXEC => {
                let msg = e.to_string();
                ensure!(
                    msg.contains("hugetlb-memfd-rs-v1") && msg.contains("hugetlb-check"),
                    "the refusal does not name the missing format and its session: {msg}"
                );
                ensure!(!msg.contains("read memfd-v2"), "memfd-v2 is in the table, yet: {msg}");
            }
            other => {
                return Err(format!(
                    "KexecLoad of a kernel without hugetlb-memfd-rs-v1: {other:?}, wanted ENOEXEC"
                ))
            }
        }
        let img = image_file(&elf_with_table(&["kho-v4", "luo-v5", "memfd-v2", "hugetlb-memfd-rs-v1"]))?;
        let load_errno = if before == "no kexec" { libc::ENOSYS } else { libc::ETXTBSY };
        refused(
            cl.kexec_load(&img, None, "liveupdate=on", 0),
            load_errno,
            "KexecLoad of a kernel whose table has hugetlb-memfd-rs-v1 (kexec_file_load's own errno)",
        )
    })();
    let closed = cl.close("hugetlb-check").map_err(s);
    r.and(closed)?;
    let after = kexec_loaded()?;
    ensure!(before == after, "/sys/kernel/kexec_loaded went from {before} to {after}");
    Ok(())
}

/// `Reboot` tells subscribers "kexec imminent" and waits for their
/// acknowledgements: with one subscriber silent it is cancelled
/// (`ETIMEDOUT`, and "kexec cancelled" to everyone); once every subscriber
/// acknowledged it goes ahead; without CAP_SYS_BOOT it is refused. Against
/// a luod with `--fake-device`, which does everything but the kexec.
fn kexec_events(_: &mut Ctx) -> R {
    let (mut child, sock) = extra_luod("events", &single_policy())?;
    let r = (|| {
        wait_serving(&mut child, &sock, 10 * SECOND)?;
        let mut acker = Client::connect(&sock).map_err(s)?.subscribe().map_err(s)?;
        let mut silent = Client::connect(&sock).map_err(s)?.subscribe().map_err(s)?;
        let root = Client::connect(&sock).map_err(s)?;
        ensure!(root.status().map_err(s)?.subscribers == 2, "luod does not count 2 subscribers");
        let acks = std::thread::spawn(move || -> Result<Vec<proto::EventKind>, String> {
            let mut seen = Vec::new();
            while let Ok(e) = acker.next_event(Some(10 * SECOND)) {
                seen.push(e.kind);
                if e.kind == proto::EventKind::KexecImminent {
                    acker.ack(e.seq).map_err(s)?;
                }
                if seen.len() == 3 {
                    break;
                }
            }
            Ok(seen)
        });
        match root.reboot(500, 0) {
            Err(e) if e.errno() == libc::ETIMEDOUT => {
                let msg = e.to_string();
                ensure!(
                    msg.contains("1 subscribers"),
                    "not exactly the silent subscriber was missing: {msg}"
                );
            }
            other => return Err(format!("Reboot with a silent subscriber: {other:?}, wanted ETIMEDOUT")),
        }
        let first = silent.next_event(Some(SECOND)).map_err(s)?;
        let second = silent.next_event(Some(SECOND)).map_err(s)?;
        ensure!(
            first.kind == proto::EventKind::KexecImminent && second.kind == proto::EventKind::KexecCancelled,
            "the silent subscriber got {:?} then {:?}",
            first.kind,
            second.kind
        );
        drop(silent);
        // Let luod see the hang-up before the next round.
        let start = Instant::now();
        while root.status().map_err(s)?.subscribers != 1 {
            ensure!(start.elapsed() < 5 * SECOND, "luod still counts the subscriber that hung up");
            std::thread::sleep(Duration::from_millis(20));
        }
        root.reboot(5000, 0).map_err(|e| format!("Reboot with every subscriber acknowledging: {e}"))?;
        as_uid(UID_A, || {
            let cl = Client::connect(&sock).map_err(s)?;
            refused(cl.reboot(100, proto::REBOOT_FORCE), libc::EPERM, "Reboot by uid A")
        })?;
        // The acknowledging subscriber saw: imminent, cancelled, imminent.
        drop(root);
        let seen = acks.join().map_err(|_| "the subscriber thread panicked".to_string())??;
        use proto::EventKind::{KexecCancelled as C, KexecImminent as I};
        ensure!(seen == [I, C, I], "the acknowledging subscriber saw {seen:?}");
        Ok(())
    })();
    stop(child);
    r
}

/// A next kernel without the LUO format table: `ENOEXEC`; with
/// `KEXEC_UNVERIFIED` luod passes it on and `kexec_file_load` refuses it
/// itself (`ETXTBSY`: the file is open for writing, see [`junk_kernel`]).
fn incompatible_kernel_refused(_: &mut Ctx) -> R {
    let before = kexec_loaded()?;
    let junk = junk_kernel()?;
    let cl = connect()?;
    refused(cl.kexec_load(&junk, None, "liveupdate=on", 0), libc::ENOEXEC, "KexecLoad of junk")?;
    // On a host whose kernel has no kexec, kexec_file_load's errno is ENOSYS.
    let load_errno = if before == "no kexec" { libc::ENOSYS } else { libc::ETXTBSY };
    refused(
        cl.kexec_load(&junk, None, "liveupdate=on", proto::KEXEC_UNVERIFIED),
        load_errno,
        "KexecLoad of junk with KEXEC_UNVERIFIED (kexec_file_load's own errno)",
    )?;
    let after = kexec_loaded()?;
    ensure!(before == after, "/sys/kernel/kexec_loaded went from {before} to {after}");
    Ok(())
}

/// luod under a stand-in for systemd: the fd store names are `o` + the hex
/// of the kernel name, so names with `:`, newlines or non-ASCII bytes are
/// stored, root's `vm-42` and uid C's `vm-42` are two entries, and
/// removing one leaves the others; a luod restarted from the store has
/// them all back, with their owners.
fn fdstore_names(c: &mut Ctx) -> R {
    crate::under_systemd(c, fdstore_names_steps)
}

const ODD_NAMES: [&[u8]; 4] = [b"vm:42", "vm-\u{e9}t\u{e9}".as_bytes(), b"x\ny=1", b"\xff\xfe"];

fn fdstore_names_steps(sock: &str, state: &str, sd: &mut Systemd) -> R {
    let listener = crate::listening_socket(sock)?;
    let luod1 = crate::spawn_activated(sock, state, &listener, sd)?;
    let r = (|| -> R {
        sd.wait_ready(1, &luod1)?;
        let s1 = sock.to_string();
        sd.serve(fork_as(None, move |_| {
            let cl = connect_to(&s1)?;
            for n in ODD_NAMES.iter().chain([&&b"vm-42"[..]]) {
                cl.create(n).map_err(|e| format!("create {:?}: {e}", String::from_utf8_lossy(n)))?;
            }
            cl.preserve("vm:42", 1, memfd(b"colon")?).map_err(s)
        })?)?;
        let s1 = sock.to_string();
        sd.serve(fork_as(Some(UID_C), move |_| connect_to(&s1)?.create("vm-42").map_err(s))?)?;
        let mut all: Vec<&[u8]> = ODD_NAMES.to_vec();
        all.extend([&b"vm-42"[..], b"u1003/vm-42"]);
        store_is(sd, &all)?;
        sd.barriers_follow()?;
        // Removing root's vm-42 leaves uid C's, and the rest.
        let s1 = sock.to_string();
        sd.serve(fork_as(None, move |_| {
            let cl = connect_to(&s1)?;
            cl.close("vm-42").map_err(s)?;
            cl.close("vm:42").map_err(s)
        })?)?;
        let left: Vec<&[u8]> = vec![ODD_NAMES[1], ODD_NAMES[2], ODD_NAMES[3], b"u1003/vm-42"];
        store_is(sd, &left)?;
        sd.barriers_follow()
    })();
    luod1.kill(libc::SIGKILL);
    r?;

    let luod2 = crate::spawn_activated(sock, state, &listener, sd)?;
    let r = (|| -> R {
        sd.wait_ready(2, &luod2)?;
        let s1 = sock.to_string();
        sd.serve(fork_as(None, move |_| {
            let cl = connect_to(&s1)?;
            let l = cl.list().map_err(s)?;
            let mut got: Vec<Vec<u8>> = l.iter().map(|e| e.name.clone()).collect();
            got.sort();
            let mut want: Vec<Vec<u8>> = [ODD_NAMES[1], ODD_NAMES[2], ODD_NAMES[3], b"u1003/vm-42"]
                .iter()
                .map(|n| n.to_vec())
                .collect();
            want.sort();
            ensure!(got == want, "after the restart root lists {l:?}");
            ensure!(l.iter().all(|e| e.state == State::Outgoing), "after the restart: {l:?}");
            Ok(())
        })?)?;
        let s1 = sock.to_string();
        sd.serve(fork_as(Some(UID_C), move |_| {
            let cl = connect_to(&s1)?;
            let l = cl.list().map_err(s)?;
            ensure!(
                l.len() == 1 && l[0].name == b"vm-42" && l[0].owner == Some(UID_C),
                "after the restart uid C lists {l:?}"
            );
            cl.close("vm-42").map_err(s)
        })?)?;
        let s1 = sock.to_string();
        sd.serve(fork_as(None, move |_| {
            let cl = connect_to(&s1)?;
            for n in &ODD_NAMES[1..] {
                cl.close(n).map_err(|e| format!("close {:?}: {e}", String::from_utf8_lossy(n)))?;
            }
            Ok(())
        })?)?;
        store_is(sd, &[])?;
        sd.barriers_follow()
    })();
    luod2.kill(libc::SIGTERM);
    r
}

/// A second luod on the suite's state directory and socket exits, and the
/// first one still serves that socket.
fn second_luod_refused(c: &mut Ctx) -> R {
    let p = paths();
    let mut second = luod_cmd(&p.sock, &p.state, &p.policy, p.host)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting a second luod: {e}"))?;
    let st = wait_exit(&mut second, Duration::from_secs(15))?;
    let serving = connect().and_then(|cl| cl.status().map_err(s));
    if st.is_none() {
        stop(second);
    }
    match st {
        Some(st) if st.code().is_some_and(|c| c != 0) => {}
        Some(st) => return Err(format!("the second luod on the same state directory: {st}")),
        None => return Err("a second luod on the same state directory is still running after 15 s".into()),
    }
    serving.map_err(|e| format!("the first luod after the second one exited: {e}"))?;
    luod_alive(c)
}

pub const SINGLE: &[Case] = &[
    ("tenants_luod_start", tenants_luod_start),
    ("credentials_per_request", credentials_per_request),
    ("grant_covers_whole_components", grant_covers_whole_components),
    ("overlapping_grants_refused", overlapping_grants_refused),
    ("linger_close_does_not_stall", linger_close_does_not_stall),
    ("connection_quota", connection_quota),
    ("session_quota", session_quota),
    ("idle_timeout", idle_timeout),
    ("foreign_memfd_refused", foreign_memfd_refused),
    ("read_only_memfd_refused", read_only_memfd_refused),
    ("non_file_refused", non_file_refused),
    ("kexec_needs_cap_sys_boot", kexec_needs_cap_sys_boot),
    ("incompatible_kernel_refused", incompatible_kernel_refused),
    ("table_without_a_needed_format", table_without_a_needed_format),
    ("kexec_events", kexec_events),
    ("fdstore_names", fdstore_names),
    ("second_luod_refused", second_luod_refused),
];

/// The case of `--hugetlb`, after
/// `table_without_a_needed_format` in [`SINGLE`]: only on kernels with the
/// Rust memfd handler and CONFIG_HUGETLBFS, booted with 2 MiB huge pages
/// (scripts/suites.toml: the `luod-tenants` run of the rust variant).
const HUGETLB: Case = ("table_without_the_hugetlb_format", table_without_the_hugetlb_format);

/// The single-boot cases, with `hugetlb` those of `--hugetlb` too.
pub fn single(hugetlb: bool) -> Vec<Case> {
    let mut v = SINGLE.to_vec();
    if hugetlb {
        let at = v.iter().position(|c| c.0 == "table_without_a_needed_format").map_or(v.len(), |i| i + 1);
        v.insert(at, HUGETLB);
    }
    v
}

// ---------------------------------------------------------------------------
// Across a kexec

/// The contents of uid A's and uid B's `vm-42`: (length, pattern seed).
const A_42: (usize, u64) = (5000, 41);
const B_42: (usize, u64) = (7000, 42);

/// Stage 2 has no `/kernel` (the last boot's initramfs carries none):
/// stage 1 preserves the kernel image in root's session `next-kernel`.
const KERNEL_SESSION: &str = "next-kernel";

fn stage1_luod_start(c: &mut Ctx) -> R {
    tenants_luod_start(c)?;
    let image = std::fs::read("/kernel").map_err(|e| format!("/kernel: {e}"))?;
    let cl = connect()?;
    cl.create(KERNEL_SESSION).map_err(s)?;
    cl.preserve(KERNEL_SESSION, 1, memfd(&image)?).map_err(|e| format!("preserving the kernel image: {e}"))
}

/// uid A's `vm-42` is in the manifest luod writes when root loads the next
/// kernel; then A closes it and B creates its own `vm-42`.
fn stage1_stale_manifest_setup(_: &mut Ctx) -> R {
    as_uid(UID_A, || {
        let cl = connect()?;
        cl.create("vm-42").map_err(s)?;
        cl.preserve("vm-42", 1, memfd(&pattern(A_42.0, A_42.1))?).map_err(s)
    })?;
    let cl = connect()?;
    cl.create("drop-me").map_err(s)?;
    cl.preserve("drop-me", 1, memfd(b"to be dropped")?).map_err(s)?;
    let kernel = File::open("/kernel").map_err(|e| format!("/kernel: {e}"))?;
    let initrd = File::open("/initrd.img").map_err(|e| format!("/initrd.img: {e}"))?;
    let h = cl
        .kexec_load(&kernel, Some(initrd.as_fd()), &next_cmdline()?, 0)
        .map_err(|e| format!("KexecLoad: {e}"))?;
    println!("# kexec will hand over {} sessions, {} files, {} bytes", h.sessions, h.files, h.bytes);
    as_uid(UID_A, || connect()?.close("vm-42").map_err(s))?;
    as_uid(UID_B, || {
        let cl = connect()?;
        cl.create("vm-42").map_err(s)?;
        cl.preserve("vm-42", 1, memfd(&pattern(B_42.0, B_42.1))?).map_err(s)?;
        let l = cl.list().map_err(s)?;
        ensure!(l.len() == 1 && l[0].name == b"vm-42" && l[0].files == 1, "uid B lists {l:?}");
        Ok(())
    })?;
    Ok(())
}

fn stage2_luod_start(c: &mut Ctx) -> R {
    start_luod(c)?;
    let st = connect()?.status().map_err(s)?;
    ensure!(st.device_ok, "device: {}", st.device_error);
    ensure!(st.handed_over == Some(true), "handed_over {:?}", st.handed_over);
    Ok(())
}

/// The manifest says uid A had a `vm-42`; the kernel has uid B's. A gets
/// `ENOENT` and never B's bytes.
fn stage2_stale_manifest_theft_refused(_: &mut Ctx) -> R {
    as_uid(UID_A, || {
        let cl = connect()?;
        refused(cl.retrieve_session("vm-42"), libc::ENOENT, "uid A retrieves vm-42")?;
        for name in ["vm-42", "u1002/vm-42"] {
            if let Ok(fd) = cl.retrieve_fd(name, 1) {
                let got = read_all(&fd)?;
                ensure!(got != pattern(B_42.0, B_42.1), "uid A read uid B's bytes through {name:?}");
                return Err(format!("uid A got a file of {name:?} ({} bytes)", got.len()));
            }
        }
        ensure!(cl.retrieve_session("u1002/vm-42").is_err(), "uid A retrieved \"u1002/vm-42\"");
        let l = cl.list().map_err(s)?;
        ensure!(!l.iter().any(|e| e.state == State::Retrieved), "uid A lists a retrieved session: {l:?}");
        Ok(())
    })
}

fn stage2_owner_retrieves_intact(_: &mut Ctx) -> R {
    as_uid(UID_B, || {
        let cl = connect()?;
        cl.retrieve_session("vm-42").map_err(|e| format!("uid B retrieves vm-42: {e}"))?;
        let got = read_all(&cl.retrieve_fd("vm-42", 1).map_err(s)?)?;
        ensure!(got == pattern(B_42.0, B_42.1), "uid B's vm-42: {} bytes, contents differ", got.len());
        cl.finish("vm-42").map_err(s)
    })?;
    as_uid(UID_A, || refused(connect()?.retrieve_session("vm-42"), libc::ENOENT, "uid A, after B finished"))
}

/// root's `drop-me` is incoming and unfinished: loading refuses (`EBUSY`),
/// unless told to drop it.
fn stage2_kexec_load_busy_incoming(_: &mut Ctx) -> R {
    let cl = connect()?;
    cl.retrieve_session(KERNEL_SESSION).map_err(s)?;
    let kernel = cl.retrieve_fd(KERNEL_SESSION, 1).map_err(s)?;
    cl.finish(KERNEL_SESSION).map_err(s)?;
    let cmdline = next_cmdline()?;
    refused(cl.kexec_load(&kernel, None, &cmdline, 0), libc::EBUSY, "KexecLoad with drop-me unfinished")?;
    let h = cl
        .kexec_load(&kernel, None, &cmdline, proto::KEXEC_DROP_INCOMING)
        .map_err(|e| format!("KexecLoad with DROP_INCOMING: {e}"))?;
    ensure!(h.dropped >= 1, "hand-over report {h:?}: drop-me not counted as dropped");
    Ok(())
}

pub const STAGE1: &[Case] =
    &[("stage1_luod_start", stage1_luod_start), ("stage1_stale_manifest_setup", stage1_stale_manifest_setup)];

pub const STAGE2: &[Case] = &[
    ("stage2_luod_start", stage2_luod_start),
    ("stage2_stale_manifest_theft_refused", stage2_stale_manifest_theft_refused),
    ("stage2_owner_retrieves_intact", stage2_owner_retrieves_intact),
    ("stage2_kexec_load_busy_incoming", stage2_kexec_load_busy_incoming),
];
