// SPDX-License-Identifier: GPL-2.0
//! The reproducible contents of the demo's guest RAM.
//!
//! Every 8-byte word at byte offset `8 * i` holds [`word`]`(i, seed)` in
//! little endian; a tail shorter than 8 bytes holds the first bytes of its
//! word. A word is its 4 KiB page's key (a 64-bit hash of the page number
//! and the seed) plus its index in the page times an odd constant, so lost,
//! zeroed, swapped or shifted pages, and memory left over from an earlier
//! run (another seed), are all caught.
//!
//! Filling and checking are written so that the compiler vectorizes them
//! with plain SSE2 adds, xors and ors: under QEMU's TCG, 64-bit vector
//! multiplications (what a per-word hash compiles to) are several times
//! slower than the stores themselves.

/// Words in a 4 KiB page.
pub const PAGE_WORDS: u64 = 512;
const PAGE_BYTES: usize = 8 * PAGE_WORDS as usize;
/// Step between consecutive words of a page (odd, so all 512 differ).
const STEP: u64 = 0x9e37_79b9_7f4a_7c15;

/// The key of page `page`: a cheap 64-bit mixer (two multiplications).
#[inline(always)]
pub fn page_key(page: u64, seed: u64) -> u64 {
    let mut x = page.wrapping_mul(0xd6e8_feb8_6659_fd93) ^ seed;
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 29)
}

/// The word at index `index` (byte offset `8 * index`).
#[inline(always)]
pub fn word(index: u64, seed: u64) -> u64 {
    page_key(index / PAGE_WORDS, seed).wrapping_add((index % PAGE_WORDS).wrapping_mul(STEP))
}

/// Fill `buf` (the memory at offset 0) with the pattern of `seed`.
pub fn fill(buf: &mut [u8], seed: u64) {
    for (page, bytes) in buf.chunks_mut(PAGE_BYTES).enumerate() {
        let key = page_key(page as u64, seed);
        let mut words = bytes.chunks_exact_mut(8);
        let mut w = key;
        for out in &mut words {
            out.copy_from_slice(&w.to_le_bytes());
            w = w.wrapping_add(STEP);
        }
        let tail = words.into_remainder();
        let n = tail.len();
        tail.copy_from_slice(&w.to_le_bytes()[..n]);
    }
}

/// A word that does not hold the pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bad {
    /// Byte offset of the word.
    pub offset: u64,
    /// What the pattern says (little-endian bytes of a tail are zero-padded).
    pub expected: u64,
    /// What the memory holds.
    pub found: u64,
}

/// Result of [`verify`]: how many words differ and the first few of them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// Number of differing words (a short tail counts as one).
    pub words: u64,
    /// The first differing words, in order (at most [`Mismatch::KEEP`]).
    pub first: Vec<Bad>,
}

impl Mismatch {
    /// How many differing words are kept for the report.
    pub const KEEP: usize = 8;

    fn add(&mut self, bad: Bad) {
        self.words += 1;
        if self.first.len() < Self::KEEP {
            self.first.push(bad);
        }
    }
}

/// Check every byte of `buf` against the pattern of `seed`.
pub fn verify(buf: &[u8], seed: u64) -> Result<(), Mismatch> {
    let mut m = Mismatch::default();
    verify_pages(buf, 0, seed, &mut m);
    if m.words == 0 {
        Ok(())
    } else {
        Err(m)
    }
}

/// The byte at byte offset `offset`.
pub fn byte(offset: u64, seed: u64) -> u8 {
    word(offset / 8, seed).to_le_bytes()[(offset % 8) as usize]
}

/// Check every byte of `buf` (the memory at offset 0) after a copy of `len`
/// bytes from offset `from` to offset `to` (a DMA): bytes `to..to + len`
/// hold the pattern of bytes `from..from + len`, every other byte the
/// pattern of `seed`. Words are reported as [`verify`] does.
pub fn verify_copy(buf: &[u8], seed: u64, from: usize, to: usize, len: usize) -> Result<(), Mismatch> {
    let end = to.saturating_add(len).min(buf.len());
    let to = to.min(end);
    // The pages the copy touched are checked a word at a time, the others
    // as verify does.
    let lo = to / PAGE_BYTES * PAGE_BYTES;
    let hi = end.div_ceil(PAGE_BYTES).saturating_mul(PAGE_BYTES).min(buf.len());
    let mut m = Mismatch::default();
    verify_pages(&buf[..lo], 0, seed, &mut m);
    for (j, b) in buf[lo..hi].chunks(8).enumerate() {
        let at = lo + 8 * j;
        let mut e = [0u8; 8];
        let mut f = [0u8; 8];
        for (k, x) in b.iter().enumerate() {
            let o = at + k;
            let src = if (to..end).contains(&o) { from + (o - to) } else { o };
            e[k] = byte(src as u64, seed);
            f[k] = *x;
        }
        if e != f {
            m.add(Bad { offset: at as u64, expected: u64::from_le_bytes(e), found: u64::from_le_bytes(f) });
        }
    }
    verify_pages(&buf[hi..], (hi / PAGE_BYTES) as u64, seed, &mut m);
    if m.words == 0 {
        Ok(())
    } else {
        Err(m)
    }
}

/// Check `buf`, the memory from page `first_page` on (its start), into `m`.
fn verify_pages(buf: &[u8], first_page: u64, seed: u64, m: &mut Mismatch) {
    for (i, bytes) in buf.chunks(PAGE_BYTES).enumerate() {
        let page = first_page + i as u64;
        // Fast path: OR of all differences, a page at a time.
        let key = page_key(page, seed);
        let mut words = bytes.chunks_exact(8);
        let (mut w, mut diff) = (key, 0u64);
        for b in &mut words {
            diff |= u64::from_le_bytes(b.try_into().expect("8-byte chunk")) ^ w;
            w = w.wrapping_add(STEP);
        }
        let tail = words.remainder();
        if diff == 0 && (tail.is_empty() || tail == &w.to_le_bytes()[..tail.len()]) {
            continue;
        }
        // Slow path: find the differing words of this page.
        let first = page * PAGE_WORDS;
        for (j, b) in bytes.chunks(8).enumerate() {
            let mut e = word(first + j as u64, seed).to_le_bytes();
            e[b.len()..].fill(0);
            let mut f = [0u8; 8];
            f[..b.len()].copy_from_slice(b);
            if e != f {
                m.add(Bad {
                    offset: 8 * (first + j as u64),
                    expected: u64::from_le_bytes(e),
                    found: u64::from_le_bytes(f),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_matches_word() {
        let mut buf = vec![0u8; 3 * 4096 + 13];
        fill(&mut buf, 99);
        for (i, b) in buf.chunks(8).enumerate() {
            assert_eq!(b, &word(i as u64, 99).to_le_bytes()[..b.len()], "word {i}");
        }
    }

    #[test]
    fn fill_then_verify() {
        for len in [0, 1, 7, 8, 9, 4095, 4096, 4096 + 5, 5 * 4096] {
            let mut buf = vec![0u8; len];
            fill(&mut buf, 42);
            assert_eq!(verify(&buf, 42), Ok(()), "len {len}");
        }
    }

    #[test]
    fn depends_on_seed_and_offset() {
        assert_ne!(word(0, 1), word(0, 2));
        assert_ne!(word(0, 1), word(1, 1));
        let mut buf = vec![0u8; 64];
        fill(&mut buf, 1);
        assert_eq!(verify(&buf, 2).unwrap_err().words, 8);
        // Swapped pages do not pass.
        let mut pages = vec![0u8; 2 * 4096];
        fill(&mut pages, 1);
        let (a, b) = pages.split_at_mut(4096);
        a.swap_with_slice(b);
        assert_eq!(verify(&pages, 1).unwrap_err().words, 2 * PAGE_WORDS);
        // A copy shifted by one word does not pass.
        let mut shifted = vec![0u8; 64];
        shifted[8..].copy_from_slice(&buf[..56]);
        assert!(verify(&shifted, 1).is_err());
    }

    #[test]
    fn zero_memory_fails() {
        assert!(verify(&[0u8; 4096], 0).is_err());
    }

    #[test]
    fn reports_first_mismatches() {
        let mut buf = vec![0u8; 8 * 100 + 3];
        fill(&mut buf, 7);
        buf[8 * 3 + 1] ^= 0x10;
        buf[8 * 100 + 2] ^= 1; // the tail
        let m = verify(&buf, 7).unwrap_err();
        assert_eq!(m.words, 2);
        assert_eq!(m.first[0].offset, 24);
        assert_eq!(m.first[0].expected ^ m.first[0].found, 0x10 << 8);
        assert_eq!(m.first[1].offset, 800);
        assert_eq!(m.first[1].expected ^ m.first[1].found, 1 << 16);
    }

    #[test]
    fn byte_matches_fill() {
        let mut buf = vec![0u8; 2 * 4096 + 5];
        fill(&mut buf, 5);
        for (o, b) in buf.iter().enumerate() {
            assert_eq!(*b, byte(o as u64, 5), "byte {o}");
        }
    }

    #[test]
    fn verify_copy_checks_the_copy_and_the_rest() {
        let len = 16 * 4096 + 100;
        let mut buf = vec![0u8; len];
        fill(&mut buf, 9);
        // No copy (or a copy onto itself): as verify.
        assert_eq!(verify_copy(&buf, 9, 0, 0, 0), Ok(()));
        assert_eq!(verify_copy(&buf, 9, 77, 77, 4095), Ok(()));
        let (from, to, n) = (0x1123, 0xe045, 4095);
        let copy = buf[from..from + n].to_vec();
        // Before the copy, its target does not hold the source's bytes.
        assert!(verify_copy(&buf, 9, from, to, n).is_err());
        buf[to..to + n].copy_from_slice(&copy);
        assert_eq!(verify_copy(&buf, 9, from, to, n), Ok(()));
        // ... but the plain pattern check fails on it.
        assert!(verify(&buf, 9).is_err());
        // A wrong byte next to the target, inside it, and far from it.
        for at in [to - 1, to + n, to + 17, 3, len - 1, 0x5000] {
            let mut bad = buf.clone();
            bad[at] ^= 0x40;
            let m = verify_copy(&bad, 9, from, to, n).unwrap_err();
            assert_eq!(m.words, 1, "byte {at:#x}");
            assert_eq!(m.first[0].offset, at as u64 & !7, "byte {at:#x}");
        }
        // A copy that ends at the end of the memory, one that spans it.
        let t = len - n;
        let mut end = vec![0u8; len];
        fill(&mut end, 9);
        end.copy_within(from..from + n, t);
        assert_eq!(verify_copy(&end, 9, from, t, n), Ok(()));
        assert_eq!(verify_copy(&end, 9, from, t, n + 500), Ok(()));
    }

    #[test]
    fn keeps_only_the_first_few() {
        let buf = vec![0u8; 8 * 100];
        let m = verify(&buf, 3).unwrap_err();
        assert_eq!(m.words, 100);
        assert_eq!(m.first.len(), Mismatch::KEEP);
        assert_eq!(m.first[Mismatch::KEEP - 1].offset, 8 * (Mismatch::KEEP as u64 - 1));
    }
}
