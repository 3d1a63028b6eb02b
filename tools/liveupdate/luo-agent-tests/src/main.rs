// SPDX-License-Identifier: GPL-2.0
//! In-VM tests of the `liveupdate` crate against the running kernel's LUO.
//!
//! Usage: `luo-agent-tests [-s STAGE] [--list]`
//!
//! - no `-s`: the single-boot suite (device, sessions, preservation,
//!   errno mapping);
//! - `-s 1`: the single-boot suite, then it creates the hand-over sessions
//!   and leaves them open in a background holder process for the kexec;
//! - `-s 2`: after the kexec, retrieves and checks what stage 1 preserved.
//!
//! Output is KTAP (`ok N name` / `not ok N name # reason`), ending with
//! `# N passed, M failed`. Exit status 0 when every case passed, 1
//! otherwise, 2 for a usage error. `--list` prints the case names of the
//! chosen stage, one per line, without running anything.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use liveupdate::{Device, Error, NameError, Op, Session};
use rustix::fs::{memfd_create, MemfdFlags, Mode, OFlags};
use rustix::process::{getrlimit, setrlimit, Resource};

type R = Result<(), String>;

/// Shared state of one run: the device stays open across cases.
struct Ctx {
    dev: Option<Device>,
    /// Stage 2: the retrieved data session and its pattern memfd.
    data: Option<Session>,
    pattern_fd: Option<OwnedFd>,
}

impl Ctx {
    fn dev(&mut self) -> Result<&Device, String> {
        if self.dev.is_none() {
            self.dev = Some(Device::open().map_err(|e| e.to_string())?);
        }
        Ok(self.dev.as_ref().unwrap())
    }
}

/// `Err` unless `$e` failed with an error matching `$pat`.
macro_rules! expect_err {
    ($e:expr, $pat:pat) => {
        match $e {
            Err(err) if matches!(err, $pat) => Ok(err),
            Err(err) => Err(format!("expected {}, got: {err}", stringify!($pat))),
            Ok(_) => Err(format!("expected {}, but it succeeded", stringify!($pat))),
        }
    };
}

/// Fail the case with a message.
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

fn memfd(name: &str, data: &[u8]) -> Result<OwnedFd, String> {
    let fd = memfd_create(name, MemfdFlags::CLOEXEC).map_err(s)?;
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

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len).map(|i| (i as u64).wrapping_mul(7).wrapping_add(seed) as u8).collect()
}

// ---------------------------------------------------------------------------
// Single-boot cases

fn open_device(c: &mut Ctx) -> R {
    c.dev = None;
    c.dev()?;
    Ok(())
}

fn exclusive_open(c: &mut Ctx) -> R {
    c.dev()?;
    expect_err!(Device::open(), Error::Busy { op: Op::OpenDevice })?;
    Ok(())
}

fn create_session(c: &mut Ctx) -> R {
    let session = c.dev()?.create_session("agent-create").map_err(s)?;
    let name = session.name().map_err(s)?;
    ensure!(name == "agent-create", "GET_NAME returned {name:?}");
    Ok(())
}

fn create_duplicate_session(c: &mut Ctx) -> R {
    let dev = c.dev()?;
    let _first = dev.create_session("agent-dup").map_err(s)?;
    let err = expect_err!(dev.create_session("agent-dup"), Error::AlreadyExists { op: Op::CreateSession })?;
    ensure!(err.errno() == libc::EEXIST, "errno {}", err.errno());
    let io: std::io::Error = err.into();
    ensure!(io.raw_os_error() == Some(libc::EEXIST), "io::Error lost the errno: {io:?}");
    Ok(())
}

fn session_name_reusable_after_close(c: &mut Ctx) -> R {
    let dev = c.dev()?;
    drop(dev.create_session("agent-reuse").map_err(s)?);
    drop(dev.create_session("agent-reuse").map_err(s)?);
    Ok(())
}

fn create_distinct_sessions(c: &mut Ctx) -> R {
    let dev = c.dev()?;
    let a = dev.create_session("agent-distinct-a").map_err(s)?;
    let b = dev.create_session("agent-distinct-b").map_err(s)?;
    ensure!(a.name().map_err(s)? == "agent-distinct-a", "name of a");
    ensure!(b.name().map_err(s)? == "agent-distinct-b", "name of b");
    Ok(())
}

fn name_max_length(c: &mut Ctx) -> R {
    let name = "A".repeat(63);
    let session = c.dev()?.create_session(&name).map_err(s)?;
    ensure!(session.name().map_err(s)? == name, "63-byte name did not round-trip");
    Ok(())
}

fn name_any_bytes(c: &mut Ctx) -> R {
    let name = [b'x', 0xff, b' ', b'/', 0x01];
    let session = c.dev()?.create_session(name).map_err(s)?;
    let back = session.name_bytes().map_err(s)?;
    ensure!(back == name, "got {back:?}");
    Ok(())
}

fn bad_name_kernel_einval(c: &mut Ctx) -> R {
    let dev = c.dev()?;
    expect_err!(dev.create_session_raw(&[b'X'; 64]), Error::InvalidArgument { op: Op::CreateSession })?;
    expect_err!(dev.create_session_raw(&[0; 64]), Error::InvalidArgument { op: Op::CreateSession })?;
    Ok(())
}

fn bad_name_client_side(c: &mut Ctx) -> R {
    let dev = c.dev()?;
    let e = expect_err!(dev.create_session(""), Error::InvalidName { reason: NameError::Empty, .. })?;
    ensure!(e.errno() == libc::EINVAL, "client-side refusal must map to EINVAL");
    expect_err!(
        dev.create_session([b'X'; 64]),
        Error::InvalidName { reason: NameError::TooLong { len: 64 }, .. }
    )?;
    expect_err!(
        dev.create_session("a\0b"),
        Error::InvalidName { reason: NameError::ContainsNul { pos: 1 }, .. }
    )?;
    expect_err!(dev.retrieve_session(""), Error::InvalidName { op: Op::RetrieveSession, .. })?;
    Ok(())
}

fn preserve_memfd(c: &mut Ctx) -> R {
    let data = b"hello liveupdate";
    let mem = memfd("agent-test", data)?;
    let session = c.dev()?.create_session("agent-preserve").map_err(s)?;
    session.preserve_fd(&mem, 0x1234).map_err(s)?;
    drop(session);
    ensure!(read_all(&mem)? == data, "contents changed after unpreserve");
    Ok(())
}

fn preserve_then_close_fd(c: &mut Ctx) -> R {
    let session = c.dev()?.create_session("agent-close-fd").map_err(s)?;
    let mem = memfd("agent-test", b"closed right away")?;
    session.preserve_fd(&mem, 1).map_err(s)?;
    drop(mem);
    Ok(())
}

fn preserve_edge_tokens(c: &mut Ctx) -> R {
    let session = c.dev()?.create_session("agent-tokens").map_err(s)?;
    let a = memfd("a", b"a")?;
    let b = memfd("b", b"b")?;
    session.preserve_fd(&a, 0).map_err(s)?;
    session.preserve_fd(&b, u64::MAX).map_err(s)?;
    Ok(())
}

fn duplicate_token(c: &mut Ctx) -> R {
    let session = c.dev()?.create_session("agent-dup-token").map_err(s)?;
    let a = memfd("a", b"a")?;
    let b = memfd("b", b"b")?;
    session.preserve_fd(&a, 7).map_err(s)?;
    expect_err!(session.preserve_fd(&b, 7), Error::AlreadyExists { op: Op::PreserveFd })?;
    // The same token in another session is fine.
    let other = c.dev()?.create_session("agent-dup-token-2").map_err(s)?;
    other.preserve_fd(&b, 7).map_err(s)?;
    Ok(())
}

fn double_preservation_same_session(c: &mut Ctx) -> R {
    let session = c.dev()?.create_session("agent-double-1").map_err(s)?;
    let mem = memfd("m", b"m")?;
    session.preserve_fd(&mem, 1).map_err(s)?;
    let e = expect_err!(session.preserve_fd(&mem, 2), Error::Busy { op: Op::PreserveFd })?;
    ensure!(e.errno() == libc::EBUSY, "errno {}", e.errno());
    Ok(())
}

fn double_preservation_other_session(c: &mut Ctx) -> R {
    let dev = c.dev()?;
    let one = dev.create_session("agent-double-2a").map_err(s)?;
    let two = dev.create_session("agent-double-2b").map_err(s)?;
    let mem = memfd("m", b"m")?;
    one.preserve_fd(&mem, 1).map_err(s)?;
    expect_err!(two.preserve_fd(&mem, 1), Error::Busy { op: Op::PreserveFd })?;
    Ok(())
}

fn double_preservation_other_file(c: &mut Ctx) -> R {
    // A dup and a reopen through /proc are other fds (the reopen is
    // another struct file) for the same memfd inode: still EBUSY.
    let session = c.dev()?.create_session("agent-double-3").map_err(s)?;
    let mem = memfd("m", b"m")?;
    session.preserve_fd(&mem, 1).map_err(s)?;
    let dup = mem.try_clone().map_err(s)?;
    expect_err!(session.preserve_fd(&dup, 2), Error::Busy { op: Op::PreserveFd })?;
    let path = format!("/proc/self/fd/{}", mem.as_raw_fd());
    let reopened =
        rustix::fs::open(path.as_str(), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(s)?;
    expect_err!(session.preserve_fd(&reopened, 3), Error::Busy { op: Op::PreserveFd })?;
    Ok(())
}

fn preserve_again_after_unpreserve(c: &mut Ctx) -> R {
    let dev = c.dev()?;
    let mem = memfd("m", b"again")?;
    let first = dev.create_session("agent-again-1").map_err(s)?;
    first.preserve_fd(&mem, 1).map_err(s)?;
    drop(first);
    let second = dev.create_session("agent-again-2").map_err(s)?;
    second.preserve_fd(&mem, 1).map_err(s)?;
    Ok(())
}

fn unsupported_fd(c: &mut Ctx) -> R {
    let dev = c.dev()?;
    let session = dev.create_session("agent-unsupported").map_err(s)?;
    let null = File::open("/dev/null").map_err(s)?;
    expect_err!(session.preserve_fd(&null, 1), Error::NotFound { op: Op::PreserveFd })?;
    let other = dev.create_session("agent-unsupported-2").map_err(s)?;
    expect_err!(session.preserve_fd(&other, 2), Error::NotFound { op: Op::PreserveFd })?;
    expect_err!(session.preserve_fd(dev, 3), Error::NotFound { op: Op::PreserveFd })?;
    let (rd, _wr) = rustix::pipe::pipe().map_err(s)?;
    expect_err!(session.preserve_fd(&rd, 4), Error::NotFound { op: Op::PreserveFd })?;
    Ok(())
}

fn o_path_fd_ebadf(c: &mut Ctx) -> R {
    let session = c.dev()?.create_session("agent-opath").map_err(s)?;
    let path = rustix::fs::open("/dev/null", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).map_err(s)?;
    expect_err!(session.preserve_fd(&path, 1), Error::BadFd { op: Op::PreserveFd })?;
    Ok(())
}

fn retrieve_missing_session(c: &mut Ctx) -> R {
    let dev = c.dev()?;
    let e = expect_err!(
        dev.retrieve_session("agent-no-such-session"),
        Error::NotFound { op: Op::RetrieveSession }
    )?;
    let io: std::io::Error = e.into();
    ensure!(io.kind() == std::io::ErrorKind::NotFound, "io kind {:?}", io.kind());
    let none = dev.try_retrieve_session("agent-no-such-session").map_err(s)?;
    ensure!(none.is_none(), "try_retrieve_session found a session");
    Ok(())
}

fn outgoing_session_ops_einval(c: &mut Ctx) -> R {
    // The typed API has no retrieve_fd/finish on an outgoing session: go
    // through the untyped Session to check the kernel's own refusal.
    let session = c.dev()?.create_session("agent-outgoing").map_err(s)?.into_session();
    expect_err!(session.retrieve_fd(1), Error::InvalidArgument { op: Op::RetrieveFd })?;
    expect_err!(session.finish(), Error::InvalidArgument { op: Op::Finish })?;
    Ok(())
}

fn session_op_on_other_fd(c: &mut Ctx) -> R {
    // A memfd has no ioctls at all: ENOTTY.
    let not_session = Session::from(memfd("m", b"")?);
    expect_err!(not_session.name(), Error::NotLuoFd { op: Op::GetName })?;
    // The device fd rejects session command numbers: EINVAL.
    let dev = c.dev()?;
    let dev_as_session = Session::from(dev.as_fd().try_clone_to_owned().map_err(s)?);
    expect_err!(dev_as_session.name(), Error::InvalidArgument { op: Op::GetName })?;
    // A session fd rejects device command numbers: EINVAL.
    let session = dev.create_session("agent-wrong-fd").map_err(s)?;
    let session_as_dev = Device::from(OwnedFd::from(session.try_clone().map_err(s)?));
    expect_err!(session_as_dev.create_session("x"), Error::InvalidArgument { op: Op::CreateSession })?;
    Ok(())
}

fn emfile(c: &mut Ctx) -> R {
    let dev = c.dev()?;
    let old = getrlimit(Resource::Nofile);
    // The lowest free fd number: with the limit there, no new fd fits.
    let probe = rustix::io::fcntl_dupfd_cloexec(dev, 0).map_err(s)?;
    let lowest = probe.as_raw_fd() as u64;
    drop(probe);
    let tight = rustix::process::Rlimit { current: Some(lowest), maximum: old.maximum };
    setrlimit(Resource::Nofile, tight).map_err(s)?;
    let create = dev.create_session("agent-emfile");
    let retrieve = dev.retrieve_session("agent-emfile");
    setrlimit(Resource::Nofile, old).map_err(s)?;
    expect_err!(create, Error::TooManyOpenFiles { op: Op::CreateSession })?;
    expect_err!(retrieve, Error::TooManyOpenFiles { op: Op::RetrieveSession })?;
    Ok(())
}

fn fd_handover_traits(c: &mut Ctx) -> R {
    fn assert_from_raw_fd<T: FromRawFd>() {}
    assert_from_raw_fd::<Session>();
    assert_from_raw_fd::<Device>();

    let session = c.dev()?.create_session("agent-raw-fd").map_err(s)?;
    // OwnedFd round trip (what SCM_RIGHTS or an fd store hands back).
    let owned: OwnedFd = session.into();
    let session = Session::from(owned);
    ensure!(session.name().map_err(s)? == "agent-raw-fd", "name after OwnedFd round trip");
    let clone = session.try_clone().map_err(s)?;
    drop(session);
    ensure!(clone.name().map_err(s)? == "agent-raw-fd", "name through the clone");
    // A raw fd number, as passed over exec: /proc shows the session, and
    // pidfd_getfd (a safe way to own a number) gets it back.
    let raw = clone.into_raw_fd();
    let link = std::fs::read_link(format!("/proc/self/fd/{raw}")).map_err(s)?;
    let link = link.to_string_lossy().into_owned();
    ensure!(link == "anon_inode:[luo_session] agent-raw-fd", "fd {raw} links to {link:?}");
    let pidfd = rustix::process::pidfd_open(rustix::process::getpid(), rustix::process::PidfdFlags::empty())
        .map_err(s)?;
    let fd =
        rustix::process::pidfd_getfd(&pidfd, raw, rustix::process::PidfdGetfdFlags::empty()).map_err(s)?;
    let session = Session::from(fd);
    ensure!(session.name().map_err(s)? == "agent-raw-fd", "name after into_raw_fd");
    Ok(())
}

fn many_sessions(c: &mut Ctx) -> R {
    let dev = c.dev()?;
    let mut v = Vec::new();
    for i in 0..200 {
        v.push(dev.create_session(format!("agent-many-{i}")).map_err(s)?);
    }
    for (i, session) in v.iter().enumerate().step_by(37) {
        ensure!(session.name().map_err(s)? == format!("agent-many-{i}"), "name of session {i}");
    }
    Ok(())
}

fn many_files(c: &mut Ctx) -> R {
    let session = c.dev()?.create_session("agent-many-files").map_err(s)?;
    for token in 0..150u64 {
        let mem = memfd("f", format!("file-{token}").as_bytes())?;
        session.preserve_fd(&mem, token).map_err(s)?;
    }
    Ok(())
}

fn session_outlives_device(c: &mut Ctx) -> R {
    let session = c.dev()?.create_session("agent-outlives").map_err(s)?;
    c.dev = None;
    let mem = memfd("m", b"after device close")?;
    session.preserve_fd(&mem, 1).map_err(s)?;
    ensure!(session.name().map_err(s)? == "agent-outlives", "name");
    // The device can be opened again while the session lives on.
    c.dev()?;
    Ok(())
}

// ---------------------------------------------------------------------------
// luoctl, when it is installed next to this program.

/// Run luoctl (found next to this executable) with `args`; returns its
/// stdout+stderr, or `Err("SKIP ...")` when it is not installed.
fn luoctl(args: &[&str]) -> Result<(bool, String), String> {
    let exe = std::env::current_exe().map_err(s)?;
    let path = exe.with_file_name("luoctl");
    if !path.exists() {
        return Err(format!("SKIP no luoctl at {}", path.display()));
    }
    let out = std::process::Command::new(&path)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", path.display()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for line in text.lines() {
        println!("# luoctl {}: {line}", args.first().unwrap_or(&""));
    }
    Ok((out.status.success(), text))
}

fn luoctl_ok(args: &[&str]) -> Result<String, String> {
    match luoctl(args)? {
        (true, text) => Ok(text),
        (false, text) => Err(format!("luoctl {} failed: {}", args.join(" "), text.trim())),
    }
}

fn luoctl_status(c: &mut Ctx) -> R {
    c.dev()?;
    let (_, text) = luoctl(&["status"])?;
    ensure!(text.contains("busy"), "status while the device is open: {text:?}");
    c.dev = None;
    let text = luoctl_ok(&["status"])?;
    ensure!(text.contains("available"), "status with the device free: {text:?}");
    Ok(())
}

/// `luoctl timeline` on the running kernel, a cold boot: live update 0, this
/// kernel's early initcall and device registration recorded, no point of a
/// previous kernel. On a kernel that hands no timeline over (the C LUO: KHO
/// lists no "luo-timeline-rs-v1" subtree), it must fail saying it cannot read
/// the file.
fn luoctl_timeline(c: &mut Ctx) -> R {
    c.dev = None;
    match rustix::mount::mount(
        "none",
        "/sys/kernel/debug",
        "debugfs",
        rustix::mount::MountFlags::empty(),
        None,
    ) {
        Ok(()) | Err(rustix::io::Errno::BUSY) => {}
        Err(e) => return Err(format!("mount debugfs: {e}")),
    }
    let kho_out = "/sys/kernel/debug/kho/out/sub_fdts";
    let hands_over = std::fs::read_dir(kho_out)
        .map_err(|e| format!("{kho_out}: {e}"))?
        .any(|e| e.is_ok_and(|e| e.file_name() == "luo-timeline-rs-v1"));
    let (ok, text) = luoctl(&["timeline", "--json"])?;
    if !hands_over {
        ensure!(!ok && text.contains("cannot read"), "a kernel without a timeline: {text:?}");
        return Ok(());
    }
    ensure!(ok, "luoctl timeline failed: {text:?}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).map_err(|e| format!("{e}: {text:?}"))?;
    let rec = &v["records"];
    ensure!(v["live_update"] == 0, "a cold boot is live update 0: {v}");
    ensure!(rec["in.boot"].is_u64() && rec["in.init"].is_u64(), "in.boot and in.init recorded: {v}");
    ensure!(rec["in.boot"].as_u64() <= rec["in.init"].as_u64(), "in.boot after in.init: {v}");
    ensure!(rec["out.reboot"].is_null() && rec["out.jump"].is_null(), "no previous kernel: {v}");
    Ok(())
}

fn luoctl_create_no_hold(c: &mut Ctx) -> R {
    c.dev = None;
    let text =
        luoctl_ok(&["create", "--session", "agent-cli", "--memfd", "5=/proc/version", "--hold", "none"])?;
    ensure!(text.contains("token 0x5: preserved"), "unexpected output {text:?}");
    // The session was dropped when luoctl exited: the name is free again.
    drop(c.dev()?.create_session("agent-cli").map_err(s)?);
    Ok(())
}

fn luoctl_create_background_hold(c: &mut Ctx) -> R {
    c.dev = None;
    std::fs::write("/tmp/agent-cli-src", b"held by luoctl").map_err(s)?;
    luoctl_ok(&[
        "create",
        "--session",
        "agent-cli-bg",
        "--memfd",
        "6=/tmp/agent-cli-src",
        "--pidfile",
        "/tmp/agent-cli.pid",
    ])?;
    let pid: i32 = std::fs::read_to_string("/tmp/agent-cli.pid").map_err(s)?.trim().parse().map_err(s)?;
    // The holder keeps the session: its name is taken.
    expect_err!(c.dev()?.create_session("agent-cli-bg"), Error::AlreadyExists { .. })?;
    // Killing the holder releases it.
    let pid = rustix::process::Pid::from_raw(pid).ok_or("bad pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).map_err(s)?;
    for _ in 0..100 {
        match c.dev()?.create_session("agent-cli-bg") {
            Ok(_) => return Ok(()),
            Err(Error::AlreadyExists { .. }) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("the session outlived its holder by 2 s".into())
}

fn luoctl_errors(c: &mut Ctx) -> R {
    c.dev = None;
    let (ok, text) = luoctl(&["retrieve", "--session", "agent-no-such", "--token", "1"])?;
    ensure!(!ok && text.contains("(ENOENT)"), "retrieve of a missing session: {text:?}");
    let (ok, text) =
        luoctl(&["create", "--session", "agent-cli-null", "--fd-file", "1=/dev/null", "--hold", "none"])?;
    ensure!(!ok && text.contains("cannot be preserved (ENOENT)"), "preserve /dev/null: {text:?}");
    let (ok, text) = luoctl(&["finish", "--session", "agent-no-such"])?;
    ensure!(!ok && text.contains("(ENOENT)"), "finish of a missing session: {text:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// Kexec hand-over: stage 1 prepares, stage 2 checks.

const STATE_SESSION: &str = "agent-state";
const DATA_SESSION: &str = "agent-data";
const EMPTY_SESSION: &str = "agent-empty";
const STATE_TOKEN: u64 = 0x5747;
const T_PATTERN: u64 = 0x10;
const T_EMPTY: u64 = 0x11;
const T_DROPPED: u64 = 0x12;
const T_MAX: u64 = u64::MAX;
const PATTERN_LEN: usize = 3 * 4096 + 123;
const MAX_TEXT: &[u8] = b"token u64::MAX survived the kexec";

fn stage1_not_yet_handed_over(c: &mut Ctx) -> R {
    let found = c.dev()?.try_retrieve_session(STATE_SESSION).map_err(s)?;
    ensure!(found.is_none(), "session {STATE_SESSION} exists already: this is not the first stage");
    Ok(())
}

fn stage1_preserve_and_hold(c: &mut Ctx) -> R {
    let dev = c.dev()?;
    let state = dev.create_session(STATE_SESSION).map_err(s)?;
    state.preserve_fd(memfd("state", b"2")?, STATE_TOKEN).map_err(s)?;
    let data = dev.create_session(DATA_SESSION).map_err(s)?;
    data.preserve_fd(memfd("pattern", &pattern(PATTERN_LEN, T_PATTERN))?, T_PATTERN).map_err(s)?;
    data.preserve_fd(memfd("empty", b"")?, T_EMPTY).map_err(s)?;
    data.preserve_fd(memfd("dropped", b"never retrieved")?, T_DROPPED).map_err(s)?;
    data.preserve_fd(memfd("max", MAX_TEXT)?, T_MAX).map_err(s)?;
    let empty = dev.create_session(EMPTY_SESSION).map_err(s)?;
    let child = liveupdate::holder::spawn(
        &[state.as_fd(), data.as_fd(), empty.as_fd()],
        [STATE_SESSION, DATA_SESSION, EMPTY_SESSION],
    )
    .map_err(s)?;
    println!("# holder pid {} keeps 3 sessions open for the kexec", child.id());
    Ok(())
}

const CLI_SESSION: &str = "agent-cli-kexec";
const CLI_TOKEN: &str = "0x77";
const CLI_LEN: usize = 2 * 4096 + 5;
/// Added to the kernel parameters of the kernel that luoctl loads (before
/// the `--`: after it, init would pass it on to the test as an argument).
const KEXEC_MARK: &str = "luoctl.loaded=1";

fn stage1_luoctl_create(c: &mut Ctx) -> R {
    c.dev = None;
    // /tmp is a tmpfs: after the kexec only LUO can have kept this.
    std::fs::write("/tmp/agent-cli-kexec", pattern(CLI_LEN, 0x77)).map_err(s)?;
    luoctl_ok(&[
        "create",
        "--session",
        CLI_SESSION,
        "--memfd",
        &format!("{CLI_TOKEN}=/tmp/agent-cli-kexec"),
    ])?;
    Ok(())
}

/// The command line luoctl loads the stage-2 kernel with: `cmdline` (this
/// kernel's) with [`KEXEC_MARK`] added to the kernel parameters, before the
/// first standalone `--`, and after it the harness's words (in
/// `-- test=PROG stages=N [stage=K] [ARGS...]`) without `stage=` and with
/// `stage=2` at the end, as guest/init.c makes them. Every other word
/// stays, in order.
fn stage2_cmdline(cmdline: &str) -> Result<String, String> {
    let (params, init) = liveupdate::cmdline::split(cmdline);
    let init =
        init.ok_or_else(|| format!("the command line {:?} has no `--` (no init arguments)", cmdline.trim()))?;
    // As guest/init.c does: no stage= word (stage 1 has none) or one, then stage=2.
    let mut words: Vec<&str> = init.split_whitespace().filter(|w| !w.starts_with("stage=")).collect();
    words.push("stage=2");
    let next = liveupdate::cmdline::join(params, Some(&words.join(" ")));
    Ok(liveupdate::cmdline::add_params(&next, KEXEC_MARK))
}

/// Whether the kernel parameters of `cmdline` (not init's arguments, after
/// a standalone `--`) have [`KEXEC_MARK`].
fn has_kexec_mark(cmdline: &str) -> bool {
    liveupdate::cmdline::split(cmdline).0.split_whitespace().any(|w| w == KEXEC_MARK)
}

/// Load the stage-2 kernel through luoctl, with the command line the
/// harness would use: if this loads something wrong, stage 2 never runs.
fn stage1_luoctl_kexec_load(_: &mut Ctx) -> R {
    if !Path::new("/kernel").exists() {
        return Err("SKIP no /kernel in this initramfs".into());
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(|e| format!("/proc/cmdline: {e}"))?;
    let cmdline = stage2_cmdline(&cmdline)?;
    luoctl_ok(&[
        "kexec",
        "--kernel",
        "/kernel",
        "--initrd",
        "/initrd.img",
        "--cmdline",
        &cmdline,
        "--load-only",
    ])?;
    Ok(())
}

fn stage2_luoctl_retrieve(c: &mut Ctx) -> R {
    c.dev = None;
    let text = luoctl_ok(&[
        "retrieve",
        "--session",
        CLI_SESSION,
        "--token",
        CLI_TOKEN,
        "--out",
        "/tmp/agent-cli-out",
        "--finish",
    ])?;
    ensure!(text.contains("finished session"), "no finish in {text:?}");
    let got = std::fs::read("/tmp/agent-cli-out").map_err(s)?;
    ensure!(got == pattern(CLI_LEN, 0x77), "luoctl copied {} bytes that differ", got.len());
    // Finished and closed: gone.
    expect_err!(c.dev()?.retrieve_session(CLI_SESSION), Error::NotFound { .. })?;
    Ok(())
}

/// Stage 2 must have booted the kernel luoctl loaded (it replaced the
/// harness's own load), so its kernel parameters carry the mark.
fn stage2_booted_by_luoctl(_: &mut Ctx) -> R {
    let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(|e| format!("/proc/cmdline: {e}"))?;
    if !has_kexec_mark(&cmdline) {
        if luoctl(&["--version"]).is_err() {
            return Err("SKIP luoctl not installed".into());
        }
        return Err(format!("{KEXEC_MARK} missing from {:?}", cmdline.trim()));
    }
    Ok(())
}

fn stage2_open_device(c: &mut Ctx) -> R {
    c.dev = None;
    c.dev()?;
    Ok(())
}

fn stage2_state_session(c: &mut Ctx) -> R {
    let state = c.dev()?.retrieve_session(STATE_SESSION).map_err(s)?;
    let fd = state.retrieve_fd(STATE_TOKEN).map_err(s)?;
    let text = read_all(&fd)?;
    ensure!(text == b"2", "state memfd holds {:?}", String::from_utf8_lossy(&text));
    state.finish().map_err(s)?;
    Ok(())
}

fn stage2_retrieve_data_session(c: &mut Ctx) -> R {
    let dev = c.dev()?;
    let data = dev.retrieve_session(DATA_SESSION).map_err(s)?;
    ensure!(data.name().map_err(s)? == DATA_SESSION, "GET_NAME on an incoming session");
    expect_err!(dev.retrieve_session(DATA_SESSION), Error::InvalidArgument { op: Op::RetrieveSession })?;
    // Untyped, so stage2_preserve_into_incoming can try the kernel's check.
    c.data = Some(data.into_session());
    Ok(())
}

impl Ctx {
    fn data(&self) -> Result<&Session, String> {
        self.data.as_ref().ok_or_else(|| "the data session was not retrieved".into())
    }

    fn pattern_fd(&self) -> Result<&OwnedFd, String> {
        self.pattern_fd.as_ref().ok_or_else(|| "the pattern memfd was not retrieved".into())
    }
}

fn stage2_retrieve_pattern(c: &mut Ctx) -> R {
    let fd = c.data()?.retrieve_fd(T_PATTERN).map_err(s)?;
    let got = read_all(&fd)?;
    ensure!(got.len() == PATTERN_LEN, "size {} instead of {PATTERN_LEN}", got.len());
    ensure!(got == pattern(PATTERN_LEN, T_PATTERN), "contents differ");
    c.pattern_fd = Some(fd);
    Ok(())
}

fn stage2_retrieve_again_same_file(c: &mut Ctx) -> R {
    let again = c.data()?.retrieve_fd(T_PATTERN).map_err(s)?;
    let first = rustix::fs::fstat(c.pattern_fd()?).map_err(s)?.st_ino;
    let ino = rustix::fs::fstat(&again).map_err(s)?.st_ino;
    ensure!(ino == first, "second retrieve gave another inode ({ino} vs {first})");
    Ok(())
}

fn stage2_retrieve_empty_and_max(c: &mut Ctx) -> R {
    let empty = c.data()?.retrieve_fd(T_EMPTY).map_err(s)?;
    ensure!(read_all(&empty)?.is_empty(), "empty memfd is not empty");
    let max = c.data()?.retrieve_fd(T_MAX).map_err(s)?;
    ensure!(read_all(&max)? == MAX_TEXT, "u64::MAX token contents differ");
    Ok(())
}

fn stage2_missing_token(c: &mut Ctx) -> R {
    expect_err!(c.data()?.retrieve_fd(0xdead), Error::NotFound { op: Op::RetrieveFd })?;
    Ok(())
}

fn stage2_preserve_into_incoming(c: &mut Ctx) -> R {
    let mem = memfd("m", b"x")?;
    expect_err!(c.data()?.preserve_fd(&mem, 0x99), Error::InvalidArgument { op: Op::PreserveFd })?;
    Ok(())
}

fn stage2_retrieved_file_busy_until_finish(c: &mut Ctx) -> R {
    let out = c.dev()?.create_session("agent-next").map_err(s)?;
    expect_err!(out.preserve_fd(c.pattern_fd()?, 1), Error::Busy { op: Op::PreserveFd })?;
    Ok(())
}

fn stage2_finish(c: &mut Ctx) -> R {
    let data = c.data()?;
    data.finish().map_err(s)?;
    data.finish().map_err(|e| format!("second finish: {e}"))?;
    expect_err!(data.retrieve_fd(T_PATTERN), Error::NotFound { op: Op::RetrieveFd })?;
    // Retrieved fds stay valid, and the file can now be preserved again.
    let fd = c.pattern_fd()?;
    let mut buf = [0u8; 16];
    File::from(fd.try_clone().map_err(s)?).read_exact_at(&mut buf, 4096).map_err(s)?;
    ensure!(buf[..] == pattern(4096 + 16, T_PATTERN)[4096..], "contents changed after finish");
    let out = c.dev()?.create_session("agent-next-2").map_err(s)?;
    out.preserve_fd(c.pattern_fd()?, 1).map_err(|e| format!("preserve after finish: {e}"))?;
    Ok(())
}

fn stage2_closed_session_is_gone(c: &mut Ctx) -> R {
    c.data = None;
    let dev = c.dev()?;
    expect_err!(dev.retrieve_session(DATA_SESSION), Error::NotFound { op: Op::RetrieveSession })?;
    // A new outgoing session may take the name of an incoming one.
    drop(dev.create_session(DATA_SESSION).map_err(s)?);
    Ok(())
}

fn stage2_empty_session(c: &mut Ctx) -> R {
    let empty = c.dev()?.retrieve_session(EMPTY_SESSION).map_err(s)?;
    expect_err!(empty.retrieve_fd(0), Error::NotFound { op: Op::RetrieveFd })?;
    empty.finish().map_err(s)?;
    Ok(())
}

// ---------------------------------------------------------------------------

type Case = (&'static str, fn(&mut Ctx) -> R);

const SINGLE: &[Case] = &[
    ("open_device", open_device),
    ("exclusive_open", exclusive_open),
    ("create_session", create_session),
    ("create_duplicate_session", create_duplicate_session),
    ("session_name_reusable_after_close", session_name_reusable_after_close),
    ("create_distinct_sessions", create_distinct_sessions),
    ("name_max_length", name_max_length),
    ("name_any_bytes", name_any_bytes),
    ("bad_name_kernel_einval", bad_name_kernel_einval),
    ("bad_name_client_side", bad_name_client_side),
    ("preserve_memfd", preserve_memfd),
    ("preserve_then_close_fd", preserve_then_close_fd),
    ("preserve_edge_tokens", preserve_edge_tokens),
    ("duplicate_token", duplicate_token),
    ("double_preservation_same_session", double_preservation_same_session),
    ("double_preservation_other_session", double_preservation_other_session),
    ("double_preservation_other_file", double_preservation_other_file),
    ("preserve_again_after_unpreserve", preserve_again_after_unpreserve),
    ("unsupported_fd", unsupported_fd),
    ("o_path_fd_ebadf", o_path_fd_ebadf),
    ("retrieve_missing_session", retrieve_missing_session),
    ("outgoing_session_ops_einval", outgoing_session_ops_einval),
    ("session_op_on_other_fd", session_op_on_other_fd),
    ("emfile", emfile),
    ("fd_handover_traits", fd_handover_traits),
    ("many_sessions", many_sessions),
    ("many_files", many_files),
    ("session_outlives_device", session_outlives_device),
    ("luoctl_status", luoctl_status),
    ("luoctl_timeline", luoctl_timeline),
    ("luoctl_create_no_hold", luoctl_create_no_hold),
    ("luoctl_create_background_hold", luoctl_create_background_hold),
    ("luoctl_errors", luoctl_errors),
];

const STAGE1_EXTRA: &[Case] = &[
    ("stage1_not_yet_handed_over", stage1_not_yet_handed_over),
    ("stage1_preserve_and_hold", stage1_preserve_and_hold),
    ("stage1_luoctl_create", stage1_luoctl_create),
    ("stage1_luoctl_kexec_load", stage1_luoctl_kexec_load),
];

const STAGE2: &[Case] = &[
    ("stage2_open_device", stage2_open_device),
    ("stage2_state_session", stage2_state_session),
    ("stage2_retrieve_data_session", stage2_retrieve_data_session),
    ("stage2_retrieve_pattern", stage2_retrieve_pattern),
    ("stage2_retrieve_again_same_file", stage2_retrieve_again_same_file),
    ("stage2_retrieve_empty_and_max", stage2_retrieve_empty_and_max),
    ("stage2_missing_token", stage2_missing_token),
    ("stage2_preserve_into_incoming", stage2_preserve_into_incoming),
    ("stage2_retrieved_file_busy_until_finish", stage2_retrieved_file_busy_until_finish),
    ("stage2_finish", stage2_finish),
    ("stage2_closed_session_is_gone", stage2_closed_session_is_gone),
    ("stage2_empty_session", stage2_empty_session),
    ("stage2_luoctl_retrieve", stage2_luoctl_retrieve),
    ("stage2_booted_by_luoctl", stage2_booted_by_luoctl),
];

fn usage() -> ! {
    eprintln!("usage: luo-agent-tests [-s 1|2] [--list]");
    std::process::exit(2);
}

fn main() {
    liveupdate::holder::serve_if_holder();

    let mut stage: Option<u32> = None;
    let mut list = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-s" => stage = Some(args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage())),
            "--list" => list = true,
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    let cases: Vec<Case> = match stage {
        None => SINGLE.to_vec(),
        Some(1) => SINGLE.iter().chain(STAGE1_EXTRA).copied().collect(),
        Some(2) => STAGE2.to_vec(),
        Some(_) => usage(),
    };
    if list {
        for (name, _) in &cases {
            println!("{name}");
        }
        return;
    }

    // Panics become "not ok" lines, not a noisy abort.
    std::panic::set_hook(Box::new(|_| {}));
    println!("KTAP version 1");
    println!(
        "# luo-agent-tests {}: {}",
        env!("CARGO_PKG_VERSION"),
        match stage {
            None => "single boot".to_string(),
            Some(n) => format!("kexec stage {n}"),
        }
    );
    println!("1..{}", cases.len());
    let mut ctx = Ctx { dev: None, data: None, pattern_fd: None };
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (i, (name, f)) in cases.iter().enumerate() {
        let result = catch_unwind(AssertUnwindSafe(|| f(&mut ctx)))
            .unwrap_or_else(|p| Err(format!("panicked: {}", panic_text(&p))));
        match result {
            Ok(()) => {
                passed += 1;
                println!("ok {} {name}", i + 1);
            }
            Err(why) if why.starts_with("SKIP ") => {
                skipped += 1;
                println!("ok {} {name} # {why}", i + 1);
            }
            Err(why) => {
                failed += 1;
                println!("not ok {} {name} # {}", i + 1, why.replace('\n', " "));
            }
        }
        let _ = std::io::stdout().flush();
    }
    println!("# {passed} passed, {failed} failed, {skipped} skipped");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::{has_kexec_mark, stage2_cmdline};

    #[test]
    fn stage2_cmdline_marks_the_kernel_and_sets_stage_2() {
        let next = stage2_cmdline("console=ttyS0 liveupdate=on -- test=luo-agent-tests stages=2 stage=1\n");
        assert_eq!(
            next,
            Ok("console=ttyS0 liveupdate=on luoctl.loaded=1 -- test=luo-agent-tests stages=2 stage=2".into())
        );
        let next = next.unwrap_or_default();
        assert!(has_kexec_mark(&next));
        // The test's own arguments and a later `--` stay after the first one.
        assert_eq!(
            stage2_cmdline("a -- test=t stage=1 -x stage=1 -- y"),
            Ok("a luoctl.loaded=1 -- test=t -x -- y stage=2".into())
        );
        // Stage 1's command line has no stage= (init takes 1).
        assert_eq!(
            stage2_cmdline("a -- test=t stages=2"),
            Ok("a luoctl.loaded=1 -- test=t stages=2 stage=2".into())
        );
        assert_eq!(stage2_cmdline("-- stage=1"), Ok("luoctl.loaded=1 -- stage=2".into()));
    }

    #[test]
    fn stage2_cmdline_needs_the_init_arguments() {
        assert!(stage2_cmdline("console=ttyS0 stage=1").unwrap_err().contains("no `--`"));
    }

    #[test]
    fn the_mark_counts_among_kernel_parameters_only() {
        assert!(has_kexec_mark("a luoctl.loaded=1 -- stage=2"));
        assert!(has_kexec_mark("a luoctl.loaded=1"));
        assert!(!has_kexec_mark("a -- stage=2 luoctl.loaded=1"));
        assert!(!has_kexec_mark("a -- stage=2"));
    }
}
