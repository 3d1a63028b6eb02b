// SPDX-License-Identifier: GPL-2.0

//! The timeline of a live update: when each of its phases began and ended, in both kernels.
//!
//! The outgoing kernel stamps its reboot path into a page that it hands over as the KHO
//! subtree "luo-timeline-rs-v1": the entry of `liveupdate_reboot()`, each file handler's
//! freezes, the handover written, the start of device shutdown (a reboot notifier of the
//! lowest priority) and syscore shutdown, the last point before `machine_kexec()`. The
//! incoming kernel reads the page at its early initcall, checks it, and adds its own stamps:
//! that initcall, `/dev/liveupdate` registered, its first open, and every RETRIEVE_FD and
//! FINISH by handler. debugfs `liveupdate/timeline` shows the whole, in nanoseconds from the
//! start of the reboot path (see `Documentation/core-api/liveupdate-rust.rst`, "Timeline").
//!
//! The clock is the TSC on x86: a kexec resets no CPU, so it runs on from one kernel to the
//! next, and the gap between the two (the jump, purgatory, decompression and the new kernel's
//! setup up to its early initcalls) is measured as one interval. Elsewhere it is
//! `local_clock()`, which starts again in each kernel: then each kernel's part is shown on its
//! own and that gap is not measured.
//!
//! It stays off the hot paths: a stamp is one clock read and a store. Freezes and finishes are
//! timed per run of consecutive files of one handler, not per file; RETRIEVE_FD, a call per
//! file that restores its memory, takes two clock reads and the timeline lock.

use crate::{
    abi::{
        get_str,
        get_u64,
        put_u64,
        COMPAT_LEN, //
    },
    registry::Handler,
};
use core::fmt;
use kernel::{
    debugfs,
    kho::{
        bytes,
        IncomingPage,
        PreservedPage,
        Subtree,
        SubtreeName, //
    },
    prelude::*,
    sync::SetOnce,
};

extern "C" {
    /// The timeline's clock (`luo_glue.c`): the TSC on x86, else `local_clock()`.
    fn luo_rs_clock() -> u64;
    /// The clock's rate in kHz.
    fn luo_rs_clock_khz() -> u32;
    /// Whether the clock is the TSC.
    fn luo_rs_clock_is_tsc() -> bool;
}

/// Reads the timeline's clock.
pub(crate) fn now() -> u64 {
    // SAFETY: `luo_rs_clock` reads a clock; it can be called from any context.
    unsafe { luo_rs_clock() }
}

/// The name of the handed-over page: this format, version 1.
const SUBTREE_NAME: &CStr = c"luo-timeline-rs-v1";

/// The timeline's KHO subtree.
// SAFETY: "luo-timeline-rs-v1" names the timeline page of the Rust LUO, laid out as `page`
// below says; only this module adds it (`Timeline::publish`) and retrieves it
// (`read_incoming`), once per boot.
const SUBTREE: SubtreeName = unsafe { SubtreeName::new(SUBTREE_NAME) };

/// Clock kinds in the page.
const CLOCK_TSC: u64 = 1;
const CLOCK_LOCAL: u64 = 2;

/// The most handlers whose spans a phase records (the rest are not shown).
pub(crate) const SPAN_MAX: usize = 16;

/// Layout of the page (little-endian 64-bit words, byte offsets).
mod page {
    use super::*;

    /// Version: 1.
    pub(super) const VERSION: usize = 0;
    /// `CLOCK_TSC` or `CLOCK_LOCAL`.
    pub(super) const CLOCK: usize = 8;
    /// The clock's rate in kHz, in the outgoing kernel.
    pub(super) const KHZ: usize = 16;
    /// The outgoing points, in `OutPoint` order (0: not recorded).
    pub(super) const POINTS: usize = 24;
    /// How many freeze spans follow.
    pub(super) const NR_SPANS: usize = POINTS + 8 * OUT_POINTS;
    /// The spans: the handler's compatible (NUL-padded), then files, first, last, busy.
    pub(super) const SPANS: usize = NR_SPANS + 8;
    /// Size of a span.
    pub(super) const SPAN: usize = COMPAT_LEN + 32;

    const _: () = assert!(SPANS + SPAN_MAX * SPAN <= kernel::page::PAGE_SIZE);
}

/// Points of the outgoing kernel's reboot path.
#[derive(Clone, Copy)]
#[repr(usize)]
pub(crate) enum OutPoint {
    /// `liveupdate_reboot()` entered.
    Reboot = 0,
    /// Every session and the FLB table written.
    Serialized = 1,
    /// Device shutdown begins.
    Devices = 2,
    /// Syscore shutdown: the last point before `machine_kexec()`.
    Jump = 3,
}
const OUT_POINTS: usize = 4;
const OUT_NAMES: [&str; OUT_POINTS] = ["out.reboot", "out.serialized", "out.devices", "out.jump"];

/// Points of the incoming kernel.
#[derive(Clone, Copy)]
#[repr(usize)]
pub(crate) enum InPoint {
    /// LUO's early initcall.
    Boot = 0,
    /// `/dev/liveupdate` registered.
    Init = 1,
    /// The first open of `/dev/liveupdate` began...
    Open = 2,
    /// ... and ended (the previous kernel's sessions rebuilt).
    Opened = 3,
}
const IN_POINTS: usize = 4;
const IN_NAMES: [&str; IN_POINTS] = ["in.boot", "in.init", "in.open", "in.opened"];

/// Phases timed per handler.
#[derive(Clone, Copy)]
pub(crate) enum Phase {
    /// RETRIEVE_FD.
    Retrieve,
    /// FINISH (the files of a session, by their handlers).
    Finish,
}

/// Words of a compatible string.
const COMPAT_WORDS: usize = COMPAT_LEN / 8;

/// A compatible string, NUL padded, as the handover stores it (in native-endian words).
pub(crate) type Compat = [u64; COMPAT_WORDS];

// The two conversions index by word rather than zip a chunk iterator with the words: objtool
// cannot follow the zip adapter's constructor ("falls through to next function").
fn compat_bytes(c: &Compat) -> [u8; COMPAT_LEN] {
    let mut b = [0u8; COMPAT_LEN];
    for (i, w) in c.iter().enumerate() {
        let _ = bytes::put_ne_u64(&mut b, i * 8, *w);
    }
    b
}

fn compat_words(b: &[u8; COMPAT_LEN]) -> Compat {
    let mut c = [0u64; COMPAT_WORDS];
    for (i, w) in c.iter_mut().enumerate() {
        *w = bytes::ne_u64(b, i * 8).unwrap_or(0);
    }
    c
}

/// The calls of one handler in one phase: how many files, the start of the first, the end of
/// the last, and the time inside them (per run of consecutive files of the handler, so LUO's
/// loop over those files is included).
#[derive(Clone, Copy)]
pub(crate) struct Span {
    /// The handler's compatible, NUL padded, as words (compared without a call).
    compat: Compat,
    files: u64,
    first: u64,
    last: u64,
    busy: u64,
}

impl Span {
    const EMPTY: Self = Self {
        compat: [0; COMPAT_WORDS],
        files: 0,
        first: 0,
        last: 0,
        busy: 0,
    };
}

/// The spans of a phase, one per handler (at most [`SPAN_MAX`]).
#[derive(Clone, Copy)]
pub(crate) struct Spans {
    spans: [Span; SPAN_MAX],
    n: usize,
}

impl Spans {
    /// No span.
    pub(crate) const fn new() -> Self {
        Self {
            spans: [Span::EMPTY; SPAN_MAX],
            n: 0,
        }
    }

    /// Adds `files` calls of the handler `compat`, from `start` to `end`.
    fn add(&mut self, compat: &Compat, files: u64, start: u64, end: u64) {
        self.add_span(&Span {
            compat: *compat,
            files,
            first: start,
            last: end,
            busy: end.saturating_sub(start),
        });
    }

    /// Adds the calls of `s` to the span of its handler (a new one if there is room).
    fn add_span(&mut self, s: &Span) {
        let n = self.n;
        if let Some(x) = self.spans[..n].iter_mut().find(|x| x.compat == s.compat) {
            x.files = x.files.saturating_add(s.files);
            x.first = x.first.min(s.first);
            x.last = x.last.max(s.last);
            x.busy = x.busy.saturating_add(s.busy);
        } else if let Some(x) = self.spans.get_mut(n) {
            *x = *s;
            self.n = n + 1;
        }
    }

    /// Adds every span of `other`.
    fn merge(&mut self, other: &Spans) {
        for s in &other.spans[..other.n] {
            self.add_span(s);
        }
    }
}

/// Times runs of consecutive files of one handler (a freeze or a finish loop): one clock read
/// when the handler changes, none per file.
pub(crate) struct RunClock<'a> {
    spans: &'a mut Spans,
    /// The handler of the current run (its address identifies it), the run's file count and
    /// start.
    cur: Option<(*const Handler, u64, u64)>,
    /// The compatible of the current run's handler.
    compat: Compat,
}

impl<'a> RunClock<'a> {
    /// Starts timing into `spans`.
    pub(crate) fn new(spans: &'a mut Spans) -> Self {
        Self {
            spans,
            cur: None,
            compat: [0; COMPAT_WORDS],
        }
    }

    /// The next file is one of handler `h`.
    #[inline]
    pub(crate) fn file(&mut self, h: &Handler) {
        let id = core::ptr::from_ref(h);
        if let Some((cur, files, _)) = &mut self.cur {
            if *cur == id {
                *files += 1;
                return;
            }
        }
        let t = now();
        self.close(t);
        self.compat = *h.compat();
        self.cur = Some((id, 1, t));
    }

    /// Ends the current run at `t`.
    pub(crate) fn close(&mut self, t: u64) {
        if let Some((_, files, start)) = self.cur.take() {
            self.spans.add(&self.compat, files, start, t);
        }
    }
}

impl Drop for RunClock<'_> {
    fn drop(&mut self) {
        if self.cur.is_some() {
            self.close(now());
        }
    }
}

/// The outgoing page: published at late init, stamped on the reboot path.
struct Out {
    subtree: Subtree,
}

impl Out {
    fn write_header(page: &mut PreservedPage) {
        let b = page.bytes_mut();
        put_u64(b, page::VERSION, 1);
        // SAFETY: `luo_rs_clock_is_tsc` and `luo_rs_clock_khz` read constants of the clock.
        let (tsc, khz) = unsafe { (luo_rs_clock_is_tsc(), luo_rs_clock_khz()) };
        put_u64(b, page::CLOCK, if tsc { CLOCK_TSC } else { CLOCK_LOCAL });
        put_u64(b, page::KHZ, u64::from(khz));
    }

    fn bytes_mut(&mut self) -> &mut [u8; kernel::page::PAGE_SIZE] {
        self.subtree.page_mut().bytes_mut()
    }
}

/// The page for the next kernel, made outside the timeline's lock ([`Timeline::new_out`]).
pub(crate) struct OutPage(Out);

/// What the previous kernel recorded, checked.
#[derive(Clone, Copy)]
struct Previous {
    tsc: bool,
    /// The rate of the previous kernel's clock, in kHz (not 0).
    khz: u64,
    points: [u64; OUT_POINTS],
    freeze: Spans,
}

/// The timeline of this boot's live update, and the page for the next one.
pub(crate) struct Timeline {
    /// The previous kernel's live update number (0: a cold boot).
    num: u64,
    /// `None` if the previous kernel recorded nothing usable.
    prev: Option<Previous>,
    /// Whether the previous kernel handed over LUO state at all.
    updated: bool,
    inp: [u64; IN_POINTS],
    retrieve: Spans,
    finish: Spans,
    /// This kernel's page for the next (`None` until late init, or if it failed).
    out: Option<Out>,
}

impl Timeline {
    /// The timeline of this boot: `boot` is the early initcall's stamp, `num` the previous
    /// kernel's live update number, `updated` whether it handed over LUO state.
    pub(crate) fn new(boot: u64, num: u64, updated: bool) -> Self {
        let mut inp = [0; IN_POINTS];
        inp[InPoint::Boot as usize] = boot;
        let prev = if updated { read_incoming(boot) } else { None };
        Self {
            num,
            prev,
            updated,
            inp,
            retrieve: Spans::new(),
            finish: Spans::new(),
            out: None,
        }
    }

    /// Late init: the page for the next kernel, published (to hand to [`Timeline::set_out`]).
    pub(crate) fn new_out() -> Result<OutPage> {
        let mut page = PreservedPage::new()?;
        Out::write_header(&mut page);
        let subtree = Subtree::add(SUBTREE.name(), page, kernel::page::PAGE_SIZE)?;
        Ok(OutPage(Out { subtree }))
    }

    /// Stamps the outgoing points into `out` from now on.
    pub(crate) fn set_out(&mut self, out: OutPage) {
        self.out = Some(out.0);
    }

    /// Records an incoming point at `t`; only the first time for `Open` and `Opened`.
    pub(crate) fn mark_in(&mut self, p: InPoint, t: u64) {
        let slot = &mut self.inp[p as usize];
        if *slot == 0 {
            *slot = t;
        }
    }

    /// Records an outgoing point at `t`. `Reboot` starts a new record (a reboot path that
    /// failed before leaves nothing behind).
    pub(crate) fn mark_out(&mut self, p: OutPoint, t: u64) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let b = out.bytes_mut();
        if let OutPoint::Reboot = p {
            for i in 1..OUT_POINTS {
                put_u64(b, page::POINTS + 8 * i, 0);
            }
            put_u64(b, page::NR_SPANS, 0);
        }
        put_u64(b, page::POINTS + 8 * p as usize, t);
    }

    /// Records the handover written at `t`, with the freeze spans of the reboot path.
    pub(crate) fn serialized(&mut self, t: u64, freeze: &Spans) {
        self.mark_out(OutPoint::Serialized, t);
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let b = out.bytes_mut();
        for (i, s) in freeze.spans[..freeze.n].iter().enumerate() {
            let off = page::SPANS + i * page::SPAN;
            // Within the page: `SPAN_MAX` spans fit (see `page`).
            if let Some(c) = b.get_mut(off..off + COMPAT_LEN) {
                c.copy_from_slice(&compat_bytes(&s.compat));
            }
            put_u64(b, off + COMPAT_LEN, s.files);
            put_u64(b, off + COMPAT_LEN + 8, s.first);
            put_u64(b, off + COMPAT_LEN + 16, s.last);
            put_u64(b, off + COMPAT_LEN + 24, s.busy);
        }
        put_u64(b, page::NR_SPANS, freeze.n as u64);
    }

    /// Adds one call of handler `h` in `phase`, from `start` to `end`.
    pub(crate) fn add(&mut self, phase: Phase, h: &Handler, start: u64, end: u64) {
        self.spans_mut(phase).add(h.compat(), 1, start, end);
    }

    /// Adds the spans of a run-timed loop (`RunClock`) in `phase`.
    pub(crate) fn merge(&mut self, phase: Phase, spans: &Spans) {
        self.spans_mut(phase).merge(spans);
    }

    fn spans_mut(&mut self, phase: Phase) -> &mut Spans {
        match phase {
            Phase::Retrieve => &mut self.retrieve,
            Phase::Finish => &mut self.finish,
        }
    }
}

/// Reads and checks the previous kernel's page; `None` (with a warning if it is there but
/// unusable) if there is nothing usable. `boot` is this kernel's early stamp.
fn read_incoming(boot: u64) -> Option<Previous> {
    let (b, len) = match IncomingPage::retrieve_subtree(&SUBTREE) {
        Ok(v) => v,
        // A previous kernel without the timeline (the C LUO, or an older Rust one).
        Err(e) if e == ENOENT => return None,
        Err(e) => {
            pr_warn!("timeline: cannot retrieve the previous kernel's: {:?}\n", e);
            return None;
        }
    };
    match parse(b, len, boot) {
        Ok(p) => Some(p),
        Err(why) => {
            pr_warn!("timeline: dropped the previous kernel's: {}\n", why);
            None
        }
    }
}

/// Checks the previous kernel's page `b` (`len` bytes handed over). Nothing in it is trusted:
/// every count is bounded, every name checked, and the stamps must be in order.
fn parse(
    b: &[u8; kernel::page::PAGE_SIZE],
    len: usize,
    boot: u64,
) -> Result<Previous, &'static str> {
    if len < page::SPANS {
        return Err("too small");
    }
    if get_u64(b, page::VERSION) != 1 {
        return Err("unknown version");
    }
    // SAFETY: `luo_rs_clock_is_tsc` reads a constant of the clock.
    let tsc_here = unsafe { luo_rs_clock_is_tsc() };
    let tsc = match get_u64(b, page::CLOCK) {
        CLOCK_TSC => true,
        CLOCK_LOCAL => false,
        _ => return Err("unknown clock"),
    };
    let khz = get_u64(b, page::KHZ);
    if khz == 0 {
        return Err("no clock rate");
    }
    let mut points = [0u64; OUT_POINTS];
    for (i, p) in points.iter_mut().enumerate() {
        *p = get_u64(b, page::POINTS + 8 * i);
    }
    let reboot = points[OutPoint::Reboot as usize];
    if reboot == 0 {
        return Err("no reboot stamp");
    }
    // Recorded points (non-zero) are in order.
    let mut last = reboot;
    for &p in points.iter().skip(1).filter(|&&p| p != 0) {
        if p < last {
            return Err("stamps out of order");
        }
        last = p;
    }
    let n = get_u64(b, page::NR_SPANS);
    if n > SPAN_MAX as u64 || page::SPANS + n as usize * page::SPAN > len {
        return Err("bad span count");
    }
    let end = match points[OutPoint::Serialized as usize] {
        0 => last,
        s => s,
    };
    let mut freeze = Spans::new();
    for i in 0..n as usize {
        let off = page::SPANS + i * page::SPAN;
        let raw: [u8; COMPAT_LEN] = bytes::get(b, off).ok_or("a span is outside the page")?;
        if get_str(&raw).is_none() {
            return Err("a handler name is empty or not NUL-terminated");
        }
        let compat = compat_words(&raw);
        let s = Span {
            compat,
            files: get_u64(b, off + COMPAT_LEN),
            first: get_u64(b, off + COMPAT_LEN + 8),
            last: get_u64(b, off + COMPAT_LEN + 16),
            busy: get_u64(b, off + COMPAT_LEN + 24),
        };
        if s.files == 0 || s.first < reboot || s.last < s.first || s.last > end {
            return Err("a freeze span is out of order");
        }
        if s.busy > s.last - s.first {
            return Err("a freeze span is busier than it is long");
        }
        if freeze.spans[..freeze.n].iter().any(|x| x.compat == compat) {
            return Err("a handler has two freeze spans");
        }
        freeze.add_span(&s);
    }
    // One clock domain: the same clock in both kernels, running on.
    let tsc = tsc && tsc_here && last <= boot;
    Ok(Previous {
        tsc,
        khz,
        points,
        freeze,
    })
}

/// A clock value to nanoseconds, at `khz` kHz (saturating).
fn to_ns(cycles: u64, khz: u64) -> u64 {
    if khz == 0 {
        return 0;
    }
    let whole = (cycles / khz).saturating_mul(1_000_000);
    whole.saturating_add((cycles % khz) * 1_000_000 / khz)
}

/// A stamp as shown: nanoseconds since `origin`, or `-` if not recorded (0).
struct Stamp {
    t: u64,
    origin: u64,
    khz: u64,
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.t == 0 {
            return f.write_str("-");
        }
        write!(f, "{}", to_ns(self.t.saturating_sub(self.origin), self.khz))
    }
}

/// Writes lines, separated by newlines (the debugfs file adds the last one).
struct Lines<'a, 'b> {
    f: &'a mut fmt::Formatter<'b>,
    first: bool,
}

impl Lines<'_, '_> {
    fn line(&mut self, args: fmt::Arguments<'_>) -> fmt::Result {
        if !self.first {
            self.f.write_str("\n")?;
        }
        self.first = false;
        self.f.write_fmt(args)
    }

    fn spans(&mut self, name: &str, spans: &Spans, origin: u64, khz: u64) -> fmt::Result {
        for s in &spans.spans[..spans.n] {
            let raw = compat_bytes(&s.compat);
            let compat = get_str(&raw).and_then(|c| c.to_str().ok()).unwrap_or("?");
            self.line(format_args!(
                "{} {} {} {} files={} busy_ns={}",
                name,
                compat,
                Stamp {
                    t: s.first,
                    origin,
                    khz
                },
                Stamp {
                    t: s.last,
                    origin,
                    khz
                },
                s.files,
                to_ns(s.busy, khz)
            ))?;
        }
        Ok(())
    }
}

impl Timeline {
    /// Writes the debugfs file: see the module documentation and the rst for the format.
    pub(crate) fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: `luo_rs_clock_is_tsc` and `luo_rs_clock_khz` read constants of the clock.
        let (tsc, khz) = unsafe { (luo_rs_clock_is_tsc(), u64::from(luo_rs_clock_khz())) };
        let continuous = self.prev.is_some_and(|p| p.tsc);
        let mut w = Lines { f, first: true };
        w.line(format_args!(
            "liveupdate {} clock {} {} kHz continuous {}",
            self.num,
            if tsc { "tsc" } else { "local" },
            khz,
            if continuous { "yes" } else { "no" }
        ))?;
        let boot = self.inp[InPoint::Boot as usize];
        let out_origin = self.prev.map_or(0, |p| p.points[OutPoint::Reboot as usize]);
        let in_origin = if continuous { out_origin } else { boot };
        let st = |t: u64, origin: u64| Stamp { t, origin, khz };
        if self.updated {
            // The previous kernel's points at its own clock's rate.
            let points = self.prev.map_or([0; OUT_POINTS], |p| p.points);
            let freeze = self.prev.map_or(Spans::new(), |p| p.freeze);
            let out_khz = self.prev.map_or(khz, |p| p.khz);
            let ost = |t: u64| Stamp {
                t,
                origin: out_origin,
                khz: out_khz,
            };
            w.line(format_args!("{} {}", OUT_NAMES[0], ost(points[0])))?;
            w.spans("out.freeze", &freeze, out_origin, out_khz)?;
            for (name, &t) in OUT_NAMES.iter().zip(points.iter()).skip(1) {
                w.line(format_args!("{} {}", name, ost(t)))?;
            }
        }
        for (name, &t) in IN_NAMES.iter().zip(self.inp.iter()) {
            w.line(format_args!("{} {}", name, st(t, in_origin)))?;
        }
        w.spans("in.retrieve", &self.retrieve, in_origin, khz)?;
        w.spans("in.finish", &self.finish, in_origin, khz)
    }
}

/// The debugfs file's contents: the global LUO's timeline.
struct View;

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::luo() {
            Ok(l) => l.timeline().show(f),
            Err(_) => Ok(()),
        }
    }
}

/// debugfs `liveupdate/timeline`, kept for the kernel's life.
static DEBUGFS: SetOnce<Pin<KBox<debugfs::File<View>>>> = SetOnce::new();

/// Late init: creates debugfs `liveupdate/timeline` (a failure only costs the file).
pub(crate) fn debugfs_init() {
    let dir = kernel::liveupdate::debugfs_dir();
    match KBox::pin_init(dir.read_only_file(c"timeline", View), GFP_KERNEL) {
        Ok(file) => {
            DEBUGFS.populate(file);
        }
        Err(e) => pr_warn!("timeline: no debugfs file: {:?}\n", e),
    }
}

#[kunit_tests(luo_rs_timeline)]
mod tests {
    use super::*;

    /// A sound page: reboot at 100, a freeze span of memfd-v2, serialized at 300, devices at
    /// 400, jump at 500.
    fn page() -> KBox<[u8; kernel::page::PAGE_SIZE]> {
        let mut b = match KBox::new([0u8; kernel::page::PAGE_SIZE], GFP_KERNEL) {
            Ok(b) => b,
            Err(_) => panic!("no memory for the test page"),
        };
        put_u64(&mut b[..], page::VERSION, 1);
        put_u64(&mut b[..], page::CLOCK, CLOCK_TSC);
        put_u64(&mut b[..], page::KHZ, 1_000_000);
        for (i, t) in [100u64, 300, 400, 500].iter().enumerate() {
            put_u64(&mut b[..], page::POINTS + 8 * i, *t);
        }
        put_u64(&mut b[..], page::NR_SPANS, 1);
        b[page::SPANS..page::SPANS + 9].copy_from_slice(b"memfd-v2\0");
        let s = page::SPANS + COMPAT_LEN;
        for (i, v) in [3u64, 150, 250, 90].iter().enumerate() {
            put_u64(&mut b[..], s + 8 * i, *v);
        }
        b
    }

    fn parsed(b: &[u8; kernel::page::PAGE_SIZE]) -> Result<Previous, &'static str> {
        parse(b, kernel::page::PAGE_SIZE, 1000)
    }

    #[test]
    fn a_sound_page_is_taken() {
        let b = page();
        let p = parsed(&b);
        assert!(p.is_ok());
        if let Ok(p) = p {
            assert_eq!(p.points, [100, 300, 400, 500]);
            assert_eq!(p.freeze.n, 1);
            assert_eq!(p.freeze.spans[0].files, 3);
        }
        // Too short a blob.
        assert!(parse(&b, page::SPANS - 1, 1000).is_err());
    }

    #[test]
    fn every_corruption_is_refused() {
        type Corrupt = fn(&mut [u8]);
        let cases: [(&str, Corrupt); 10] = [
            ("version", |b| put_u64(b, page::VERSION, 2)),
            ("clock", |b| put_u64(b, page::CLOCK, 7)),
            ("clock rate", |b| put_u64(b, page::KHZ, 0)),
            ("no reboot stamp", |b| put_u64(b, page::POINTS, 0)),
            ("points out of order", |b| {
                put_u64(b, page::POINTS + 24, 350)
            }),
            ("span count", |b| {
                put_u64(b, page::NR_SPANS, SPAN_MAX as u64 + 1)
            }),
            ("name without NUL", |b| {
                b[page::SPANS..page::SPANS + COMPAT_LEN].fill(b'x');
            }),
            ("no file", |b| put_u64(b, page::SPANS + COMPAT_LEN, 0)),
            ("span after serialized", |b| {
                put_u64(b, page::SPANS + COMPAT_LEN + 16, 301)
            }),
            ("busier than long", |b| {
                put_u64(b, page::SPANS + COMPAT_LEN + 24, 101)
            }),
        ];
        for (what, corrupt) in cases {
            let mut b = page();
            corrupt(&mut b[..]);
            // The case's name in the failure message.
            assert_eq!((what, parsed(&b).is_err()), (what, true));
        }
        // Two spans of one handler.
        let mut b = page();
        put_u64(&mut b[..], page::NR_SPANS, 2);
        b.copy_within(
            page::SPANS..page::SPANS + page::SPAN,
            page::SPANS + page::SPAN,
        );
        assert!(parsed(&b).is_err());
    }

    #[test]
    fn nanoseconds_saturate() {
        assert_eq!(to_ns(3_000, 3_000_000), 1_000);
        assert_eq!(to_ns(u64::MAX, 1), u64::MAX);
        assert_eq!(to_ns(5, 0), 0);
    }
}
