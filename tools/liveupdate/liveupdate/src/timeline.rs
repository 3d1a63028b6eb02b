// SPDX-License-Identifier: GPL-2.0
//! The kernel's live update timeline, `/sys/kernel/debug/liveupdate/timeline`
//! (debugfs, root-only): parsed into a [`Timeline`], and the blackout broken
//! down into [`Row`]s.
//!
//! The file is text, one record per line, fields separated by spaces:
//!
//! ```text
//! liveupdate <N> clock <tsc|local> <rate> kHz continuous <yes|no>
//! out.reboot <t>
//! out.freeze <handler> <first> <last> files=<n> busy_ns=<ns>      (per handler)
//! out.serialized <t>
//! out.devices <t>
//! out.jump <t>
//! in.boot <t>
//! in.init <t>
//! in.open <t>
//! in.opened <t>
//! in.retrieve <handler> <first> <last> files=<n> busy_ns=<ns>     (per handler)
//! in.finish <handler> <first> <last> files=<n> busy_ns=<ns>       (per handler)
//! ```
//!
//! Times are nanoseconds since `out.reboot` when `continuous yes`; with
//! `continuous no`, out.* times are relative to `out.reboot` and in.* times
//! to `in.boot`, and the gap between the kernels is unmeasured. A time is
//! `-` when it was not recorded. Lines of an unknown kind, and fields after
//! the known ones, are ignored (a newer kernel may add them); a known line
//! that does not parse is an error naming its line number. The `kHz` unit
//! of the header may be left out.
//!
//! Only `std` is used here: `luo-vmm-demo` includes this file too (with
//! `#[path]`) to print the same breakdown in `make demo`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where the kernel exposes the timeline.
pub const DEFAULT_PATH: &str = "/sys/kernel/debug/liveupdate/timeline";

/// Environment variable that overrides [`DEFAULT_PATH`] (for tests).
pub const PATH_ENV: &str = "LUOCTL_TIMELINE";

/// A single point in time of the live update (a `<name> <t>` line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// The old kernel enters the LUO reboot path (time 0).
    OutReboot,
    /// All sessions and FLBs are written.
    OutSerialized,
    /// Device shutdown begins.
    OutDevices,
    /// The last point recorded before the jump into the new kernel.
    OutJump,
    /// The new kernel's LUO early initcall.
    InBoot,
    /// `/dev/liveupdate` is registered.
    InInit,
    /// The first open of `/dev/liveupdate` began.
    InOpen,
    /// The first open of `/dev/liveupdate` finished (deserialized).
    InOpened,
}

impl Point {
    /// Every point, in the order of the file.
    pub const ALL: [Point; 8] = [
        Point::OutReboot,
        Point::OutSerialized,
        Point::OutDevices,
        Point::OutJump,
        Point::InBoot,
        Point::InInit,
        Point::InOpen,
        Point::InOpened,
    ];

    /// The record name, e.g. `out.reboot`.
    pub fn name(self) -> &'static str {
        match self {
            Point::OutReboot => "out.reboot",
            Point::OutSerialized => "out.serialized",
            Point::OutDevices => "out.devices",
            Point::OutJump => "out.jump",
            Point::InBoot => "in.boot",
            Point::InInit => "in.init",
            Point::InOpen => "in.open",
            Point::InOpened => "in.opened",
        }
    }

    fn from_name(s: &str) -> Option<Point> {
        Point::ALL.into_iter().find(|p| p.name() == s)
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The per-handler phases (a `<name> <handler> <first> <last> files=<n>
/// busy_ns=<ns>` line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `out.freeze`: the handler's freeze calls in the old kernel.
    Freeze,
    /// `in.retrieve`: RETRIEVE_FD calls reaching the handler.
    Retrieve,
    /// `in.finish`: the handler's finish calls.
    Finish,
}

impl Phase {
    /// Every phase, in the order of the file.
    pub const ALL: [Phase; 3] = [Phase::Freeze, Phase::Retrieve, Phase::Finish];

    /// The record name, e.g. `out.freeze`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Freeze => "out.freeze",
            Phase::Retrieve => "in.retrieve",
            Phase::Finish => "in.finish",
        }
    }

    /// The short name used in breakdown rows: `freeze`, `retrieve`, `finish`.
    pub fn verb(self) -> &'static str {
        match self {
            Phase::Freeze => "freeze",
            Phase::Retrieve => "retrieve",
            Phase::Finish => "finish",
        }
    }

    fn from_name(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// One handler's calls in a [`Phase`]: from the start of the first to the
/// end of the last, and the time spent inside the handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerSpan {
    /// The file handler's compatible string, e.g. `memfd-v2`.
    pub handler: String,
    /// Start of its first call (ns), if recorded.
    pub first: Option<u64>,
    /// End of its last call (ns), if recorded.
    pub last: Option<u64>,
    /// Files it handled.
    pub files: u64,
    /// Time inside its calls (ns).
    pub busy_ns: u64,
}

/// The parsed timeline file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// The live update number of this boot (0 after a cold boot).
    pub live_update: u64,
    /// The clock the times come from (`tsc`, `local`).
    pub clock: String,
    /// That clock's frequency in kHz.
    pub khz: u64,
    /// Whether out.* and in.* times are on one clock (from `out.reboot`).
    pub continuous: bool,
    points: [Option<u64>; Point::ALL.len()],
    /// `out.freeze` lines, in file order.
    pub freeze: Vec<HandlerSpan>,
    /// `in.retrieve` lines, in file order.
    pub retrieve: Vec<HandlerSpan>,
    /// `in.finish` lines, in file order.
    pub finish: Vec<HandlerSpan>,
    /// Lines of an unknown kind, ignored.
    pub ignored_lines: usize,
}

/// Why a timeline does not parse: the line (from 1) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

impl std::error::Error for ParseError {}

/// Why the timeline file could not be had.
#[derive(Debug)]
pub enum ReadError {
    /// It cannot be read (no debugfs, not root, a kernel without it).
    Io(PathBuf, io::Error),
    /// It was read but does not parse.
    Malformed(PathBuf, ParseError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            ReadError::Malformed(p, e) => write!(f, "{} is malformed: {e}", p.display()),
        }
    }
}

impl std::error::Error for ReadError {}

const HEADER: &str = "liveupdate <N> clock <CLOCK> <rate> kHz continuous <yes|no>";
const HANDLER_LINE: &str = "<handler> <first> <last> files=<n> busy_ns=<ns>";

/// A decimal u64 (digits only: no sign, no spaces).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl Timeline {
    /// The time of `p` (ns), if recorded.
    pub fn point(&self, p: Point) -> Option<u64> {
        self.points[p as usize]
    }

    /// The handler spans of `phase`.
    pub fn spans(&self, phase: Phase) -> &[HandlerSpan] {
        match phase {
            Phase::Freeze => &self.freeze,
            Phase::Retrieve => &self.retrieve,
            Phase::Finish => &self.finish,
        }
    }

    /// Read and parse the timeline file at `path`.
    pub fn read(path: &Path) -> Result<Timeline, ReadError> {
        let bytes = std::fs::read(path).map_err(|e| ReadError::Io(path.to_path_buf(), e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let bad = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..bad].iter().filter(|&&b| b == b'\n').count() + 1;
            ReadError::Malformed(path.to_path_buf(), ParseError { line, msg: "not UTF-8 text".into() })
        })?;
        Timeline::parse(&text).map_err(|e| ReadError::Malformed(path.to_path_buf(), e))
    }

    /// Parse the text of the timeline file.
    pub fn parse(text: &str) -> Result<Timeline, ParseError> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        let err = |line: usize, msg: String| ParseError { line, msg };
        let (_, header) = lines
            .next()
            .ok_or_else(|| err(1, format!("the file is empty (is LUO running?): expected `{HEADER}`")))?;
        let mut t = Timeline::parse_header(header).map_err(|m| err(1, m))?;
        // The points already seen (a `-` leaves its slot None).
        let mut seen = [false; Point::ALL.len()];
        for (n, line) in lines {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            let Some(&kind) = f.first() else {
                continue;
            };
            if let Some(p) = Point::from_name(kind) {
                let v = f.get(1).ok_or_else(|| err(n, format!("{kind}: missing the time")))?;
                let v = time(v).map_err(|m| err(n, format!("{kind}: {m}")))?;
                if std::mem::replace(&mut seen[p as usize], true) {
                    return Err(err(n, format!("a second {kind} line")));
                }
                t.points[p as usize] = v;
            } else if let Some(phase) = Phase::from_name(kind) {
                let span = handler_span(&f[1..]).map_err(|m| err(n, format!("{kind}: {m}")))?;
                if t.spans(phase).iter().any(|s| s.handler == span.handler) {
                    return Err(err(n, format!("a second {kind} line for handler {}", span.handler)));
                }
                match phase {
                    Phase::Freeze => t.freeze.push(span),
                    Phase::Retrieve => t.retrieve.push(span),
                    Phase::Finish => t.finish.push(span),
                }
            } else if kind == "liveupdate" {
                return Err(err(n, "a second header line".into()));
            } else {
                t.ignored_lines += 1;
            }
        }
        Ok(t)
    }

    fn parse_header(line: &str) -> Result<Timeline, String> {
        let mut f: Vec<&str> = line.split_ascii_whitespace().collect();
        let bad = |what: &str| format!("header: {what}: expected `{HEADER}`");
        // The unit after the rate is optional.
        if f.get(5) == Some(&"kHz") {
            f.remove(5);
        }
        if f.first() != Some(&"liveupdate") {
            return Err(bad("not a timeline header"));
        }
        let live_update = f.get(1).and_then(|s| number(s)).ok_or_else(|| bad("no live update number"))?;
        if f.get(2) != Some(&"clock") {
            return Err(bad("no `clock`"));
        }
        let clock = f.get(3).ok_or_else(|| bad("no clock name"))?.to_string();
        let khz = f.get(4).and_then(|s| number(s)).ok_or_else(|| bad("no clock frequency in kHz"))?;
        if f.get(5) != Some(&"continuous") {
            return Err(bad("no `continuous`"));
        }
        let continuous = match f.get(6) {
            Some(&"yes") => true,
            Some(&"no") => false,
            _ => return Err(bad("continuous is neither yes nor no")),
        };
        Ok(Timeline {
            live_update,
            clock,
            khz,
            continuous,
            points: [None; Point::ALL.len()],
            freeze: Vec::new(),
            retrieve: Vec::new(),
            finish: Vec::new(),
            ignored_lines: 0,
        })
    }
}

/// A time field: nanoseconds, or `-` (not recorded).
fn time(s: &str) -> Result<Option<u64>, String> {
    if s == "-" {
        return Ok(None);
    }
    number(s).map(Some).ok_or_else(|| format!("time {s:?} is neither nanoseconds nor -"))
}

/// The fields of a handler line after its kind.
fn handler_span(f: &[&str]) -> Result<HandlerSpan, String> {
    let missing = |what: &str| format!("missing {what}: expected `{HANDLER_LINE}`");
    let handler = f.first().ok_or_else(|| missing("the handler"))?.to_string();
    let first = time(f.get(1).ok_or_else(|| missing("<first>"))?).map_err(|m| format!("first: {m}"))?;
    let last = time(f.get(2).ok_or_else(|| missing("<last>"))?).map_err(|m| format!("last: {m}"))?;
    let field = |i: usize, key: &str| -> Result<u64, String> {
        let s = f.get(i).ok_or_else(|| missing(&format!("{key}=")))?;
        let v = s.strip_prefix(key).and_then(|r| r.strip_prefix('=')).ok_or_else(|| {
            format!("field {} is {s:?}, expected {key}=<n>: the line should read `{HANDLER_LINE}`", i + 1)
        })?;
        number(v).ok_or_else(|| format!("{key}={v:?} is not a number"))
    };
    Ok(HandlerSpan { handler, first, last, files: field(3, "files")?, busy_ns: field(4, "busy_ns")? })
}

/// A duration of the breakdown, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Nanoseconds.
    Ns(u64),
    /// An input is missing (which one is said), or the clocks of the two
    /// kernels are not continuous.
    Unmeasured(String),
    /// The end is before the start: the file contradicts itself.
    Inconsistent(String),
}

impl Measure {
    /// `measured`, `unmeasured` or `inconsistent`.
    pub fn state(&self) -> &'static str {
        match self {
            Measure::Ns(_) => "measured",
            Measure::Unmeasured(_) => "unmeasured",
            Measure::Inconsistent(_) => "inconsistent",
        }
    }

    /// The nanoseconds, if measured.
    pub fn ns(&self) -> Option<u64> {
        match self {
            Measure::Ns(n) => Some(*n),
            _ => None,
        }
    }

    /// Why it is not measured.
    pub fn why(&self) -> Option<&str> {
        match self {
            Measure::Ns(_) => None,
            Measure::Unmeasured(w) | Measure::Inconsistent(w) => Some(w),
        }
    }

    /// `end - start`, where `start` and `end` name the two times.
    fn between(start: (&str, Option<u64>), end: (&str, Option<u64>)) -> Measure {
        match (start.1, end.1) {
            (None, None) => Measure::Unmeasured(format!("{} and {} not recorded", start.0, end.0)),
            (None, _) => Measure::Unmeasured(format!("{} not recorded", start.0)),
            (_, None) => Measure::Unmeasured(format!("{} not recorded", end.0)),
            (Some(a), Some(b)) => match b.checked_sub(a) {
                Some(d) => Measure::Ns(d),
                None => Measure::Inconsistent(format!("{} ({b}) is before {} ({a})", end.0, start.0)),
            },
        }
    }
}

/// A handler row's counts (the row's [`Measure`] is its span).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerStat {
    /// The handler's compatible string.
    pub handler: String,
    /// Files it handled.
    pub files: u64,
    /// Time inside its calls (ns).
    pub busy_ns: u64,
}

/// One row of the blackout breakdown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Stable identifier: `reboot_path`, `freeze_serialize`, `freeze`,
    /// `device_shutdown`, `kexec_early_boot`, `boot_to_ready`,
    /// `until_first_open`, `first_open`, `retrieve`, `finish`,
    /// `total_to_last_retrieve`.
    pub key: &'static str,
    /// What it measures, e.g. `device shutdown` or `retrieve memfd-v2`.
    pub label: String,
    /// Nesting: 1 for a part of the row above it, 2 for a part of that.
    pub depth: usize,
    /// The records it spans, e.g. `out.devices -> out.jump`.
    pub from_to: String,
    /// The duration; for a handler row, from the start of its first call
    /// to the end of its last.
    pub value: Measure,
    /// For a handler row: its files and time inside the handler.
    pub handler: Option<HandlerStat>,
}

/// Why the rows across the two kernels are unmeasured without one clock.
const NOT_CONTINUOUS: &str = "continuous no: the gap from out.jump to in.boot is not measured";

impl Timeline {
    fn at(&self, p: Point) -> (&'static str, Option<u64>) {
        (p.name(), self.point(p))
    }

    fn row(key: &'static str, label: &str, depth: usize, from: Point, to: Point, value: Measure) -> Row {
        Row { key, label: label.to_string(), depth, from_to: format!("{from} -> {to}"), value, handler: None }
    }

    fn between_row(&self, key: &'static str, label: &str, depth: usize, from: Point, to: Point) -> Row {
        Timeline::row(key, label, depth, from, to, Measure::between(self.at(from), self.at(to)))
    }

    fn handler_rows(&self, phase: Phase, depth: usize) -> impl Iterator<Item = Row> + '_ {
        self.spans(phase).iter().map(move |s| Row {
            key: phase.verb(),
            label: format!("{} {}", phase.verb(), s.handler),
            depth,
            from_to: "first -> last".into(),
            value: Measure::between(("first", s.first), ("last", s.last)),
            handler: Some(HandlerStat { handler: s.handler.clone(), files: s.files, busy_ns: s.busy_ns }),
        })
    }

    /// The blackout, broken down: the old kernel's reboot path (freeze and
    /// serialize, each handler's freeze, device shutdown), the kexec, the
    /// new kernel's boot, the first open and each handler's retrieve and
    /// finish calls, and the total to the last retrieve.
    pub fn breakdown(&self) -> Vec<Row> {
        use Point::*;
        let mut rows = vec![
            self.between_row("reboot_path", "reboot path", 0, OutReboot, OutJump),
            self.between_row("freeze_serialize", "freeze and serialize", 1, OutReboot, OutSerialized),
        ];
        rows.extend(self.handler_rows(Phase::Freeze, 2));
        rows.push(self.between_row("device_shutdown", "device shutdown", 1, OutDevices, OutJump));
        let kexec = if self.continuous {
            Measure::between(self.at(OutJump), self.at(InBoot))
        } else {
            Measure::Unmeasured(NOT_CONTINUOUS.into())
        };
        rows.push(Timeline::row("kexec_early_boot", "kexec and early boot", 0, OutJump, InBoot, kexec));
        rows.push(self.between_row("boot_to_ready", "boot to LUO ready", 0, InBoot, InInit));
        rows.push(self.between_row("until_first_open", "until first open", 0, InInit, InOpen));
        rows.push(self.between_row("first_open", "first open (deserialize)", 0, InOpen, InOpened));
        rows.extend(self.handler_rows(Phase::Retrieve, 0));
        rows.extend(self.handler_rows(Phase::Finish, 0));
        rows.push(Row {
            key: "total_to_last_retrieve",
            label: "total to last retrieve".into(),
            depth: 0,
            from_to: "out.reboot -> last in.retrieve".into(),
            value: self.total_to_last_retrieve(),
            handler: None,
        });
        rows
    }

    fn total_to_last_retrieve(&self) -> Measure {
        if !self.continuous {
            return Measure::Unmeasured(NOT_CONTINUOUS.into());
        }
        if self.retrieve.is_empty() {
            return Measure::Unmeasured("no in.retrieve record".into());
        }
        let mut last = 0;
        for s in &self.retrieve {
            match s.last {
                Some(l) => last = last.max(l),
                None => return Measure::Unmeasured(format!("in.retrieve {}: last not recorded", s.handler)),
            }
        }
        Measure::between(self.at(Point::OutReboot), ("the last in.retrieve", Some(last)))
    }

    /// The breakdown as text: a title naming `path`, then one line per
    /// row, indented by two spaces (more for the parts of a row), with the
    /// label, the duration in milliseconds (`unmeasured` or `inconsistent`
    /// instead when there is none) and what it spans or why it is missing.
    /// A handler row shows the time inside the handler, its files and the
    /// span of its calls.
    pub fn render(&self, path: &str) -> Vec<String> {
        let mut out = vec![format!(
            "kernel timeline (from {path}): live update {}{}, clock {} {} kHz, continuous {}",
            self.live_update,
            if self.live_update == 0 { " (cold boot: nothing handed over)" } else { "" },
            self.clock,
            self.khz,
            if self.continuous { "yes" } else { "no" }
        )];
        let rows = self.breakdown();
        let width = rows.iter().map(|r| 2 * r.depth + r.label.len()).max().unwrap_or(0).max(26);
        for r in &rows {
            let (value, note) = match (&r.handler, &r.value) {
                (Some(h), span) => {
                    let span = match span {
                        Measure::Ns(n) => format!("span {}", ms(*n)),
                        m => format!("span {} ({})", m.state(), m.why().unwrap_or_default()),
                    };
                    let files = if h.files == 1 { "file" } else { "files" };
                    (ms(h.busy_ns), format!("in handler; {} {files}, {span}", h.files))
                }
                (None, Measure::Ns(n)) => (ms(*n), r.from_to.clone()),
                (None, m) => (m.state().to_string(), m.why().unwrap_or_default().to_string()),
            };
            out.push(format!(
                "  {:indent$}{:<w$} {value:>14}  {note}",
                "",
                r.label,
                indent = 2 * r.depth,
                w = width - 2 * r.depth
            ));
        }
        out
    }
}

/// Nanoseconds as milliseconds with three decimals (`12.345 ms`).
pub fn ms(ns: u64) -> String {
    format!("{}.{:03} ms", ns / 1_000_000, ns % 1_000_000 / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "\
liveupdate 2 clock tsc 2400000 kHz continuous yes
out.reboot 0
out.freeze memfd-v2 1000 5000 files=2 busy_ns=3000
out.freeze vfio-pci-rs-v1 6000 9000 files=1 busy_ns=2500
out.serialized 12000
out.devices 15000
out.jump 115000
in.boot 2115000
in.init 2415000
in.open 3000000
in.opened 3200000
in.retrieve memfd-v2 3300000 3500000 files=2 busy_ns=150000
in.retrieve vfio-pci-rs-v1 3600000 3700000 files=1 busy_ns=90000
in.finish memfd-v2 4000000 4100000 files=2 busy_ns=80000
";

    fn row<'a>(rows: &'a [Row], label: &str) -> &'a Row {
        rows.iter().find(|r| r.label == label).unwrap_or_else(|| panic!("no row {label:?} in {rows:#?}"))
    }

    fn ns(rows: &[Row], label: &str) -> Measure {
        row(rows, label).value.clone()
    }

    #[test]
    fn full_continuous() {
        let t = Timeline::parse(FULL).unwrap();
        assert_eq!((t.live_update, t.clock.as_str(), t.khz, t.continuous), (2, "tsc", 2_400_000, true));
        assert_eq!(t.point(Point::OutReboot), Some(0));
        assert_eq!(t.point(Point::InOpened), Some(3_200_000));
        assert_eq!(t.freeze.len(), 2);
        assert_eq!(
            t.freeze[1],
            HandlerSpan {
                handler: "vfio-pci-rs-v1".into(),
                first: Some(6000),
                last: Some(9000),
                files: 1,
                busy_ns: 2500
            }
        );
        assert_eq!((t.retrieve.len(), t.finish.len(), t.ignored_lines), (2, 1, 0));
        let rows = t.breakdown();
        assert_eq!(ns(&rows, "reboot path"), Measure::Ns(115_000));
        assert_eq!(ns(&rows, "freeze and serialize"), Measure::Ns(12_000));
        assert_eq!(ns(&rows, "device shutdown"), Measure::Ns(100_000));
        assert_eq!(ns(&rows, "kexec and early boot"), Measure::Ns(2_000_000));
        assert_eq!(ns(&rows, "boot to LUO ready"), Measure::Ns(300_000));
        assert_eq!(ns(&rows, "until first open"), Measure::Ns(585_000));
        assert_eq!(ns(&rows, "first open (deserialize)"), Measure::Ns(200_000));
        assert_eq!(ns(&rows, "total to last retrieve"), Measure::Ns(3_700_000));
        let f = row(&rows, "freeze memfd-v2");
        assert_eq!((f.key, f.depth, f.value.clone()), ("freeze", 2, Measure::Ns(4000)));
        assert_eq!(f.handler, Some(HandlerStat { handler: "memfd-v2".into(), files: 2, busy_ns: 3000 }));
        let r = row(&rows, "retrieve vfio-pci-rs-v1");
        assert_eq!(r.value, Measure::Ns(100_000));
        assert_eq!(r.handler.as_ref().map(|h| (h.files, h.busy_ns)), Some((1, 90_000)));
        assert_eq!(ns(&rows, "finish memfd-v2"), Measure::Ns(100_000));
        // The freeze rows sit under "freeze and serialize", before device shutdown.
        let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "reboot path",
                "freeze and serialize",
                "freeze memfd-v2",
                "freeze vfio-pci-rs-v1",
                "device shutdown",
                "kexec and early boot",
                "boot to LUO ready",
                "until first open",
                "first open (deserialize)",
                "retrieve memfd-v2",
                "retrieve vfio-pci-rs-v1",
                "finish memfd-v2",
                "total to last retrieve"
            ]
        );
        let text = t.render(DEFAULT_PATH);
        assert_eq!(text.len(), rows.len() + 1);
        assert_eq!(
            text[0],
            "kernel timeline (from /sys/kernel/debug/liveupdate/timeline): live update 2, clock tsc 2400000 \
             kHz, continuous yes"
        );
        assert!(
            text[1].starts_with("  reboot path ") && text[1].ends_with(" 0.115 ms  out.reboot -> out.jump")
        );
        assert!(text[3].starts_with("      freeze memfd-v2 "), "{}", text[3]);
        assert!(text[3].ends_with(" 0.003 ms  in handler; 2 files, span 0.004 ms"), "{}", text[3]);
        // The values line up.
        let col = text[1].find(" ms").unwrap();
        assert!(text[1..].iter().all(|l| l.find(" ms") == Some(col)), "{text:#?}");
        // `luoctl status` output is grepped for "busy" and "available".
        assert!(text.iter().all(|l| !l.contains("busy") && !l.contains("available")));
    }

    #[test]
    fn not_continuous() {
        let text = FULL
            .replace("continuous yes", "continuous no")
            .replace("in.boot 2115000", "in.boot 0")
            .replace("in.init 2415000", "in.init 300000");
        let t = Timeline::parse(&text).unwrap();
        assert!(!t.continuous);
        let rows = t.breakdown();
        assert!(
            matches!(ns(&rows, "kexec and early boot"), Measure::Unmeasured(w) if w.contains("continuous no"))
        );
        assert!(matches!(ns(&rows, "total to last retrieve"), Measure::Unmeasured(_)));
        // Within a kernel, the rows are still measured.
        assert_eq!(ns(&rows, "reboot path"), Measure::Ns(115_000));
        assert_eq!(ns(&rows, "boot to LUO ready"), Measure::Ns(300_000));
        assert_eq!(ns(&rows, "until first open"), Measure::Ns(2_700_000));
        let out = t.render("x");
        assert!(out
            .iter()
            .any(|l| l.contains("kexec and early boot") && l.contains(" unmeasured  continuous no")));
    }

    #[test]
    fn unrecorded_points() {
        // A previous kernel without telemetry, and nobody opened the device yet.
        let t = Timeline::parse(
            "liveupdate 1 clock local 1000000 kHz continuous no\n\
             out.reboot -\nout.serialized -\nout.devices -\nout.jump -\n\
             in.boot 0\nin.init 5000\nin.open -\nin.opened -\n",
        )
        .unwrap();
        assert_eq!(t.point(Point::OutJump), None);
        assert_eq!(t.point(Point::InInit), Some(5000));
        let rows = t.breakdown();
        assert_eq!(
            ns(&rows, "reboot path"),
            Measure::Unmeasured("out.reboot and out.jump not recorded".into())
        );
        assert_eq!(ns(&rows, "boot to LUO ready"), Measure::Ns(5000));
        assert_eq!(ns(&rows, "until first open"), Measure::Unmeasured("in.open not recorded".into()));
        assert_eq!(
            ns(&rows, "first open (deserialize)"),
            Measure::Unmeasured("in.open and in.opened not recorded".into())
        );
        assert_eq!(ns(&rows, "total to last retrieve").state(), "unmeasured");
        // Continuous, but a point missing: that row alone is unmeasured.
        let t = Timeline::parse(&FULL.replace("out.devices 15000", "out.devices -")).unwrap();
        let rows = t.breakdown();
        assert_eq!(ns(&rows, "device shutdown"), Measure::Unmeasured("out.devices not recorded".into()));
        assert_eq!(ns(&rows, "reboot path"), Measure::Ns(115_000));
        // A handler line with an unrecorded end: its span only.
        let t = Timeline::parse(&FULL.replace("3600000 3700000", "3600000 -")).unwrap();
        let rows = t.breakdown();
        assert_eq!(ns(&rows, "retrieve vfio-pci-rs-v1"), Measure::Unmeasured("last not recorded".into()));
        assert!(matches!(ns(&rows, "total to last retrieve"), Measure::Unmeasured(w) if w.contains("vfio")));
        // No retrieve yet: nothing to total.
        let text: String =
            FULL.lines().filter(|l| !l.starts_with("in.retrieve")).map(|l| l.to_string() + "\n").collect();
        let t = Timeline::parse(&text).unwrap();
        assert_eq!(
            ns(&t.breakdown(), "total to last retrieve"),
            Measure::Unmeasured("no in.retrieve record".into())
        );
        // A line left out altogether is as unrecorded.
        let t = Timeline::parse(&FULL.replace("in.init 2415000\n", "")).unwrap();
        assert_eq!(
            ns(&t.breakdown(), "boot to LUO ready"),
            Measure::Unmeasured("in.init not recorded".into())
        );
    }

    #[test]
    fn cold_boot() {
        let t = Timeline::parse(
            "liveupdate 0 clock tsc 3000000 kHz continuous no\n\
             in.boot 0\nin.init 120000\nin.open -\nin.opened -",
        )
        .unwrap();
        assert_eq!((t.live_update, t.continuous), (0, false));
        assert!(t.freeze.is_empty() && t.retrieve.is_empty() && t.finish.is_empty());
        let rows = t.breakdown();
        assert_eq!(ns(&rows, "freeze and serialize").state(), "unmeasured");
        assert_eq!(ns(&rows, "boot to LUO ready"), Measure::Ns(120_000));
        assert_eq!(ns(&rows, "total to last retrieve").state(), "unmeasured");
        assert!(t.render("p")[0].contains("live update 0 (cold boot"));
        // Just the header is a valid file too.
        let t = Timeline::parse("liveupdate 0 clock tsc 3000000 continuous no").unwrap();
        assert!(t.breakdown().iter().all(|r| r.value.state() == "unmeasured"));
    }

    #[test]
    fn unknown_lines_ignored() {
        let text = FULL.replace(
            "out.serialized 12000\n",
            "out.serialized 12000 and more\nout.flb luo-flb 1 2 3\n\nfuture.thing\n",
        ) + "in.later x y z\n";
        let t = Timeline::parse(&text.replace(" continuous yes", " continuous yes extra=1")).unwrap();
        assert_eq!(t.ignored_lines, 3);
        // Without the unit.
        let t = Timeline::parse(&text.replace(" kHz continuous", " continuous")).unwrap();
        assert_eq!(t.ignored_lines, 3);
        let mut want = Timeline::parse(FULL).unwrap();
        want.ignored_lines = 3;
        assert_eq!(t, want);
    }

    fn parse_err(text: &str) -> ParseError {
        match Timeline::parse(text) {
            Ok(t) => panic!("parsed {text:?} into {t:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn malformed() {
        let e = parse_err(&FULL.replace("out.devices 15000", "out.devices 15x00"));
        assert_eq!(e.line, 6);
        assert!(e.to_string().starts_with("line 6: out.devices: time \"15x00\""), "{e}");
        assert_eq!(parse_err(&FULL.replace("in.boot 2115000", "in.boot")).line, 8);
        assert_eq!(parse_err(&FULL.replace("in.boot 2115000", "in.boot -5")).line, 8);
        assert_eq!(parse_err(&FULL.replace("in.boot 2115000", "in.boot +5")).line, 8);
        assert_eq!(parse_err(&FULL.replace("in.open 3000000", "in.open 99999999999999999999")).line, 10);
        // Handler lines: each missing or wrong field.
        for bad in [
            "out.freeze memfd-v2 1000 5000 files=2",
            "out.freeze memfd-v2 1000 5000 busy_ns=3000 files=2",
            "out.freeze memfd-v2 1000 5000 files=2 busy_ns=",
            "out.freeze memfd-v2 1000 5000 files=x busy_ns=3000",
            "out.freeze memfd-v2 1000 files=2 busy_ns=3000",
            "out.freeze memfd-v2 10z0 5000 files=2 busy_ns=3000",
            "out.freeze memfd-v2",
            "out.freeze",
        ] {
            let e = parse_err(&FULL.replace("out.freeze memfd-v2 1000 5000 files=2 busy_ns=3000", bad));
            assert_eq!(e.line, 3, "{bad}: {e}");
            assert!(e.msg.starts_with("out.freeze: "), "{bad}: {e}");
        }
        // Duplicates.
        assert_eq!(parse_err(&format!("{FULL}in.open -\n")).line, 15);
        assert_eq!(parse_err(&FULL.replace("in.open 3000000", "in.open -\nin.open 1")).line, 11);
        assert_eq!(parse_err(&format!("{FULL}in.finish memfd-v2 1 2 files=1 busy_ns=1\n")).line, 15);
        assert_eq!(parse_err(&format!("{FULL}liveupdate 2 clock tsc 1 continuous yes\n")).line, 15);
        // The header.
        for bad in [
            "",
            "\n",
            "out.reboot 0",
            "liveupdate",
            "liveupdate x clock tsc 1 continuous yes",
            "liveupdate 1 clock tsc continuous yes",
            "liveupdate 1 clock tsc 1 continuous maybe",
            "liveupdate 1 clock tsc 1 continuous",
            "liveupdate 1 clock tsc 1 kHz kHz continuous yes",
            "liveupdate 1 clock tsc kHz continuous yes",
            "liveupdate 1 tsc 1 continuous yes",
            "timeline 1 clock tsc 1 continuous yes",
        ] {
            let e = parse_err(bad);
            assert_eq!(e.line, 1, "{bad:?}: {e}");
        }
    }

    #[test]
    fn not_utf8() {
        let dir = std::env::temp_dir().join(format!("luoctl-timeline-{}", std::process::id()));
        std::fs::write(&dir, b"liveupdate 1 clock tsc 1 continuous yes\nin.boot \xff\n").unwrap();
        let e = Timeline::read(&dir).unwrap_err();
        let _ = std::fs::remove_file(&dir);
        assert!(matches!(&e, ReadError::Malformed(_, p) if p.line == 2), "{e}");
        let e = Timeline::read(Path::new("/nonexistent/timeline")).unwrap_err();
        assert!(matches!(&e, ReadError::Io(_, io) if io.kind() == io::ErrorKind::NotFound));
        assert!(e.to_string().starts_with("cannot read /nonexistent/timeline: "), "{e}");
    }

    #[test]
    fn inconsistent() {
        let t = Timeline::parse(&FULL.replace("in.opened 3200000", "in.opened 2900000")).unwrap();
        let rows = t.breakdown();
        assert_eq!(
            ns(&rows, "first open (deserialize)"),
            Measure::Inconsistent("in.opened (2900000) is before in.open (3000000)".into())
        );
        // The other rows are not affected.
        assert_eq!(ns(&rows, "until first open"), Measure::Ns(585_000));
        let out = t.render("p");
        assert!(out
            .iter()
            .any(|l| l.contains("first open (deserialize)") && l.contains(" inconsistent  in.opened")));
        // Every kind of difference is checked.
        for (from, to, label) in [
            ("out.reboot 0", "out.reboot 200000", "reboot path"),
            ("out.reboot 0", "out.reboot 13000", "freeze and serialize"),
            ("out.jump 115000", "out.jump 14000", "device shutdown"),
            ("in.boot 2115000", "in.boot 100000", "kexec and early boot"),
            ("in.init 2415000", "in.init 2000000", "boot to LUO ready"),
            ("in.open 3000000", "in.open 2000000", "until first open"),
            ("5000 files=2 busy_ns=3000", "500 files=2 busy_ns=3000", "freeze memfd-v2"),
            ("3500000 files=2", "3200000 files=2", "retrieve memfd-v2"),
            ("4100000 files=2", "3900000 files=2", "finish memfd-v2"),
        ] {
            let t = Timeline::parse(&FULL.replace(from, to)).unwrap();
            assert_eq!(ns(&t.breakdown(), label).state(), "inconsistent", "{label}");
        }
        let t = Timeline::parse(&FULL.replace("out.reboot 0", "out.reboot 5000000")).unwrap();
        assert_eq!(ns(&t.breakdown(), "total to last retrieve").state(), "inconsistent");
    }

    #[test]
    fn milliseconds() {
        assert_eq!(ms(0), "0.000 ms");
        assert_eq!(ms(999), "0.000 ms");
        assert_eq!(ms(1_234_567), "1.234 ms");
        assert_eq!(ms(u64::MAX), "18446744073709.551 ms");
    }
}
