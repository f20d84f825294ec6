//! Small-sample statistics for timing comparisons: a summary of one sample
//! (mean, median, deciles, standard deviation) and a bootstrap confidence
//! interval for the difference of two medians, with a seeded generator so
//! the same samples always give the same interval.

use std::cmp::Ordering;

/// Location and spread of one sample (same unit as the input).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    /// Sample standard deviation (n − 1 in the denominator).
    pub sd: f64,
    pub min: f64,
    pub max: f64,
}

pub fn summarize(samples: &[f64]) -> Summary {
    let n = samples.len();
    if n == 0 {
        return Summary::default();
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / n as f64;
    let var =
        if n > 1 { samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
    Summary {
        n,
        mean,
        median: median_sorted(&sorted),
        p10: percentile_sorted(&sorted, 10.0),
        p90: percentile_sorted(&sorted, 90.0),
        sd: var.sqrt(),
        min: sorted[0],
        max: sorted[n - 1],
    }
}

/// Nearest-rank percentile of an ascending sample (0 for an empty one).
pub fn percentile_sorted(sorted: &[f64], pct: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let n = sorted.len();
    let rank = ((pct / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Median of an ascending sample (mean of the middle two for even counts).
pub fn median_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Median without a full sort; reorders `v`.
fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    let (left, mid, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let upper = *mid;
    if n % 2 == 1 {
        upper
    } else {
        let lower = left.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + upper) / 2.0
    }
}

/// SplitMix64: a tiny, well-mixed generator; plenty for resampling and
/// fully determined by its seed.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform index below `n` (`n` > 0), by multiply-shift.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Difference of medians `median(b) − median(a)` with a percentile
/// bootstrap confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MedianDiff {
    pub diff: f64,
    pub lo: f64,
    pub hi: f64,
    /// Confidence level, e.g. 0.95.
    pub level: f64,
    pub resamples: usize,
}

impl MedianDiff {
    pub fn contains_zero(&self) -> bool {
        self.lo <= 0.0 && 0.0 <= self.hi
    }

    pub fn half_width(&self) -> f64 {
        (self.hi - self.lo) / 2.0
    }
}

/// Resample `a` and `b` independently with replacement `resamples` times,
/// take `median(b*) − median(a*)` each time, and return the observed
/// difference with the central `level` interval of those differences.
pub fn bootstrap_median_diff(a: &[f64], b: &[f64], resamples: usize, level: f64, seed: u64) -> MedianDiff {
    let observed = {
        let (mut a2, mut b2) = (a.to_vec(), b.to_vec());
        median_in_place(&mut b2) - median_in_place(&mut a2)
    };
    if a.is_empty() || b.is_empty() || resamples == 0 {
        return MedianDiff { diff: observed, lo: observed, hi: observed, level, resamples: 0 };
    }
    let mut rng = SplitMix64::new(seed);
    let mut buf_a = vec![0.0; a.len()];
    let mut buf_b = vec![0.0; b.len()];
    let mut diffs = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for x in buf_a.iter_mut() {
            *x = a[rng.below(a.len())];
        }
        for x in buf_b.iter_mut() {
            *x = b[rng.below(b.len())];
        }
        diffs.push(median_in_place(&mut buf_b) - median_in_place(&mut buf_a));
    }
    diffs.sort_by(|x, y| x.partial_cmp(y).unwrap_or(Ordering::Equal));
    let tail = (1.0 - level) / 2.0 * 100.0;
    MedianDiff {
        diff: observed,
        lo: percentile_sorted(&diffs, tail),
        hi: percentile_sorted(&diffs, 100.0 - tail),
        level,
        resamples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_known_sample() {
        let s = summarize(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!((s.n, s.mean, s.median, s.p10, s.p90, s.min, s.max), (10, 5.5, 5.5, 1.0, 9.0, 1.0, 10.0));
        assert!((s.sd - 3.02765).abs() < 1e-4);
        assert_eq!(summarize(&[]).n, 0);
    }

    #[test]
    fn median_in_place_matches_sorted_median() {
        let mut rng = SplitMix64::new(7);
        for n in 1..40 {
            let v: Vec<f64> = (0..n).map(|_| (rng.next_u64() % 1000) as f64).collect();
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            let mut w = v.clone();
            assert_eq!(median_in_place(&mut w), median_sorted(&sorted), "n = {n}");
        }
    }

    #[test]
    fn generator_is_deterministic_and_in_range() {
        let (mut a, mut b) = (SplitMix64::new(42), SplitMix64::new(42));
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert!(a.below(7) < 7);
            b.below(7);
        }
    }

    #[test]
    fn bootstrap_sees_a_shift_and_not_noise() {
        let mut rng = SplitMix64::new(1);
        let mut noisy = |shift: f64| -> Vec<f64> {
            (0..300).map(|_| 30.0 + shift + (rng.next_u64() % 1000) as f64 / 1000.0).collect()
        };
        let (a, b, c) = (noisy(0.0), noisy(0.0), noisy(0.3));
        let same = bootstrap_median_diff(&a, &b, 2000, 0.95, 9);
        assert!(same.contains_zero(), "{same:?}");
        let shifted = bootstrap_median_diff(&a, &c, 2000, 0.95, 9);
        assert!(!shifted.contains_zero() && shifted.lo > 0.1 && shifted.hi < 0.5, "{shifted:?}");
        assert_eq!(shifted, bootstrap_median_diff(&a, &c, 2000, 0.95, 9), "fixed seed, same answer");
    }
}
