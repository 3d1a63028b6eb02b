// SPDX-License-Identifier: GPL-2.0
//! In-VM tests of luod: authorization between two uids, policy grants and
//! session namespaces, a kill -9 and restart (through the holder, and
//! through systemd's fd store with the test playing systemd), a
//! malformed-request fuzz, 1,000 sessions, a kexec with the data verified
//! byte for byte in the next kernel, and (`--tenants`) one case per attack
//! of one tenant on another (see `tenants.rs`).
//!
//! Usage: `luod-tests [-s STAGE] [--tenants [--hugetlb]] [--list [--all-stages]] [--host | --inproc] [--only CASE,...]`
//!
//! - no `-s`: the single-boot suite (`luod`);
//! - `-s 1`: clients create and fill sessions through luod, luod is
//!   restarted, then luod loads the next kernel and is left running;
//! - `-s 2`: after the kexec, a new luod; the clients retrieve and check.
//! - `--tenants`: the suites `luod-tenants` (single boot) and
//!   `luod-tenants-kexec` (`-s 1|2`).
//! - `--hugetlb`, with `--tenants` and no `-s`: the case of a hugetlbfs
//!   memfd too, for kernels with the Rust memfd handler and CONFIG_HUGETLBFS
//!   booted with 2 MiB huge pages (elsewhere it fails).
//! - `--inproc`: luod's request handling in this process, without the
//!   socket (see `inproc.rs`), single boot or `-s 1|2`.
//! - `--list --all-stages`: the cases of both stages of a kexec suite.
//! - `--only CASE,...` (development): the first case and those named.
//! - `--host`: the single-boot suites on any Linux machine, as root, against
//!   luod with `--fake-device` (no LUO: this tests luod's protocol,
//!   authorization, restart and fuzz handling, not the kernel).
//!
//! Options come from argv only (the harness passes the same ones to both
//! stages, after `-s K`); the kernel command line is read only to load the
//! stage-2 kernel with it, its `stage=K` init argument made `stage=2`.
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

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

mod child;
mod inproc;
mod tenants;
mod wire;

use child::{as_uid, fork_as, Forked};

type R = Result<(), String>;

/// Where luod listens, its state directory and its policy file; `--host`
/// makes them unique and runs luod with `--fake-device` (no LUO: the
/// single-boot suites only).
struct Paths {
    sock: String,
    state: String,
    policy: String,
    host: bool,
}

static PATHS: std::sync::OnceLock<Paths> = std::sync::OnceLock::new();

fn paths() -> &'static Paths {
    PATHS.get_or_init(|| Paths {
        sock: "/tmp/luod.sock".into(),
        state: "/tmp/luod-state".into(),
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

/// The `luod` suites' policy: default deny; uid A may use `vm-a`, uid B
/// `vm-b` and `shared` (and the names below them).
fn suite_policy() -> String {
    format!(
        "# luod-tests\nungranted = \"deny\"\n\n[[grant]]\nuid = {UID_A}\nnames = [\"vm-a\"]\n\n\
         [[grant]]\nuid = {UID_B}\nnames = [\"vm-b\", \"shared\"]\n"
    )
}

struct Ctx {
    luod: Option<Child>,
    /// The policy luod is started with (written at every start).
    policy: String,
    /// `--inproc`: luod's engine in this process.
    engine: Option<luod::server::Engine>,
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

/// A client of luod at `sock`, whose requests give up after 30 s (a
/// stalled luod fails the case instead of hanging the suite).
fn connect_to(sock: &str) -> Result<Client, String> {
    let cl = Client::connect(sock).map_err(|e| format!("connecting to {sock}: {e}"))?;
    cl.set_timeout(Some(Duration::from_secs(30))).map_err(s)?;
    Ok(cl)
}

fn connect() -> Result<Client, String> {
    connect_to(&paths().sock)
}

/// `Err` unless `r` failed with luod's error reply `errno`.
fn refused<T>(r: Result<T, ClientError>, errno: i32, what: &str) -> R {
    match r {
        Err(ClientError::Refused(e)) if e.errno == errno as u32 => Ok(()),
        Err(e) => Err(format!("{what}: expected errno {errno}, got {e}")),
        Ok(_) => Err(format!("{what}: expected errno {errno}, but it succeeded")),
    }
}

fn luod_path() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(s)?;
    Ok(exe.with_file_name("luod"))
}

/// luod on `sock` with state directory `state` and policy file `policy`,
/// with `--fake-device` if `fake`.
fn luod_cmd(sock: &str, state: &str, policy: &str, fake: bool) -> Command {
    let mut cmd = Command::new(luod_path().unwrap_or_else(|_| "luod".into()));
    cmd.args(["--socket", sock, "--state-dir", state, "--policy", policy]);
    if fake {
        cmd.arg("--fake-device");
    }
    cmd
}

fn start_luod(c: &mut Ctx) -> R {
    let p = paths();
    // Written at every start: /tmp is empty again after a kexec.
    std::fs::write(&p.policy, &c.policy).map_err(s)?;
    let child = luod_cmd(&p.sock, &p.state, &p.policy, p.host)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting luod: {e}"))?;
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
        ensure!(l == ["vm-b"], "uid {UID_B} sees {l:?}");
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

/// Not a kernel: 64 KiB of a pattern in a file of /tmp (unlinked) that
/// this process keeps open read-write. Should a load get as far as
/// `kexec_file_load`, the kernel refuses a file open for writing
/// (`deny_write_access()`: `ETXTBSY`) before it parses it, so no kernel
/// error about its format is printed (the verdict fails a run on any). A
/// memfd would not do: its writers are not counted, and the kernel would
/// parse it ("Not a bzImage", level err).
fn junk_kernel() -> Result<OwnedFd, String> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = format!("/tmp/luod-tests-junk-kernel-{}-{n}", std::process::id());
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("{path}: {e}"))?;
    let _ = std::fs::remove_file(&path);
    f.write_all(&pattern(64 * 1024, 99)).map_err(s)?;
    Ok(f.into())
}

fn other_uid_cannot_take(_: &mut Ctx) -> R {
    as_uid(UID_B, || {
        let cl = connect()?;
        let m = memfd(b"intruder")?;
        // Not B's names: refused whoever holds them.
        for name in ["vm-a", "u1001/vm-a"] {
            refused(cl.preserve(name, 9, &m), libc::EPERM, &format!("preserve into {name}"))?;
            refused(cl.close(name), libc::EPERM, &format!("close {name}"))?;
            refused(cl.retrieve_session(name), libc::EPERM, &format!("retrieve {name}"))?;
            refused(cl.retrieve_fd(name, 1), libc::EPERM, &format!("retrieve_fd {name}"))?;
        }
        refused(cl.create("luod.mine"), libc::EPERM, "create luod.*")?;
        let k = junk_kernel()?;
        refused(
            cl.kexec_load(&k, None, "liveupdate=on", proto::KEXEC_UNVERIFIED),
            libc::EPERM,
            "kexec as non-root",
        )?;
        Ok(())
    })?;
    as_uid(UID_A, || refused(connect()?.close("vm-b"), libc::EPERM, "uid A closes vm-b"))?;
    // Both sessions are intact, under their owners' prefixes.
    let l = connect()?.list().map_err(s)?;
    for (n, owner) in [("u1001/vm-a", UID_A), ("u1002/vm-b", UID_B)] {
        let e = l.iter().find(|e| e.name == n.as_bytes()).ok_or(format!("{n} vanished: {l:?}"))?;
        ensure!(e.owner == Some(owner), "{n} owner {:?}", e.owner);
    }
    Ok(())
}

/// A uid without a grant (default deny), and the overflow uid, are
/// refused; a name too long once prefixed with `u<uid>/` gets ENAMETOOLONG.
fn ungranted_uid_refused(_: &mut Ctx) -> R {
    as_uid(1006, || refused(connect()?.create("x"), libc::EPERM, "create by uid 1006 (no grant)"))?;
    as_uid(65534, || refused(connect()?.create("x"), libc::EPERM, "create by the overflow uid 65534"))?;
    as_uid(UID_A, || {
        let cl = connect()?;
        // "u1001/" takes 6 of the kernel's 63 bytes.
        let fits = format!("vm-a/{}", "n".repeat(52));
        let long = format!("vm-a/{}", "n".repeat(53));
        refused(cl.create(&long), libc::ENAMETOOLONG, "a 58-byte name of uid 1001")?;
        cl.create(&fits).map_err(|e| format!("a 57-byte name of uid 1001: {e}"))?;
        cl.close(&fits).map_err(s)
    })
}

/// A grant covers a name and the names below it: uid B's `shared` covers
/// `shared/1`, not `shared-2`; nobody else may use it; root sees it by its
/// kernel name and may act on it.
fn policy_grant(_: &mut Ctx) -> R {
    as_uid(UID_B, || {
        let cl = connect()?;
        cl.create("shared/1").map_err(s)?;
        cl.preserve("shared/1", 5, memfd(b"granted")?).map_err(s)?;
        refused(cl.create("shared-2"), libc::EPERM, "uid B creates shared-2 (grant: shared)")?;
        cl.create("shared").map_err(s)?;
        cl.close("shared").map_err(s)?;
        let l = names(&cl.list().map_err(s)?);
        ensure!(l.contains(&"shared/1".to_string()), "uid {UID_B} does not see shared/1: {l:?}");
        Ok(())
    })?;
    as_uid(UID_A, || {
        let cl = connect()?;
        let l = names(&cl.list().map_err(s)?);
        ensure!(!l.iter().any(|n| n.contains("shared")), "uid {UID_A} sees {l:?}");
        refused(cl.preserve("shared/1", 6, memfd(b"x")?), libc::EPERM, "uid A into shared/1")?;
        refused(cl.create("shared/a"), libc::EPERM, "uid A creates a name granted to B")?;
        Ok(())
    })?;
    let cl = connect()?;
    let l = names(&cl.list().map_err(s)?);
    ensure!(l.contains(&"u1002/shared/1".to_string()), "root does not see u1002/shared/1: {l:?}");
    cl.close("u1002/shared/1").map_err(|e| format!("root closes u1002/shared/1: {e}"))?;
    as_uid(UID_B, || {
        let l = names(&connect()?.list().map_err(s)?);
        ensure!(l == ["vm-b"], "uid {UID_B} sees {l:?} after root closed shared/1");
        Ok(())
    })
}

fn root_sees_all(_: &mut Ctx) -> R {
    let l = names(&connect()?.list().map_err(s)?);
    ensure!(l.contains(&"u1001/vm-a".into()) && l.contains(&"u1002/vm-b".into()), "root sees {l:?}");
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

/// The holder's socket lives in luod's state directory: a directory that
/// another uid made first (with a listening `holder.sock` of its own in
/// it), or that is open to others, stops luod instead of handing session
/// fds to whoever listens there.
fn holder_squat_refused(_: &mut Ctx) -> R {
    let p = paths();
    let sock = format!("{}-squat", p.sock);
    let dir = format!("{}-squat", p.state);
    let _ = std::fs::remove_dir_all(&dir);
    let d2 = dir.clone();
    // The squatter's listener must outlive luod's attempt: it waits for go.
    let mut squatter = fork_as(Some(UID_A), move |side| {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&d2).map_err(|e| format!("mkdir {d2}: {e}"))?;
        let l = wire::seqpacket().map_err(s)?;
        let path = format!("{d2}/holder.sock");
        rustix::net::bind(&l, &rustix::net::SocketAddrUnix::new(path.as_str()).map_err(s)?).map_err(s)?;
        rustix::net::listen(&l, 4).map_err(s)?;
        side.ready()?;
        side.wait_go()?;
        // Whatever luod sent: a connection would have been accepted here.
        rustix::fs::fcntl_setfl(&l, rustix::fs::OFlags::NONBLOCK).map_err(s)?;
        match rustix::net::accept(&l) {
            Ok(_) => Err("luod connected to the squatter's holder.sock".into()),
            Err(_) => Ok(()),
        }
    })?;
    let r = squatter.wait_ready(Duration::from_secs(30)).and_then(|()| {
        let mut luod = luod_cmd(&sock, &dir, &p.policy, true).stdin(Stdio::null()).spawn().map_err(s)?;
        let st = wait_exit_status(&mut luod, Duration::from_secs(15));
        ensure!(
            st.as_ref().is_some_and(|st| st.code().is_some_and(|c| c != 0)),
            "luod with a state directory of uid {UID_A}'s: {}",
            st.map_or("still running after 15 s".to_string(), |st| st.to_string())
        );
        Ok(())
    });
    let _ = squatter.go();
    let sr = squatter.join(Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
    r?;
    sr?;
    // root's own directory, but open to others.
    std::fs::create_dir(&dir).map_err(s)?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).map_err(s)?;
    let mut luod = luod_cmd(&sock, &dir, &p.policy, true).stdin(Stdio::null()).spawn().map_err(s)?;
    let st = wait_exit_status(&mut luod, Duration::from_secs(15));
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(
        st.as_ref().is_some_and(|st| st.code().is_some_and(|c| c != 0)),
        "luod with a state directory of mode 0777: {}",
        st.map_or("still running after 15 s".to_string(), |st| st.to_string())
    );
    Ok(())
}

/// Wait up to `t` for `child` to exit; killed if it has not.
fn wait_exit_status(child: &mut Child, t: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if start.elapsed() > t {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
        Request::KexecLoad { cmdline: "x".into(), flags: 0 },
        Request::Ack { seq: 1 },
        Request::Subscribe,
    ]
    .iter()
    .map(proto::encode_request)
    .collect();
    let spare = memfd(b"spare")?;
    let mut cl = connect()?;
    // A fixed corpus of bad messages, written out by hand (not judged by
    // the decoder this program shares with luod).
    let [v0, v1] = proto::VERSION.to_le_bytes();
    let hdr = |op: u8| vec![b'L', b'U', b'O', b'D', v0, v1, op, 0];
    let with = |mut h: Vec<u8>, tail: &[u8]| {
        h.extend_from_slice(tail);
        h
    };
    let corpus: Vec<(&str, Vec<u8>)> = vec![
        ("status + trailing byte", with(hdr(1), &[0])),
        ("bad magic", vec![b'X', b'U', b'O', b'D', 1, 0, 1, 0]),
        ("version 1 (the old protocol)", vec![b'L', b'U', b'O', b'D', 1, 0, 1, 0]),
        ("version 3", vec![b'L', b'U', b'O', b'D', 3, 0, 1, 0]),
        ("unknown op 0", hdr(0)),
        ("unknown op 200", hdr(200)),
        ("short header", vec![b'L', b'U', b'O']),
        ("create, empty name", with(hdr(3), &[0, 0])),
        ("create, 64-byte name", with(hdr(3), &[&[64u8, 0][..], &[b'a'; 64][..]].concat())),
        ("create, NUL in name", with(hdr(3), &[3, 0, b'a', 0, b'b'])),
        ("create, name length past the end", with(hdr(3), &[9, 0, b'a'])),
        ("list without offset", hdr(2)),
        ("retrieve_fd without token", with(hdr(7), &[1, 0, b'a'])),
        ("kexec, cmdline not UTF-8", with(hdr(9), &[2, 0, 0xff, 0xfe, 0, 0, 0, 0])),
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
            // Never a reboot, whatever luod would make of its fds.
            if matches!(req, Request::Reboot { .. }) {
                continue;
            }
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
            let _ = wire::send(rude.socket(), &msg, &[]);
            drop(rude);
            cl = connect()?;
        }
    }
    ensure!(sent > 1000, "only {sent} bad messages sent");
    // A zero-length packet ends the connection; luod lives on.
    let _ = wire::send(cl.socket(), &[], &[]);
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
    // Unverified: the command line is what is refused, whatever the image.
    let k = junk_kernel()?;
    let unv = proto::KEXEC_UNVERIFIED;
    refused(cl.kexec_load(&k, None, "console=ttyS0", unv), libc::EINVAL, "no liveupdate=on")?;
    refused(
        cl.kexec_load(&k, None, "liveupdate=on liveupdate=off", unv),
        libc::EINVAL,
        "liveupdate=off last",
    )?;
    // After a standalone `--`, it is an argument of init, not the kernel's.
    refused(
        cl.kexec_load(&k, None, "console=ttyS0 -- liveupdate=on", unv),
        libc::EINVAL,
        "liveupdate=on among init's arguments only",
    )?;
    refused(
        cl.call(&Request::KexecLoad { cmdline: "liveupdate=on".into(), flags: unv }, &[]),
        libc::EINVAL,
        "no kernel fd",
    )?;
    refused(cl.kexec_load(&k, None, "liveupdate=on", 0x8000_0000), libc::EINVAL, "an unknown flag")?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Kexec stages

/// The command line of the stage-2 kernel: this kernel's, with `stage=2`
/// among init's arguments (after the standalone `--`).
fn next_cmdline() -> Result<String, String> {
    let cur = std::fs::read_to_string("/proc/cmdline").map_err(|e| format!("/proc/cmdline: {e}"))?;
    stage2_cmdline(&cur)
}

/// `cmdline` with the `stage=` words after its first standalone `--` (the
/// harness's `-- test=PROG stages=N [stage=K] [ARGS...]`) dropped and
/// `stage=2` added at the end, as guest/init.c makes the next command line;
/// the kernel parameters before the `--` and every other word stay as they
/// are, in order.
fn stage2_cmdline(cmdline: &str) -> Result<String, String> {
    let (params, init) = liveupdate::cmdline::split(cmdline);
    let init =
        init.ok_or_else(|| format!("the command line {:?} has no `--` (no init arguments)", cmdline.trim()))?;
    // As guest/init.c does: no stage= word (stage 1 has none) or one, then stage=2.
    let mut words: Vec<&str> = init.split_ascii_whitespace().filter(|w| !w.starts_with("stage=")).collect();
    words.push("stage=2");
    Ok(liveupdate::cmdline::join(params, Some(&words.join(" "))))
}

fn stage1_kexec_load(_: &mut Ctx) -> R {
    let cl = connect()?;
    let kernel = File::open("/kernel").map_err(|e| format!("/kernel: {e}"))?;
    let initrd = File::open("/initrd.img").map_err(|e| format!("/initrd.img: {e}"))?;
    // Verified: the kernel under test carries the LUO format table.
    let h = cl.kexec_load(&kernel, Some(initrd.as_fd()), &next_cmdline()?, 0).map_err(s)?;
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
    for (n, owner, files) in [("u1001/vm-a", UID_A, A_FILES.len() + 1), ("u1002/vm-b", UID_B, B_FILES.len())]
    {
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
        for name in ["vm-a", "u1001/vm-a"] {
            refused(cl.retrieve_session(name), libc::EPERM, &format!("retrieve {name}"))?;
            refused(cl.finish(name), libc::EPERM, &format!("finish {name}"))?;
        }
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
    refused(cl.retrieve_session("u1001/vm-a"), libc::ENOENT, "u1001/vm-a again")?;
    Ok(())
}

// ---------------------------------------------------------------------------
// systemd's part of the restart-safety protocol, played by the test.

/// What luod told the stand-in, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Note {
    Store(String),
    Remove(String),
    Barrier,
}

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
    /// Stores, removals and barriers, in order.
    notes: Vec<Note>,
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

/// systemd's rule for a name in the fd store (`fdname_is_valid()`):
/// printable ASCII but `:`, at most 255 bytes.
fn valid_fdname(n: &str) -> bool {
    !n.is_empty() && n.len() <= 255 && n.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b':')
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
        Ok(Self { notify, path, store: Vec::new(), ready: 0, removed: Vec::new(), notes: Vec::new() })
    }

    /// Take every queued notification, as systemd's `service_notify_message()`:
    /// `FDSTORE=1` keeps the attached fds under `FDNAME` (default "stored";
    /// an fd already in the store is not added twice), `FDSTOREREMOVE=1`
    /// closes every stored fd named `FDNAME`, `BARRIER=1` (alone, with one
    /// fd) is answered by closing that fd, other fds are closed.
    fn drain(&mut self) -> R {
        loop {
            let p =
                match wire::recv(&self.notify, Duration::ZERO).map_err(|e| format!("notify socket: {e}"))? {
                    wire::Got::Packet(p) => p,
                    wire::Got::HangUp => continue,
                    wire::Got::Nothing => return Ok(()),
                };
            let text = String::from_utf8(p.data).map_err(|_| "notification is not UTF-8".to_string())?;
            let lines: Vec<&str> = text.split('\n').filter(|l| !l.is_empty()).collect();
            let name = lines.iter().find_map(|l| l.strip_prefix("FDNAME=")).unwrap_or("stored").to_string();
            if lines.contains(&"READY=1") {
                self.ready += 1;
            }
            if lines.contains(&"BARRIER=1") {
                ensure!(
                    lines.len() == 1 && p.fds.len() == 1,
                    "BARRIER=1 must come alone with one fd (systemd ignores it otherwise): {text:?}, {} fds",
                    p.fds.len()
                );
                self.notes.push(Note::Barrier);
            }
            if lines.contains(&"FDSTOREREMOVE=1") {
                self.store.retain(|(n, _)| *n != name);
                self.removed.push(name.clone());
                self.notes.push(Note::Remove(name.clone()));
            }
            if lines.contains(&"FDSTORE=1") {
                ensure!(valid_fdname(&name), "invalid FDNAME {name:?}");
                self.notes.push(Note::Store(name.clone()));
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

    /// Serve notifications until the client `child` is done, then its
    /// result (luod waits for its barriers before it answers a client).
    fn serve(&mut self, child: Forked) -> R {
        let t = Instant::now();
        while !child.finished() {
            self.drain()?;
            ensure!(t.elapsed() < Duration::from_secs(60), "a client of luod took more than 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        let r = child.join(Duration::from_secs(5));
        self.drain()?;
        r
    }

    /// Every store and removal so far was followed by a `BARRIER=1`.
    fn barriers_follow(&self) -> R {
        let mut open: Option<&Note> = None;
        for n in &self.notes {
            match n {
                Note::Barrier => open = None,
                n => {
                    if let Some(o) = open {
                        return Err(format!("{o:?} was not followed by BARRIER=1 before {n:?}"));
                    }
                    open = Some(n);
                }
            }
        }
        match open {
            Some(o) => Err(format!("{o:?} was not followed by BARRIER=1")),
            None => Ok(()),
        }
    }

    fn names(&self) -> Vec<&str> {
        self.store.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// The fd store name of a session: `o` (outgoing) or `i` and the hex of
/// its kernel name.
fn fdname(dir: char, kname: &[u8]) -> String {
    let hex: String = kname.iter().map(|b| format!("{b:02x}")).collect();
    format!("{dir}{hex}")
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

/// `luod.socket`: the listening socket at `sock`, made once and passed to
/// every luod.
fn listening_socket(sock: &str) -> Result<OwnedFd, String> {
    let _ = std::fs::remove_file(sock);
    let listener = wire::seqpacket().map_err(s)?;
    rustix::net::bind(&listener, &rustix::net::SocketAddrUnix::new(sock).map_err(s)?).map_err(s)?;
    rustix::net::listen(&listener, 16).map_err(s)?;
    std::fs::set_permissions(sock, std::os::unix::fs::PermissionsExt::from_mode(0o666)).map_err(s)?;
    Ok(listener)
}

/// Start luod as systemd starts `luod.service` with `luod.socket`: the
/// listening socket (`FileDescriptorName=luod.sock`) at fd 3, then the fd
/// store in order, `LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID` (the
/// child's own pid, written after the fork) and `NOTIFY_SOCKET`.
fn spawn_activated(sock: &str, state: &str, listener: &OwnedFd, sd: &Systemd) -> Result<Proc, String> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = |b: &[u8]| CString::new(b).map_err(s);
    let p = paths();
    let prog = c(luod_path()?.as_os_str().as_bytes())?;
    let mut args = vec!["luod", "--socket", sock, "--state-dir", state, "--policy", &p.policy];
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

/// Stop the suite's luod, run `steps` with a stand-in for systemd (its
/// notify socket and fd store) on a socket and state directory of their
/// own, empty the store, and start the suite's luod again.
fn under_systemd(c: &mut Ctx, steps: impl FnOnce(&str, &str, &mut Systemd) -> R) -> R {
    kill_luod(c)?;
    let sock = format!("{}-fdstore", paths().sock);
    let state = format!("{}-fdstore", paths().state);
    let mut sd = Systemd::new(format!("{}-notify", paths().sock))?;
    let result = steps(&sock, &state, &mut sd);
    drop(sd.store.drain(..));
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(&sd.path);
    start_luod(c)?;
    result
}

/// luod under (a stand-in for) systemd: its sessions go to the fd store
/// (names `o` + hex of the kernel name, even one with a colon), luod is
/// killed with SIGKILL, and a new luod gets them back through socket
/// activation and finds them alive, with their owners.
fn fdstore_restart(c: &mut Ctx) -> R {
    // The suite's luod owns /dev/liveupdate (one opener at a time): it
    // steps aside, its holder keeps the suite's sessions meanwhile.
    let before = connect()?.list().map_err(s)?;
    under_systemd(c, fdstore_restart_steps)?;
    let after = connect()?.list().map_err(s)?;
    ensure!(before == after, "the suite's sessions changed: {before:?} -> {after:?}");
    Ok(())
}

fn fdstore_restart_steps(sock: &str, state: &str, sd: &mut Systemd) -> R {
    let listener = listening_socket(sock)?;
    let (fds_vm, colon, gone) =
        (fdname('o', b"u1001/vm-a/fds"), fdname('o', b"fds:colon"), fdname('o', b"fds-gone"));

    let luod1 = spawn_activated(sock, state, &listener, sd)?;
    let r = (|| -> R {
        sd.wait_ready(1, &luod1)?;
        ensure!(sd.store.is_empty(), "fd store before any session: {:?}", sd.names());
        let sock2 = sock.to_string();
        sd.serve(fork_as(Some(UID_A), move |_| {
            let cl = connect_to(&sock2)?;
            cl.create("vm-a/fds").map_err(s)?;
            cl.preserve("vm-a/fds", 1, memfd(&pattern(4096, 21))?).map_err(s)?;
            let l = cl.list().map_err(s)?;
            ensure!(
                l.len() == 1 && l[0].state == State::Outgoing && l[0].owner == Some(UID_A) && l[0].files == 1,
                "uid {UID_A} lists {l:?}"
            );
            Ok(())
        })?)?;
        let sock2 = sock.to_string();
        sd.serve(fork_as(None, move |_| {
            let cl = connect_to(&sock2)?;
            cl.create("fds-gone").map_err(s)?;
            cl.close("fds-gone").map_err(s)?;
            // Not a valid FDNAME as such: stored under its hex.
            cl.create("fds:colon").map_err(s)
        })?)?;
        let mut names = sd.names();
        names.sort();
        let mut want = vec![colon.as_str(), fds_vm.as_str()];
        want.sort();
        ensure!(names == want, "fd store holds {names:?}, expected {want:?}");
        ensure!(sd.removed == [gone.clone()], "FDSTOREREMOVE for {:?}, expected [{gone:?}]", sd.removed);
        sd.barriers_follow()
    })();
    luod1.kill(libc::SIGKILL);
    r?;

    let luod2 = spawn_activated(sock, state, &listener, sd)?;
    let r = (|| -> R {
        sd.wait_ready(2, &luod2)?;
        let sock2 = sock.to_string();
        sd.serve(fork_as(None, move |_| {
            let cl = connect_to(&sock2)?;
            let mut l = cl.list().map_err(s)?;
            l.sort_by(|a, b| a.name.cmp(&b.name));
            // The owner is in the kernel name: it survives the restart.
            ensure!(
                l.len() == 2
                    && l[0].name == b"fds:colon"
                    && l[1].name == b"u1001/vm-a/fds"
                    && l[1].owner == Some(UID_A)
                    && l.iter().all(|e| e.state == State::Outgoing),
                "after the restart root lists {l:?}, expected fds:colon and u1001/vm-a/fds (uid {UID_A}'s)"
            );
            let st = cl.status().map_err(s)?;
            ensure!(st.device_ok && st.outgoing.sessions == 2, "status after the restart: {st:?}");
            Ok(())
        })?)?;
        let (sock2, host) = (sock.to_string(), paths().host);
        sd.serve(fork_as(Some(UID_A), move |_| {
            let cl = connect_to(&sock2)?;
            let l = names(&cl.list().map_err(s)?);
            ensure!(l == ["vm-a/fds"], "uid {UID_A} sees {l:?} after the restart");
            if !host {
                // The kernel session still holds token 1 from before the restart.
                match cl.preserve("vm-a/fds", 1, memfd(b"again")?) {
                    Err(ClientError::Refused(e)) => println!("# fdstore_restart: token 1 again refused: {e}"),
                    Err(e) => return Err(format!("preserve token 1 again: {e}")),
                    Ok(()) => {
                        return Err("token 1 preserved twice: not the session from before the restart".into())
                    }
                }
            }
            // The session is alive through the new luod.
            cl.preserve("vm-a/fds", 2, memfd(&pattern(1000, 22))?).map_err(s)?;
            let l = cl.list().map_err(s)?;
            ensure!(l.len() == 1 && l[0].files >= 1, "after a preserve: {l:?}");
            cl.close("vm-a/fds").map_err(s)
        })?)?;
        let sock2 = sock.to_string();
        sd.serve(fork_as(None, move |_| {
            let cl = connect_to(&sock2)?;
            cl.close("fds:colon").map_err(s)?;
            ensure!(cl.list().map_err(s)?.is_empty(), "sessions left after the close");
            Ok(())
        })?)?;
        ensure!(sd.store.is_empty(), "fd store after the close: {:?}", sd.names());
        let mut removed = sd.removed.clone();
        removed.sort();
        let mut want = vec![gone.clone(), fds_vm.clone(), colon.clone()];
        want.sort();
        ensure!(removed == want, "FDSTOREREMOVE for {removed:?}, expected {want:?}");
        sd.barriers_follow()
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
    ("ungranted_uid_refused", ungranted_uid_refused),
    ("policy_grant", policy_grant),
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
    eprintln!(
        "usage: luod-tests [-s 1|2] [--tenants [--hugetlb]] [--list [--all-stages]] [--host | --inproc] [--only CASE,...]"
    );
    std::process::exit(2);
}

fn main() {
    let mut stage: Option<u32> = None;
    let mut list = false;
    let mut all_stages = false;
    let mut only: Option<String> = None;
    let mut in_process = false;
    let mut tenants = false;
    let mut hugetlb = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-s" => stage = Some(args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage())),
            "--list" => list = true,
            "--all-stages" => all_stages = true,
            "--inproc" => in_process = true,
            "--tenants" => tenants = true,
            "--hugetlb" => hugetlb = true,
            "--only" => only = Some(args.next().unwrap_or_else(|| usage())),
            "--host" => {
                let pid = std::process::id();
                let _ = PATHS.set(Paths {
                    sock: format!("/tmp/luod-host-{pid}.sock"),
                    state: format!("/tmp/luod-host-{pid}-state"),
                    policy: format!("/tmp/luod-host-{pid}.toml"),
                    host: true,
                });
            }
            _ => usage(),
        }
    }
    // The hugetlbfs case is one of the single-boot tenants suite.
    let single_tenants = tenants && !in_process && stage.is_none() && !all_stages;
    if hugetlb && !single_tenants {
        usage();
    }
    let suite = |s: Option<u32>| -> Vec<Case> {
        match (s, in_process, tenants) {
            (None, false, false) => SINGLE.to_vec(),
            (Some(1), false, false) => STAGE1.to_vec(),
            (Some(2), false, false) => STAGE2.to_vec(),
            (None, false, true) => tenants::single(hugetlb),
            (Some(1), false, true) => tenants::STAGE1.to_vec(),
            (Some(2), false, true) => tenants::STAGE2.to_vec(),
            (None, true, false) => inproc::SINGLE.to_vec(),
            (Some(1), true, false) => inproc::STAGE1.to_vec(),
            (Some(2), true, false) => inproc::STAGE2.to_vec(),
            _ => usage(),
        }
    };
    if list {
        // With --all-stages: what the harness's "@stages" lists, the cases
        // of every boot, sorted and once each.
        let mut names: Vec<&str> = if all_stages {
            suite(Some(1)).into_iter().chain(suite(Some(2))).map(|c| c.0).collect()
        } else {
            suite(stage).iter().map(|c| c.0).collect()
        };
        if all_stages {
            names.sort();
            names.dedup();
        }
        for name in names {
            println!("{name}");
        }
        return;
    }
    // --only A,B (development): the suite's first case (it starts luod)
    // and the cases named.
    let cases: Vec<Case> = match &only {
        None => suite(stage),
        Some(o) => {
            let want: Vec<&str> = o.split(',').collect();
            suite(stage)
                .into_iter()
                .enumerate()
                .filter(|(i, c)| *i == 0 || want.contains(&c.0))
                .map(|(_, c)| c)
                .collect()
        }
    };
    std::panic::set_hook(Box::new(|_| {}));
    println!("KTAP version 1");
    println!(
        "# luod-tests{}: {}",
        if tenants { " --tenants" } else { "" },
        stage.map_or("single boot".to_string(), |n| format!("kexec stage {n}"))
    );
    println!("1..{}", cases.len());
    let policy = match (tenants, stage) {
        (true, None) => tenants::single_policy(),
        (true, Some(_)) => tenants::kexec_policy(),
        (false, _) => suite_policy(),
    };
    let mut ctx = Ctx { luod: None, policy, engine: None };
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
        stop_leftovers();
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

/// `--host`: stop what this run started and left (luod's holder, a luod
/// a failed case did not stop): every process whose command line names
/// this run's socket or state directory (unique to the run), and remove
/// the run's files. In the VM they die with the VM, or keep the sessions
/// for the kexec.
fn stop_leftovers() {
    let Ok(dir) = std::fs::read_dir("/proc") else { return };
    let p = paths();
    let me = std::process::id() as i32;
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains(&p.sock) || cmd.contains(&p.state) {
            // SAFETY: kill(2) on a pid, no memory involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    // And the run's files: /tmp/luod-host-PID* (sockets, state
    // directories, policies).
    let prefix = format!("luod-host-{me}");
    let Ok(tmp) = std::fs::read_dir("/tmp") else { return };
    for e in tmp.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let path = e.path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::stage2_cmdline;

    #[test]
    fn stage2_cmdline_replaces_the_stage_init_argument() {
        assert_eq!(
            stage2_cmdline("console=ttyS0 liveupdate=on -- test=luod-tests stages=2 stage=1 --tenants\n"),
            Ok("console=ttyS0 liveupdate=on -- test=luod-tests stages=2 --tenants stage=2".into())
        );
        // The stage= words after the `--` only; kernel parameters untouched.
        assert_eq!(
            stage2_cmdline("stage=9 a -- test=t stage=1 stage=1 -- x"),
            Ok("stage=9 a -- test=t -- x stage=2".into())
        );
        assert_eq!(stage2_cmdline("-- stage=1"), Ok("-- stage=2".into()));
        // Stage 1's command line has no stage= (init takes 1).
        assert_eq!(stage2_cmdline("a -- test=t stages=2"), Ok("a -- test=t stages=2 stage=2".into()));
    }

    #[test]
    fn stage2_cmdline_needs_the_init_arguments() {
        let e = stage2_cmdline("console=ttyS0 stage=1").unwrap_err();
        assert!(e.contains("no `--`"), "{e}");
        // `--x` is no separator.
        assert!(stage2_cmdline("a --x stage=1").is_err());
    }
}
