// SPDX-License-Identifier: GPL-2.0
//! The demo's "VM state": what a VMM would save besides guest RAM (vCPU
//! registers, the memory layout), as a small JSON text in its own memfd.
//!
//! The registers are derived from the seed, so the next kernel can rebuild
//! the exact text from the seed, size and backing it parses out of it and
//! compare every byte.

use crate::backing::Backing;
use crate::pattern::word;

/// Number of vCPUs in the state.
pub const VCPUS: u64 = 2;

/// The VM described by a state text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vm {
    /// Seed of the guest RAM pattern (and of the registers).
    pub seed: u64,
    /// Size of guest RAM in bytes.
    pub ram_bytes: u64,
    /// What backs guest RAM: shmem or hugetlbfs pages of a size.
    pub backing: Backing,
}

impl Vm {
    /// The state text of this VM.
    pub fn render(&self, session: &str, ram_token: u64) -> String {
        let reg = |cpu: u64, n: u64| word(0x5eed_0000 + 16 * cpu + n, self.seed);
        let mut s = format!(
            "{{\n  \"vm\": \"{session}\",\n  \"seed\": \"{:#018x}\",\n  \"ram_bytes\": {},\n  \
             \"ram_backing\": \"{}\",\n  \"ram_token\": \"{ram_token:#x}\",\n  \"vcpus\": [\n",
            self.seed,
            self.ram_bytes,
            self.backing.name()
        );
        for cpu in 0..VCPUS {
            s += &format!(
                "    {{\"id\": {cpu}, \"rip\": \"{:#018x}\", \"rsp\": \"{:#018x}\", \"rflags\": \"{:#x}\", \
                 \"cr0\": \"{:#x}\", \"cr3\": \"{:#018x}\"}}{}\n",
                0xffff_ffff_8100_0000 | (reg(cpu, 0) & 0xff_ffff),
                0xffff_c900_0000_0000 | (reg(cpu, 1) & 0xffff_fff0),
                0x202 | (reg(cpu, 2) & 0x8d5),
                0x8005_0033u64,
                (reg(cpu, 3) % self.ram_bytes.max(4096)) & !0xfff,
                if cpu + 1 < VCPUS { "," } else { "" }
            );
        }
        s += "  ]\n}\n";
        s
    }

    /// Parse the seed, RAM size and backing out of a state text (the rest
    /// is checked by comparing with [`Vm::render`]).
    pub fn parse(text: &str) -> Result<Self, String> {
        let seed = field(text, "seed")?;
        let seed = seed.trim_matches('"');
        let seed = seed
            .strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("bad \"seed\" in the VM state: {seed}"))?;
        let ram = field(text, "ram_bytes")?;
        let ram_bytes = ram.parse().map_err(|_| format!("bad \"ram_bytes\" in the VM state: {ram}"))?;
        let backing = field(text, "ram_backing")?.trim_matches('"');
        let backing = match backing {
            "shmem" | "hugetlb-2M" | "hugetlb-1G" => Backing::parse(backing),
            _ => Err(String::new()),
        }
        .map_err(|_| format!("bad \"ram_backing\" in the VM state: {backing}"))?;
        Ok(Self { seed, ram_bytes, backing })
    }
}

/// The raw value of `"key": VALUE` (up to the next `,` or line end).
fn field<'a>(text: &'a str, key: &str) -> Result<&'a str, String> {
    let pat = format!("\"{key}\": ");
    let at = text.find(&pat).ok_or_else(|| format!("no \"{key}\" in the VM state"))?;
    let rest = &text[at + pat.len()..];
    let end = rest.find([',', '\n', '}']).unwrap_or(rest.len());
    Ok(rest[..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_parse_roundtrip() {
        for backing in [Backing::Shmem, Backing::Huge2M, Backing::Huge1G] {
            let vm = Vm { seed: 0x0123_4567_89ab_cdef, ram_bytes: 2 << 30, backing };
            let text = vm.render("vm-demo", 1);
            assert_eq!(Vm::parse(&text), Ok(vm));
            assert!(text.contains("\"vm\": \"vm-demo\""));
            assert!(text.contains(&format!("\"ram_backing\": \"{}\",", backing.name())));
            assert_eq!(text.matches("\"id\": ").count(), VCPUS as usize);
            assert!(text.ends_with("]\n}\n"));
        }
    }

    #[test]
    fn registers_follow_the_seed() {
        let a = Vm { seed: 1, ram_bytes: 1 << 20, backing: Backing::Shmem }.render("x", 1);
        let b = Vm { seed: 2, ram_bytes: 1 << 20, backing: Backing::Shmem }.render("x", 1);
        assert_ne!(a.replace("0x0000000000000001", ""), b.replace("0x0000000000000002", ""));
    }

    #[test]
    fn parse_errors() {
        let ok = "\"seed\": \"0x12\", \"ram_bytes\": 4, \"ram_backing\": \"hugetlb-2M\"";
        assert!(Vm::parse("").is_err());
        assert!(Vm::parse("\"seed\": \"12\", \"ram_bytes\": 4, \"ram_backing\": \"shmem\"").is_err());
        assert!(Vm::parse("\"seed\": \"0x12\", \"ram_bytes\": x, \"ram_backing\": \"shmem\"").is_err());
        assert!(Vm::parse("\"seed\": \"0x12\", \"ram_bytes\": 4").is_err());
        // Only the names render writes: not what --hugetlb also takes.
        assert!(Vm::parse(&ok.replace("hugetlb-2M", "2M")).is_err());
        assert!(Vm::parse(&ok.replace("hugetlb-2M", "hugetlb-4M")).is_err());
        assert_eq!(Vm::parse(ok), Ok(Vm { seed: 0x12, ram_bytes: 4, backing: Backing::Huge2M }));
    }
}
