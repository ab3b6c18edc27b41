//! Byte search for the wire code (NUL framing, string skipping) without run-time CPU detection.
//!
//! `memchr::memchr` picks AVX2 or SSE2 at its first call through std's CPU feature detection,
//! which runs several `cpuid` instructions; in a VM each one traps to the hypervisor (12-19 µs
//! measured), so a socket-activated daemon paid 50-70 µs in the framing of its first call, on
//! the path to the first reply. SSE2 is part of the x86_64 baseline, so on x86_64 the first
//! few KiB of a haystack are searched with the SSE2 searcher directly (its availability is a
//! compile-time fact) and only a longer rest goes through memchr's dispatch; other targets keep
//! memchr's own dispatch throughout.

#[cfg(target_arch = "x86_64")]
use memchr::arch::x86_64::sse2::memchr::{One, Two};

/// How many bytes at the front of a haystack are searched with SSE2 on x86_64; the rest goes
/// to memchr's own dispatch. Messages are rarely longer, so a daemon that only ever sees small
/// messages never runs the detection, while a large message gets AVX2 where the CPU has it
/// (about 25% faster than SSE2 over 1 to 16 MiB) and pays the one-time detection only then.
#[cfg(target_arch = "x86_64")]
const SSE2_PREFIX: usize = 4096;

/// The index of the first `needle` in `haystack`, as `memchr::memchr`.
#[inline]
pub(crate) fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        // `new` returns `Some` whenever the crate is compiled with SSE2 enabled, as every
        // x86_64 target is; the fallback only keeps a hypothetical non-SSE2 build correct.
        match One::new(needle) {
            Some(searcher) => prefix_then_rest(
                haystack,
                |head| searcher.find(head),
                |rest| memchr::memchr(needle, rest),
            ),
            None => memchr::memchr(needle, haystack),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        memchr::memchr(needle, haystack)
    }
}

/// The index of the first `needle1` or `needle2` in `haystack`, as `memchr::memchr2`.
#[inline]
pub(crate) fn memchr2(needle1: u8, needle2: u8, haystack: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        match Two::new(needle1, needle2) {
            Some(searcher) => prefix_then_rest(
                haystack,
                |head| searcher.find(head),
                |rest| memchr::memchr2(needle1, needle2, rest),
            ),
            None => memchr::memchr2(needle1, needle2, haystack),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        memchr::memchr2(needle1, needle2, haystack)
    }
}

/// `head_search` over the first [`SSE2_PREFIX`] bytes, then `rest_search` over the rest only
/// if there is a rest (memchr's dispatch runs the detection even for an empty haystack).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefix_then_rest(
    haystack: &[u8],
    head_search: impl FnOnce(&[u8]) -> Option<usize>,
    rest_search: impl FnOnce(&[u8]) -> Option<usize>,
) -> Option<usize> {
    let (head, rest) = haystack.split_at(haystack.len().min(SSE2_PREFIX));
    match head_search(head) {
        Some(found) => Some(found),
        None if rest.is_empty() => None,
        None => rest_search(rest).map(|found| head.len() + found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_memchr() {
        // Lengths around the 16-byte vector width and the SSE2 prefix; needles at every position
        // near the start, the prefix's end and the haystack's end.
        for len in [
            0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 200, 4095, 4096, 4097, 4200,
        ] {
            let mut haystack: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert_eq!(memchr(0, &haystack), None);
            assert_eq!(memchr2(b'"', b'\\', &haystack), None);
            let near = |at: usize| at < 80 || at.abs_diff(4096) < 40 || at + 40 > len;
            for at in (0..len).filter(|&at| near(at)) {
                let saved = haystack[at];
                haystack[at] = 0;
                assert_eq!(memchr(0, &haystack), memchr::memchr(0, &haystack));
                assert_eq!(memchr(0, &haystack), Some(at));
                haystack[at] = b'\\';
                assert_eq!(memchr2(b'"', b'\\', &haystack), Some(at));
                haystack[at] = b'"';
                assert_eq!(memchr2(b'"', b'\\', &haystack), Some(at));
                haystack[at] = saved;
            }
        }
    }
}
