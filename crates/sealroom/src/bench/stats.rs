//! Small statistics for the bench: percentiles, ratios, verdicts against the
//! targets of DESIGN.md §9, and what the process can tell about itself
//! (CPU time, available memory) without `unsafe` or libc.

use serde::Serialize;

/// Percentile `p` (0..=100) of `samples` by the nearest-rank method: the
/// smallest sample with at least `p`% of the samples at or below it. `None`
/// for no samples. NaNs sort last.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `numerator / denominator`, or `None` when that is not a finite number
/// (a zero, negative or missing denominator).
pub fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    if denominator > 0.0 && numerator.is_finite() && denominator.is_finite() {
        Some(numerator / denominator)
    } else {
        None
    }
}

/// Latency (or any sample set) summary, in the samples' unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median (nearest rank).
    pub p50: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// 99th percentile (nearest rank; with fewer than 100 samples, the
    /// maximum or close to it).
    pub p99: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// Summarises `samples`; all zeros for none.
    pub fn of(samples: &[f64]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        let get = |p| percentile(samples, p).unwrap_or(0.0);
        Summary {
            n: samples.len(),
            p50: get(50.0),
            p95: get(95.0),
            p99: get(99.0),
            mean: samples.iter().sum::<f64>() / samples.len() as f64,
            min: samples.iter().copied().fold(f64::INFINITY, f64::min),
            max: samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// Whether a measured figure meets its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// The figure meets the target.
    Met,
    /// It does not.
    Missed,
    /// This run did not measure it (e.g. no 5-client × 100k configuration).
    NotMeasured,
}

impl Verdict {
    /// `Met` if `ok`, else `Missed`; `NotMeasured` for `None`.
    pub fn of(ok: Option<bool>) -> Verdict {
        match ok {
            Some(true) => Verdict::Met,
            Some(false) => Verdict::Missed,
            None => Verdict::NotMeasured,
        }
    }

    /// As printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "MET",
            Verdict::Missed => "MISSED",
            Verdict::NotMeasured => "NOT MEASURED",
        }
    }
}

/// Verdict for "`value` ≤ `limit`".
pub fn at_most(value: Option<f64>, limit: f64) -> Verdict {
    Verdict::of(value.map(|v| v <= limit))
}

/// Verdict for "`value` ≥ `limit`".
pub fn at_least(value: Option<f64>, limit: f64) -> Verdict {
    Verdict::of(value.map(|v| v >= limit))
}

/// CPU time (user + system) this process has used so far, all threads,
/// from `/proc/self/stat` (Linux; `None` elsewhere). Resolution is one clock
/// tick (USER_HZ, 10 ms on Linux), so figures are summed over many rounds.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    const USER_HZ: f64 = 100.0;
    Some((utime + stime) / USER_HZ)
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
pub fn mem_available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The CPU model from `/proc/cpuinfo`.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// Sum and count of a Prometheus histogram in a text exposition, for the
/// series whose name is `name` and whose label set contains every one of
/// `labels` (`key="value"` strings).
pub fn histogram_sum_count(text: &str, name: &str, labels: &[&str]) -> (f64, u64) {
    let value = |suffix: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with(&format!("{name}{suffix}"))
                    && l[name.len() + suffix.len()..].starts_with(['{', ' '])
                    && labels.iter().all(|lab| l.contains(lab))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (value("_sum"), value("_count") as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 95.0), Some(95.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
        assert_eq!(percentile(&samples, 100.0), Some(100.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        // Order does not matter; small sets round up to a real sample.
        let few = [30.0, 10.0, 20.0];
        assert_eq!(percentile(&few, 50.0), Some(20.0));
        assert_eq!(percentile(&few, 95.0), Some(30.0));
        assert_eq!(percentile(&few, 34.0), Some(20.0));
        assert_eq!(percentile(&few, 33.0), Some(10.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
    }

    #[test]
    fn summary_of_samples() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!(s.n, 4);
        assert_eq!((s.p50, s.p95, s.p99), (2.0, 4.0, 4.0));
        assert_eq!((s.min, s.max, s.mean), (1.0, 4.0, 2.5));
        assert_eq!(Summary::of(&[]), Summary::default());
    }

    #[test]
    fn ratios_refuse_bad_denominators() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(1.0, -1.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
        assert_eq!(ratio(0.0, 4.0), Some(0.0));
    }

    #[test]
    fn verdicts() {
        assert_eq!(at_most(Some(1.25), 1.25), Verdict::Met);
        assert_eq!(at_most(Some(1.26), 1.25), Verdict::Missed);
        assert_eq!(at_least(Some(0.5), 0.5), Verdict::Met);
        assert_eq!(at_least(Some(0.49), 0.5), Verdict::Missed);
        assert_eq!(at_most(None, 1.0), Verdict::NotMeasured);
        assert_eq!(Verdict::Missed.as_str(), "MISSED");
        assert_eq!(
            serde_json::to_string(&Verdict::NotMeasured).expect("json"),
            "\"NOT_MEASURED\""
        );
    }

    #[test]
    fn reads_histograms_from_the_exposition() {
        let text = "\
# TYPE sealroom_round_duration_seconds histogram
sealroom_round_duration_seconds_sum{role=\"client\",outcome=\"uploaded\"} 1.5
sealroom_round_duration_seconds_count{role=\"client\",outcome=\"uploaded\"} 3
sealroom_round_duration_seconds_sum{role=\"coordinator\",outcome=\"completed\"} 9.0
sealroom_round_duration_seconds_count{role=\"coordinator\",outcome=\"completed\"} 2
sealroom_helper_answer_latency_seconds_sum 0.25
sealroom_helper_answer_latency_seconds_count 5
";
        assert_eq!(
            histogram_sum_count(
                text,
                "sealroom_round_duration_seconds",
                &["role=\"client\""]
            ),
            (1.5, 3)
        );
        assert_eq!(
            histogram_sum_count(text, "sealroom_helper_answer_latency_seconds", &[]),
            (0.25, 5)
        );
        assert_eq!(histogram_sum_count(text, "nope", &[]), (0.0, 0));
    }

    #[test]
    fn reads_this_process() {
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(process_cpu_seconds().is_some_and(|s| s >= 0.0));
            assert!(mem_available_bytes().is_some_and(|b| b > 0));
        }
    }
}
