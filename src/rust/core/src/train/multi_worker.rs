//! Workers: one process per device or node (`multi_worker_mirrored_strategy()`, started by
//! MPI's launcher), each holding the whole model. Every worker takes its contiguous share of
//! each global batch's rows and computes its part of the step on its device; the parts' sums
//! (gradients, loss, metrics, moving statistics weighted by rows) are added up over all
//! workers in one all-reduce, and then every worker applies the same update to the same
//! weights, so that the workers stay equal to each other and to one process training on the
//! whole batch. Predictions need no exchange: each worker predicts all the rows it is given.
//!
//! The gradients travel in buckets while the backward pass goes on, as PyTorch's DDP sends
//! them: a layer's gradients join the current bucket as soon as the pass has finished them
//! (last layers first), and a full bucket's sum is started at once (MPI's non-blocking
//! all-reduce), to be waited for after the pass.
use super::step::{combine, eval_part, train_part, Batch, MaskTotals, Part, StepInputs};
use super::{BatchStats, Compiled};
use crate::collective::{Collective, Ranked, SumUnderWay};
use crate::device::DeviceInfo;
use crate::error::{explain_out_of_memory, Error, Result};
use crate::model::Model;
use crate::parallel::split_batch;
use candle_core::{Device, Tensor};
use std::sync::Arc;

/// This worker's rows of a global batch (the executor checked that there is one for each).
fn my_rows<'r>(workers: &dyn Ranked, rows: &'r [usize]) -> &'r [usize] {
    &rows[split_batch(rows.len(), workers.size())[workers.rank()].clone()]
}

fn masks_across<'a>(s: &StepInputs, workers: &'a dyn Ranked) -> MaskTotals<'a> {
    if s.arch.makes_masks() {
        MaskTotals::Across(workers)
    } else {
        MaskTotals::Own
    }
}

/// The part's sums in one vector for the all-reduce: gradients, then the loss, each output's
/// loss, the metrics' sums, and each moving statistic times the part's rows.
fn flatten(part: &Part) -> Result<Vec<f64>> {
    let mut v = Vec::new();
    for g in &part.grads {
        v.extend(g.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f64::from));
    }
    v.push(part.loss_sum);
    v.extend(&part.output_losses);
    v.extend(&part.metric_sums);
    for (_, u) in &part.updates {
        v.extend(u.iter().map(|x| f64::from(*x) * part.rows as f64));
    }
    Ok(v)
}

/// The whole batch's part from the added-up sums (`rows`: the global batch's).
fn unflatten(template: Part, sums: &[f64], rows: usize) -> Result<Part> {
    let mut at = 0;
    let mut take = |n: usize| {
        let s = &sums[at..at + n];
        at += n;
        s
    };
    let grads = template
        .grads
        .iter()
        .map(|g| Ok(Tensor::from_vec(take(g.elem_count()).iter().map(|x| *x as f32).collect::<Vec<f32>>(), g.dims(), &Device::Cpu)?))
        .collect::<Result<Vec<_>>>()?;
    let loss_sum = take(1)[0];
    let output_losses = take(template.output_losses.len()).to_vec();
    let metric_sums = take(template.metric_sums.len()).to_vec();
    let updates = template.updates.iter().map(|(i, u)| (*i, take(u.len()).iter().map(|x| (*x / rows as f64) as f32).collect())).collect();
    Ok(Part { grads, loss_sum, output_losses, metric_sums, updates, rows })
}

/// Adds up every worker's part of the step.
fn all_parts(workers: &dyn Ranked, part: Part, rows: usize) -> Result<Part> {
    let mut sums = flatten(&part)?;
    workers.all_reduce_sum(&mut sums)?;
    unflatten(part, &sums, rows)
}

/// Gradient bytes per bucket, as doubles (PyTorch DDP's default bucket is 25 MB);
/// RUSTGPU_BUCKET_BYTES sets another size (tests make it small, to send several per step).
fn bucket_values() -> usize {
    let bytes = std::env::var("RUSTGPU_BUCKET_BYTES").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(25 << 20);
    (bytes / 8).max(1)
}

/// A bucket's layout ((weight index, values) of each gradient) and its sum under way.
type SentBucket = (Vec<(usize, usize)>, Box<dyn SumUnderWay>);

/// The buckets of one step: the one filling, and those whose sums are under way.
struct Buckets<'a> {
    collective: &'a dyn Collective,
    capacity: usize,
    filling: Vec<f64>,
    /// (weight index, values) of each gradient in `filling`, in order.
    filling_layout: Vec<(usize, usize)>,
    under_way: Vec<SentBucket>,
    sent: Vec<bool>,
}

impl<'a> Buckets<'a> {
    fn new(collective: &'a dyn Collective, weights: usize) -> Self {
        Self { collective, capacity: bucket_values(), filling: Vec::new(), filling_layout: Vec::new(), under_way: Vec::new(), sent: vec![false; weights] }
    }

    /// A layer's final gradients (None: zeros, of the weight's `shapes`).
    fn add(&mut self, range: std::ops::Range<usize>, grads: &[Option<Tensor>], shapes: &[Vec<usize>]) -> Result<()> {
        for (i, g) in range.zip(grads) {
            let n = shapes[i].iter().product::<usize>();
            match g {
                Some(g) => self.filling.extend(g.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f64::from)),
                None => self.filling.resize(self.filling.len() + n, 0.0),
            }
            self.filling_layout.push((i, n));
            self.sent[i] = true;
        }
        if self.filling.len() >= self.capacity {
            self.send()?;
        }
        for (_, sum) in &mut self.under_way {
            sum.nudge()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<()> {
        if !self.filling_layout.is_empty() {
            let values = std::mem::take(&mut self.filling);
            let sum = self.collective.start_sum(values)?;
            self.under_way.push((std::mem::take(&mut self.filling_layout), sum));
        }
        Ok(())
    }

    /// Sends what is left: the gradients no layer reported (none reached them), then the
    /// part's other sums (as [`flatten`] lays them out, gradients aside) as the last bucket;
    /// waits for every sum and builds the whole batch's part.
    fn finish(mut self, part: Part, shapes: &[Vec<usize>], rows: usize) -> Result<Part> {
        let missing: Vec<usize> = (0..self.sent.len()).filter(|i| !self.sent[*i]).collect();
        for i in missing {
            let g = part.grads[i].clone();
            self.add(i..i + 1, &[Some(g)], shapes)?;
        }
        self.send()?;
        let tail = flatten(&part.clone_sums())?;
        let tail = self.collective.start_sum(tail)?;
        let mut grads: Vec<Option<Tensor>> = vec![None; shapes.len()];
        for (layout, sum) in self.under_way {
            let values = sum.finish()?;
            let mut at = 0;
            for (i, n) in layout {
                let v: Vec<f32> = values[at..at + n].iter().map(|x| *x as f32).collect();
                grads[i] = Some(Tensor::from_vec(v, shapes[i].as_slice(), &Device::Cpu)?);
                at += n;
            }
        }
        let tail = tail.finish()?;
        let summed = unflatten(Part { grads: Vec::new(), ..part }, &tail, rows)?;
        let grads = grads.into_iter().map(|g| g.ok_or_else(|| Error::State("a gradient was not sent".into()))).collect::<Result<Vec<_>>>()?;
        Ok(Part { grads, ..summed })
    }
}

/// One optimizer step on this worker's share of `rows`; every worker ends with the same
/// weights. On any error the weights are untouched, on this worker and (since they wait for
/// this one's sums, and hear of its failure) on every other.
pub(super) fn train(
    workers: &Arc<dyn Ranked>,
    info: &DeviceInfo,
    model: &mut Model,
    compiled: &mut Compiled,
    batch: &Batch,
    rows: &[usize],
    seed: u64,
) -> Result<BatchStats> {
    let mine = my_rows(workers.as_ref(), rows);
    let s = StepInputs::new(model, Some(compiled), rows.len(), seed)?;
    let device = info.candle_device()?;
    let collective: Arc<dyn Collective> = workers.clone();
    let shapes = s.shapes.clone();
    let masks = masks_across(&s, workers.as_ref());
    let whole = match workers.device_sums(&device)? {
        Some(sums) => {
            // Summed on the devices (NCCL), each layer's as the pass finishes it, then brought
            // to the host for the update.
            let mut summed: Vec<Option<Tensor>> = vec![None; shapes.len()];
            let part = train_part(&s, &device, batch, mine, workers.rank(), false, masks, Some(collective), &mut |range, grads| {
                for (i, g) in range.zip(grads) {
                    if let Some(g) = g {
                        summed[i] = Some(sums.sum(g)?);
                    }
                }
                Ok(())
            })
            .map_err(|e| explain_out_of_memory(e, &info.label()))?;
            summed_on_devices(workers.as_ref(), sums.as_ref(), part, summed, rows.len())?
        }
        None => {
            let mut buckets = Buckets::new(workers.as_ref(), shapes.len());
            let part =
                train_part(&s, &device, batch, mine, workers.rank(), true, masks, Some(collective), &mut |range, grads| buckets.add(range, grads, &shapes))
                    .map_err(|e| explain_out_of_memory(e, &info.label()))?;
            buckets.finish(part, &shapes, rows.len())?
        }
    };
    let stats = combine(std::slice::from_ref(&whole), rows.len(), &s);
    drop(s);
    super::one_device::apply_update(model, compiled, whole)?;
    Ok(stats)
}

/// The whole batch's part from gradients summed on the devices (`summed`, by weight; those no
/// layer reported, the part's own zeros, summed now), on the host, and the part's other sums
/// added up through the host.
fn summed_on_devices(workers: &dyn Ranked, sums: &dyn crate::collective::DeviceSums, part: Part, summed: Vec<Option<Tensor>>, rows: usize) -> Result<Part> {
    let grads = summed
        .into_iter()
        .zip(&part.grads)
        .map(|(s, own)| {
            Ok(match s {
                Some(s) => s,
                None => sums.sum(own)?,
            }
            .to_device(&Device::Cpu)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut tail = flatten(&part.clone_sums())?;
    workers.all_reduce_sum(&mut tail)?;
    let whole = unflatten(part.clone_sums(), &tail, rows)?;
    Ok(Part { grads, ..whole })
}

pub(super) fn evaluate(workers: &Arc<dyn Ranked>, info: &DeviceInfo, model: &Model, compiled: &Compiled, batch: &Batch, rows: &[usize]) -> Result<BatchStats> {
    let mine = my_rows(workers.as_ref(), rows);
    let s = StepInputs::new(model, Some(compiled), rows.len(), 0)?;
    let part = eval_part(&s, &info.candle_device()?, batch, mine, workers.rank(), masks_across(&s, workers.as_ref()))
        .map_err(|e| explain_out_of_memory(e, &info.label()))?;
    let whole = all_parts(workers.as_ref(), part, rows.len())?;
    Ok(combine(std::slice::from_ref(&whole), rows.len(), &s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Sums of one member: records when each sum starts and is finished.
    struct Recorder {
        events: Arc<Mutex<Vec<String>>>,
    }

    struct Recorded {
        values: Vec<f64>,
        events: Arc<Mutex<Vec<String>>>,
    }

    impl Collective for Recorder {
        fn all_reduce_sum(&self, _values: &mut [f64]) -> Result<()> {
            Ok(())
        }

        fn start_sum(&self, values: Vec<f64>) -> Result<Box<dyn SumUnderWay>> {
            self.events.lock().unwrap().push(format!("start {}", values.len()));
            Ok(Box::new(Recorded { values, events: self.events.clone() }))
        }
    }

    impl SumUnderWay for Recorded {
        fn finish(self: Box<Self>) -> Result<Vec<f64>> {
            self.events.lock().unwrap().push("finish".into());
            // Two members with the same values.
            Ok(self.values.iter().map(|v| 2.0 * v).collect())
        }
    }

    #[test]
    fn full_buckets_are_sent_while_layers_finish_and_come_back_in_place() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let recorder = Recorder { events: events.clone() };
        let shapes = vec![vec![2, 3], vec![3], vec![4], vec![1]];
        let t = |v: Vec<f32>, shape: &[usize]| Tensor::from_vec(v, shape, &Device::Cpu).unwrap();
        let mut buckets = Buckets { capacity: 5, ..Buckets::new(&recorder, shapes.len()) };
        // The last layer finishes first (weights 2 and 3), then the first (0 and 1); weight 3
        // got no gradient (None: zeros).
        buckets.add(2..4, &[Some(t(vec![1.0, 2.0, 3.0, 4.0], &[4])), None], &shapes).unwrap();
        assert_eq!(*events.lock().unwrap(), vec!["start 5"], "a full bucket is sent at once");
        buckets.add(0..2, &[Some(t((0..6).map(|i| i as f32).collect(), &[2, 3])), Some(t(vec![7.0, 8.0, 9.0], &[3]))], &shapes).unwrap();
        let part = Part {
            grads: shapes.iter().map(|s| Tensor::zeros(s.as_slice(), candle_core::DType::F32, &Device::Cpu).unwrap()).collect(),
            loss_sum: 0.5,
            output_losses: vec![0.5],
            metric_sums: vec![3.0],
            updates: vec![(1, vec![1.0, 1.0, 1.0])],
            rows: 4,
        };
        let whole = buckets.finish(part, &shapes, 8).unwrap();
        assert_eq!(*events.lock().unwrap(), vec!["start 5", "start 9", "start 6", "finish", "finish", "finish"]);
        assert_eq!(whole.grads[0].flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(whole.grads[2].to_vec1::<f32>().unwrap(), vec![2.0, 4.0, 6.0, 8.0]);
        assert_eq!(whole.grads[3].to_vec1::<f32>().unwrap(), vec![0.0]);
        assert_eq!((whole.loss_sum, whole.rows), (1.0, 8));
        // Moving statistics: each member's times its rows, summed, over the whole batch's rows.
        assert_eq!(whole.updates, vec![(1, vec![1.0, 1.0, 1.0])]);
    }
}
