// SPDX-License-Identifier: GPL-2.0
//! The accept loop and the connections.
//!
//! One thread per connection. A request's received fds are checked by the
//! request before any lock and dropped by the connection's thread after
//! the reply, outside every lock: a client whose file blocks in `close()`
//! (a TCP socket with `SO_LINGER`, a FUSE file) stalls only itself.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use rustix::net;

use crate::daemon::{err, Daemon};
pub use crate::daemon::{liveupdate_on, Config, MANIFEST_SESSION};
use crate::instance::Instance;
use crate::keeper::{Keeper, KeeperKind};
use crate::peer::{self, Cred};
use crate::proto::{self, ErrorReply, Reply, Request};
pub use crate::session::MAX_FILES_PER_SESSION;
use crate::{fdpass, log, notify};

/// Most concurrent client connections, all uids together.
pub const MAX_CLIENTS: usize = 1024;
/// Connections only root may use, so an operator can always reach luod.
const ROOT_RESERVE: usize = 64;
/// How long luod waits for a client to take a reply.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Run the daemon: never returns unless it cannot start.
pub fn run(cfg: Config, activated: Vec<(OwnedFd, String)>) -> io::Result<()> {
    let _instance = Instance::take(&cfg.state_dir)?;
    // Split socket activation fds: the listening socket, and the session
    // fds from the fd store.
    let mut listener = None;
    let mut stored = Vec::new();
    for (fd, name) in activated {
        let is_sock = rustix::fs::fstat(&fd)
            .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket)
            .unwrap_or(false);
        if is_sock && listener.is_none() {
            listener = Some(fd);
        } else {
            stored.push((fd, name));
        }
    }
    let kind = if notify::under_systemd() {
        KeeperKind::FdStore
    } else if cfg.holder {
        KeeperKind::Holder
    } else {
        KeeperKind::Nothing
    };
    let (keeper, held) = Keeper::new(kind, &cfg.state_dir);
    if keeper.kind() == KeeperKind::Holder {
        log(&format!("holder: {} sessions taken back", held.len()));
    }
    let d = Daemon::new(cfg, keeper);
    d.recover(held);
    d.recover_fdstore(stored);
    d.read_manifest();
    let listener = match listener {
        Some(l) => {
            peer::pass_credentials(l.as_fd())?;
            l
        }
        None => {
            let l = fdpass::seqpacket()?;
            // Connections inherit it: a request sent before luod accepts
            // the connection carries its sender's credentials too.
            peer::pass_credentials(l.as_fd())?;
            // We hold the state directory's lock: a socket file left at the
            // path is a dead luod's.
            let _ = std::fs::remove_file(&d.cfg.socket);
            // Access control is luod's (per-message credentials), not the
            // mode's: the socket is created 0666 through the umask (not
            // chmod()ed by path afterwards, which could follow a planted
            // symlink).
            let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o111));
            let bound = net::SocketAddrUnix::new(d.cfg.socket.as_str()).and_then(|a| net::bind(&l, &a));
            rustix::process::umask(old);
            bound?;
            net::listen(&l, 64)?;
            l
        }
    };
    let (out, inc) = d.counts();
    if d.keeper_kind() == KeeperKind::Nothing {
        log("warning: sessions are kept nowhere: they die with luod");
    }
    notify::ready();
    log(&format!("listening on {} ({out} outgoing, {inc} incoming sessions)", d.cfg.socket));
    let d = Arc::new(d);
    let wd = Arc::clone(&d);
    notify::watchdog(move || {
        drop(wd.reg());
        true
    });
    let refuser = Refuser::start()?;
    let mut backoff = Duration::from_millis(10);
    loop {
        let conn = match net::accept_with(&listener, net::SocketFlags::CLOEXEC) {
            Ok(c) => c,
            Err(e) => {
                log(&format!("accept: {e}; retrying in {} ms", backoff.as_millis()));
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(10);
        admit(&d, &refuser, conn);
    }
}

/// Count a new connection against its uid's limit and start its thread.
fn admit(d: &Arc<Daemon>, refuser: &Refuser, conn: OwnedFd) {
    let Ok(cred) = net::sockopt::socket_peercred(&conn) else { return };
    let uid = cred.uid.as_raw();
    let connector = Cred { pid: cred.pid.as_raw_nonzero().get(), uid };
    let limit = d.cfg.policy.limits(uid).connections;
    let refused = {
        let mut r = d.reg();
        let total: u64 = r.usage.values().map(|u| u.connections).sum();
        let others: u64 = r.usage.iter().filter(|(&u, _)| u != 0).map(|(_, u)| u.connections).sum();
        let u = r.usage(uid);
        if uid != 0 && !d.cfg.policy.knows(uid) {
            // Not even Status: a uid the policy does not know holds no
            // connection slot (a user with a range of subordinate uids
            // could otherwise fill them all).
            Some(err(libc::EPERM, format!("the policy grants uid {uid} nothing")))
        } else if total >= MAX_CLIENTS as u64 {
            Some(err(libc::EMFILE, format!("too many clients (at most {MAX_CLIENTS})")))
        } else if uid != 0 && others >= (MAX_CLIENTS - ROOT_RESERVE) as u64 {
            Some(err(libc::EMFILE, format!("too many clients ({ROOT_RESERVE} are kept for root)")))
        } else if uid != 0 && u.connections >= limit {
            Some(err(libc::EDQUOT, format!("uid {uid} has its {limit} connections")))
        } else {
            u.connections += 1;
            None
        }
    };
    if let Some(e) = refused {
        // Without blocking: a full socket just misses the explanation.
        let _ = net::send(
            &conn,
            &proto::encode_reply(0, &Err(e)),
            net::SendFlags::DONTWAIT | net::SendFlags::NOSIGNAL,
        );
        refuser.refuse(conn);
        return;
    }
    let d2 = Arc::clone(d);
    let spawned = std::thread::Builder::new().stack_size(256 * 1024).spawn(move || {
        serve(&d2, conn, connector);
        let mut r = d2.reg();
        let u = r.usage(uid);
        u.connections = u.connections.saturating_sub(1);
    });
    if let Err(e) = spawned {
        log(&format!("cannot start a client thread: {e}"));
        let mut r = d.reg();
        let u = r.usage(uid);
        u.connections = u.connections.saturating_sub(1);
    }
}

/// Closes refused connections once their client has read the refusal.
///
/// Closing at once would reset a connection whose client sent a request
/// meanwhile (its request unread in our queue): the client would see
/// `ECONNRESET` instead of the refusal queued for it. One thread keeps up
/// to [`Refuser::MAX`] refused connections for up to [`Refuser::LINGER`],
/// discards what their clients send, and closes each when its client
/// hangs up, sends, or the time is up.
struct Refuser {
    tx: std::sync::mpsc::SyncSender<OwnedFd>,
}

impl Refuser {
    const MAX: usize = 256;
    const LINGER: Duration = Duration::from_secs(2);

    fn start() -> io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<OwnedFd>(Self::MAX);
        std::thread::Builder::new().name("refuser".into()).stack_size(128 * 1024).spawn(move || {
            let mut pending: Vec<(OwnedFd, std::time::Instant)> = Vec::new();
            loop {
                let wait = if pending.is_empty() { None } else { Some(Duration::from_millis(50)) };
                let got = match wait {
                    None => rx.recv().map_err(|_| std::sync::mpsc::RecvTimeoutError::Disconnected),
                    Some(t) => rx.recv_timeout(t),
                };
                match got {
                    Ok(fd) => pending.push((fd, std::time::Instant::now())),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                }
                while let Ok(fd) = rx.try_recv() {
                    pending.push((fd, std::time::Instant::now()));
                }
                let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
                pending.retain(|(fd, since)| {
                    let mut p = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                    let ready = rustix::event::poll(&mut p, Some(&zero)).unwrap_or(1) > 0;
                    if ready {
                        // Drain (a request, or the hang-up) so the close
                        // resets nothing, then close.
                        let mut buf = [0u8; 64];
                        while net::recv(fd, &mut buf, net::RecvFlags::DONTWAIT).is_ok_and(|(n, _)| n > 0) {}
                        return false;
                    }
                    since.elapsed() < Self::LINGER
                });
            }
        })?;
        Ok(Self { tx })
    }

    /// Close `conn` once its client read the refusal (at most
    /// [`Refuser::LINGER`] later; at once if too many wait).
    fn refuse(&self, conn: OwnedFd) {
        // A full queue drops (closes) it at once.
        let _ = self.tx.try_send(conn);
    }
}

fn reply(conn: BorrowedFd<'_>, op: u16, r: Result<(Reply, Option<OwnedFd>), ErrorReply>) -> bool {
    let (reply, fd) = match r {
        Ok((r, fd)) => (Ok(r), fd),
        Err(e) => (Err(e), None),
    };
    let fds: Vec<BorrowedFd<'_>> = fd.iter().map(|f| f.as_fd()).collect();
    fdpass::send(conn, &proto::encode_reply(op, &reply), &fds).is_ok()
}

/// Serve one client until it hangs up, stays idle too long, or subscribes
/// (then until it hangs up). `connector` connected.
fn serve(d: &Daemon, conn: OwnedFd, connector: Cred) {
    let conn_uid = connector.uid;
    if peer::pass_credentials(conn.as_fd()).is_err() {
        return;
    }
    let idle = d.cfg.policy.limits(conn_uid).idle_timeout;
    if conn_uid != 0 && idle > 0 {
        let t = Some(Duration::from_secs(idle));
        let _ = net::sockopt::set_socket_timeout(&conn, net::sockopt::Timeout::Recv, t);
    }
    let _ = net::sockopt::set_socket_timeout(&conn, net::sockopt::Timeout::Send, Some(SEND_TIMEOUT));
    loop {
        let p = match peer::recv(conn.as_fd(), proto::MAX_REQUEST, connector) {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
                    log(&format!("closing a connection of uid {conn_uid}: idle for {idle} s"));
                }
                return;
            }
        };
        let (op, result) = if p.truncated {
            (0, Err(err(libc::EMSGSIZE, format!("request longer than {} bytes", proto::MAX_REQUEST))))
        } else if p.too_many_fds || p.fds.len() > proto::MAX_FDS {
            (0, Err(err(libc::EINVAL, format!("more than {} fds in a request", proto::MAX_FDS))))
        } else {
            match (proto::decode_request(&p.data), p.cred) {
                (Err(e), _) => {
                    let sent = fdpass::send(&conn, &proto::encode_decode_error(&p.data, &e), &[]).is_ok();
                    drop(p.fds);
                    if !sent {
                        return;
                    }
                    continue;
                }
                (Ok(_), None) => (0, Err(err(libc::EPERM, "the request came without credentials"))),
                (Ok(Request::Subscribe), Some(cred)) => {
                    let op = proto::Op::Subscribe as u16;
                    match d.may_subscribe(cred).and_then(|()| {
                        d.events.subscribe(&conn).map_err(|e| err(libc::ENOMEM, format!("subscribing: {e}")))
                    }) {
                        Err(e) => (op, Err(e)),
                        Ok(id) => {
                            // Subscribed before the reply: a Reboot after it
                            // reaches this client.
                            let sent = reply(conn.as_fd(), op, Ok((Reply::Done, None)));
                            drop(p.fds);
                            if sent {
                                events(d, &conn, cred, id);
                            }
                            d.events.unsubscribe(id);
                            return;
                        }
                    }
                }
                (Ok(req), Some(cred)) => {
                    let op = req.op() as u16;
                    (op, d.handle(cred, req, &p.fds))
                }
            }
        };
        let sent = reply(conn.as_fd(), op, result);
        // The client's fds go here, with no lock held.
        drop(p.fds);
        if !sent {
            return;
        }
    }
}

/// A subscribed connection (subscription `id`): acknowledgements until
/// it hangs up.
fn events(d: &Daemon, conn: &OwnedFd, cred: Cred, id: u64) {
    let _ = net::sockopt::set_socket_timeout(conn, net::sockopt::Timeout::Recv, None);
    log(&format!("uid {} (pid {}) subscribed to kexec events", cred.uid, cred.pid));
    while let Ok(Some(p)) = peer::recv(conn.as_fd(), proto::MAX_REQUEST, cred) {
        drop(p.fds);
        match proto::decode_request(&p.data) {
            Ok(Request::Ack { seq }) => d.events.ack(id, seq),
            _ => {
                let e = err(libc::EINVAL, "a subscribed connection takes Ack only");
                if !reply(conn.as_fd(), 0, Err(e)) {
                    break;
                }
            }
        }
    }
}

/// luod's request handling without the socket, for tests on kernels
/// without Unix sockets: the same code as the daemon minus transport,
/// per-message credentials (the caller names the uid; the pid is this
/// process's), events and restart safety.
pub struct Engine(Daemon);

impl Engine {
    /// Open the device, read the kernel log and the previous manifest.
    pub fn new(cfg: Config) -> Self {
        let (keeper, _) = Keeper::new(KeeperKind::Nothing, &cfg.state_dir);
        let d = Daemon::new(cfg, keeper);
        d.read_manifest();
        Self(d)
    }

    /// Handle `req` from `uid` with `fds`, as the daemon does.
    pub fn handle(
        &mut self,
        uid: u32,
        req: Request,
        fds: Vec<OwnedFd>,
    ) -> Result<(Reply, Option<OwnedFd>), ErrorReply> {
        let cred = Cred { pid: std::process::id() as i32, uid };
        let r = self.0.handle(cred, req, &fds);
        drop(fds);
        r
    }
}
