//! compile / train / evaluate / predict: batches are gathered from R's memory here,
//! only the rows each batch needs.
use crate::convert::{host_to_r, r_to_json, row_indices, RArray};
use crate::{guard, handle, seed_from, ModelHandle};
use extendr_api::prelude::*;
use rustgpu_core::loss::Loss;
use rustgpu_core::metrics::Metric;
use rustgpu_core::optim::{Optimizer, OptimizerConfig};
use rustgpu_core::tensor::BatchSource;
use rustgpu_core::{BatchStats, Compiled, Error, HostTensor, Result};

/// An R optimizer object (`list(name = "adam", learning_rate = ..., ...)`, Keras's field
/// names) as the core's configuration, through the same parser as a saved file's.
fn optimizer_config(opt: &List) -> Result<OptimizerConfig> {
    let name = opt.iter().find(|(k, _)| *k == "name").and_then(|(_, v)| v.as_str().map(|s| s.to_string())).unwrap_or_default();
    let mut fields = r_to_json(&Robj::from(opt.clone()))?;
    if let Some(o) = fields.as_object_mut() {
        o.remove("name");
    }
    OptimizerConfig::from_config(&name, &fields)
}

/// A loss or metric function written in R, as R/backend.R passes it: the JSON of its name
/// and trace (inputs y_true and y_pred), or for a metric its traces per model output
/// (`per_output`); None for a plain name.
fn traced_functions(spec: &str) -> Result<Option<Vec<Loss>>> {
    if !spec.starts_with('{') {
        return Ok(None);
    }
    let unreadable = |e: String| Error::Value(format!("a traced function could not be read: {}", e));
    let spec: serde_json::Value = serde_json::from_str(spec).map_err(|e| unreadable(e.to_string()))?;
    let one = |mut spec: serde_json::Value| -> Result<Loss> {
        let name = spec.get("name").and_then(|n| n.as_str()).unwrap_or("custom_function").to_string();
        let trace: rustgpu_core::trace::Trace = serde_json::from_value(spec["trace"].take()).map_err(|e| unreadable(e.to_string()))?;
        let extra_nodes: Vec<usize> = serde_json::from_value(spec["extra_nodes"].take()).map_err(|e| unreadable(e.to_string()))?;
        Loss::traced(&name, trace, extra_nodes)
    };
    match spec.get("per_output").and_then(|p| p.as_array()) {
        Some(parts) => Ok(Some(parts.iter().cloned().map(one).collect::<Result<Vec<_>>>()?)),
        None => Ok(Some(vec![one(spec)?])),
    }
}

fn parse_loss(spec: &str) -> Result<Loss> {
    match traced_functions(spec)? {
        Some(mut losses) if losses.len() == 1 => Ok(losses.remove(0)),
        Some(_) => Err(Error::Value("a loss is traced for one output".into())),
        None => Loss::parse(spec),
    }
}

/// @noRd
#[extendr]
fn rg_compile(mut ptr: Robj, optimizer: List, losses: Vec<String>, loss_weights: Vec<f64>, metrics: Vec<String>) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let losses = losses.iter().map(|l| parse_loss(l)).collect::<Result<Vec<_>>>()?;
        if losses.is_empty() || loss_weights.len() != losses.len() {
            return Err(Error::Value("give one loss (and one loss weight) per model output".into()));
        }
        let config = optimizer_config(&optimizer)?;
        // Names are checked now; "accuracy" is resolved per output at each step.
        let metrics = metrics
            .iter()
            .map(|m| match traced_functions(m)? {
                Some(per_output) => {
                    let name = per_output[0].name().to_string();
                    Metric::custom(&name, per_output)
                }
                None => Metric::resolve(m, &losses[0], 2),
            })
            .collect::<Result<Vec<_>>>()?;
        // Which metrics report a value over the epoch (R does not average those over batches):
        // all of them, from their sums (a mean's is its sum over its count, which a masked
        // output's steps make other than the rows).
        let from_sums = vec![true; metrics.len()];
        h.compiled = Some(Compiled { losses, loss_weights, metrics, optimizer: Optimizer::new(config) });
        Ok(from_sums.into())
    })
}

/// `x` as its arrays: one, or the elements of a list for a model with several inputs.
fn input_items(x: &Robj) -> Vec<Robj> {
    if x.rtype() == Rtype::List && !x.inherits("data.frame") {
        List::try_from(x.clone()).map(|l| l.values().collect()).unwrap_or_default()
    } else {
        vec![x.clone()]
    }
}

/// Arrays named after their argument (`x`, or `x[[2]]` in a list of several).
fn arrays<'a>(items: &'a [Robj], arg: &str) -> Result<Vec<RArray<'a>>> {
    if items.is_empty() {
        return Err(Error::Value(format!("`{}` is an empty list: give one array per model {}", arg, if arg == "x" { "input" } else { "output" })));
    }
    let many = items.len() > 1;
    items.iter().enumerate().map(|(i, v)| RArray::new(v, &if many { format!("{}[[{}]]", arg, i + 1) } else { arg.to_string() }, true)).collect()
}

fn input_arrays(items: &[Robj]) -> Result<Vec<RArray<'_>>> {
    arrays(items, "x")
}

fn sources<'a>(xs: &'a [RArray<'a>]) -> Vec<&'a dyn BatchSource> {
    xs.iter().map(|x| x as &dyn BatchSource).collect()
}

/// Builds the model for `x` if needed and re-resolves metrics for the real output width.
fn prepare(h: &mut ModelHandle, xs: &[RArray]) -> Result<()> {
    let shapes: Vec<Vec<usize>> = xs.iter().map(|x| x.dims[1..].to_vec()).collect();
    h.model.lock().unwrap_or_else(|e| e.into_inner()).ensure_built(&shapes)?;
    Ok(())
}

fn require_compiled<'a>(h: &'a mut ModelHandle, what: &str) -> Result<&'a mut Compiled> {
    h.compiled.as_mut().ok_or_else(|| Error::State(format!("the model must be compiled before `{}()`: call compile(model, optimizer = , loss = ) first", what)))
}

/// c(loss, per-output losses (several outputs only), metrics output by output).
fn stats_to_r(s: &BatchStats) -> Robj {
    let mut v = vec![s.loss];
    v.extend_from_slice(&s.output_losses);
    v.extend_from_slice(&s.metrics);
    v.into()
}

fn optional_array(w: &Robj) -> Result<Option<RArray<'_>>> {
    if w.is_null() {
        Ok(None)
    } else {
        Ok(Some(RArray::new(w, "sample_weight", true)?))
    }
}

/// Target arrays, one per output (`y` itself, or its list elements).
fn target_arrays(items: &[Robj]) -> Result<Vec<RArray<'_>>> {
    arrays(items, "y")
}

/// Reads `x` and `y` (an array, or a list of one per input/output), builds the model for `x`
/// if needed, and hands the arrays (borrowed from R's memory) to `f`.
fn with_xy<T>(h: &mut ModelHandle, x: &Robj, y: &Robj, f: impl FnOnce(&mut ModelHandle, &[RArray], &[RArray]) -> Result<T>) -> Result<T> {
    let x_items = input_items(x);
    let xs = input_arrays(&x_items)?;
    let y_items = input_items(y);
    let ys = target_arrays(&y_items)?;
    prepare(h, &xs)?;
    f(h, &xs, &ys)
}

/// Checks an array once before a fit: numeric type and no NA/NaN/Inf (no copy).
/// @noRd
#[extendr]
fn rg_check_data(x: Robj, what: &str) -> Robj {
    guard(|| {
        let arr = RArray::new(&x, what, true)?;
        arr.check_finite(what)?;
        Ok((arr.rows() as f64).into())
    })
}

/// A row-major f32 copy of `x` (an array, or a list of arrays) for fit(): batches of shuffled
/// rows are then whole-row copies. Converted on the replicas' workers for a parallel model
/// `ptr` (NULL: on the CPU pool). Returns an external pointer per array (a list for a list).
/// @noRd
#[extendr]
fn rg_stage(x: Robj, what: &str, mut ptr: Robj) -> Robj {
    guard(|| {
        let items = input_items(&x);
        let executor = if ptr.is_null() { None } else { Some(&handle(&mut ptr)?.executor) };
        let staged = arrays(&items, what)?
            .iter()
            .map(|a| {
                let mut ptr: Robj = ExternalPtr::new(crate::convert::stage(a, executor)?).into();
                ptr.set_class(&[crate::convert::STAGED_CLASS]).map_err(|e| Error::State(e.to_string()))?;
                Ok(ptr)
            })
            .collect::<Result<Vec<Robj>>>()?;
        Ok(if x.rtype() == Rtype::List && !x.inherits("data.frame") { List::from_values(staged).into() } else { staged.into_iter().next().unwrap_or_default() })
    })
}

/// Seconds to convert rows `rows` (1-based) of `x` (an R array or a staged copy) into one
/// batch, averaged over `repeats` conversions: the R data path the benchmarks measure.
/// @noRd
#[extendr]
fn rg_gather_seconds(x: Robj, rows: Robj, repeats: f64) -> Robj {
    guard(|| {
        let arr = RArray::new(&x, "x", true)?;
        let rows = row_indices(&rows, arr.rows())?;
        let n = (repeats as usize).max(1);
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(arr.gather(&rows));
        }
        Ok((start.elapsed().as_secs_f64() / n as f64).into())
    })
}

/// Replaces the metrics' values by their values over `sums` (an epoch's or an evaluation's).
fn results_over(model: &rustgpu_core::Model, compiled: &Compiled, stats: &mut BatchStats, sums: &[f64]) {
    if !compiled.metrics.is_empty() {
        stats.metrics = rustgpu_core::train::metric_results(compiled, model.arch.outputs().len(), sums);
    }
}

/// One optimizer step on rows `rows` (1-based) of `x`, `y`; returns c(loss, metrics...).
/// `first`: the first batch of an epoch (or a train_on_batch() call), where stateful metrics
/// start again.
/// @noRd
#[extendr]
fn rg_train_batch(mut ptr: Robj, x: Robj, y: Robj, sample_weight: Robj, rows: Robj, seed: Robj, first: bool) -> Robj {
    guard(|| {
        with_xy(handle(&mut ptr)?, &x, &y, |h, xs, ys| {
            let rows = row_indices(&rows, xs[0].rows())?;
            require_compiled(h, "fit")?;
            let step_seed = seed_from(&seed) ^ h.steps;
            let mut model = h.model.lock().unwrap_or_else(|e| e.into_inner());
            let compiled = h.compiled.as_mut().expect("checked above");
            let weights = optional_array(&sample_weight)?;
            let mut stats = h.executor.train_on_batch(
                &mut model,
                compiled,
                &sources(xs),
                &sources(ys),
                weights.as_ref().map(|w| w as &dyn BatchSource),
                &rows,
                step_seed,
            )?;
            h.steps += 1;
            if first || h.epoch_metric_sums.len() != stats.metric_sums.len() {
                h.epoch_metric_sums = vec![0.0; stats.metric_sums.len()];
            }
            h.epoch_metric_sums.iter_mut().zip(&stats.metric_sums).for_each(|(a, b)| *a += b);
            results_over(&model, compiled, &mut stats, &h.epoch_metric_sums);
            Ok(stats_to_r(&stats))
        })
    })
}

/// Loss and metrics over rows of `x`, `y`, batch by batch; returns c(loss, metrics...).
/// @noRd
#[extendr]
fn rg_evaluate(mut ptr: Robj, x: Robj, y: Robj, sample_weight: Robj, rows: Robj, batch_size: f64) -> Robj {
    guard(|| {
        with_xy(handle(&mut ptr)?, &x, &y, |h, xs, ys| {
            require_compiled(h, "evaluate")?;
            let model = h.model.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let compiled = h.compiled.as_ref().expect("checked above");
            let bs = (batch_size as usize).max(1);
            // `rows` (1-based) selects a subset, e.g. the validation split; NULL means all rows.
            let rows: Vec<usize> = if rows.is_null() { (0..xs[0].rows()).collect() } else { row_indices(&rows, xs[0].rows())? };
            let weights = optional_array(&sample_weight)?;
            // Sample-weighted means over the batches, of every figure a batch reports.
            let mut sums: Vec<f64> = Vec::new();
            let mut metric_sums: Vec<f64> = Vec::new();
            let mut seen = 0usize;
            let mut shape = None;
            for chunk in rows.chunks(bs) {
                rustgpu_core::cancel::check()?;
                let s = h.executor.test_on_batch(&model, compiled, &sources(xs), &sources(ys), weights.as_ref().map(|w| w as &dyn BatchSource), chunk)?;
                metric_sums.resize(s.metric_sums.len(), 0.0);
                metric_sums.iter_mut().zip(&s.metric_sums).for_each(|(a, b)| *a += b);
                let figures: Vec<f64> = std::iter::once(s.loss).chain(s.output_losses.iter().copied()).chain(s.metrics.iter().copied()).collect();
                if sums.is_empty() {
                    sums = vec![0.0; figures.len()];
                    shape = Some((s.output_losses.len(), s.metrics.len()));
                }
                for (acc, v) in sums.iter_mut().zip(figures) {
                    *acc += v * s.rows as f64;
                }
                seen += s.rows;
            }
            let Some((n_outputs, _)) = shape else {
                return Err(Error::Value("`x` has 0 rows: nothing to evaluate".into()));
            };
            let means: Vec<f64> = sums.into_iter().map(|v| v / seen as f64).collect();
            let mut total = BatchStats {
                rows: seen,
                loss: means[0],
                output_losses: means[1..1 + n_outputs].to_vec(),
                metrics: means[1 + n_outputs..].to_vec(),
                metric_sums: Vec::new(),
            };
            results_over(&model, compiled, &mut total, &metric_sums);
            Ok(stats_to_r(&total))
        })
    })
}

/// Model outputs for all rows of `x`, computed batch by batch.
/// @noRd
#[extendr]
fn rg_predict(mut ptr: Robj, x: Robj, batch_size: f64, seed: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        // R has checked the values once (rg_check_data); only the shape matters here.
        let items = input_items(&x);
        let xs = input_arrays(&items)?;
        if xs[0].rows() == 0 {
            return Err(Error::Value("`x` has 0 rows: nothing to predict".into()));
        }
        prepare(h, &xs)?;
        let model = h.model.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let bs = (batch_size as usize).max(1);
        let rows: Vec<usize> = (0..xs[0].rows()).collect();
        let inputs = sources(&xs);
        // Each batch's random draws (in lambda layers) from its own seed, from R's RNG.
        let seed = seed_from(&seed);
        let batches: Vec<&[usize]> = rows.chunks(bs).collect();
        let parts = h.executor.predict_batches(&model, &inputs, &batches, seed)?;
        let n_outputs = parts.first().map_or(1, |p| p.len());
        let merged = (0..n_outputs).map(|k| HostTensor::concat_rows(&parts.iter().map(|p| p[k].clone()).collect::<Vec<_>>())).collect::<Result<Vec<_>>>()?;
        if n_outputs == 1 {
            Ok(host_to_r(&merged[0]))
        } else {
            Ok(List::from_values(merged.iter().map(host_to_r)).into())
        }
    })
}

/// The optimizer's learning rate (NA before compile), or sets it when `value` is a number.
/// @noRd
#[extendr]
fn rg_learning_rate(mut ptr: Robj, value: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let c = require_compiled(h, "set the learning rate")?;
        if let Some(v) = value.as_real() {
            c.optimizer.config.set_learning_rate(v);
        }
        Ok(c.optimizer.config.learning_rate_at(c.optimizer.iterations).into())
    })
}

/// Marks the weights of the named layers trainable or not (a layer's own state, such as
/// batch normalization's moving statistics, is never trainable).
/// @noRd
#[extendr]
fn rg_set_trainable(mut ptr: Robj, layers: Vec<String>, trainable: bool) -> Robj {
    guard(|| {
        handle(&mut ptr)?.model.lock().unwrap_or_else(|e| e.into_inner()).set_trainable(&layers, trainable);
        Ok(().into())
    })
}

extendr_module! {
    mod training;
    fn rg_learning_rate;
    fn rg_set_trainable;
    fn rg_compile;
    fn rg_check_data;
    fn rg_stage;
    fn rg_gather_seconds;
    fn rg_train_batch;
    fn rg_evaluate;
    fn rg_predict;
}
