// SPDX-License-Identifier: GPL-2.0
//! `luoctl check-image`: does a kernel image read what a live update hands
//! over? It prints the image's table of handover formats (the "LUO" ELF
//! note of vmlinux, see `luod::image`) and checks that it lists the LUO core
//! format and every `--require`d one.
//!
//! Exit status: 0 if it does; 1 if it does not, or if the image has no table
//! (a kernel that predates it: cannot verify); 2 if the image cannot be read
//! or is not a kernel image.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use luod::image::{self, Formats, CORE_COMPATIBLE};
use serde_json::json;

/// The arguments of `luoctl check-image`.
#[derive(Args, Debug)]
pub struct CheckImageArgs {
    /// The kernel image: an x86 bzImage (what kexec loads) or a vmlinux.
    #[arg(long, value_name = "FILE")]
    pub kernel: PathBuf,

    /// A handover format the image must read besides the LUO core's
    /// (e.g. memfd-v2, hugetlb-memfd-rs-v1 for a hugetlbfs memfd,
    /// vfio-pci-rs-v1); may be repeated.
    #[arg(long = "require", value_name = "COMPATIBLE")]
    pub require: Vec<String>,
}

/// What the check found.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The table lists every format needed.
    Accepts,
    /// The table lacks these.
    Missing(Vec<String>),
    /// The image has no table.
    NoTable,
}

impl Verdict {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Accepts => 0,
            Self::Missing(_) | Self::NoTable => 1,
        }
    }
}

/// The formats needed: the LUO core's, then the required ones, once each.
fn needed(require: &[String]) -> Vec<String> {
    let mut need = vec![CORE_COMPATIBLE.to_string()];
    for r in require {
        if !need.contains(r) {
            need.push(r.clone());
        }
    }
    need
}

fn verdict(table: Option<&Formats>, need: &[String]) -> Verdict {
    let Some(table) = table else {
        return Verdict::NoTable;
    };
    let missing: Vec<String> = need.iter().filter(|c| !table.accepts(c)).cloned().collect();
    if missing.is_empty() {
        Verdict::Accepts
    } else {
        Verdict::Missing(missing)
    }
}

/// Runs `luoctl check-image`, printing its result (as JSON with `json`).
pub fn run(args: &CheckImageArgs, json: bool) -> ExitCode {
    let path = args.kernel.display();
    let table = match File::open(&args.kernel) {
        Ok(f) => image::accepted_formats(f.as_fd()).map_err(|e| e.to_string()),
        Err(e) => Err(format!("cannot open it: {e}")),
    };
    let table = match table {
        Ok(t) => t,
        Err(e) => {
            if json {
                println!("{}", json!({"kernel": path.to_string(), "error": e}));
            }
            eprintln!("luoctl: error: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let need = needed(&args.require);
    let v = verdict(table.as_ref(), &need);
    // What the running kernel reads (and writes) that the image does not:
    // for information, its files may use none of them.
    let running = image::running_formats().ok().flatten();
    let not_in_image: Vec<&String> = match (&table, &running) {
        (Some(t), Some(r)) => r.compatibles.iter().filter(|c| !t.accepts(c)).collect(),
        _ => Vec::new(),
    };
    if json {
        let (accepted, missing) = match &v {
            Verdict::Accepts => (true, Vec::new()),
            Verdict::Missing(m) => (false, m.clone()),
            Verdict::NoTable => (false, Vec::new()),
        };
        println!(
            "{}",
            json!({
                "kernel": path.to_string(),
                "table": table.as_ref().map(|t| json!({"version": t.version, "compatibles": t.compatibles})),
                "needed": need,
                "accepted": accepted,
                "missing": missing,
                "running_not_in_image": not_in_image,
            })
        );
        return ExitCode::from(v.exit_code());
    }
    println!("kernel: {path}");
    match &table {
        Some(t) => {
            println!("handover formats it reads (table version {}):", t.version);
            for c in &t.compatibles {
                println!("  {c}");
            }
        }
        None => println!("no table: cannot verify"),
    }
    if !not_in_image.is_empty() {
        let list: Vec<&str> = not_in_image.iter().map(|s| s.as_str()).collect();
        println!("read by the running kernel, not by the image: {}", list.join(", "));
    }
    match &v {
        Verdict::Accepts => println!("ok: it reads {}", need.join(", ")),
        Verdict::Missing(m) => println!("not ok: it does not read {}", m.join(", ")),
        Verdict::NoTable => println!("not ok: the image has no table of handover formats"),
    }
    ExitCode::from(v.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(c: &[&str]) -> Formats {
        Formats { version: 1, compatibles: c.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn verdicts() {
        let t = table(&["kho-v4", "luo-v5", "memfd-v2"]);
        assert_eq!(verdict(Some(&t), &needed(&[])), Verdict::Accepts);
        assert_eq!(verdict(Some(&t), &needed(&["memfd-v2".into(), "memfd-v2".into()])), Verdict::Accepts);
        assert_eq!(
            verdict(Some(&t), &needed(&["vfio-pci-rs-v1".into()])),
            Verdict::Missing(vec!["vfio-pci-rs-v1".into()])
        );
        // memfd-v2 does not stand for a hugetlbfs memfd's format.
        assert_eq!(
            verdict(Some(&t), &needed(&["hugetlb-memfd-rs-v1".into()])),
            Verdict::Missing(vec!["hugetlb-memfd-rs-v1".into()])
        );
        assert_eq!(verdict(Some(&table(&["kho-v4"])), &needed(&[])), Verdict::Missing(vec!["luo-v5".into()]));
        assert_eq!(verdict(None, &needed(&[])), Verdict::NoTable);
        assert_eq!(Verdict::Accepts.exit_code(), 0);
        assert_eq!(Verdict::NoTable.exit_code(), 1);
    }
}
