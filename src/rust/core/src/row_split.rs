//! How a step's rows are shared among replicas (`multi_gpu_model(split = )`): evenly, or in
//! proportion to each replica's measured speed, so that on devices of unequal speed no
//! replica waits long for a slower one. Any split gives the same step: each replica's loss is
//! its rows' share of the whole batch's, so the gradients add up to the whole batch's.
use crate::parallel::split_batch;
use std::ops::Range;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitMode {
    /// Contiguous parts whose sizes differ by at most one (Keras's split).
    Even,
    /// Parts in proportion to each replica's rows per second in recent training steps.
    Measured,
}

impl SplitMode {
    pub fn parse(s: &str) -> crate::Result<Self> {
        match s {
            "even" => Ok(SplitMode::Even),
            "measured" => Ok(SplitMode::Measured),
            other => Err(crate::Error::Value(format!("`split` must be \"even\" or \"measured\", got \"{}\"", other))),
        }
    }
}

/// Weight of a new measurement in a replica's speed: the split follows a change of speed
/// within a few steps, and one step slowed by something else moves it only a quarter.
const NEW_MEASUREMENT_WEIGHT: f64 = 0.25;

pub struct RowSplit {
    mode: SplitMode,
    /// Each replica's rows per second (None until measured).
    speeds: Mutex<Vec<Option<f64>>>,
    /// Test hook: time each replica's training part takes per row on top of its work.
    delays: Mutex<Vec<Duration>>,
}

impl RowSplit {
    pub fn new(mode: SplitMode, replicas: usize) -> Self {
        Self { mode, speeds: Mutex::new(vec![None; replicas]), delays: Mutex::new(vec![Duration::ZERO; replicas]) }
    }

    pub fn mode(&self) -> SplitMode {
        self.mode
    }

    /// Each replica's contiguous, order-preserving range of a batch of `rows` rows. Measured:
    /// every replica keeps at least one row (so it stays measured), the rest go by speed;
    /// evenly until every replica has been measured, or when there are fewer rows than replicas.
    pub fn ranges(&self, rows: usize) -> Vec<Range<usize>> {
        let speeds = self.speeds();
        let n = speeds.len();
        let measured: Option<Vec<f64>> = speeds.iter().copied().collect();
        match (self.mode, measured) {
            (SplitMode::Measured, Some(speeds)) if rows >= n && n > 0 => proportional(rows, &speeds),
            _ => split_batch(rows, n),
        }
    }

    /// Records that `replica` computed its part of `rows` rows in `elapsed`.
    pub fn record(&self, replica: usize, rows: usize, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if self.mode != SplitMode::Measured || rows == 0 || secs <= 0.0 {
            return;
        }
        let speed = rows as f64 / secs;
        let mut speeds = self.speeds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = speeds.get_mut(replica) {
            *s = Some(match *s {
                Some(old) => old + NEW_MEASUREMENT_WEIGHT * (speed - old),
                None => speed,
            });
        }
    }

    /// Each replica's measured rows per second.
    pub fn speeds(&self) -> Vec<Option<f64>> {
        self.speeds.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Test hook: makes `replica`'s training parts take `per_row` longer per row.
    pub fn slow_down(&self, replica: usize, per_row: Duration) {
        if let Some(d) = self.delays.lock().unwrap_or_else(|e| e.into_inner()).get_mut(replica) {
            *d = per_row;
        }
    }

    /// The test hook's delay for `replica` on `rows` rows (zero unless set).
    pub fn delay(&self, replica: usize, rows: usize) -> Duration {
        self.delays.lock().unwrap_or_else(|e| e.into_inner()).get(replica).map_or(Duration::ZERO, |d| d.saturating_mul(rows as u32))
    }
}

/// One row each, then the rest in proportion to `weights` (largest remainders first), as
/// contiguous ranges in replica order.
fn proportional(rows: usize, weights: &[f64]) -> Vec<Range<usize>> {
    let n = weights.len();
    let total: f64 = weights.iter().sum();
    let rest = rows - n;
    let shares: Vec<f64> = weights.iter().map(|w| if total > 0.0 && total.is_finite() { rest as f64 * w / total } else { rest as f64 / n as f64 }).collect();
    let mut sizes: Vec<usize> = shares.iter().map(|s| 1 + s.floor() as usize).collect();
    let mut left = rows.saturating_sub(sizes.iter().sum());
    let mut by_remainder: Vec<usize> = (0..n).collect();
    by_remainder.sort_by(|a, b| (shares[*b] - shares[*b].floor()).total_cmp(&(shares[*a] - shares[*a].floor())));
    for i in by_remainder.into_iter().cycle() {
        if left == 0 {
            break;
        }
        sizes[i] += 1;
        left -= 1;
    }
    let mut start = 0;
    sizes
        .into_iter()
        .map(|len| {
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(r: &[Range<usize>]) -> Vec<usize> {
        r.iter().map(|r| r.len()).collect()
    }

    #[test]
    fn even_until_measured_then_by_speed() {
        let split = RowSplit::new(SplitMode::Measured, 3);
        assert_eq!(lengths(&split.ranges(10)), vec![4, 3, 3]);
        split.record(0, 4, Duration::from_millis(10));
        split.record(1, 3, Duration::from_millis(15));
        assert_eq!(lengths(&split.ranges(10)), vec![4, 3, 3], "replica 2 not measured yet");
        split.record(2, 3, Duration::from_millis(15));
        // Speeds 400, 200, 200 rows/s: one row each, then 97 rows as 2:1:1.
        let r = split.ranges(100);
        assert_eq!(lengths(&r), vec![50, 25, 25]);
        assert_eq!((r[0].start, r[2].end), (0, 100));
        // Fewer rows than replicas: as even.
        assert_eq!(lengths(&split.ranges(2)), vec![1, 1, 0]);
    }

    #[test]
    fn a_new_measurement_moves_the_speed_a_quarter() {
        let split = RowSplit::new(SplitMode::Measured, 1);
        split.record(0, 100, Duration::from_secs(1));
        split.record(0, 200, Duration::from_secs(1));
        assert_eq!(split.speeds(), vec![Some(125.0)]);
    }

    #[test]
    fn every_row_goes_somewhere_whatever_the_speeds() {
        for weights in [vec![1.0, 1e-9, 1e9], vec![0.0, 0.0], vec![3.0, 3.0, 3.0, 1.0], vec![f64::INFINITY, 1.0]] {
            for rows in weights.len()..40 {
                let r = proportional(rows, &weights);
                assert_eq!(r.iter().map(|r| r.len()).sum::<usize>(), rows);
                assert!(r.iter().all(|r| !r.is_empty()));
                assert!(r.windows(2).all(|w| w[0].end == w[1].start));
            }
        }
    }

    #[test]
    fn the_even_mode_ignores_measurements() {
        let split = RowSplit::new(SplitMode::Even, 2);
        split.record(0, 10, Duration::from_millis(1));
        split.record(1, 10, Duration::from_millis(100));
        assert_eq!(lengths(&split.ranges(9)), vec![5, 4]);
        assert_eq!(split.speeds(), vec![None, None]);
    }
}
