// SPDX-License-Identifier: GPL-2.0
//! Sizes as operators write them (`256M`) and print them (`256 MiB`).

/// Parse a byte count: decimal, optionally followed by `K`, `M`, `G` or
/// `T` (powers of 1024, either case, with an optional `iB`/`B`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?}: expected e.g. 268435456, 256M or 1G"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("bad size {s:?}: unknown unit {unit:?} (use K, M, G or T)")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("size {s:?} is too large"))
}

/// `n` bytes for humans: `256 MiB`, `1.5 GiB`, `4097 bytes`.
pub fn human(n: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (name, shift) in UNITS {
        if n >= 1 << shift {
            let v = n as f64 / (1u64 << shift) as f64;
            return if n % (1 << shift) == 0 {
                format!("{} {name}", n >> shift)
            } else {
                format!("{v:.1} {name}")
            };
        }
    }
    format!("{n} bytes")
}

/// Milliseconds of a duration, for timing lines.
pub fn ms(d: std::time::Duration) -> u128 {
    d.as_millis()
}

/// Throughput in MiB/s (0 for an instant).
pub fn mib_per_s(bytes: u64, d: std::time::Duration) -> u64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        (bytes as f64 / (1u64 << 20) as f64 / s) as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("268435456"), Ok(256 << 20));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("2gb"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("1X").is_err());
        assert!(parse_size("-1M").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn humans() {
        assert_eq!(human(256 << 20), "256 MiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(human(4096), "4 KiB");
        assert_eq!(human(100), "100 bytes");
    }
}
