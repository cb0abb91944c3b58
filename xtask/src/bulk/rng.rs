//! A tiny deterministic PRNG (SplitMix64) for reproducible seed data.
//!
//! Every generated row draws from its own stream, keyed by the seed, the kind of row and its index,
//! so a row depends on nothing but those three: batches can be generated in any order, on any
//! number of workers, and a re-run produces the very same rows. Integer arithmetic only, so the
//! data is identical on every platform.

/// The SplitMix64 increment (2^64 / φ).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// One step of SplitMix64: a cheap, well-mixed hash for reproducible choices.
pub fn splitmix64(x: u64) -> u64 {
    mix(x.wrapping_add(GOLDEN_GAMMA))
}

fn mix(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// The generator whose state starts at `seed`.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The stream of row `index` of the kind `kind` (a constant per table) under `seed`.
    pub fn stream(seed: u64, kind: u64, index: u64) -> Self {
        Self::new(splitmix64(seed) ^ splitmix64(kind ^ splitmix64(index)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix(self.state)
    }

    /// A number in `0..n` (Lemire's multiply-shift; the bias is below 2^-40 for our ranges).
    /// Zero when `n` is zero.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// An index into a slice of `len` elements (`len` must not be zero).
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        let span = high.abs_diff(low).saturating_add(1);
        low.wrapping_add_unsigned(self.below(span))
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// One element chosen by weight: `choices` pairs each value with its weight.
    pub fn weighted<T: Copy>(&mut self, choices: &[(T, u64)]) -> T {
        let total: u64 = choices.iter().map(|(_, weight)| weight).sum();
        let mut roll = self.below(total);
        for &(value, weight) in choices {
            if roll < weight {
                return value;
            }
            roll -= weight;
        }
        choices[choices.len() - 1].0
    }

    /// Ten random bytes: the counter and random part of a UUIDv7.
    pub fn bytes10(&mut self) -> [u8; 10] {
        let high = self.next_u64().to_le_bytes();
        let low = self.next_u64().to_le_bytes();
        [
            high[0], high[1], high[2], high[3], high[4], high[5], high[6], high[7], low[0], low[1],
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_the_reference_splitmix64() {
        // The first outputs of SplitMix64 seeded with 0, as published with the algorithm.
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn a_stream_depends_only_on_its_seed_kind_and_index() {
        let draw = |seed, kind, index| {
            let mut rng = Rng::stream(seed, kind, index);
            (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, 1, 5), draw(7, 1, 5));
        assert_ne!(draw(7, 1, 5), draw(8, 1, 5));
        assert_ne!(draw(7, 1, 5), draw(7, 2, 5));
        assert_ne!(draw(7, 1, 5), draw(7, 1, 6));
    }

    #[test]
    fn ranges_are_respected_and_covered() {
        let mut rng = Rng::new(1);
        let mut seen = [false; 6];
        for _ in 0..10_000 {
            let n = rng.between(-2, 3);
            assert!((-2..=3).contains(&n));
            seen[(n + 2) as usize] = true;
            assert!(rng.below(7) < 7);
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.between(5, 5), 5);
    }

    #[test]
    fn weights_are_honoured() {
        let mut rng = Rng::new(3);
        let mut counts = [0u32; 3];
        for _ in 0..100_000 {
            counts[rng.weighted(&[(0usize, 70), (1, 20), (2, 10)])] += 1;
        }
        assert!((68_000..72_000).contains(&counts[0]), "{counts:?}");
        assert!((18_500..21_500).contains(&counts[1]), "{counts:?}");
        assert!((9_000..11_000).contains(&counts[2]), "{counts:?}");
        assert_eq!(rng.weighted(&[(9, 0), (4, 1)]), 4);
    }
}
