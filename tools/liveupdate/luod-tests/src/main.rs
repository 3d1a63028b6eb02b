// SPDX-License-Identifier: GPL-2.0
//! In-VM tests of luod: authorization between two uids, a policy grant,
//! a kill -9 and restart (through the holder, and through systemd's fd
//! store with the test playing systemd), a malformed-request fuzz, 1,000
//! sessions, and a kexec with the data verified byte for byte in the next
//! kernel.
//!
//! Usage: `luod-tests [-s STAGE] [--list]`
//!
//! - no `-s`: the single-boot suite (`luod`);
//! - `-s 1`: clients create and fill sessions through luod, luod is
//!   restarted, then luod loads the next kernel and is left running;
//! - `-s 2`: after the kexec, a new luod; the clients retrieve and check.
//!
//! - `--host`: the single-boot suite on any Linux machine, against luod
//!   with `--fake-device` (no LUO: this tests luod's protocol,
//!   authorization, restart and fuzz handling, not the kernel).
//!
//! Output is KTAP (`ok N name` / `not ok N name # reason`), as in
//! luo-agent-tests. luod itself must be next to this binary (`/tests/luod`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use luod::client::{send_raw, Client, ClientError};
use luod::proto::{self, Request, State};
use rustix::fs::{memfd_create, MemfdFlags};

mod inproc;

type R = Result<(), String>;

/// Where luod listens and its policy file; `--host` makes them unique and
/// runs luod with `--fake-device` (no LUO: the single-boot suite only).
struct Paths {
    sock: String,
    policy: String,
    host: bool,
}

static PATHS: std::sync::OnceLock<Paths> = std::sync::OnceLock::new();

fn paths() -> &'static Paths {
    PATHS.get_or_init(|| Paths {
        sock: "/tmp/luod.sock".into(),
        policy: "/tmp/luod-policy.toml".into(),
        host: false,
    })
}
const UID_A: u32 = 1001;
const UID_B: u32 = 1002;
/// Files of the two clients: (session, uid, [(token, len, seed)]).
const A_FILES: &[(u64, usize, u64)] = &[(1, 8192, 1), (2, 100, 2)];
const A_FILE_AFTER_RESTART: (u64, usize, u64) = (3, 5000, 3);
const B_FILES: &[(u64, usize, u64)] = &[(1, 3000, 11)];

struct Ctx {
    luod: Option<Child>,
    /// `--inproc`: luod's engine in this process.
    engine: Option<luod::server::Engine>,
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len).map(|i| (i as u64).wrapping_mul(31).wrapping_add(seed * 7) as u8).collect()
}

fn memfd(data: &[u8]) -> Result<OwnedFd, String> {
    let fd = memfd_create("luod-test", MemfdFlags::CLOEXEC).map_err(s)?;
    let mut f = File::from(fd);
    f.write_all(data).map_err(s)?;
    Ok(f.into())
}

fn read_all(fd: impl AsFd) -> Result<Vec<u8>, String> {
    let mut f = File::from(fd.as_fd().try_clone_to_owned().map_err(s)?);
    f.seek(SeekFrom::Start(0)).map_err(s)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v).map_err(s)?;
    Ok(v)
}

fn connect() -> Result<Client, String> {
    Client::connect(&paths().sock).map_err(s)
}

/// `Err` unless `r` failed with luod's error reply `errno`.
fn refused<T>(r: Result<T, ClientError>, errno: i32, what: &str) -> R {
    match r {
        Err(ClientError::Refused(e)) if e.errno == errno as u32 => Ok(()),
        Err(e) => Err(format!("{what}: expected errno {errno}, got {e}")),
        Ok(_) => Err(format!("{what}: expected errno {errno}, but it succeeded")),
    }
}

/// Run `f` in a forked child with uid and gid `uid`; its result comes back
/// over a pipe.
fn as_uid(uid: u32, f: impl FnOnce() -> R) -> R {
    let (rd, wr) = rustix::pipe::pipe().map_err(s)?;
    let _ = std::io::stdout().flush();
    // SAFETY: this test program is single-threaded (luod runs in its own
    // process), so the child may run arbitrary code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(rd);
        // SAFETY: plain system calls on integers.
        let ok = unsafe {
            libc::setgroups(0, std::ptr::null()) == 0 && libc::setgid(uid) == 0 && libc::setuid(uid) == 0
        };
        let r = if !ok {
            Err(format!("setuid({uid}): {}", std::io::Error::last_os_error()))
        } else {
            catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(format!("panicked: {}", panic_text(&p))))
        };
        let msg = match &r {
            Ok(()) => "OK".to_string(),
            Err(e) => format!("ERR {e}"),
        };
        let _ = File::from(wr).write_all(msg.as_bytes());
        // SAFETY: leave the child without running the parent's atexit or
        // destructors.
        unsafe { libc::_exit(0) };
    }
    drop(wr);
    let mut out = String::new();
    let _ = File::from(rd).read_to_string(&mut out);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    match out.strip_prefix("ERR ") {
        _ if out == "OK" => Ok(()),
        Some(e) => Err(format!("as uid {uid}: {e}")),
        None => Err(format!("as uid {uid}: child died (status {status:#x})")),
    }
}

fn luod_path() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(s)?;
    Ok(exe.with_file_name("luod"))
}

fn start_luod(c: &mut Ctx) -> R {
    let p = paths();
    // Written at every start: /tmp is empty again after a kexec.
    std::fs::write(
        &p.policy,
        format!(
            "# uid {UID_B} manages the shared- sessions\n[[grant]]\nuid = {UID_B}\nprefix = \"shared-\"\n"
        ),
    )
    .map_err(s)?;
    let mut cmd = Command::new(luod_path()?);
    cmd.args(["--socket", &p.sock, "--policy", &p.policy]);
    if p.host {
        cmd.arg("--fake-device");
    }
    let child = cmd.stdin(Stdio::null()).spawn().map_err(|e| format!("starting luod: {e}"))?;
    c.luod = Some(child);
    let t = Instant::now();
    loop {
        if let Ok(cl) = Client::connect(&p.sock) {
            if cl.status().is_ok() {
                return Ok(());
            }
        }
        if let Some(st) = c.luod.as_mut().and_then(|l| l.try_wait().ok().flatten()) {
            return Err(format!("luod exited at start ({st}); see its messages above"));
        }
        if t.elapsed() > Duration::from_secs(20) {
            return Err("luod did not answer within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn luod_alive(c: &mut Ctx) -> R {
    let child = c.luod.as_mut().ok_or("luod not started")?;
    ensure!(child.try_wait().map_err(s)?.is_none(), "luod exited");
    Ok(())
}

fn names(list: &[proto::Entry]) -> Vec<String> {
    list.iter().map(|e| proto::display_name(&e.name)).collect()
}

// ---------------------------------------------------------------------------

fn luod_start(c: &mut Ctx) -> R {
    start_luod(c)?;
    let st = connect()?.status().map_err(s)?;
    ensure!(st.version == proto::VERSION, "version {}", st.version);
    ensure!(st.device_ok, "device not usable: {}", st.device_error);
    Ok(())
}

fn fill(name: &str, files: &[(u64, usize, u64)]) -> R {
    let cl = connect()?;
    cl.create(name).map_err(s)?;
    for &(token, len, seed) in files {
        let m = memfd(&pattern(len, seed))?;
        cl.preserve(name, token, &m).map_err(s)?;
    }
    let list = cl.list().map_err(s)?;
    ensure!(names(&list) == [name], "list shows {:?}", names(&list));
    let e = &list[0];
    let bytes: usize = files.iter().map(|f| f.1).sum();
    ensure!(
        e.state == State::Outgoing && e.files as usize == files.len() && e.bytes as usize == bytes,
        "entry {e:?}"
    );
    Ok(())
}

fn uid_a_creates_and_preserves(_: &mut Ctx) -> R {
    as_uid(UID_A, || fill("vm-a", A_FILES))
}

fn uid_b_creates_and_preserves(_: &mut Ctx) -> R {
    as_uid(UID_B, || fill("vm-b", B_FILES))
}

fn other_uid_cannot_see(_: &mut Ctx) -> R {
    as_uid(UID_B, || {
        let cl = connect()?;
        let l = names(&cl.list().map_err(s)?);
        ensure!(!l.iter().any(|n| n == "vm-a"), "uid {UID_B} sees vm-a: {l:?}");
        let st = cl.status().map_err(s)?;
        ensure!(st.outgoing.sessions == 1, "status counts {} sessions for uid {UID_B}", st.outgoing.sessions);
        Ok(())
    })?;
    as_uid(UID_A, || {
        let l = names(&connect()?.list().map_err(s)?);
        ensure!(l == ["vm-a"], "uid {UID_A} sees {l:?}");
        Ok(())
    })
}

fn other_uid_cannot_take(_: &mut Ctx) -> R {
    as_uid(UID_B, || {
        let cl = connect()?;
        let m = memfd(b"intruder")?;
        refused(cl.preserve("vm-a", 9, &m), libc::EPERM, "preserve into vm-a")?;
        refused(cl.close("vm-a"), libc::EPERM, "close vm-a")?;
        refused(cl.retrieve_session("vm-a"), libc::EPERM, "retrieve vm-a")?;
        refused(cl.retrieve_fd("vm-a", 1), libc::ENOENT, "retrieve_fd vm-a")?;
        refused(cl.create("luod.mine"), libc::EPERM, "create luod.*")?;
        let k = File::open("/proc/self/exe").map_err(s)?;
        refused(cl.kexec_load(&k, None, "liveupdate=on"), libc::EPERM, "kexec as non-root")?;
        Ok(())
    })?;
    as_uid(UID_A, || refused(connect()?.close("vm-b"), libc::EPERM, "uid A closes vm-b"))?;
    // Both sessions are intact.
    let l = connect()?.list().map_err(s)?;
    for (n, owner) in [("vm-a", UID_A), ("vm-b", UID_B)] {
        let e = l.iter().find(|e| e.name == n.as_bytes()).ok_or(format!("{n} vanished"))?;
        ensure!(e.owner == Some(owner), "{n} owner {:?}", e.owner);
    }
    Ok(())
}

fn policy_prefix_grant(_: &mut Ctx) -> R {
    connect()?.create("shared-1").map_err(s)?;
    as_uid(UID_B, || {
        let cl = connect()?;
        let l = names(&cl.list().map_err(s)?);
        ensure!(l.contains(&"shared-1".to_string()), "uid {UID_B} does not see shared-1: {l:?}");
        cl.preserve("shared-1", 5, memfd(b"granted")?).map_err(s)?;
        cl.create("shared-2").map_err(s)?;
        cl.close("shared-2").map_err(s)?;
        Ok(())
    })?;
    as_uid(UID_A, || {
        let cl = connect()?;
        let l = names(&cl.list().map_err(s)?);
        ensure!(!l.contains(&"shared-1".to_string()), "uid {UID_A} sees shared-1");
        refused(cl.preserve("shared-1", 6, memfd(b"x")?), libc::EPERM, "uid A into shared-1")?;
        refused(cl.create("shared-a"), libc::EPERM, "uid A creates a name granted to B")?;
        Ok(())
    })?;
    connect()?.close("shared-1").map_err(s)
}

fn root_sees_all(_: &mut Ctx) -> R {
    let l = names(&connect()?.list().map_err(s)?);
    ensure!(l.contains(&"vm-a".into()) && l.contains(&"vm-b".into()), "root sees {l:?}");
    Ok(())
}

fn kill_luod(c: &mut Ctx) -> R {
    let mut child = c.luod.take().ok_or("luod not started")?;
    child.kill().map_err(s)?; // SIGKILL
    child.wait().map_err(s)?;
    Ok(())
}

fn restart_kill9(c: &mut Ctx) -> R {
    let before = connect()?.list().map_err(s)?;
    kill_luod(c)?;
    start_luod(c)?;
    let after = connect()?.list().map_err(s)?;
    ensure!(before == after, "sessions changed across the restart: {before:?} -> {after:?}");
    // The sessions are alive in the kernel: still usable through the new luod.
    as_uid(UID_A, || {
        let (token, len, seed) = A_FILE_AFTER_RESTART;
        connect()?.preserve("vm-a", token, memfd(&pattern(len, seed))?).map_err(s)
    })
}

/// A non-root process that took the holder's abstract name first gets no
/// session fd: luod checks the holder's uid and runs without a holder.
fn holder_squat_refused(_: &mut Ctx) -> R {
    let sock = format!("{}-squat", paths().sock);
    let name = luod::keeper::holder_name(&sock);
    let (rd, wr) = rustix::pipe::pipe().map_err(s)?;
    let (rd2, wr2) = rustix::pipe::pipe().map_err(s)?;
    let _ = std::io::stdout().flush();
    // SAFETY: single-threaded test program; the child only uses syscalls
    // and exits with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err("fork failed".into());
    }
    if pid == 0 {
        drop(rd);
        drop(wr2);
        // SAFETY: plain system calls.
        let ok = unsafe { libc::setgid(UID_A) == 0 && libc::setuid(UID_A) == 0 };
        let verdict = (|| -> Result<String, String> {
            if !ok {
                return Err("setuid".into());
            }
            let l = luod::fdpass::seqpacket().map_err(s)?;
            rustix::net::bind(&l, &rustix::net::SocketAddrUnix::new_abstract_name(&name).map_err(s)?)
                .map_err(s)?;
            rustix::net::listen(&l, 4).map_err(s)?;
            File::from(wr.try_clone().map_err(s)?).write_all(b"R").map_err(s)?;
            let conn = rustix::net::accept(&l).map_err(s)?;
            // Play a holder with nothing held: "LUOH", op 3 (end), no key.
            let _ = luod::fdpass::send(&conn, b"LUOH\x03\x00\x00", &[]);
            // Whatever luod sends until it hangs up (the parent tells us when
            // it is done by closing its pipe end).
            let mut got_fds = 0;
            while let Ok(Some(p)) = luod::fdpass::recv(&conn, 1 << 16) {
                got_fds += p.fds.len();
            }
            let mut b = [0u8; 1];
            let _ = File::from(rd2).read(&mut b);
            Ok(format!("fds {got_fds}"))
        })();
        let _ = File::from(wr).write_all(verdict.unwrap_or_else(|e| format!("ERR {e}")).as_bytes());
        // SAFETY: leave the child at once.
        unsafe { libc::_exit(0) };
    }
    drop(wr);
    drop(rd2);
    let mut rdf = File::from(rd);
    let mut ready = [0u8; 1];
    rdf.read_exact(&mut ready).map_err(|e| format!("squatter did not start: {e}"))?;
    let p = paths();
    // A second luod beside the suite's own, which holds /dev/liveupdate (a
    // single opener): this one serves fake sessions. What is tested is its
    // handshake with the holder socket, which is the same either way.
    let mut luod = Command::new(luod_path()?)
        .args(["--socket", &sock, "--policy", &p.policy, "--fake-device"])
        .stdin(Stdio::null())
        .spawn()
        .map_err(s)?;
    let result = (|| -> R {
        let t = Instant::now();
        let cl = loop {
            if let Ok(cl) = Client::connect(&sock) {
                break cl;
            }
            ensure!(t.elapsed() < Duration::from_secs(20), "luod did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        cl.create("squat-test").map_err(s)?;
        cl.preserve("squat-test", 1, memfd(b"secret")?).map_err(s)?;
        Ok(())
    })();
    let _ = luod.kill();
    let _ = luod.wait();
    drop(wr2);
    let mut out = String::new();
    let _ = rdf.read_to_string(&mut out);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    result?;
    ensure!(out == "fds 0", "the squatting holder got: {out:?}");
    Ok(())
}

fn luod_fd_count(c: &mut Ctx) -> Result<usize, String> {
    let pid = c.luod.as_ref().ok_or("luod not started")?.id();
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(s)?.count())
}

fn malformed_fuzz(c: &mut Ctx) -> R {
    let fds_before = luod_fd_count(c)?;
    let mut x: u64 = 0x1234_5678_9abc_def1; // seed
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let valid: Vec<Vec<u8>> = [
        Request::Status,
        Request::List { offset: 0 },
        Request::Create { name: b"fz".to_vec() },
        Request::Preserve { name: b"fz".to_vec(), token: 1 },
        Request::RetrieveFd { name: b"fz".to_vec(), token: 1 },
        Request::KexecLoad { cmdline: "x".into() },
    ]
    .iter()
    .map(proto::encode_request)
    .collect();
    let spare = memfd(b"spare")?;
    let mut cl = connect()?;
    // A fixed corpus of bad messages, written out by hand (not judged by
    // the decoder this program shares with luod).
    let hdr = |op: u8| vec![b'L', b'U', b'O', b'D', 1, 0, op, 0];
    let with = |mut h: Vec<u8>, tail: &[u8]| {
        h.extend_from_slice(tail);
        h
    };
    let corpus: Vec<(&str, Vec<u8>)> = vec![
        ("status + trailing byte", with(hdr(1), &[0])),
        ("bad magic", vec![b'X', b'U', b'O', b'D', 1, 0, 1, 0]),
        ("version 2", vec![b'L', b'U', b'O', b'D', 2, 0, 1, 0]),
        ("unknown op 0", hdr(0)),
        ("unknown op 200", hdr(200)),
        ("short header", vec![b'L', b'U', b'O']),
        ("create, empty name", with(hdr(3), &[0, 0])),
        ("create, 64-byte name", with(hdr(3), &[&[64u8, 0][..], &[b'a'; 64][..]].concat())),
        ("create, NUL in name", with(hdr(3), &[3, 0, b'a', 0, b'b'])),
        ("create, name length past the end", with(hdr(3), &[9, 0, b'a'])),
        ("list without offset", hdr(2)),
        ("retrieve_fd without token", with(hdr(7), &[1, 0, b'a'])),
        ("kexec, cmdline not UTF-8", with(hdr(9), &[2, 0, 0xff, 0xfe])),
    ];
    for (what, msg) in &corpus {
        match send_raw(cl.socket(), msg, &[]) {
            Ok(Some(e)) if e.errno != 0 && !e.message.is_empty() => {}
            Ok(Some(e)) => return Err(format!("{what}: error reply without errno or text: {e:?}")),
            Ok(None) => return Err(format!("{what}: accepted")),
            Err(e) => return Err(format!("{what}: no clean reply: {e}")),
        }
    }
    let mut sent = corpus.len();
    for i in 0..1500u32 {
        let kind = next() % 6;
        let mut msg: Vec<u8> = match kind {
            0 => (0..next() % 200).map(|_| next() as u8).collect(),
            1 | 2 => {
                let mut m = valid[(next() % valid.len() as u64) as usize].clone();
                let len = m.len() as u64;
                for _ in 0..1 + next() % 4 {
                    m[(next() % len) as usize] = next() as u8;
                }
                if kind == 2 {
                    m.truncate((next() % len) as usize);
                }
                m
            }
            3 => vec![next() as u8; proto::MAX_REQUEST + 1 + (next() % 3000) as usize],
            4 => {
                let mut m = valid[(next() % valid.len() as u64) as usize].clone();
                m.extend((0..1 + next() % 8).map(|_| next() as u8));
                m
            }
            _ => valid[0].clone(), // Status with fds attached: wrong fd count
        };
        if msg.is_empty() {
            msg.push(0);
        }
        let nfds = match kind {
            5 => 1 + (next() % 3) as usize,
            _ => (next() % 2) as usize,
        };
        // Only messages that are really bad: a mutation that still decodes
        // to a valid request (with the right fd count) is not sent.
        if let Ok(req) = proto::decode_request(&msg) {
            let ok_fds = match req {
                Request::Preserve { .. } => nfds == 1,
                Request::KexecLoad { .. } => (1..=2).contains(&nfds),
                _ => nfds == 0,
            };
            if ok_fds {
                continue;
            }
        }
        let fds: Vec<_> = (0..nfds).map(|_| spare.as_fd()).collect();
        match send_raw(cl.socket(), &msg, &fds) {
            Ok(Some(e)) if e.errno != 0 && !e.message.is_empty() => {}
            Ok(Some(e)) => return Err(format!("message {i}: error reply without errno or text: {e:?}")),
            Ok(None) => return Err(format!("message {i} ({msg:02x?}, {nfds} fds) was accepted")),
            Err(e) => {
                return Err(format!("message {i} ({} bytes, kind {kind}): no clean reply: {e}", msg.len()))
            }
        }
        sent += 1;
        // Now and then, a client that sends and hangs up without reading.
        if i % 100 == 99 {
            let rude = connect()?;
            let _ = luod::fdpass::send(rude.socket(), &msg, &[]);
            drop(rude);
            cl = connect()?;
        }
    }
    ensure!(sent > 1000, "only {sent} bad messages sent");
    // A zero-length packet ends the connection; luod lives on.
    let _ = luod::fdpass::send(cl.socket(), &[], &[]);
    luod_alive(c)?;
    let st = connect()?.status().map_err(|e| format!("status after the fuzz: {e}"))?;
    ensure!(st.device_ok, "device lost");
    std::thread::sleep(Duration::from_millis(100));
    let fds_after = luod_fd_count(c)?;
    ensure!(fds_after <= fds_before + 4, "luod leaks fds: {fds_before} -> {fds_after}");
    println!("# malformed_fuzz: {sent} bad messages, each refused cleanly (seed 0x123456789abcdef1)");
    Ok(())
}

fn thousand_sessions(_: &mut Ctx) -> R {
    let cl = connect()?;
    for i in 0..1000 {
        let name = format!("many-{i:04}");
        cl.create(&name).map_err(|e| format!("create {name}: {e}"))?;
        cl.preserve(&name, i, memfd(&[i as u8; 16])?).map_err(|e| format!("preserve {name}: {e}"))?;
    }
    let l = cl.list().map_err(s)?;
    let many = l.iter().filter(|e| e.name.starts_with(b"many-") && e.files == 1).count();
    ensure!(many == 1000, "{many} of 1000 sessions listed");
    for i in 0..1000 {
        cl.close(format!("many-{i:04}")).map_err(s)?;
    }
    let left = cl.list().map_err(s)?.iter().filter(|e| e.name.starts_with(b"many-")).count();
    ensure!(left == 0, "{left} sessions left after closing");
    Ok(())
}

fn kexec_refusals(_: &mut Ctx) -> R {
    let cl = connect()?;
    let k = File::open("/proc/self/exe").map_err(s)?;
    refused(cl.kexec_load(&k, None, "console=ttyS0"), libc::EINVAL, "no liveupdate=on")?;
    refused(cl.kexec_load(&k, None, "liveupdate=on liveupdate=off"), libc::EINVAL, "liveupdate=off last")?;
    refused(
        cl.call(&Request::KexecLoad { cmdline: "liveupdate=on".into() }, &[]),
        libc::EINVAL,
        "no kernel fd",
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Kexec stages

fn next_cmdline() -> Result<String, String> {
    let cur = std::fs::read_to_string("/proc/cmdline").map_err(s)?;
    let mut v: Vec<&str> = cur.split_ascii_whitespace().filter(|w| !w.starts_with("luo_stage=")).collect();
    v.push("luo_stage=2");
    Ok(v.join(" "))
}

fn stage1_kexec_load(_: &mut Ctx) -> R {
    let cl = connect()?;
    let kernel = File::open("/kernel").map_err(|e| format!("/kernel: {e}"))?;
    let initrd = File::open("/initrd.img").map_err(|e| format!("/initrd.img: {e}"))?;
    let h = cl.kexec_load(&kernel, Some(initrd.as_fd()), &next_cmdline()?).map_err(s)?;
    let files = A_FILES.len() + 1 + B_FILES.len();
    let bytes: usize = A_FILES.iter().chain(B_FILES).map(|f| f.1).sum::<usize>() + A_FILE_AFTER_RESTART.1;
    ensure!(
        h.sessions == 2 && h.files as usize == files && h.bytes as usize == bytes && h.dropped == 0,
        "hand-over report {h:?}, expected 2 sessions, {files} files, {bytes} bytes"
    );
    println!("# kexec will hand over {} sessions, {} files, {} bytes", h.sessions, h.files, h.bytes);
    Ok(())
}

fn stage2_luod_start(c: &mut Ctx) -> R {
    start_luod(c)?;
    let st = connect()?.status().map_err(s)?;
    ensure!(st.device_ok, "device: {}", st.device_error);
    ensure!(st.handed_over == Some(true), "handed_over {:?}", st.handed_over);
    ensure!(st.incoming == 2, "{} incoming sessions", st.incoming);
    println!("# live update number {:?}", st.live_update_number);
    Ok(())
}

fn stage2_list_incoming(_: &mut Ctx) -> R {
    let l = connect()?.list().map_err(s)?;
    for (n, owner, files) in [("vm-a", UID_A, A_FILES.len() + 1), ("vm-b", UID_B, B_FILES.len())] {
        let e = l.iter().find(|e| e.name == n.as_bytes()).ok_or(format!("{n} not listed: {l:?}"))?;
        ensure!(
            e.state == State::Incoming && e.owner == Some(owner) && e.files as usize == files,
            "{n}: {e:?}"
        );
    }
    Ok(())
}

fn stage2_other_uid_cannot_take(_: &mut Ctx) -> R {
    as_uid(UID_B, || {
        let cl = connect()?;
        let l = names(&cl.list().map_err(s)?);
        ensure!(l == ["vm-b"], "uid {UID_B} sees {l:?}");
        refused(cl.retrieve_session("vm-a"), libc::EPERM, "retrieve vm-a")?;
        refused(cl.finish("vm-a"), libc::EPERM, "finish vm-a")?;
        Ok(())
    })
}

fn check_files(cl: &Client, name: &str, files: &[(u64, usize, u64)]) -> R {
    for &(token, len, seed) in files {
        let fd = cl.retrieve_fd(name, token).map_err(|e| format!("{name} token {token}: {e}"))?;
        let got = read_all(&fd)?;
        ensure!(got == pattern(len, seed), "{name} token {token}: {} bytes, contents differ", got.len());
    }
    Ok(())
}

fn stage2_uid_a_retrieves(_: &mut Ctx) -> R {
    as_uid(UID_A, || {
        let cl = connect()?;
        cl.retrieve_session("vm-a").map_err(s)?;
        let mut files = A_FILES.to_vec();
        files.push(A_FILE_AFTER_RESTART);
        check_files(&cl, "vm-a", &files)?;
        cl.finish("vm-a").map_err(s)?;
        refused(cl.retrieve_fd("vm-a", 1), libc::ENOENT, "retrieve after finish")?;
        Ok(())
    })
}

fn stage2_restart_then_uid_b_retrieves(c: &mut Ctx) -> R {
    as_uid(UID_B, || connect()?.retrieve_session("vm-b").map_err(s))?;
    kill_luod(c)?;
    start_luod(c)?;
    as_uid(UID_B, || {
        let cl = connect()?;
        let l = cl.list().map_err(s)?;
        ensure!(l.len() == 1 && l[0].state == State::Retrieved, "after restart: {l:?}");
        check_files(&cl, "vm-b", B_FILES)?;
        cl.finish("vm-b").map_err(s)
    })
}

fn stage2_nothing_left(_: &mut Ctx) -> R {
    let cl = connect()?;
    let l = cl.list().map_err(s)?;
    ensure!(l.is_empty(), "left: {l:?}");
    refused(cl.retrieve_session("vm-a"), libc::ENOENT, "vm-a again")?;
    Ok(())
}

// ---------------------------------------------------------------------------
// systemd's part of the restart-safety protocol, played by the test.

/// What systemd keeps for a `Type=notify` service with
/// `FileDescriptorStoreMax=`: the notify socket and the fd store.
struct Systemd {
    /// `NOTIFY_SOCKET`: a `SOCK_DGRAM` socket bound to `path`.
    notify: OwnedFd,
    path: String,
    /// The fd store, in the order the fds came: (FDNAME, fd).
    store: Vec<(String, OwnedFd)>,
    /// `READY=1` messages seen.
    ready: u32,
    /// Every `FDSTOREREMOVE=1` name seen.
    removed: Vec<String>,
}

/// Do `a` and `b` refer to the same open file? `kcmp(KCMP_FILE)` as
/// systemd's `same_fd()`; without kcmp, the same inode under the same name.
fn same_file(a: &OwnedFd, b: &OwnedFd, same_name: bool) -> bool {
    use std::os::fd::AsRawFd;
    let pid = std::process::id() as libc::pid_t;
    // SAFETY: kcmp only compares two of our fds.
    let r = unsafe {
        libc::syscall(libc::SYS_kcmp, pid, pid, 0 /* KCMP_FILE */, a.as_raw_fd(), b.as_raw_fd())
    };
    if r >= 0 {
        return r == 0;
    }
    let (Ok(x), Ok(y)) = (rustix::fs::fstat(a), rustix::fs::fstat(b)) else { return false };
    same_name && x.st_dev == y.st_dev && x.st_ino == y.st_ino
}

impl Systemd {
    fn new(path: String) -> Result<Self, String> {
        use rustix::net::{AddressFamily, SocketFlags, SocketType};
        let _ = std::fs::remove_file(&path);
        let notify = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(s)?;
        rustix::net::bind(&notify, &rustix::net::SocketAddrUnix::new(path.as_str()).map_err(s)?)
            .map_err(|e| format!("binding {path}: {e}"))?;
        Ok(Self { notify, path, store: Vec::new(), ready: 0, removed: Vec::new() })
    }

    /// Take every queued notification, as systemd's `service_notify_message()`:
    /// `FDSTORE=1` keeps the attached fds under `FDNAME` (default "stored";
    /// an fd already in the store is not added twice), `FDSTOREREMOVE=1`
    /// closes every stored fd named `FDNAME`, other fds are closed.
    fn drain(&mut self) -> R {
        loop {
            let p = match luod::fdpass::recv(&self.notify, 4096) {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(format!("notify socket: {e}")),
            };
            ensure!(!p.truncated && !p.fds_truncated, "truncated notification");
            let text = String::from_utf8(p.data).map_err(|_| "notification is not UTF-8".to_string())?;
            let lines: Vec<&str> = text.split('\n').filter(|l| !l.is_empty()).collect();
            let name = lines.iter().find_map(|l| l.strip_prefix("FDNAME=")).unwrap_or("stored").to_string();
            if lines.contains(&"READY=1") {
                self.ready += 1;
            }
            if lines.contains(&"FDSTOREREMOVE=1") {
                self.store.retain(|(n, _)| *n != name);
                self.removed.push(name.clone());
            }
            if lines.contains(&"FDSTORE=1") {
                ensure!(luod::notify::valid_fdname(name.as_bytes()), "invalid FDNAME {name:?}");
                for fd in p.fds {
                    if !self.store.iter().any(|(n, f)| same_file(f, &fd, *n == name)) {
                        self.store.push((name.clone(), fd));
                    }
                }
            }
        }
    }

    /// Wait for the `n`th `READY=1`, collecting everything else on the way.
    fn wait_ready(&mut self, n: u32, luod: &Proc) -> R {
        let t = Instant::now();
        loop {
            self.drain()?;
            if self.ready >= n {
                return Ok(());
            }
            ensure!(luod.alive(), "luod exited before READY=1; see its messages above");
            ensure!(t.elapsed() < Duration::from_secs(20), "no READY=1 from luod within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn names(&self) -> Vec<&str> {
        self.store.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// A luod started the way systemd starts a service.
struct Proc(libc::pid_t);

impl Proc {
    fn alive(&self) -> bool {
        let mut st = 0;
        // SAFETY: polling our own child.
        unsafe { libc::waitpid(self.0, &mut st, libc::WNOHANG) == 0 }
    }

    fn kill(self, sig: i32) {
        let mut st = 0;
        // SAFETY: signalling and reaping our own child.
        unsafe {
            libc::kill(self.0, sig);
            libc::waitpid(self.0, &mut st, 0);
        }
    }
}

/// Start luod as systemd starts `luod.service` with `luod.socket`: the
/// listening socket (`FileDescriptorName=luod.sock`) at fd 3, then the fd
/// store in order, `LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID` (the
/// child's own pid, written after the fork) and `NOTIFY_SOCKET`.
fn spawn_activated(sock: &str, listener: &OwnedFd, sd: &Systemd) -> Result<Proc, String> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = |b: &[u8]| CString::new(b).map_err(s);
    let p = paths();
    let prog = c(luod_path()?.as_os_str().as_bytes())?;
    let mut args = vec!["luod", "--socket", sock, "--policy", &p.policy];
    if p.host {
        args.push("--fake-device");
    }
    let argv: Vec<CString> = args.iter().map(|a| c(a.as_bytes())).collect::<Result<_, _>>()?;
    let mut src: Vec<i32> = vec![listener.as_raw_fd()];
    let mut names = vec!["luod.sock"];
    for (n, fd) in &sd.store {
        src.push(fd.as_raw_fd());
        names.push(n);
    }
    let mut envp: Vec<CString> = Vec::new();
    for (k, v) in std::env::vars_os() {
        let k = k.as_bytes();
        if !k.starts_with(b"LISTEN_") && k != b"NOTIFY_SOCKET" {
            envp.push(c(&[k, b"=", v.as_bytes()].concat())?);
        }
    }
    envp.push(c(format!("NOTIFY_SOCKET={}", sd.path).as_bytes())?);
    envp.push(c(format!("LISTEN_FDS={}", src.len()).as_bytes())?);
    envp.push(c(format!("LISTEN_FDNAMES={}", names.join(":")).as_bytes())?);
    // Filled in by the child (no allocation after fork).
    let mut pidbuf = *b"LISTEN_PID=\0\0\0\0\0\0\0\0\0\0\0\0";
    let pid_at: *mut u8 = pidbuf.as_mut_ptr();
    let mut high = vec![0i32; src.len()];
    let argv_p: Vec<*const libc::c_char> =
        argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_p.push(pid_at.cast_const().cast());
    envp_p.push(std::ptr::null());
    let _ = std::io::stdout().flush();
    // SAFETY: single-threaded test program; the child only makes system
    // calls on memory prepared before the fork, then execs or _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: as above; the fds are ours, the buffers outlive execve.
        unsafe {
            // Out of the way of 3.. first, then into place (dup2 clears
            // close-on-exec on the new fd, the originals are close-on-exec).
            for (h, &fd) in high.iter_mut().zip(&src) {
                *h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100);
                if *h < 0 {
                    libc::_exit(126);
                }
            }
            for (i, &h) in high.iter().enumerate() {
                if libc::dup2(h, 3 + i as i32) < 0 {
                    libc::_exit(126);
                }
            }
            let mut n = libc::getpid() as u32;
            let mut digits = [0u8; 10];
            let mut k = 0;
            loop {
                digits[k] = b'0' + (n % 10) as u8;
                k += 1;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            for i in 0..k {
                *pid_at.add(11 + i) = digits[k - 1 - i];
            }
            *pid_at.add(11 + k) = 0;
            libc::execve(prog.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr());
            libc::_exit(127);
        }
    }
    Ok(Proc(pid))
}

fn connect_to(sock: &str) -> Result<Client, String> {
    Client::connect(sock).map_err(|e| format!("connecting to {sock}: {e}"))
}

/// luod under (a stand-in for) systemd: its sessions go to the fd store,
/// luod is killed with SIGKILL, and a new luod gets them back through
/// socket activation and finds them alive.
fn fdstore_restart(c: &mut Ctx) -> R {
    // The suite's luod owns /dev/liveupdate (one opener at a time): it
    // steps aside, its holder keeps the suite's sessions meanwhile.
    let before = connect()?.list().map_err(s)?;
    kill_luod(c)?;
    let sock = format!("{}-fdstore", paths().sock);
    let mut sd = Systemd::new(format!("{}-notify", paths().sock))?;
    let result = fdstore_restart_steps(&sock, &mut sd);
    drop(sd.store.drain(..));
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(&sd.path);
    start_luod(c)?;
    result?;
    let after = connect()?.list().map_err(s)?;
    ensure!(before == after, "the suite's sessions changed: {before:?} -> {after:?}");
    Ok(())
}

fn fdstore_restart_steps(sock: &str, sd: &mut Systemd) -> R {
    // luod.socket: the listening socket, made once and passed to every luod.
    let _ = std::fs::remove_file(sock);
    let listener = luod::fdpass::seqpacket().map_err(s)?;
    rustix::net::bind(&listener, &rustix::net::SocketAddrUnix::new(sock).map_err(s)?).map_err(s)?;
    rustix::net::listen(&listener, 16).map_err(s)?;
    std::fs::set_permissions(sock, std::os::unix::fs::PermissionsExt::from_mode(0o666)).map_err(s)?;

    let luod1 = spawn_activated(sock, &listener, sd)?;
    let r = (|| -> R {
        sd.wait_ready(1, &luod1)?;
        ensure!(sd.store.is_empty(), "fd store before any session: {:?}", sd.names());
        let sock2 = sock.to_string();
        as_uid(UID_A, move || {
            let cl = connect_to(&sock2)?;
            cl.create("fds-vm").map_err(s)?;
            cl.preserve("fds-vm", 1, memfd(&pattern(4096, 21))?).map_err(s)?;
            let l = cl.list().map_err(s)?;
            ensure!(
                l.len() == 1 && l[0].state == State::Outgoing && l[0].owner == Some(UID_A) && l[0].files == 1,
                "uid {UID_A} lists {l:?}"
            );
            Ok(())
        })?;
        let cl = connect_to(sock)?;
        cl.create("fds-gone").map_err(s)?;
        cl.close("fds-gone").map_err(s)?;
        // Not a valid FDNAME: luod cannot store it (and says so).
        cl.create("fds:colon").map_err(s)?;
        sd.drain()?;
        ensure!(sd.names() == ["fds-vm"], "fd store holds {:?}, expected [\"fds-vm\"]", sd.names());
        ensure!(sd.removed == ["fds-gone"], "FDSTOREREMOVE for {:?}, expected [\"fds-gone\"]", sd.removed);
        Ok(())
    })();
    luod1.kill(libc::SIGKILL);
    r?;

    let luod2 = spawn_activated(sock, &listener, sd)?;
    let r = (|| -> R {
        sd.wait_ready(2, &luod2)?;
        let cl = connect_to(sock)?;
        let l = cl.list().map_err(s)?;
        // The owner and the file count are not in the fd store: unknown.
        ensure!(
            l.len() == 1 && l[0].name == b"fds-vm" && l[0].state == State::Outgoing && l[0].owner.is_none(),
            "after the restart root lists {l:?}, expected fds-vm outgoing with no owner"
        );
        let st = cl.status().map_err(s)?;
        ensure!(st.device_ok && st.outgoing.sessions == 1, "status after the restart: {st:?}");
        // Owner unknown: the policy decides, and it grants uid A nothing.
        let sock2 = sock.to_string();
        as_uid(UID_A, move || {
            let cl = connect_to(&sock2)?;
            let l = names(&cl.list().map_err(s)?);
            ensure!(l.is_empty(), "uid {UID_A} sees {l:?} after the restart");
            refused(cl.preserve("fds-vm", 2, memfd(b"x")?), libc::EPERM, "uid A into fds-vm")
        })?;
        if !paths().host {
            // The kernel session still holds token 1 from before the restart.
            match cl.preserve("fds-vm", 1, memfd(b"again")?) {
                Err(ClientError::Refused(e)) => println!("# fdstore_restart: token 1 again refused: {e}"),
                Err(e) => return Err(format!("preserve token 1 again: {e}")),
                Ok(()) => {
                    return Err("token 1 preserved twice: not the session from before the restart".into())
                }
            }
        }
        // The session is alive through the new luod.
        cl.preserve("fds-vm", 2, memfd(&pattern(1000, 22))?).map_err(s)?;
        let l = cl.list().map_err(s)?;
        ensure!(l.len() == 1 && l[0].files == 1 && l[0].bytes == 1000, "after a preserve: {l:?}");
        sd.drain()?;
        ensure!(sd.names() == ["fds-vm"], "fd store after the preserve: {:?}", sd.names());
        cl.close("fds-vm").map_err(s)?;
        ensure!(cl.list().map_err(s)?.is_empty(), "sessions left after the close");
        sd.drain()?;
        ensure!(sd.store.is_empty(), "fd store after the close: {:?}", sd.names());
        ensure!(sd.removed == ["fds-gone", "fds-vm"], "FDSTOREREMOVE for {:?}", sd.removed);
        Ok(())
    })();
    // Stopped as systemd stops a service: SIGTERM.
    luod2.kill(libc::SIGTERM);
    r
}

// ---------------------------------------------------------------------------

type Case = (&'static str, fn(&mut Ctx) -> R);

const SINGLE: &[Case] = &[
    ("luod_start", luod_start),
    ("uid_a_creates_and_preserves", uid_a_creates_and_preserves),
    ("uid_b_creates_and_preserves", uid_b_creates_and_preserves),
    ("other_uid_cannot_see", other_uid_cannot_see),
    ("other_uid_cannot_take", other_uid_cannot_take),
    ("policy_prefix_grant", policy_prefix_grant),
    ("root_sees_all", root_sees_all),
    ("restart_kill9", restart_kill9),
    ("malformed_fuzz", malformed_fuzz),
    ("thousand_sessions", thousand_sessions),
    ("kexec_refusals", kexec_refusals),
    ("holder_squat_refused", holder_squat_refused),
    ("fdstore_restart", fdstore_restart),
];

const STAGE1: &[Case] = &[
    ("luod_start", luod_start),
    ("uid_a_creates_and_preserves", uid_a_creates_and_preserves),
    ("uid_b_creates_and_preserves", uid_b_creates_and_preserves),
    ("other_uid_cannot_see", other_uid_cannot_see),
    ("other_uid_cannot_take", other_uid_cannot_take),
    ("restart_kill9", restart_kill9),
    ("stage1_kexec_load", stage1_kexec_load),
];

const STAGE2: &[Case] = &[
    ("stage2_luod_start", stage2_luod_start),
    ("stage2_list_incoming", stage2_list_incoming),
    ("stage2_other_uid_cannot_take", stage2_other_uid_cannot_take),
    ("stage2_uid_a_retrieves", stage2_uid_a_retrieves),
    ("stage2_restart_then_uid_b_retrieves", stage2_restart_then_uid_b_retrieves),
    ("stage2_nothing_left", stage2_nothing_left),
];

fn usage() -> ! {
    eprintln!("usage: luod-tests [-s 1|2] [--list] [--host | --inproc]");
    std::process::exit(2);
}

fn main() {
    let mut stage: Option<u32> = None;
    let mut list = false;
    let mut in_process = std::fs::read_to_string("/proc/cmdline")
        .is_ok_and(|c| c.split_ascii_whitespace().any(|w| w == "luod.inproc=1"));
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-s" => stage = Some(args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage())),
            "--list" => list = true,
            "--inproc" => in_process = true,
            "--host" => {
                let pid = std::process::id();
                let _ = PATHS.set(Paths {
                    sock: format!("/tmp/luod-host-{pid}.sock"),
                    policy: format!("/tmp/luod-host-{pid}.toml"),
                    host: true,
                });
            }
            _ => usage(),
        }
    }
    let cases: &[Case] = match (stage, in_process) {
        (None, false) => SINGLE,
        (Some(1), false) => STAGE1,
        (Some(2), false) => STAGE2,
        (None, true) => inproc::SINGLE,
        (Some(1), true) => inproc::STAGE1,
        (Some(2), true) => inproc::STAGE2,
        (Some(_), _) => usage(),
    };
    if list {
        for (name, _) in cases {
            println!("{name}");
        }
        return;
    }
    std::panic::set_hook(Box::new(|_| {}));
    println!("KTAP version 1");
    println!("# luod-tests: {}", stage.map_or("single boot".to_string(), |n| format!("kexec stage {n}")));
    println!("1..{}", cases.len());
    let mut ctx = Ctx { luod: None, engine: None };
    let mut failed = 0;
    for (i, (name, f)) in cases.iter().enumerate() {
        let r = catch_unwind(AssertUnwindSafe(|| f(&mut ctx)))
            .unwrap_or_else(|p| Err(format!("panicked: {}", panic_text(&p))));
        match r {
            Ok(()) => println!("ok {} {name}", i + 1),
            Err(why) => {
                failed += 1;
                println!("not ok {} {name} # {}", i + 1, why.replace('\n', " "));
            }
        }
        let _ = std::io::stdout().flush();
    }
    println!("# {} passed, {failed} failed", cases.len() - failed);
    // Stage 1 leaves luod (and its holder) running: they keep the sessions
    // open until the kexec. Otherwise stop luod.
    if stage != Some(1) {
        if let Some(mut l) = ctx.luod.take() {
            let _ = l.kill();
            let _ = l.wait();
        }
    }
    if paths().host {
        stop_holder();
    }
    if in_process && stage == Some(1) && failed == 0 {
        // The engine's session fds must outlive this process until the
        // kexec: a forked child keeps copies of them, asleep.
        let _ = std::io::stdout().flush();
        // SAFETY: single-threaded; the child only parks.
        if unsafe { libc::fork() } == 0 {
            loop {
                std::thread::park();
            }
        }
    }
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

/// `--host`: stop the holder luod started for our socket (in the VM it
/// dies with the VM, or keeps the sessions for the kexec).
fn stop_holder() {
    let Ok(dir) = std::fs::read_dir("/proc") else { return };
    let me = format!("--holder\0--socket\0{}\0", paths().sock);
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        if String::from_utf8_lossy(&cmd).contains(&me) {
            // SAFETY: kill(2) on a pid, no memory involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "?".into())
}
