// SPDX-License-Identifier: GPL-2.0
//! `--inproc`: luod's request handling (`luod::server::Engine`) driven in
//! this process against the real `/dev/liveupdate`, without the socket. For
//! kernels without Unix sockets: it checks what luod does with LUO (sessions, authorization by
//! uid, the manifest across the kexec, retrieval), not the transport, the
//! peer credentials or the restart (the socket suites do).

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

use luod::policy::Policy;
use luod::proto::{ErrorReply, Reply, Request, State};
use luod::server::{Config, Engine};

use crate::{memfd, pattern, read_all, s, Ctx, A_FILES, A_FILE_AFTER_RESTART, B_FILES, R, UID_A, UID_B};

fn call(
    c: &mut Ctx,
    uid: u32,
    req: Request,
    fds: Vec<OwnedFd>,
) -> Result<(Reply, Option<OwnedFd>), ErrorReply> {
    match c.engine.as_mut() {
        Some(e) => e.handle(uid, req, fds),
        None => Err(ErrorReply { errno: libc::ENXIO as u32, message: "engine not started".into() }),
    }
}

fn ok(c: &mut Ctx, uid: u32, req: Request, fds: Vec<OwnedFd>) -> Result<(Reply, Option<OwnedFd>), String> {
    let what = format!("{req:?} as uid {uid}");
    call(c, uid, req, fds).map_err(|e| format!("{what}: {e}"))
}

fn refused(c: &mut Ctx, uid: u32, req: Request, fds: Vec<OwnedFd>, errno: i32) -> R {
    let what = format!("{req:?} as uid {uid}");
    match call(c, uid, req, fds) {
        Err(e) if e.errno == errno as u32 => Ok(()),
        Err(e) => Err(format!("{what}: expected errno {errno}, got {e}")),
        Ok(_) => Err(format!("{what}: expected errno {errno}, but it succeeded")),
    }
}

/// Every page of the list.
fn list(c: &mut Ctx, uid: u32) -> Result<Vec<luod::proto::Entry>, String> {
    let mut all = Vec::new();
    loop {
        match ok(c, uid, Request::List { offset: all.len() as u32 }, vec![])?.0 {
            Reply::List { entries, total } => {
                let done = entries.is_empty();
                all.extend(entries);
                if done || all.len() >= total as usize {
                    return Ok(all);
                }
            }
            r => return Err(format!("unexpected reply {r:?}")),
        }
    }
}

fn status(c: &mut Ctx, uid: u32) -> Result<luod::proto::StatusInfo, String> {
    match ok(c, uid, Request::Status, vec![])?.0 {
        Reply::Status(st) => Ok(st),
        r => Err(format!("unexpected reply {r:?}")),
    }
}

/// A memfd owned by `uid`: luod lets a uid preserve only its own files,
/// and here one process plays every uid.
fn memfd_of(uid: u32, data: &[u8]) -> Result<OwnedFd, String> {
    let fd = memfd(data)?;
    let id = rustix::process::Uid::from_raw(uid);
    rustix::fs::fchown(&fd, Some(id), Some(rustix::process::Gid::from_raw(uid))).map_err(s)?;
    Ok(fd)
}

fn n(name: &str) -> Vec<u8> {
    name.as_bytes().to_vec()
}

pub fn engine_start(c: &mut Ctx) -> R {
    let policy = Policy::parse(&crate::suite_policy()).map_err(s)?;
    c.engine = Some(Engine::new(Config {
        socket: String::new(),
        state_dir: "/tmp/luod-inproc-state".into(),
        device: liveupdate::Device::PATH.into(),
        policy,
        holder: false,
        fake_device: false,
    }));
    let st = status(c, 0)?;
    if !st.device_ok {
        return Err(format!("device: {}", st.device_error));
    }
    Ok(())
}

fn fill(c: &mut Ctx, uid: u32, name: &str, files: &[(u64, usize, u64)]) -> R {
    ok(c, uid, Request::Create { name: n(name) }, vec![])?;
    for &(token, len, seed) in files {
        ok(c, uid, Request::Preserve { name: n(name), token }, vec![memfd_of(uid, &pattern(len, seed))?])?;
    }
    Ok(())
}

pub fn create_and_preserve(c: &mut Ctx) -> R {
    let mut a = A_FILES.to_vec();
    a.push(A_FILE_AFTER_RESTART);
    fill(c, UID_A, "vm-a", &a)?;
    fill(c, UID_B, "vm-b", B_FILES)?;
    let l = list(c, UID_A)?;
    if l.len() != 1 || l[0].name != b"vm-a" || l[0].files != 3 {
        return Err(format!("uid {UID_A} lists {l:?}"));
    }
    Ok(())
}

pub fn authorization(c: &mut Ctx) -> R {
    refused(
        c,
        UID_B,
        Request::Preserve { name: n("vm-a"), token: 9 },
        vec![memfd_of(UID_B, b"x")?],
        libc::EPERM,
    )?;
    refused(c, UID_B, Request::Close { name: n("vm-a") }, vec![], libc::EPERM)?;
    refused(c, UID_A, Request::Close { name: n("vm-b") }, vec![], libc::EPERM)?;
    let k = crate::junk_kernel()?;
    let unv = luod::proto::KEXEC_UNVERIFIED;
    refused(
        c,
        UID_B,
        Request::KexecLoad { cmdline: "liveupdate=on".into(), flags: unv },
        vec![k],
        libc::EPERM,
    )?;
    let l = list(c, UID_B)?;
    if l.len() != 1 || l[0].name != b"vm-b" {
        return Err(format!("uid {UID_B} lists {l:?}"));
    }
    Ok(())
}

pub fn policy_grant(c: &mut Ctx) -> R {
    ok(c, UID_B, Request::Create { name: n("shared/1") }, vec![])?;
    ok(c, UID_B, Request::Preserve { name: n("shared/1"), token: 1 }, vec![memfd_of(UID_B, b"granted")?])?;
    refused(c, UID_B, Request::Create { name: n("shared-2") }, vec![], libc::EPERM)?;
    refused(
        c,
        UID_A,
        Request::Preserve { name: n("shared/1"), token: 2 },
        vec![memfd_of(UID_A, b"x")?],
        libc::EPERM,
    )?;
    refused(c, UID_A, Request::Create { name: n("shared/a") }, vec![], libc::EPERM)?;
    if !list(c, 0)?.iter().any(|e| e.name == b"u1002/shared/1") {
        return Err("root does not see u1002/shared/1".into());
    }
    ok(c, UID_B, Request::Close { name: n("shared/1") }, vec![])?;
    Ok(())
}

pub fn thousand_sessions(c: &mut Ctx) -> R {
    for i in 0..1000u64 {
        let name = format!("many-{i:04}");
        ok(c, 0, Request::Create { name: n(&name) }, vec![])?;
        ok(c, 0, Request::Preserve { name: n(&name), token: i }, vec![memfd(&[i as u8; 16])?])?;
    }
    let many = list(c, 0)?.iter().filter(|e| e.name.starts_with(b"many-")).count();
    if many != 1000 {
        return Err(format!("{many} of 1000 sessions listed"));
    }
    for i in 0..1000u64 {
        ok(c, 0, Request::Close { name: n(&format!("many-{i:04}")) }, vec![])?;
    }
    Ok(())
}

pub fn kexec_refusals(c: &mut Ctx) -> R {
    let unv = luod::proto::KEXEC_UNVERIFIED;
    let req = |cmdline: &str| Request::KexecLoad { cmdline: cmdline.into(), flags: unv };
    refused(c, 0, req("console=ttyS0"), vec![crate::junk_kernel()?], libc::EINVAL)?;
    refused(c, 0, req("liveupdate=on"), vec![], libc::EINVAL)?;
    Ok(())
}

pub fn stage1_kexec_load(c: &mut Ctx) -> R {
    let kernel = File::open("/kernel").map_err(|e| format!("/kernel: {e}"))?;
    let initrd = File::open("/initrd.img").map_err(|e| format!("/initrd.img: {e}"))?;
    let cmdline = crate::next_cmdline()?;
    let (r, _) = ok(c, 0, Request::KexecLoad { cmdline, flags: 0 }, vec![kernel.into(), initrd.into()])?;
    let Reply::Kexec(h) = r else { return Err(format!("unexpected reply {r:?}")) };
    let bytes: usize = A_FILES.iter().chain(B_FILES).map(|f| f.1).sum::<usize>() + A_FILE_AFTER_RESTART.1;
    if h.sessions != 2 || h.files != 4 || h.bytes as usize != bytes {
        return Err(format!("hand-over report {h:?}, expected 2 sessions, 4 files, {bytes} bytes"));
    }
    println!("# kexec will hand over {} sessions, {} files, {} bytes", h.sessions, h.files, h.bytes);
    Ok(())
}

pub fn stage2_start(c: &mut Ctx) -> R {
    engine_start(c)?;
    let st = status(c, 0)?;
    if st.handed_over != Some(true) || st.incoming != 2 {
        return Err(format!("status {st:?}"));
    }
    println!("# live update number {:?}", st.live_update_number);
    Ok(())
}

pub fn stage2_list(c: &mut Ctx) -> R {
    let l = list(c, 0)?;
    for (name, owner, files) in [("u1001/vm-a", UID_A, 3), ("u1002/vm-b", UID_B, 1)] {
        let e = l.iter().find(|e| e.name == name.as_bytes()).ok_or(format!("{name} not listed: {l:?}"))?;
        if e.state != State::Incoming || e.owner != Some(owner) || e.files != files {
            return Err(format!("{name}: {e:?}"));
        }
    }
    let lb = list(c, UID_B)?;
    if lb.len() != 1 || lb[0].name != b"vm-b" {
        return Err(format!("uid {UID_B} lists {lb:?}"));
    }
    refused(c, UID_B, Request::RetrieveSession { name: n("vm-a") }, vec![], libc::EPERM)
}

fn retrieve_check(c: &mut Ctx, uid: u32, name: &str, files: &[(u64, usize, u64)]) -> R {
    ok(c, uid, Request::RetrieveSession { name: n(name) }, vec![])?;
    // Idempotent for its owner (a VMM that reconnects).
    ok(c, uid, Request::RetrieveSession { name: n(name) }, vec![])?;
    for &(token, len, seed) in files {
        let (_, fd) = ok(c, uid, Request::RetrieveFd { name: n(name), token }, vec![])?;
        let fd = fd.ok_or("no fd in the reply")?;
        let got = read_all(fd.as_fd())?;
        if got != pattern(len, seed) {
            return Err(format!("{name} token {token}: {} bytes, contents differ", got.len()));
        }
    }
    ok(c, uid, Request::Finish { name: n(name) }, vec![])?;
    refused(c, uid, Request::RetrieveFd { name: n(name), token: files[0].0 }, vec![], libc::ENOENT)
}

pub fn stage2_retrieve(c: &mut Ctx) -> R {
    let mut a = A_FILES.to_vec();
    a.push(A_FILE_AFTER_RESTART);
    retrieve_check(c, UID_A, "vm-a", &a)?;
    retrieve_check(c, UID_B, "vm-b", B_FILES)
}

pub fn stage2_nothing_left(c: &mut Ctx) -> R {
    let l = list(c, 0)?;
    if !l.is_empty() {
        return Err(format!("left: {l:?}"));
    }
    refused(c, 0, Request::RetrieveSession { name: n("u1001/vm-a") }, vec![], libc::ENOENT)
}

pub type Case = (&'static str, fn(&mut Ctx) -> R);

pub const SINGLE: &[Case] = &[
    ("inproc_engine_start", engine_start),
    ("inproc_create_and_preserve", create_and_preserve),
    ("inproc_authorization", authorization),
    ("inproc_policy_grant", policy_grant),
    ("inproc_thousand_sessions", thousand_sessions),
    ("inproc_kexec_refusals", kexec_refusals),
];

pub const STAGE1: &[Case] = &[
    ("inproc_engine_start", engine_start),
    ("inproc_create_and_preserve", create_and_preserve),
    ("inproc_authorization", authorization),
    ("inproc_stage1_kexec_load", stage1_kexec_load),
];

pub const STAGE2: &[Case] = &[
    ("inproc_stage2_start", stage2_start),
    ("inproc_stage2_list", stage2_list),
    ("inproc_stage2_retrieve", stage2_retrieve),
    ("inproc_stage2_nothing_left", stage2_nothing_left),
];
