// SPDX-License-Identifier: GPL-2.0
//! `luod`: the Live Update Orchestrator daemon. See luod.8.md.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use luod::policy::Policy;
use luod::server::{self, Config};
use luod::{client, instance, keeper, log, notify};

/// The Live Update Orchestrator daemon: the single owner of
/// /dev/liveupdate, serving LUO sessions to the VMMs of several users.
#[derive(Debug, Parser)]
#[command(name = "luod", version, about)]
struct Args {
    /// Listen on PATH (ignored under socket activation).
    #[arg(long, value_name = "PATH", default_value = client::DEFAULT_SOCKET)]
    socket: String,
    /// luod's private directory (0700): its lock and the holder's socket.
    #[arg(long, value_name = "DIR", default_value = instance::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// The policy (default /etc/luod/policy.toml if it exists; without one
    /// only root may use luod).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The LUO device.
    #[arg(long, value_name = "PATH", default_value = liveupdate::Device::PATH)]
    device: PathBuf,
    /// Outside systemd, do not keep sessions in a holder process.
    #[arg(long)]
    no_holder: bool,
    /// Testing luod only: no LUO, sessions are memfds that preserve nothing.
    #[arg(long)]
    fake_device: bool,
    /// Internal: run as the holder of --state-dir.
    #[arg(long, hide = true)]
    holder: bool,
}

fn main() -> ExitCode {
    // First thing, before any thread: take the socket-activation fds.
    // SAFETY: no thread has been started yet.
    let activated = unsafe { notify::listen_fds() };
    let args = Args::parse();
    if args.holder {
        // Exits only if it cannot listen (another holder serves the directory).
        let _ = keeper::run_holder(&args.state_dir);
        return ExitCode::SUCCESS;
    }
    let default_policy = PathBuf::from("/etc/luod/policy.toml");
    let policy_path = args.policy.or_else(|| default_policy.exists().then_some(default_policy));
    let policy = match &policy_path {
        None => Policy::default(),
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| Policy::parse(&t).map_err(|e| e.to_string()))
        {
            Ok(p) => p,
            Err(e) => {
                log(&format!("policy {}: {e}", p.display()));
                return ExitCode::FAILURE;
            }
        },
    };
    raise_nofile();
    let cfg = Config {
        socket: args.socket,
        state_dir: args.state_dir,
        device: args.device,
        policy,
        holder: !args.no_holder,
        fake_device: args.fake_device,
    };
    match server::run(cfg, activated) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let hint = match e.raw_os_error() {
                Some(libc::EAFNOSUPPORT) => {
                    " (this kernel has no Unix sockets: luod needs CONFIG_NET and CONFIG_UNIX)"
                }
                _ => "",
            };
            log(&format!("cannot start: {e}{hint}"));
            ExitCode::FAILURE
        }
    }
}

/// Sessions are fds: allow as many as the hard limit.
fn raise_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}
