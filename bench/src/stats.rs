//! Order statistics over samples in milliseconds.

use serde_json::{json, Value};

/// Summary of one series.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p95: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

/// None for an empty series. Median: mean of the middle two for even n; p95: nearest rank.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
    Some(Summary {
        n,
        median,
        p95: v[rank - 1],
        min: v[0],
        max: v[n - 1],
        mean: v.iter().sum::<f64>() / n as f64,
    })
}

impl Summary {
    pub fn to_json(self) -> Value {
        json!({
            "n": self.n, "median_ms": self.median, "p95_ms": self.p95,
            "min_ms": self.min, "max_ms": self.max, "mean_ms": self.mean,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_p95() {
        let s = summarize(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.n, s.median, s.p95, s.min, s.max), (5, 3.0, 5.0, 1.0, 5.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&v).unwrap();
        assert_eq!((s.median, s.p95), (50.5, 95.0));
        assert!(summarize(&[]).is_none());
    }
}
