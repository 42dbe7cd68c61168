//! Sums shared by the members of a step: the replicas of a data-parallel model (threads of
//! this process). Synchronized batch normalization adds up its statistics here, so that every
//! replica normalizes with the whole batch's mean and variance, as the template does.
//!
//! Every member calls [`Collective::all_reduce_sum`] the same number of times in the same
//! order (each runs the same model on its rows); a member that fails releases the others,
//! which then fail with [`PEER_FAILED`] instead of waiting for it.
use crate::error::{Error, Result};
use std::sync::{Arc, Condvar, Mutex};

/// The error of a member released because another failed; the step reports the other's.
pub const PEER_FAILED: &str = "another replica failed in this step";

/// Element-wise sums over the members of a step.
pub trait Collective: Send + Sync {
    /// Replaces `values` with their element-wise sum over every member.
    fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()>;

    /// Starts the element-wise sum of `values`, to be finished later, so that the exchange
    /// goes on while the caller computes (gradients sent in buckets during the backward
    /// pass). Every member starts the same sums in the same order. By default it is done at
    /// once.
    fn start_sum(&self, mut values: Vec<f64>) -> Result<Box<dyn SumUnderWay>> {
        self.all_reduce_sum(&mut values)?;
        finished_sum(values)
    }
}

/// A sum started by [`Collective::start_sum`].
pub trait SumUnderWay: Send {
    /// Lets the exchange move on (MPI progresses only inside its calls); cheap.
    fn nudge(&mut self) -> Result<()> {
        Ok(())
    }

    /// Waits for the sum.
    fn finish(self: Box<Self>) -> Result<Vec<f64>>;
}

struct Finished(Vec<f64>);

/// A sum that is already there (a job of one member).
pub fn finished_sum(values: Vec<f64>) -> Result<Box<dyn SumUnderWay>> {
    Ok(Box::new(Finished(values)))
}

impl SumUnderWay for Finished {
    fn finish(self: Box<Self>) -> Result<Vec<f64>> {
        Ok(self.0)
    }
}

/// A member that knows its place: a worker process of a multi-worker job (`workers`), or, in
/// tests, a thread standing in for one.
pub trait Ranked: Collective {
    /// This member's index, 0 to `size() - 1`; 0 is the chief.
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Tells the others that this member failed (`text` says how); they stop waiting for it.
    fn report_failure(&self, _text: &str) {}
    /// Sums of tensors on `device` itself, where the members have a way (NCCL between
    /// GPUs); None: sums go through the host. Every member asks at the same point.
    fn device_sums(&self, _device: &candle_core::Device) -> Result<Option<Arc<dyn DeviceSums>>> {
        Ok(None)
    }
}

/// Element-wise sums of tensors over every member, on the tensors' device; queued in order
/// (every member sums the same tensors in the same order).
pub trait DeviceSums: Send + Sync {
    fn sum(&self, t: &candle_core::Tensor) -> Result<candle_core::Tensor>;
}

/// The replicas of one step, in the order of their rows.
pub struct ReplicaGroup {
    members: usize,
    state: Mutex<GroupState>,
    wake: Condvar,
}

struct GroupState {
    /// Completed reductions; a waiting member is done when it moves on.
    generation: u64,
    /// Each member's values for the reduction in progress.
    deposits: Vec<Option<Vec<f64>>>,
    result: Vec<f64>,
    failed: bool,
}

impl ReplicaGroup {
    pub fn new(members: usize) -> Arc<Self> {
        Arc::new(Self {
            members,
            state: Mutex::new(GroupState { generation: 0, deposits: vec![None; members], result: Vec::new(), failed: false }),
            wake: Condvar::new(),
        })
    }

    /// Member `index`'s place, taken before its task is queued: dropped without
    /// [`Seat::finish`] (its task failed, panicked or never ran), it releases the others.
    pub fn seat(self: &Arc<Self>, index: usize) -> Seat {
        Seat { group: self.clone(), index, finished: false }
    }

    fn fail(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).failed = true;
        self.wake.notify_all();
    }

    fn reduce(&self, index: usize, values: &mut [f64]) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.failed {
            return Err(Error::State(PEER_FAILED.into()));
        }
        st.deposits[index] = Some(values.to_vec());
        if st.deposits.iter().all(Option::is_some) {
            // Summed in member order, not arrival order: every run gives the same bits.
            let mut sum = vec![0.0; values.len()];
            for d in st.deposits.iter_mut() {
                let d = d.take().unwrap_or_default();
                if d.len() != sum.len() {
                    st.failed = true;
                    self.wake.notify_all();
                    return Err(Error::State(format!("replicas reduced {} and {} values at the same point of a step", d.len(), sum.len())));
                }
                sum.iter_mut().zip(&d).for_each(|(s, v)| *s += v);
            }
            values.copy_from_slice(&sum);
            st.result = sum;
            st.generation += 1;
            self.wake.notify_all();
            return Ok(());
        }
        let generation = st.generation;
        while st.generation == generation && !st.failed {
            st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.generation == generation {
            return Err(Error::State(PEER_FAILED.into()));
        }
        if st.result.len() != values.len() {
            return Err(Error::State(format!("replicas reduced {} and {} values at the same point of a step", st.result.len(), values.len())));
        }
        values.copy_from_slice(&st.result);
        Ok(())
    }
}

/// A member's place in a [`ReplicaGroup`] for the length of its task.
pub struct Seat {
    group: Arc<ReplicaGroup>,
    index: usize,
    finished: bool,
}

impl Seat {
    /// The handle layers reduce through (kept in their caches for the backward pass).
    pub fn member(&self) -> Arc<dyn Collective> {
        Arc::new(Member { group: self.group.clone(), index: self.index })
    }

    /// The member as a [`Ranked`] one (a thread standing in for a worker process).
    pub fn ranked_member(&self) -> Arc<dyn Ranked> {
        Arc::new(Member { group: self.group.clone(), index: self.index })
    }

    /// The task got through every reduction of its step.
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if !self.finished {
            self.group.fail();
        }
    }
}

struct Member {
    group: Arc<ReplicaGroup>,
    index: usize,
}

impl Collective for Member {
    fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()> {
        self.group.reduce(self.index, values)
    }
}

impl Ranked for Member {
    fn rank(&self) -> usize {
        self.index
    }

    fn size(&self) -> usize {
        self.group.members
    }

    fn report_failure(&self, _text: &str) {
        self.group.fail();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_get_the_sum_in_member_order_each_round() {
        let group = ReplicaGroup::new(3);
        let seats: Vec<Seat> = (0..3).map(|i| group.seat(i)).collect();
        let results: Vec<Vec<Vec<f64>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = seats
                .into_iter()
                .enumerate()
                .map(|(i, seat)| {
                    scope.spawn(move || {
                        let member = seat.member();
                        let mut out = Vec::new();
                        for round in 0..50 {
                            let mut v = vec![i as f64 + round as f64, 1.0];
                            member.all_reduce_sum(&mut v).unwrap();
                            out.push(v);
                        }
                        seat.finish();
                        out
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for round in 0..50 {
            let want = vec![3.0 + 3.0 * round as f64, 3.0];
            assert!(results.iter().all(|r| r[round] == want), "round {}", round);
        }
    }

    #[test]
    fn a_member_that_fails_releases_the_others() {
        let group = ReplicaGroup::new(2);
        let (a, b) = (group.seat(0), group.seat(1));
        let waiting = std::thread::spawn(move || {
            let mut v = vec![1.0];
            let r = a.member().all_reduce_sum(&mut v);
            drop(a);
            r
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(b);
        let err = waiting.join().unwrap().unwrap_err().to_string();
        assert_eq!(err, PEER_FAILED);
    }
}
