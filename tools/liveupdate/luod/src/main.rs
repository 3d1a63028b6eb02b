// SPDX-License-Identifier: GPL-2.0
//! `luod`: the Live Update Orchestrator daemon. See tools/liveupdate/README.md.

use std::path::PathBuf;
use std::process::ExitCode;

use luod::policy::Policy;
use luod::server::{self, Config};
use luod::{client, keeper, log, notify};

const USAGE: &str = "usage: luod [--socket PATH] [--policy FILE] [--device PATH] [--no-holder]

  --socket PATH   listen on PATH (default /run/luod.sock; ignored under socket activation)
  --policy FILE   authorization policy (default /etc/luod/policy.toml if it exists)
  --device PATH   the LUO device (default /dev/liveupdate)
  --no-holder     outside systemd, do not keep sessions in a holder process
  --fake-device   testing luod only: no LUO, sessions are memfds that preserve nothing";

fn main() -> ExitCode {
    // First thing: take the socket-activation fds before anything opens one.
    let activated = notify::listen_fds();
    let mut socket = client::DEFAULT_SOCKET.to_string();
    let mut policy_path: Option<PathBuf> = None;
    let mut device = PathBuf::from(liveupdate::Device::PATH);
    let mut holder = true;
    let mut run_holder = false;
    let mut fake_device = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |what: &str| {
            args.next().ok_or_else(|| {
                eprintln!("luod: {what} needs a value\n{USAGE}");
            })
        };
        let r = match a.as_str() {
            "--socket" => val("--socket").map(|v| socket = v),
            "--policy" => val("--policy").map(|v| policy_path = Some(v.into())),
            "--device" => val("--device").map(|v| device = v.into()),
            "--no-holder" => {
                holder = false;
                Ok(())
            }
            "--fake-device" => {
                fake_device = true;
                Ok(())
            }
            "--holder" => {
                run_holder = true;
                Ok(())
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("luod: unknown argument {a:?}\n{USAGE}");
                Err(())
            }
        };
        if r.is_err() {
            return ExitCode::from(2);
        }
    }
    if run_holder {
        return match keeper::run_holder(&socket) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::SUCCESS, // another holder has the name
        };
    }
    let default_policy = PathBuf::from("/etc/luod/policy.toml");
    let policy_path = policy_path.or_else(|| default_policy.exists().then_some(default_policy));
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
    match server::run(Config { socket, device, policy, holder, fake_device }, activated) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let hint = match e.raw_os_error() {
                Some(libc::ENOSYS) | Some(libc::EAFNOSUPPORT) => {
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
