//! Optimizers with tf-keras 2.x's update rules (`tf_keras/src/optimizers/*.py`, the
//! non-legacy classes), applied in place to the master weights in f32. Each optimizer is one
//! file implementing [`OptimizerType`] (its Keras class name, its config fields with Keras's
//! names and defaults, its slots and its update) plus one line in [`OPTIMIZERS`]; compile(),
//! saved files and R all build optimizers through [`OptimizerConfig::from_config`].
//!
//! What every optimizer shares lives in [`Common`]: the learning rate, Keras 2's time-based
//! `decay` (`lr / (1 + decay * iterations)`, as tf-keras's legacy optimizers and Keras 2.2
//! apply it) and gradient clipping (`clipnorm`, else `clipvalue`, as tf-keras clips).
mod adadelta;
mod adagrad;
mod adam;
mod adamax;
mod nadam;
mod rmsprop;
mod schedule;
mod sgd;
mod sharded;

pub use schedule::{LearningRate, Schedule};
pub use sharded::{Mirror, UpdateShard};

use crate::error::{Error, Result};
use crate::model::Weight;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

/// An optimizer type: its Keras config (the struct itself, less the [`Common`] fields,
/// (de)serialized as Keras's `get_config()` writes it; `Default` = Keras's defaults), its
/// slots and its update rule.
pub trait OptimizerType: Serialize + DeserializeOwned + Default + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Keras's class name ("Adam"); `compile(optimizer = "adam")` takes it lowercased.
    const CLASS_NAME: &'static str;
    /// The learning rate when none is given (R keras 2.x's default for the optimizer).
    const DEFAULT_LEARNING_RATE: f64;
    /// How a saved file orders the slots: by weight (a weight's m and v, then the next
    /// weight's: Adam) or by kind (every weight's velocity, then every momentum: RMSprop).
    const SLOTS_BY_WEIGHT: bool;
    /// What the update needs that depends only on the step (bias corrections, the decayed
    /// learning rate), computed once per step.
    type Constants: Copy + Send + Sync;

    /// Checks the values (naming the argument) after parsing.
    fn normalize(&mut self) -> Result<()> {
        Ok(())
    }

    /// Keras's names of the slots this configuration keeps per weight, in Keras's order.
    fn slot_names(&self) -> Vec<&'static str>;

    /// The slots whose names differ in tf-keras's legacy optimizers (Keras 2's, which save
    /// `SGD/dense/kernel/momentum:0` where tf-keras 2.x saves `SGD/m/dense/kernel:0`):
    /// (name, legacy name) pairs.
    const LEGACY_SLOT_NAMES: &'static [(&'static str, &'static str)] = &[];

    /// The value slots start from (Adagrad's `initial_accumulator_value`).
    fn slot_initial_value(&self) -> f32 {
        0.0
    }

    /// The step's constants. `step` counts from 1; `state` holds what the optimizer carries
    /// between steps besides its slots (Nadam's momentum-schedule product), empty at first
    /// and after a restore.
    fn constants(&self, step: u64, learning_rate: f32, state: &mut Vec<f64>) -> Self::Constants;

    /// Updates `var` and its `slots` (one per [`OptimizerType::slot_names`]) from the
    /// gradient values `g`, element by element. Implementations are `#[inline(always)]`, so
    /// that the loops compile inside each vector-instruction variant (see `sharded`).
    fn update(&self, k: &Self::Constants, var: &mut [f32], g: impl Iterator<Item = f32>, slots: &mut [&mut [f32]]);
}

/// What every optimizer takes besides its own fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Common {
    #[serde(alias = "lr")]
    pub learning_rate: LearningRate,
    /// Keras 2's time-based learning-rate decay (0: none).
    #[serde(default)]
    pub decay: f64,
    /// Each weight's gradient is rescaled to this norm at most.
    #[serde(default)]
    pub clipnorm: Option<f64>,
    /// Each gradient value is clipped to [-clipvalue, clipvalue] (when `clipnorm` is unset).
    #[serde(default)]
    pub clipvalue: Option<f64>,
}

impl Common {
    fn check(&self) -> Result<()> {
        let positive = check_positive;
        if let LearningRate::Constant(lr) = self.learning_rate {
            positive(lr, "learning_rate")?;
        }
        if !(self.decay.is_finite() && self.decay >= 0.0) {
            return Err(Error::Value(format!("`decay` must be a number >= 0, got {}", self.decay)));
        }
        self.clipnorm.map_or(Ok(()), |v| positive(v, "clipnorm"))?;
        self.clipvalue.map_or(Ok(()), |v| positive(v, "clipvalue"))
    }

    /// This step's learning rate (f32 arithmetic, as TensorFlow's `_decayed_lr`).
    fn learning_rate_at(&self, iterations: u64) -> f32 {
        let lr = self.learning_rate.at(iterations);
        if self.decay > 0.0 {
            lr / (1.0 + self.decay as f32 * iterations as f32)
        } else {
            lr
        }
    }
}

/// The object-safe face of an [`OptimizerType`].
pub trait AnyOptimizer: std::fmt::Debug + Send + Sync {
    fn class_name(&self) -> &'static str;
    fn slots_by_weight(&self) -> bool;
    fn slot_names(&self) -> Vec<&'static str>;
    fn legacy_slot_name(&self, name: &'static str) -> &'static str;
    fn slot_initial_value(&self) -> f32;
    /// The type's own config fields.
    fn config_json(&self) -> Value;
    /// The update of one step, ready to run on any thread.
    fn prepare(&self, step: u64, learning_rate: f32, state: &mut Vec<f64>) -> Box<dyn PreparedUpdate + '_>;
}

impl<T: OptimizerType> AnyOptimizer for T {
    fn class_name(&self) -> &'static str {
        T::CLASS_NAME
    }
    fn slots_by_weight(&self) -> bool {
        T::SLOTS_BY_WEIGHT
    }
    fn slot_names(&self) -> Vec<&'static str> {
        OptimizerType::slot_names(self)
    }
    fn legacy_slot_name(&self, name: &'static str) -> &'static str {
        T::LEGACY_SLOT_NAMES.iter().find(|(n, _)| *n == name).map_or(name, |(_, legacy)| legacy)
    }
    fn slot_initial_value(&self) -> f32 {
        OptimizerType::slot_initial_value(self)
    }
    fn config_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    fn prepare(&self, step: u64, learning_rate: f32, state: &mut Vec<f64>) -> Box<dyn PreparedUpdate + '_> {
        Box::new(sharded::Prepared { rule: self, k: self.constants(step, learning_rate, state) })
    }
}

/// One step's update of a chunk of a weight, given its gradient.
pub trait PreparedUpdate: Send + Sync {
    fn update(&self, var: &mut [f32], g: Grad<'_>, slots: &mut [&mut [f32]]);
}

/// A chunk's gradient: one replica's (or the summed) values, or two replicas' parts, added
/// as the update reads them.
#[derive(Clone, Copy)]
pub enum Grad<'a> {
    One(&'a [f32]),
    Two(&'a [f32], &'a [f32]),
}

/// A value in [lo, hi] (hi itself only when `hi_inclusive`), for `normalize()`.
pub(crate) fn check_range(v: f64, what: &str, lo: f64, hi: f64, hi_inclusive: bool) -> Result<()> {
    let ok = v >= lo && (v < hi || (hi_inclusive && v <= hi));
    if ok {
        Ok(())
    } else {
        Err(Error::Value(format!("`{}` must be in [{}, {}{}, got {}", what, lo, hi, if hi_inclusive { "]" } else { ")" }, v)))
    }
}

pub(crate) fn check_positive(v: f64, what: &str) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::Value(format!("`{}` must be a positive number, got {}", what, v)))
    }
}

/// An optimizer type's entry: its Keras class name and how to build it from its config.
pub struct Registration {
    pub class_name: &'static str,
    pub default_learning_rate: f64,
    parse: fn(&Value) -> Result<Arc<dyn AnyOptimizer>>,
}

impl Registration {
    pub const fn of<T: OptimizerType>() -> Self {
        Self { class_name: T::CLASS_NAME, default_learning_rate: T::DEFAULT_LEARNING_RATE, parse: parse::<T> }
    }
}

fn parse<T: OptimizerType>(config: &Value) -> Result<Arc<dyn AnyOptimizer>> {
    let mut rule: T = serde_path_to_error::deserialize(config).map_err(|e| {
        let field = e.path().to_string();
        let at = if field == "." { String::new() } else { format!(" `{}`", field) };
        Error::Value(format!("{} config{}: {}", T::CLASS_NAME, at, e.into_inner()))
    })?;
    rule.normalize().map_err(|e| match e {
        Error::Value(m) => Error::Value(format!("{}: {}", T::CLASS_NAME, m)),
        other => other,
    })?;
    Ok(Arc::new(rule))
}

/// One line per optimizer.
pub static OPTIMIZERS: &[Registration] = &[
    Registration::of::<sgd::Sgd>(),
    Registration::of::<rmsprop::RmsProp>(),
    Registration::of::<adam::Adam>(),
    Registration::of::<adagrad::Adagrad>(),
    Registration::of::<adadelta::Adadelta>(),
    Registration::of::<adamax::Adamax>(),
    Registration::of::<nadam::Nadam>(),
];

/// The registration of a class name, in any case ("Adam", "adam", "Custom>Adam").
pub fn find(name: &str) -> Result<&'static Registration> {
    let name = name.trim_start_matches("Custom>");
    OPTIMIZERS.iter().find(|r| r.class_name.eq_ignore_ascii_case(name)).ok_or_else(|| {
        let names: Vec<String> = OPTIMIZERS.iter().map(|r| format!("\"{}\"", r.class_name.to_ascii_lowercase())).collect();
        Error::Value(format!("unknown optimizer \"{}\": expected one of {}, or an optimizer object such as optimizer_adam()", name, names.join(", ")))
    })
}

/// An optimizer's configuration: what it shares with every optimizer, and its type's own.
#[derive(Debug, Clone)]
pub struct OptimizerConfig {
    pub common: Common,
    rule: Arc<dyn AnyOptimizer>,
}

impl OptimizerConfig {
    /// Keras's defaults for the optimizer `compile()` names by string ("adam").
    pub fn by_name(name: &str) -> Result<Self> {
        Self::from_config(name, &json!({}))
    }

    /// The optimizer class `name` (any case) from its Keras config: R's optimizer objects
    /// and saved files alike. Fields it does not know (Keras's `use_ema`, ...) are ignored.
    pub fn from_config(name: &str, config: &Value) -> Result<Self> {
        let reg = find(name)?;
        if !config.is_object() {
            return Err(Error::Value(format!("the config of a {} optimizer must be a named list (a JSON object)", reg.class_name)));
        }
        let mut fields = config.clone();
        if let Some(o) = fields.as_object_mut() {
            // Keras writes null for "not set"; a learning-rate schedule is an object.
            o.retain(|_, v| !v.is_null());
            if !o.contains_key("learning_rate") && !o.contains_key("lr") {
                o.insert("learning_rate".into(), json!(reg.default_learning_rate));
            }
            // Keras 2's Nadam (and tf-keras's legacy one, which writes its `schedule_decay`
            // as `decay`) decays the momentum schedule, never the learning rate.
            let legacy = o.get("is_legacy_optimizer").and_then(Value::as_bool) != Some(false);
            // (Our own configs carry `decay: 0`, Nadam's lr decay being unsupported: left.)
            if reg.class_name == "Nadam" && legacy && o.get("decay").and_then(Value::as_f64).is_some_and(|d| d != 0.0) {
                if let Some(d) = o.remove("decay") {
                    o.entry("schedule_decay").or_insert(d);
                }
            }
        }
        let common: Common = serde_json::from_value(fields.clone()).map_err(|e| Error::Value(format!("{} config: {}", reg.class_name, e)))?;
        common.check().map_err(|e| match e {
            Error::Value(m) => Error::Value(format!("{}: {}", reg.class_name, m)),
            other => other,
        })?;
        Ok(Self { common, rule: (reg.parse)(&fields)? })
    }

    /// Keras's class name ("Adam").
    pub fn name(&self) -> &'static str {
        self.rule.class_name()
    }

    /// Every field, Keras's names: the common ones and the type's own.
    pub fn fields(&self) -> Value {
        let mut v = self.rule.config_json();
        if let (Some(o), Ok(Value::Object(c))) = (v.as_object_mut(), serde_json::to_value(&self.common)) {
            for (k, val) in c {
                o.insert(k, val);
            }
        }
        v
    }

    /// `{"class_name": ..., "config": ...}` as tf-keras 2.x writes it (as its legacy
    /// optimizer, which alone has `decay` and Nadam's `schedule_decay`, when one is set).
    pub fn keras_config(&self) -> Value {
        let mut cfg = json!({ "name": self.name(), "weight_decay": null, "clipnorm": null, "global_clipnorm": null, "clipvalue": null,
                              "use_ema": false, "ema_momentum": 0.99, "ema_overwrite_frequency": null, "jit_compile": false,
                              "is_legacy_optimizer": false });
        let fields = self.fields();
        let legacy = self.common.decay > 0.0 || fields.get("schedule_decay").is_some();
        if let (Some(o), Value::Object(fields)) = (cfg.as_object_mut(), fields) {
            for (k, v) in fields {
                if k != "decay" || legacy {
                    o.insert(k, v);
                }
            }
            if legacy {
                o.insert("is_legacy_optimizer".into(), json!(true));
            }
        }
        json!({ "class_name": self.name(), "config": cfg })
    }

    /// Sets a constant learning rate (replacing a schedule).
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.common.learning_rate = LearningRate::Constant(lr);
    }

    /// The learning rate at `step` (a schedule's value there).
    pub fn learning_rate_at(&self, step: u64) -> f64 {
        match &self.common.learning_rate {
            LearningRate::Constant(v) => *v,
            LearningRate::Schedule(s) => s.at(step) as f64,
        }
    }

    /// The constant learning rate, or a schedule's first.
    pub fn learning_rate(&self) -> f64 {
        match &self.common.learning_rate {
            LearningRate::Constant(v) => *v,
            LearningRate::Schedule(s) => s.initial(),
        }
    }
}

impl PartialEq for OptimizerConfig {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name() && self.fields() == other.fields()
    }
}

/// An optimizer with its state (iteration count, per-weight slots, and the scalars some
/// optimizers carry between steps).
#[derive(Debug, Clone)]
pub struct Optimizer {
    pub config: OptimizerConfig,
    pub iterations: u64,
    slots: Vec<Vec<Vec<f32>>>,
    state: Vec<f64>,
    /// Each weight's regularizer (the model's; set by the training step), whose gradient
    /// the update adds to the loss's.
    pub regularizers: Vec<Option<crate::regularizer::Regularizer>>,
    /// Each weight's gradient of the layers' losses on their weights (see
    /// `Model::weight_losses`; set by the training step, None for most weights), which the
    /// update adds to the loss's as it adds a regularizer's.
    pub loss_gradients: Vec<Option<Vec<f32>>>,
}

impl Optimizer {
    pub fn new(config: OptimizerConfig) -> Self {
        Self { config, iterations: 0, slots: Vec::new(), state: Vec::new(), regularizers: Vec::new(), loss_gradients: Vec::new() }
    }

    /// Keras's names for the slots this configuration keeps per weight, in Keras's order,
    /// with each one's index in our slot list.
    pub fn slot_names(&self) -> Vec<(&'static str, usize)> {
        self.config.rule.slot_names().into_iter().enumerate().map(|(i, n)| (n, i)).collect()
    }

    /// A slot's name in tf-keras's legacy optimizers (see [`OptimizerType::LEGACY_SLOT_NAMES`]).
    pub fn legacy_slot_name(&self, name: &'static str) -> &'static str {
        self.config.rule.legacy_slot_name(name)
    }

    /// Whether a saved file lists each weight's slots together (see [`OptimizerType::SLOTS_BY_WEIGHT`]).
    pub fn slots_by_weight(&self) -> bool {
        self.config.rule.slots_by_weight()
    }

    /// Slot `slot` of weight `weight` (its initial value before the first step).
    pub fn slot(&self, weight: usize, slot: usize, len: usize) -> Vec<f32> {
        self.slots.get(weight).and_then(|s| s.get(slot)).cloned().unwrap_or_else(|| vec![self.config.rule.slot_initial_value(); len])
    }

    fn fresh_slots(&self, weight_lens: &[usize]) -> Result<Vec<Vec<Vec<f32>>>> {
        let (k, init) = (self.config.rule.slot_names().len(), self.config.rule.slot_initial_value());
        let values = weight_lens.iter().try_fold(0u64, |a, n| a.checked_add(*n as u64)).and_then(|n| n.checked_mul(k as u64));
        crate::memory::check(
            &format!("{}'s state ({} value{} per weight value)", self.config.name(), k, if k == 1 { "" } else { "s" }),
            values.and_then(|n| crate::memory::bytes(n, 4)),
            "use a smaller model or an optimizer with less state (SGD without momentum keeps none)",
        )?;
        let what = format!("{}'s state", self.config.name());
        weight_lens.iter().map(|n| (0..k).map(|_| crate::memory::filled(*n, init, &what)).collect()).collect()
    }

    /// Restores state saved from `slot`: `values[w]` holds (slot index, values) pairs.
    pub fn restore(&mut self, iterations: u64, weight_lens: &[usize], values: Vec<Vec<(usize, Vec<f32>)>>) -> Result<()> {
        let mut slots = self.fresh_slots(weight_lens)?;
        for (w, per_weight) in values.into_iter().enumerate() {
            for (slot, v) in per_weight {
                if w >= slots.len() || slot >= slots[w].len() || v.len() != weight_lens[w] {
                    return Err(Error::Value(format!("optimizer state does not match weight {}", w)));
                }
                slots[w][slot] = v;
            }
        }
        self.slots = slots;
        self.iterations = iterations;
        self.state.clear();
        Ok(())
    }

    /// One update of every trainable weight, on the calling thread. `parts[r][w]` is
    /// replica `r`'s gradient of weight `w`.
    pub fn apply(&mut self, weights: &mut [Weight], parts: &[Vec<&[f32]>]) -> Result<()> {
        self.apply_sharded(weights, None, 1, |shards| shards.into_iter().try_for_each(|shard| shard(parts)))
    }
}

#[cfg(test)]
mod tests;
