// SPDX-License-Identifier: GPL-2.0
//! `luoctl`: operate the Linux Live Update Orchestrator from a shell.
//!
//! See `luoctl --help` and tools/liveupdate/README.md.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod check_image;

use clap::{Args, Parser, Subcommand, ValueEnum};
use liveupdate::timeline::{self, Timeline};
use liveupdate::{kexec, Device, Error, IncomingSession};
use luod::daemon::liveupdate_on;
use luod_client::proto::display_name;
use luod_client::{
    Client, ClientError, Entry, HandOver, Keeper, StatusInfo, DEFAULT_SOCKET, KEXEC_DROP_INCOMING,
    KEXEC_UNVERIFIED, REBOOT_FORCE,
};
use rustix::fs::{memfd_create, MemfdFlags};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(
    name = "luoctl",
    version,
    about = "Preserve files across a kexec with the Live Update Orchestrator (/dev/liveupdate)",
    long_about = "Preserve files across a kexec with the Live Update Orchestrator.\n\n\
        When luod runs (its socket exists), luoctl works through it: luod owns \
        /dev/liveupdate and keeps the sessions. Otherwise luoctl uses the device itself, \
        and since a session lives as long as its file descriptor, `create` leaves a \
        background process holding it (until killed, or until the kexec carries the \
        session over). After the kexec, `retrieve` gets the files back and `finish` \
        releases what is left.",
    after_help = "Example:\n  \
        luoctl create --session vm1 --memfd 1=/var/lib/vm1/state.bin\n  \
        luoctl kexec --kernel /boot/vmlinuz-new --initrd /boot/initrd-new --reuse-cmdline\n  \
        # in the new kernel:\n  \
        luoctl retrieve --session vm1 --token 1 --out /var/lib/vm1/state.bin"
)]
struct Cli {
    /// luod's socket: used when it exists (see --no-luod).
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,

    /// Use /dev/liveupdate directly even when luod runs.
    #[arg(long, global = true)]
    no_luod: bool,

    /// Print the result as JSON on stdout (for scripts).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    cmd: Cmd,
}

/// The device node, for the commands that may use it.
#[derive(Args, Debug, Clone)]
struct DevArg {
    /// The LUO device node (when not going through luod).
    #[arg(long, value_name = "PATH", default_value = Device::PATH)]
    device: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Tell whether LUO is usable (luod's view, or the device: present and
    /// really LUO, free, or busy).
    ///
    /// Then break down the last live update's blackout from the kernel's
    /// timeline, as `luoctl timeline` does, or say in one line why it
    /// cannot be read (which does not make status fail).
    Status(StatusArgs),
    /// List the sessions luod holds that you may see (needs luod).
    List,
    /// Create a session, preserve files in it, and keep it open.
    #[command(visible_alias = "preserve")]
    Create(CreateArgs),
    /// Retrieve a session handed over by the previous kernel and copy out
    /// its files. Closing it at exit finishes it: retrieve every token you
    /// need in one call.
    Retrieve(RetrieveArgs),
    /// Retrieve a handed-over session and finish it, releasing its files.
    Finish {
        /// Session name.
        #[arg(long, short)]
        session: String,

        #[command(flatten)]
        dev: DevArg,
    },
    /// Load a kernel with kexec_file_load and reboot into it; open sessions
    /// are handed over.
    Kexec(KexecArgs),
    /// Ask luod to kexec into the loaded kernel: it tells its subscribers
    /// (VMMs quiesce and acknowledge) first (needs luod and CAP_SYS_BOOT).
    Reboot(RebootArgs),
    /// Tell whether a kernel image reads what a live update hands over (its
    /// table of handover formats): exit 0 if it does, 1 if it does not or
    /// has no table, 2 if it cannot be read.
    CheckImage(check_image::CheckImageArgs),
    /// Break down the last live update's blackout from the kernel's timeline.
    ///
    /// The timeline is /sys/kernel/debug/liveupdate/timeline (debugfs,
    /// root-only; the Rust LUO only). Needs no luod. Exits 1 if the file
    /// cannot be read or is malformed.
    Timeline(TimelineArgs),
}

#[derive(Args, Debug)]
struct StatusArgs {
    #[command(flatten)]
    dev: DevArg,

    /// The kernel's timeline file (for tests; default: $LUOCTL_TIMELINE,
    /// else /sys/kernel/debug/liveupdate/timeline).
    #[arg(long, value_name = "PATH", hide = true)]
    timeline: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct TimelineArgs {
    /// The timeline file [default: $LUOCTL_TIMELINE, else
    /// /sys/kernel/debug/liveupdate/timeline].
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct RebootArgs {
    /// How long luod waits for its subscribers' acknowledgements.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    timeout_ms: u32,

    /// Kexec even if a subscriber did not acknowledge in time.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// Session name (1 to 63 bytes).
    #[arg(long, short)]
    session: String,

    #[command(flatten)]
    dev: DevArg,

    /// Open PATH and preserve that file under TOKEN (it must be a kind of
    /// file LUO can preserve, e.g. a memfd reached via /proc/PID/fd/N).
    #[arg(long = "fd-file", value_name = "TOKEN=PATH")]
    fd_files: Vec<TokenPath>,

    /// Create a memfd holding a copy of PATH's contents ("-" for stdin)
    /// and preserve it under TOKEN.
    #[arg(long = "memfd", value_name = "TOKEN=PATH")]
    memfds: Vec<TokenPath>,

    /// Who keeps the session open: a background process (`background`),
    /// this process until it is killed (`foreground`), or nobody, which
    /// drops the session at once (`none`, a dry run).
    #[arg(long, value_enum, default_value_t = HoldMode::Background)]
    hold: HoldMode,

    /// Write the pid of the holding process to this file.
    #[arg(long, value_name = "FILE")]
    pidfile: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum HoldMode {
    Background,
    Foreground,
    None,
}

#[derive(Args, Debug)]
struct RetrieveArgs {
    /// Session name.
    #[arg(long, short)]
    session: String,

    #[command(flatten)]
    dev: DevArg,

    /// Token of a file to retrieve (decimal or 0x hex); repeat for more.
    #[arg(long, short, value_name = "TOKEN", value_parser = parse_token, required = true)]
    token: Vec<u64>,

    /// Where to copy each retrieved file, in the order of --token ("-" for
    /// stdout). Without it, only the sizes are printed.
    #[arg(long, short, value_name = "PATH")]
    out: Vec<PathBuf>,

    /// Call FINISH explicitly (and report its result) before exiting.
    /// Without it, the kernel finishes the session when luoctl exits.
    #[arg(long)]
    finish: bool,
}

#[derive(Args, Debug)]
struct KexecArgs {
    /// Kernel image (bzImage) to load.
    #[arg(long, short, value_name = "FILE", required_unless_present_any = ["exec", "unload"])]
    kernel: Option<PathBuf>,

    /// Initramfs for the new kernel.
    #[arg(long, short, value_name = "FILE")]
    initrd: Option<PathBuf>,

    /// Command line of the new kernel.
    #[arg(long, short, value_name = "STRING", conflicts_with = "reuse_cmdline")]
    cmdline: Option<String>,

    /// Use this kernel's command line (/proc/cmdline).
    #[arg(long)]
    reuse_cmdline: bool,

    /// Add kernel parameters to the command line: at its end, or before
    /// its first standalone `--` if it has one (the words after `--` are
    /// init's arguments, which the kernel does not parse).
    #[arg(long, value_name = "STRING")]
    append: Option<String>,

    /// Only load the kernel; reboot into it later with `luoctl kexec --exec`.
    #[arg(long, conflicts_with_all = ["exec", "unload"])]
    load_only: bool,

    /// Reboot into the kernel loaded before, without loading one.
    #[arg(long, conflicts_with_all = ["kernel", "initrd", "cmdline", "reuse_cmdline", "append", "unload"])]
    exec: bool,

    /// Unload the loaded kernel.
    #[arg(long, conflicts_with_all = ["kernel", "initrd", "cmdline", "reuse_cmdline", "append"])]
    unload: bool,

    /// Through luod: load even though incoming sessions are not finished
    /// (the kexec drops them).
    #[arg(long, conflicts_with_all = ["exec", "unload"])]
    drop_incoming: bool,

    /// Through luod: load a kernel whose support for the preserved files
    /// cannot be verified.
    #[arg(long, conflicts_with_all = ["exec", "unload"])]
    unverified: bool,
}

/// `TOKEN=PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TokenPath {
    token: u64,
    path: PathBuf,
}

impl std::str::FromStr for TokenPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (token, path) = s.split_once('=').ok_or("expected TOKEN=PATH")?;
        if path.is_empty() {
            return Err("empty PATH in TOKEN=PATH".into());
        }
        Ok(TokenPath { token: parse_token(token)?, path: PathBuf::from(path) })
    }
}

/// A u64 token, decimal or 0x-prefixed hex.
fn parse_token(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("invalid token {s:?}: expected a u64, decimal or 0x hex"))
}

fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {} ({n} bytes)", UNITS[unit])
}

/// An error for the user: what failed, and why.
struct Failure(String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure(e.to_string())
    }
}

fn ctx<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> Failure {
    move |e| Failure(format!("{what}: {e}"))
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure(e.to_string())
    }
}

/// Open the device; errors name the node.
fn open_device(path: &Path) -> Result<Device, Failure> {
    Device::open_path(path).map_err(|e| Failure(format!("{}: {e}", path.display())))
}

/// luod, if its socket exists and it answers (and --no-luod is not given).
fn luod_client(cli: &Cli) -> Option<Client> {
    if cli.no_luod || !cli.socket.exists() {
        return None;
    }
    match Client::connect(&cli.socket) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!(
                "luoctl: note: {} exists but luod does not answer ({e}): using the device",
                cli.socket.display()
            );
            None
        }
    }
}

/// What the device node is.
#[derive(Debug, PartialEq, Eq)]
enum DevState {
    Available,
    Busy,
    /// The node exists but is not LUO's (e.g. /dev/null).
    NotLuo(String),
    Unusable(String),
}

/// LUO's misc device numbers, from sysfs.
fn luo_rdev() -> Option<(u32, u32)> {
    let t = std::fs::read_to_string("/sys/class/misc/liveupdate/dev").ok()?;
    let (a, b) = t.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Probe `path` without side effects: a char device that answers
/// CREATE_SESSION with an all-zero name by EINVAL is LUO; anything else
/// (ENOTTY from /dev/null, ...) is not.
fn probe_device(path: &Path) -> DevState {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return DevState::Unusable(format!("{}: {e}", path.display())),
    };
    if !meta.file_type().is_char_device() {
        return DevState::NotLuo(format!("{} is not a character device", path.display()));
    }
    let rdev = (rustix::fs::major(meta.rdev()), rustix::fs::minor(meta.rdev()));
    match Device::open_path(path) {
        Ok(dev) => match dev.create_session_raw(&[0; 64]) {
            Err(Error::InvalidArgument { .. }) => DevState::Available,
            Ok(_) => DevState::Available,
            Err(e) => DevState::NotLuo(format!(
                "{} does not answer LUO's ioctls ({})",
                path.display(),
                e.errno_name()
            )),
        },
        Err(Error::Busy { .. }) => match luo_rdev() {
            Some(r) if r != rdev => DevState::NotLuo(format!(
                "{} is device {}:{}, LUO is {}:{}",
                path.display(),
                rdev.0,
                rdev.1,
                r.0,
                r.1
            )),
            _ => DevState::Busy,
        },
        Err(e) => DevState::Unusable(format!("{}: {e}", path.display())),
    }
}

fn cmdline_has_liveupdate() -> bool {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    liveupdate_on(&cmdline)
}

fn status_json(s: &StatusInfo) -> Value {
    json!({
        "via": "luod",
        "protocol": s.version,
        "usable": s.device_ok,
        "device_error": s.device_error,
        "handed_over": s.handed_over,
        "live_update_number": s.live_update_number,
        "outgoing": handover_json(&s.outgoing),
        "incoming": s.incoming,
        "retrieved": s.retrieved,
        "keeper": s.keeper.as_str(),
        "kexec_loaded": s.kexec_loaded,
        "uid": s.uid,
        "subscribers": s.subscribers,
    })
}

fn handover_json(h: &HandOver) -> Value {
    json!({"sessions": h.sessions, "files": h.files, "bytes": h.bytes, "dropped_incoming": h.dropped})
}

/// The timeline file: `explicit`, else `$LUOCTL_TIMELINE`, else the
/// kernel's.
fn timeline_path(explicit: Option<&Path>) -> PathBuf {
    match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::var_os(timeline::PATH_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(timeline::DEFAULT_PATH), PathBuf::from),
    }
}

fn span_json(s: &timeline::HandlerSpan) -> Value {
    json!({"handler": s.handler, "first": s.first, "last": s.last, "files": s.files, "busy_ns": s.busy_ns})
}

/// The parsed timeline and its breakdown, as JSON.
fn timeline_json(path: &Path, t: &Timeline) -> Value {
    let mut records = serde_json::Map::new();
    for p in timeline::Point::ALL {
        records.insert(p.name().into(), json!(t.point(p)));
    }
    for ph in timeline::Phase::ALL {
        records.insert(ph.name().into(), t.spans(ph).iter().map(span_json).collect());
    }
    let rows: Vec<Value> = t
        .breakdown()
        .iter()
        .map(|r| {
            let mut v = json!({
                "key": r.key,
                "label": r.label,
                "depth": r.depth,
                "from_to": r.from_to,
                "state": r.value.state(),
                "ns": r.value.ns(),
                "why": r.value.why(),
            });
            if let Some(h) = &r.handler {
                v["handler"] = json!(h.handler);
                v["files"] = json!(h.files);
                v["busy_ns"] = json!(h.busy_ns);
            }
            v
        })
        .collect();
    json!({
        "path": path.display().to_string(),
        "live_update": t.live_update,
        "clock": t.clock,
        "khz": t.khz,
        "continuous": t.continuous,
        "records": records,
        "ignored_lines": t.ignored_lines,
        "breakdown": rows,
    })
}

/// `status`'s part on the timeline: its breakdown, or one line on why
/// there is none (never an error: the file is root-only, in debugfs, and
/// only the Rust LUO has it). With `json`, sets the `timeline` and
/// `timeline_error` keys of `v` instead.
fn status_timeline(path: &Path, json: Option<&mut Value>) {
    let read = Timeline::read(path);
    match json {
        Some(v) => {
            let (t, e) = match &read {
                Ok(t) => (timeline_json(path, t), Value::Null),
                Err(e) => (Value::Null, json!(e.to_string())),
            };
            v["timeline"] = t;
            v["timeline_error"] = e;
        }
        None => match read {
            Ok(t) => t.render(&path.display().to_string()).iter().for_each(|l| println!("{l}")),
            Err(e) => println!("kernel timeline: {e}"),
        },
    }
}

/// `luoctl timeline`.
fn show_timeline(cli: &Cli, a: &TimelineArgs) -> Result<(), Failure> {
    let path = timeline_path(a.path.as_deref());
    let t = Timeline::read(&path).map_err(|e| Failure(e.to_string()))?;
    if cli.json {
        println!("{}", timeline_json(&path, &t));
    } else {
        for l in t.render(&path.display().to_string()) {
            println!("{l}");
        }
    }
    Ok(())
}

fn status(cli: &Cli, a: &StatusArgs) -> Result<(), Failure> {
    let path = a.dev.device.as_path();
    let tl_path = timeline_path(a.timeline.as_deref());
    if let Some(c) = luod_client(cli) {
        let s = c.status()?;
        if cli.json {
            let mut v = status_json(&s);
            status_timeline(&tl_path, Some(&mut v));
            println!("{v}");
        } else {
            if s.device_ok {
                println!("luod ({}): LUO available", cli.socket.display());
            } else {
                println!("luod ({}): LUO not usable: {}", cli.socket.display(), s.device_error);
            }
            match (s.handed_over, s.live_update_number) {
                (Some(true), n) => println!(
                    "the previous kernel handed sessions over{}",
                    n.map(|n| format!(" (live update number {n})")).unwrap_or_default()
                ),
                (Some(false), _) => println!("nothing was handed over by a previous kernel"),
                (None, _) => println!("whether a previous kernel handed anything over is unknown"),
            }
            println!(
                "outgoing: {} session(s), {} file(s), {}; incoming: {}; retrieved: {}",
                s.outgoing.sessions,
                s.outgoing.files,
                human_size(s.outgoing.bytes),
                s.incoming,
                s.retrieved
            );
            match s.keeper {
                Keeper::None => println!(
                    "warning: luod runs with neither a holder process nor systemd's fd store: its \
                     sessions die with it"
                ),
                k => println!("sessions survive a luod restart (kept by: {})", k.as_str()),
            }
            println!(
                "next kernel: {}; subscribers to kexec events: {}; you are uid {}",
                if s.kexec_loaded { "loaded" } else { "not loaded" },
                s.subscribers,
                s.uid
            );
            status_timeline(&tl_path, None);
        }
        return if s.device_ok { Ok(()) } else { Err(Failure("LUO is not usable".into())) };
    }
    let state = probe_device(path);
    let on = cmdline_has_liveupdate();
    if cli.json {
        let (st, why) = match &state {
            DevState::Available => ("available", String::new()),
            DevState::Busy => ("busy", String::new()),
            DevState::NotLuo(w) => ("not-luo", w.clone()),
            DevState::Unusable(w) => ("not-usable", w.clone()),
        };
        let mut v = json!({
            "via": "device",
            "device": path.display().to_string(),
            "state": st,
            "reason": why,
            "cmdline_liveupdate_on": on,
        });
        status_timeline(&tl_path, Some(&mut v));
        println!("{v}");
    } else {
        match &state {
            DevState::Available => println!("{}: available", path.display()),
            DevState::Busy => {
                println!("{}: busy (another process has it open, e.g. luod or a VMM agent)", path.display())
            }
            DevState::NotLuo(w) => println!("{}: not LUO ({w})", path.display()),
            DevState::Unusable(w) => println!("{}: not usable ({w})", path.display()),
        }
        if !on {
            println!("note: the kernel command line has no liveupdate=on");
        }
        status_timeline(&tl_path, None);
    }
    match state {
        DevState::Available | DevState::Busy => Ok(()),
        _ => Err(Failure("LUO is not usable".into())),
    }
}

fn entry_json(e: &Entry) -> Value {
    json!({
        "name": display_name(&e.name),
        "state": e.state.as_str(),
        "owner": e.owner,
        "files": e.files,
        "bytes": e.bytes,
    })
}

fn list(cli: &Cli) -> Result<(), Failure> {
    let c = luod_client(cli).ok_or_else(|| {
        Failure(format!(
            "list needs luod (no answer on {}): the kernel has no way to list sessions",
            cli.socket.display()
        ))
    })?;
    let l = c.list()?;
    if cli.json {
        println!("{}", Value::Array(l.iter().map(entry_json).collect()));
        return Ok(());
    }
    println!("{:<40} {:<10} {:>7} {:>6} {:>14}", "SESSION", "STATE", "OWNER", "FILES", "BYTES");
    for e in &l {
        println!(
            "{:<40} {:<10} {:>7} {:>6} {:>14}",
            display_name(&e.name),
            e.state.as_str(),
            e.owner.map_or("?".to_string(), |o| o.to_string()),
            e.files,
            e.bytes
        );
    }
    Ok(())
}

/// Copy `src` into a new memfd named after it.
fn memfd_from(path: &Path) -> Result<(OwnedFd, u64), Failure> {
    let name = path.file_name().map_or_else(|| "stdin".into(), |n| n.to_string_lossy().into_owned());
    let fd = memfd_create(format!("luoctl:{name}"), MemfdFlags::CLOEXEC)
        .map_err(ctx(format_args!("memfd_create for {}", path.display())))?;
    let mut mem = File::from(fd);
    let copied = if path == Path::new("-") {
        io::copy(&mut io::stdin().lock(), &mut mem)
    } else {
        let mut src = File::open(path).map_err(ctx(path.display()))?;
        io::copy(&mut src, &mut mem)
    }
    .map_err(ctx(format_args!("copying {} into a memfd", path.display())))?;
    Ok((mem.into(), copied))
}

fn open_for_preserve(path: &Path) -> io::Result<File> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => Ok(f),
        // Read-only is enough to preserve; write access is only tried first.
        Err(e) if matches!(e.kind(), io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem) => {
            File::open(path)
        }
        Err(e) => Err(e),
    }
}

fn create_via_luod(cli: &Cli, c: &Client, a: &CreateArgs) -> Result<(), Failure> {
    c.create(&a.session)?;
    let mut files = Vec::new();
    let result: Result<(), Failure> = (|| {
        for tp in &a.fd_files {
            let file = open_for_preserve(&tp.path).map_err(ctx(tp.path.display()))?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            c.preserve(&a.session, tp.token, &file)
                .map_err(|e| Failure(format!("token {:#x} ({}): {e}", tp.token, tp.path.display())))?;
            files.push((tp.token, size));
        }
        for tp in &a.memfds {
            let (mem, size) = memfd_from(&tp.path)?;
            c.preserve(&a.session, tp.token, &mem).map_err(|e| {
                Failure(format!("token {:#x} (memfd of {}): {e}", tp.token, tp.path.display()))
            })?;
            files.push((tp.token, size));
        }
        Ok(())
    })();
    if result.is_err() || a.hold == HoldMode::None {
        let _ = c.close(&a.session);
    }
    result?;
    if cli.json {
        let f: Vec<Value> = files.iter().map(|(t, b)| json!({"token": t, "bytes": b})).collect();
        let v = json!({"session": a.session, "via": "luod", "held": a.hold != HoldMode::None, "files": f});
        println!("{v}");
    } else {
        println!("created session {:?} in luod", a.session);
        for (t, b) in &files {
            println!("  token {t:#x}: preserved ({})", human_size(*b));
        }
        if a.hold == HoldMode::None {
            println!("not held (--hold none): session {:?} is closed again", a.session);
        } else {
            println!("session {:?} is held by luod until it is closed or the system kexecs", a.session);
        }
    }
    Ok(())
}

fn create(cli: &Cli, a: &CreateArgs) -> Result<(), Failure> {
    if let Some(c) = luod_client(cli) {
        return create_via_luod(cli, &c, a);
    }
    let dev_path = &a.dev.device;
    let dev = open_device(dev_path)?;
    let session = dev.create_session(&a.session)?;
    // Sessions live on without the device; free it for other users now.
    drop(dev);
    println!("created session {:?}", a.session);
    for tp in &a.fd_files {
        let file = open_for_preserve(&tp.path).map_err(ctx(tp.path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let what = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file)))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        session
            .preserve_fd(&file, tp.token)
            .map_err(|e| Failure(format!("token {:#x} ({}): {e}", tp.token, tp.path.display())))?;
        println!("  token {:#x}: preserved {} ({what}, {})", tp.token, tp.path.display(), human_size(size));
    }
    for tp in &a.memfds {
        let (mem, size) = memfd_from(&tp.path)?;
        session
            .preserve_fd(&mem, tp.token)
            .map_err(|e| Failure(format!("token {:#x} (memfd of {}): {e}", tp.token, tp.path.display())))?;
        println!(
            "  token {:#x}: preserved a memfd with a copy of {} ({})",
            tp.token,
            tp.path.display(),
            human_size(size)
        );
    }
    let nfiles = a.fd_files.len() + a.memfds.len();
    match a.hold {
        HoldMode::None => {
            drop(session);
            println!(
                "not held (--hold none): session {:?} and its {nfiles} file(s) are released again",
                a.session
            );
        }
        HoldMode::Background => {
            let mut child = liveupdate::holder::spawn(&[session.as_fd()], ["luoctl", "hold", &a.session])
                .map_err(ctx("starting the holder process"))?;
            drop(session);
            let pid = child.id();
            if let Err(e) = write_pidfile(a.pidfile.as_deref(), pid) {
                // Nobody could find the holder to release the session: stop it.
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failure(format!("{} (the holder was stopped, the session released)", e.0)));
            }
            println!(
                "session {:?} ({nfiles} file(s)) is held by background process {pid}: it is handed over \
                 by the next kexec, or released when that process is killed",
                a.session
            );
        }
        HoldMode::Foreground => {
            let pid = std::process::id();
            write_pidfile(a.pidfile.as_deref(), pid)?;
            println!(
                "holding session {:?} ({nfiles} file(s)) in this process ({pid}) until it is killed or the \
                 system kexecs",
                a.session
            );
            let _ = io::stdout().flush();
            loop {
                std::thread::park();
            }
        }
    }
    Ok(())
}

fn write_pidfile(path: Option<&Path>, pid: u32) -> Result<(), Failure> {
    if let Some(path) = path {
        std::fs::write(path, format!("{pid}\n")).map_err(ctx(path.display()))?;
    }
    Ok(())
}

fn copy_out(fd: &OwnedFd, out: &Path) -> io::Result<u64> {
    let mut src = File::from(fd.try_clone()?);
    src.seek(SeekFrom::Start(0))?;
    if out == Path::new("-") {
        let mut stdout = io::stdout().lock();
        let n = io::copy(&mut src, &mut stdout)?;
        stdout.flush()?;
        return Ok(n);
    }
    let mut dst = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(out)?;
    io::copy(&mut src, &mut dst)
}

fn retrieve(cli: &Cli, a: &RetrieveArgs) -> Result<(), Failure> {
    let dev_path = &a.dev.device;
    if !a.out.is_empty() && a.out.len() != a.token.len() {
        return Err(Failure(format!(
            "{} --out for {} --token: give one --out per --token, or none",
            a.out.len(),
            a.token.len()
        )));
    }
    let to_stdout = a.out.iter().any(|p| p == Path::new("-"));
    // With file data on stdout, the report goes to stderr.
    let say = |msg: String| {
        if to_stdout {
            eprintln!("{msg}");
        } else {
            println!("{msg}");
        }
    };
    let luod = luod_client(cli);
    let session = match &luod {
        Some(c) => {
            c.retrieve_session(&a.session)?;
            None
        }
        None => {
            let dev = open_device(dev_path)?;
            Some(dev.retrieve_session(&a.session)?)
        }
    };
    say(format!("retrieved session {:?}", a.session));
    let mut failures = 0;
    for (i, &token) in a.token.iter().enumerate() {
        let got = match (&session, &luod) {
            (Some(s), _) => s.retrieve_fd(token).map_err(|e| e.to_string()),
            (None, Some(c)) => c.retrieve_fd(&a.session, token).map_err(|e| e.to_string()),
            (None, None) => Err("no session".to_string()),
        };
        let fd = match got {
            Ok(fd) => fd,
            Err(e) => {
                failures += 1;
                say(format!("  token {token:#x}: {e}"));
                continue;
            }
        };
        let size = rustix::fs::fstat(&fd).map(|st| st.st_size as u64).unwrap_or(0);
        match a.out.get(i) {
            None => say(format!("  token {token:#x}: {}", human_size(size))),
            Some(out) => match copy_out(&fd, out) {
                Ok(n) => say(format!("  token {token:#x}: {} copied to {}", human_size(n), out.display())),
                Err(e) => {
                    failures += 1;
                    say(format!("  token {token:#x}: copying to {}: {e}", out.display()));
                }
            },
        }
    }
    match (&session, &luod) {
        (Some(s), _) => finish_or_close(s, a.finish, &a.session, say)?,
        (None, Some(c)) if a.finish => {
            c.finish(&a.session)?;
            say(format!("finished session {:?}: files that were not retrieved are released", a.session));
        }
        _ => say(format!("session {:?} stays retrieved in luod until `luoctl finish`", a.session)),
    }
    if failures > 0 {
        return Err(Failure(format!("{failures} token(s) failed")));
    }
    Ok(())
}

fn finish_or_close(
    session: &IncomingSession,
    explicit: bool,
    name: &str,
    say: impl Fn(String),
) -> Result<(), Failure> {
    if explicit {
        session.finish()?;
        say(format!("finished session {name:?}: files that were not retrieved are released"));
    } else {
        say(format!(
            "session {name:?} is finished when luoctl exits: files that were not retrieved are released"
        ));
    }
    Ok(())
}

fn finish(cli: &Cli, dev_path: &Path, name: &str) -> Result<(), Failure> {
    if let Some(c) = luod_client(cli) {
        c.retrieve_session(name)?;
        c.finish(name)?;
        println!("finished session {name:?}: files that were not retrieved are released");
        return Ok(());
    }
    let dev = open_device(dev_path)?;
    let session = dev.retrieve_session(name)?;
    drop(dev);
    finish_or_close(&session, true, name, |m| println!("{m}"))
}

/// `cmdline` with the kernel parameters `extra` of `--append`: before the
/// first standalone `--` (where init's arguments start), else at the end.
fn with_appended(cmdline: &str, extra: &str) -> String {
    liveupdate::cmdline::add_params(cmdline, extra)
}

fn do_kexec(cli: &Cli, a: &KexecArgs) -> Result<(), Failure> {
    if a.unload {
        kexec::unload().map_err(ctx("kexec_file_load(KEXEC_FILE_UNLOAD)"))?;
        println!("unloaded the kexec kernel");
        return Ok(());
    }
    if !a.exec {
        let kernel_path = a.kernel.as_deref().ok_or(Failure("--kernel is required".into()))?;
        let kernel = File::open(kernel_path).map_err(ctx(kernel_path.display()))?;
        let initrd = match &a.initrd {
            Some(p) => Some(File::open(p).map_err(ctx(p.display()))?),
            None => None,
        };
        let mut cmdline = match (&a.cmdline, a.reuse_cmdline) {
            (Some(c), _) => c.clone(),
            (None, true) => {
                std::fs::read_to_string("/proc/cmdline").map_err(ctx("/proc/cmdline"))?.trim_end().to_string()
            }
            (None, false) => String::new(),
        };
        if let Some(extra) = &a.append {
            cmdline = with_appended(&cmdline, extra);
        }
        if !liveupdate_on(&cmdline) {
            return Err(Failure(format!(
                "refusing: the new command line {cmdline:?} lacks liveupdate=on, so the next kernel would \
                 drop every session"
            )));
        }
        let report = match luod_client(cli) {
            // luod checks the device, writes its manifest and loads the kernel.
            Some(c) => {
                let mut flags = 0;
                if a.drop_incoming {
                    flags |= KEXEC_DROP_INCOMING;
                }
                if a.unverified {
                    flags |= KEXEC_UNVERIFIED;
                }
                Some(c.kexec_load(&kernel, initrd.as_ref().map(|f| f.as_fd()), &cmdline, flags)?)
            }
            None => {
                match probe_device(Path::new(Device::PATH)) {
                    DevState::Available | DevState::Busy => {}
                    DevState::NotLuo(w) | DevState::Unusable(w) => {
                        return Err(Failure(format!("refusing: LUO is not usable here: {w}")));
                    }
                }
                kexec::load(&kernel, initrd.as_ref().map(|f| f.as_fd()), &cmdline)
                    .map_err(ctx("kexec_file_load"))?;
                None
            }
        };
        if cli.json {
            let v = json!({
                "loaded": kernel_path.display().to_string(),
                "cmdline": cmdline,
                "handover": report.as_ref().map(handover_json),
            });
            println!("{v}");
        }
        match &report {
            Some(h) => eprintln!(
                "to hand over: {} session(s), {} file(s), {}{}",
                h.sessions,
                h.files,
                human_size(h.bytes),
                if h.dropped > 0 {
                    format!("; {} incoming session(s) not finished are dropped", h.dropped)
                } else {
                    String::new()
                }
            ),
            None => {
                eprintln!("to hand over: every session still open (without luod, luoctl cannot count them)")
            }
        }
        if cli.json {
            if a.load_only {
                return Ok(());
            }
        } else {
            println!(
                "loaded {}{} with command line {cmdline:?}",
                kernel_path.display(),
                a.initrd.as_ref().map(|p| format!(" and initrd {}", p.display())).unwrap_or_default()
            );
        }
        if a.load_only {
            if !cli.json {
                println!("not rebooting (--load-only): run `luoctl kexec --exec` to boot it");
            }
            return Ok(());
        }
    }
    println!("rebooting into the loaded kernel: open LUO sessions are handed over");
    let _ = io::stdout().flush();
    match kexec::exec() {
        Ok(never) => match never {},
        Err(e) => Err(Failure(format!(
            "reboot(LINUX_REBOOT_CMD_KEXEC): {e} (the kexec did not happen; sessions are still open)"
        ))),
    }
}

fn reboot(cli: &Cli, a: &RebootArgs) -> Result<(), Failure> {
    let c = luod_client(cli).ok_or_else(|| {
        Failure(format!(
            "reboot needs luod (no answer on {}); `luoctl kexec --exec` kexecs without notifying anyone",
            cli.socket.display()
        ))
    })?;
    let flags = if a.force { REBOOT_FORCE } else { 0 };
    if !cli.json {
        println!(
            "asking luod to kexec into the loaded kernel (subscribers have {} ms to acknowledge{})",
            a.timeout_ms,
            if a.force { "; --force: kexec even without" } else { "" }
        );
        let _ = io::stdout().flush();
    }
    c.reboot(a.timeout_ms, flags)?;
    // Success is normally never seen: the machine kexecs first.
    if cli.json {
        println!("{}", json!({"reboot": "accepted"}));
    } else {
        println!("luod accepted the reboot");
    }
    Ok(())
}

fn main() -> ExitCode {
    liveupdate::holder::serve_if_holder();
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Cmd::Status(a) => status(&cli, a),
        Cmd::List => list(&cli),
        Cmd::Create(a) => create(&cli, a),
        Cmd::Retrieve(a) => retrieve(&cli, a),
        Cmd::Finish { session, dev } => finish(&cli, &dev.device, session),
        Cmd::Kexec(a) => do_kexec(&cli, a),
        Cmd::Reboot(a) => reboot(&cli, a),
        Cmd::CheckImage(a) => return check_image::run(a, cli.json),
        Cmd::Timeline(a) => show_timeline(&cli, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("luoctl: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn tokens() {
        assert_eq!(parse_token("0"), Ok(0));
        assert_eq!(parse_token("0x1A"), Ok(0x1a));
        assert_eq!(parse_token("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_token("0xffffffffffffffff"), Ok(u64::MAX));
        assert!(parse_token("-1").is_err());
        assert!(parse_token("0x").is_err());
        assert!(parse_token("ten").is_err());
    }

    #[test]
    fn token_paths() {
        let tp: TokenPath = "0x10=/tmp/a=b".parse().unwrap();
        assert_eq!(tp, TokenPath { token: 0x10, path: "/tmp/a=b".into() });
        assert!("5".parse::<TokenPath>().is_err());
        assert!("5=".parse::<TokenPath>().is_err());
    }

    #[test]
    fn parses_create() {
        let cli = Cli::try_parse_from([
            "luoctl",
            "create",
            "--session",
            "vm1",
            "--fd-file",
            "1=/proc/1/fd/3",
            "--memfd",
            "0x2=img",
        ])
        .unwrap();
        let Cmd::Create(a) = cli.cmd else { panic!() };
        assert_eq!(a.session, "vm1");
        assert_eq!(a.fd_files[0].token, 1);
        assert_eq!(a.memfds[0].token, 2);
        assert_eq!(a.hold, HoldMode::Background);
        let cli = Cli::try_parse_from(["luoctl", "preserve", "-s", "x", "--hold", "none"]).unwrap();
        assert!(matches!(cli.cmd, Cmd::Create(CreateArgs { hold: HoldMode::None, .. })));
    }

    #[test]
    fn parses_retrieve_and_kexec() {
        let cli =
            Cli::try_parse_from(["luoctl", "retrieve", "-s", "vm1", "-t", "1", "-o", "/tmp/x", "-t", "0x2"])
                .unwrap();
        let Cmd::Retrieve(a) = cli.cmd else { panic!() };
        assert_eq!(a.token, vec![1, 2]);
        assert!(Cli::try_parse_from(["luoctl", "retrieve", "-s", "vm1"]).is_err());
        assert!(Cli::try_parse_from(["luoctl", "kexec"]).is_err());
        assert!(Cli::try_parse_from(["luoctl", "kexec", "--exec"]).is_ok());
        assert!(Cli::try_parse_from(["luoctl", "kexec", "--exec", "--kernel", "k"]).is_err());
        assert!(
            Cli::try_parse_from(["luoctl", "kexec", "-k", "k", "--cmdline", "a", "--reuse-cmdline"]).is_err()
        );
        let cli =
            Cli::try_parse_from(["luoctl", "kexec", "-k", "k", "--drop-incoming", "--unverified"]).unwrap();
        let Cmd::Kexec(a) = cli.cmd else { panic!() };
        assert!(a.drop_incoming && a.unverified);
        assert!(Cli::try_parse_from(["luoctl", "kexec", "--exec", "--unverified"]).is_err());
    }

    #[test]
    fn append_goes_before_init_arguments() {
        assert_eq!(
            with_appended("console=ttyS0 liveupdate=on", "quiet"),
            "console=ttyS0 liveupdate=on quiet"
        );
        assert_eq!(
            with_appended("console=ttyS0 -- test=t stage=1", "liveupdate=on"),
            "console=ttyS0 liveupdate=on -- test=t stage=1"
        );
        assert!(liveupdate_on(&with_appended("console=ttyS0 -- test=t", "liveupdate=on")));
        // Only the first `--` separates; a word that starts with `--` does not.
        assert_eq!(with_appended("a -- b -- c", "x=1"), "a x=1 -- b -- c");
        assert_eq!(with_appended("a --b", "x=1"), "a --b x=1");
        assert_eq!(with_appended("-- b", "x=1"), "x=1 -- b");
        assert_eq!(with_appended("", "x=1"), "x=1");
    }

    #[test]
    fn parses_reboot() {
        let cli = Cli::try_parse_from(["luoctl", "reboot"]).unwrap();
        let Cmd::Reboot(a) = cli.cmd else { panic!() };
        assert_eq!((a.timeout_ms, a.force), (10_000, false));
        let cli = Cli::try_parse_from(["luoctl", "reboot", "--timeout-ms", "250", "--force"]).unwrap();
        let Cmd::Reboot(a) = cli.cmd else { panic!() };
        assert_eq!((a.timeout_ms, a.force), (250, true));
        assert!(Cli::try_parse_from(["luoctl", "reboot", "--timeout-ms", "-1"]).is_err());
    }

    #[test]
    fn json_output() {
        let s = StatusInfo { version: 2, device_error: "a \"b\"\n".into(), uid: 7, ..StatusInfo::default() };
        let v: Value = serde_json::from_str(&status_json(&s).to_string()).unwrap();
        assert_eq!(v["device_error"], "a \"b\"\n");
        assert_eq!(v["handed_over"], Value::Null);
        assert_eq!(v["keeper"], "none");
        assert_eq!(v["uid"], 7);
        assert_eq!(v["outgoing"]["dropped_incoming"], 0);
        let e = Entry {
            name: b"a\xff".to_vec(),
            state: luod_client::State::Outgoing,
            owner: None,
            files: 1,
            bytes: 2,
        };
        assert_eq!(
            entry_json(&e).to_string(),
            r#"{"bytes":2,"files":1,"name":"a\\xff","owner":null,"state":"outgoing"}"#
        );
    }

    #[test]
    fn kexec_help_has_no_device() {
        let mut cmd = Cli::command();
        let help = cmd.find_subcommand_mut("kexec").unwrap().render_long_help().to_string();
        assert!(!help.contains("--device"), "{help}");
        let help = cmd.find_subcommand_mut("create").unwrap().render_long_help().to_string();
        assert!(help.contains("--device"));
    }

    #[test]
    fn dev_null_is_not_luo() {
        assert!(matches!(probe_device(Path::new("/dev/null")), DevState::NotLuo(_)));
        assert!(matches!(probe_device(Path::new("/nonexistent-luo")), DevState::Unusable(_)));
        assert!(matches!(probe_device(Path::new("/")), DevState::NotLuo(_)));
    }

    #[test]
    fn parses_timeline() {
        let cli = Cli::try_parse_from(["luoctl", "timeline"]).unwrap();
        assert!(matches!(cli.cmd, Cmd::Timeline(TimelineArgs { path: None })));
        let cli = Cli::try_parse_from(["luoctl", "timeline", "--json", "/tmp/t"]).unwrap();
        let Cmd::Timeline(a) = cli.cmd else { panic!() };
        assert_eq!((cli.json, a.path), (true, Some("/tmp/t".into())));
        let cli = Cli::try_parse_from(["luoctl", "status", "--timeline", "/tmp/t"]).unwrap();
        let Cmd::Status(a) = cli.cmd else { panic!() };
        assert_eq!(a.timeline, Some("/tmp/t".into()));
        assert_eq!(timeline_path(Some(Path::new("/x"))), Path::new("/x"));
        // A test-only flag.
        let help = Cli::command().find_subcommand_mut("status").unwrap().render_long_help().to_string();
        assert!(!help.contains("--timeline") && help.contains("--device"), "{help}");
    }

    #[test]
    fn timeline_json_output() {
        let t = Timeline::parse(
            "liveupdate 1 clock tsc 2000 continuous no\nout.reboot 0\nout.jump 50\nin.boot 0\n\
             in.retrieve memfd-v2 7 - files=3 busy_ns=4\nnew.kind 1\n",
        )
        .unwrap();
        let v = timeline_json(Path::new("/t"), &t);
        assert_eq!(v["path"], "/t");
        assert_eq!((v["live_update"].as_u64(), v["continuous"].as_bool()), (Some(1), Some(false)));
        assert_eq!(v["records"]["out.jump"], 50);
        assert_eq!(v["records"]["in.open"], Value::Null);
        assert_eq!(v["records"]["out.freeze"], json!([]));
        assert_eq!(
            v["records"]["in.retrieve"],
            json!([{"handler": "memfd-v2", "first": 7, "last": null, "files": 3, "busy_ns": 4}])
        );
        assert_eq!(v["ignored_lines"], 1);
        let rows = v["breakdown"].as_array().unwrap();
        assert_eq!(rows[0]["key"], "reboot_path");
        assert_eq!((rows[0]["state"].as_str(), rows[0]["ns"].as_u64()), (Some("measured"), Some(50)));
        let kexec = rows.iter().find(|r| r["key"] == "kexec_early_boot").unwrap();
        assert_eq!((kexec["state"].as_str(), &kexec["ns"]), (Some("unmeasured"), &Value::Null));
        assert!(kexec["why"].as_str().unwrap().starts_with("continuous no"));
        let r = rows.iter().find(|r| r["key"] == "retrieve").unwrap();
        assert_eq!(
            (r["handler"].as_str(), r["files"].as_u64(), r["busy_ns"].as_u64()),
            (Some("memfd-v2"), Some(3), Some(4))
        );
        assert_eq!(r["state"], "unmeasured");
        // status --json: the timeline, or null and why.
        let mut v = json!({});
        status_timeline(Path::new("/nonexistent-timeline"), Some(&mut v));
        assert_eq!(v["timeline"], Value::Null);
        assert!(v["timeline_error"].as_str().unwrap().starts_with("cannot read /nonexistent-timeline: "));
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(5), "5 bytes");
        assert_eq!(human_size(4096), "4.0 KiB (4096 bytes)");
    }
}
