//! Keras's layer wrappers: TimeDistributed (a layer applied to every time step) and
//! Bidirectional (a recurrent layer run forwards and backwards, outputs merged). Each holds
//! the wrapped layer, built through the registry from its Keras config.
use super::{Cache, Example, ForwardContext, Inputs, Layer, LayerGrads, LayerOutput, LayerType, OutputGrad, WeightSpec};
use crate::error::{Error, Result};
use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The wrapped layer from Keras's `{"class_name", "config"}`.
pub(super) fn inner_layer(v: &Value) -> Result<Layer> {
    let class = v.get("class_name").and_then(Value::as_str).ok_or_else(|| Error::Value(format!("`layer` must be a Keras layer config, got {}", v)))?;
    let config = v.get("config").cloned().unwrap_or_else(|| serde_json::json!({}));
    Layer::from_config(class, &config, 0)
}

/// The wrapped layer's settings padded to its weights (a layer lists fewer than it has
/// weights when it has none for some, e.g. no bias).
fn padded<T: Clone>(layer: &Layer, mut settings: Vec<Option<T>>, input: &[usize]) -> Vec<Option<T>> {
    settings.resize(layer.weight_specs(input).len(), None);
    settings
}

/// A gradient at a wrapper's output, with its dims changed (the logits keep theirs).
fn reshaped(grad: OutputGrad, dims: &[usize]) -> Result<OutputGrad> {
    Ok(match grad {
        OutputGrad::Value(g) => OutputGrad::Value(g.reshape(dims)?),
        OutputGrad::Logits(g) => OutputGrad::Logits(g.reshape(dims)?),
    })
}

/// Serialized form of both wrappers: the wrapped layer's config, and Bidirectional's merge.
/// `merge_mode`: None for TimeDistributed (not written); Some(None) is Keras's `null` (two
/// separate outputs), told apart from a missing field (Keras's default, "concat").
#[derive(Clone, Serialize, Deserialize)]
pub struct WrapperConfig {
    layer: Value,
    #[serde(default = "concat", deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    merge_mode: Option<Option<String>>,
}

fn concat() -> Option<Option<String>> {
    Some(Some("concat".into()))
}

/// A present field, null or not (plain serde reads `null` into the outer None).
fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "WrapperConfig", into = "WrapperConfig")]
pub struct TimeDistributed {
    pub layer: Layer,
}

impl TryFrom<WrapperConfig> for TimeDistributed {
    type Error = Error;
    fn try_from(c: WrapperConfig) -> Result<Self> {
        Ok(Self { layer: inner_layer(&c.layer)? })
    }
}

impl From<TimeDistributed> for WrapperConfig {
    fn from(t: TimeDistributed) -> Self {
        WrapperConfig { layer: t.layer.keras_config(), merge_mode: None }
    }
}

struct TimeDistributedCache {
    inner: Cache,
    input_dims: Vec<usize>,
}

impl LayerType for TimeDistributed {
    const CLASS_NAME: &'static str = "TimeDistributed";
    const NAME_PREFIX: &'static str = "time_distributed";
    const PROPAGATES_MASK: bool = true;

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let input = &inputs[0];
        if input.len() < 2 {
            return Err(Error::Value(format!(
                "layer \"{}\" (TimeDistributed) needs inputs of shape (batch, time, ...), got (batch, {})",
                name,
                crate::shape::join_dims(input)
            )));
        }
        let mut out = vec![input[0]];
        out.extend(self.layer.output_shape(&input[1..])?);
        Ok(out)
    }

    fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        self.layer.weight_specs(input.get(1..).unwrap_or(&[]))
    }

    fn forward(&self, _name: &str, weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let dims = x.dims().to_vec();
        let mut flat = vec![dims[0] * dims[1]];
        flat.extend(&dims[2..]);
        let mask = ctx.mask.take();
        let result = self.layer.forward(weights, &x.reshape(flat)?, ctx);
        ctx.mask = mask;
        let (out, inner) = result?;
        let unflat = |t: Tensor| -> Result<Tensor> {
            let mut d = vec![dims[0], dims[1]];
            d.extend(&t.dims()[1..]);
            Ok(t.reshape(d)?)
        };
        let logits = out.logits.map(|(z, a)| Ok::<_, Error>((unflat(z)?, a))).transpose()?;
        Ok((LayerOutput { value: unflat(out.value)?, logits }, Cache::new(TimeDistributedCache { inner, input_dims: dims })))
    }

    fn backward(&self, _name: &str, weights: &[Tensor], _t: &[Option<Tensor>], cache: &Cache, grad: OutputGrad, need_input_grad: bool) -> Result<LayerGrads> {
        let c = cache.get::<TimeDistributedCache>()?;
        let g = match &grad {
            OutputGrad::Value(g) | OutputGrad::Logits(g) => g,
        };
        let mut flat = vec![c.input_dims[0] * c.input_dims[1]];
        flat.extend(&g.dims()[2..]);
        let mut out = self.layer.backward(weights, &c.inner, reshaped(grad, &flat)?, need_input_grad)?;
        out.input = out.input.map(|i| i.reshape(c.input_dims.as_slice())).transpose()?;
        Ok(out)
    }

    fn weight_regularizers(&self) -> Vec<Option<crate::regularizer::Regularizer>> {
        self.layer.kind.weight_regularizers()
    }

    fn weight_constraints(&self) -> Vec<Option<crate::constraint::Constraint>> {
        self.layer.kind.weight_constraints()
    }

    fn weight_losses(&self) -> &[crate::trace::Trace] {
        self.layer.kind.weight_losses()
    }

    fn reset_states(&self) {
        self.layer.kind.reset_states()
    }

    fn working_elements_per_row(&self, input: &[usize]) -> Option<u64> {
        let time = *input.first()? as u64;
        time.checked_mul(self.layer.kind.working_elements_per_row(input.get(1..).unwrap_or(&[]))?)
    }

    fn is_stateful(&self) -> bool {
        self.layer.kind.is_stateful()
    }

    fn example() -> Example {
        Example {
            config: serde_json::json!({ "layer": { "class_name": "Dense", "config": { "units": 2, "activation": "tanh" } } }),
            inputs: vec![vec![3, 4]],
            index_bound: None,
        }
    }
}

/// How Bidirectional merges its two outputs (Keras's `merge_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeMode {
    Concat,
    Sum,
    Mul,
    Ave,
    /// Keras's `merge_mode = None`: the two directions' outputs separately (forward first).
    Separate,
}

impl MergeMode {
    fn parse(s: Option<&str>) -> Result<Self> {
        Ok(match s {
            Some("concat") => MergeMode::Concat,
            Some("sum") => MergeMode::Sum,
            Some("mul") => MergeMode::Mul,
            Some("ave") => MergeMode::Ave,
            None => MergeMode::Separate,
            Some(other) => return Err(Error::Value(format!("`merge_mode` must be one of \"concat\", \"sum\", \"mul\", \"ave\", got \"{}\"", other))),
        })
    }

    fn name(self) -> Option<&'static str> {
        Some(match self {
            MergeMode::Concat => "concat",
            MergeMode::Sum => "sum",
            MergeMode::Mul => "mul",
            MergeMode::Ave => "ave",
            MergeMode::Separate => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "WrapperConfig", into = "WrapperConfig")]
pub struct Bidirectional {
    /// The layer as given (its config is what Keras saves).
    pub layer: Layer,
    pub merge_mode: MergeMode,
    /// The two directions: "forward_<name>" as given, "backward_<name>" with `go_backwards`
    /// flipped (Keras's names, which its weight names carry).
    forward: Layer,
    backward: Layer,
}

impl TryFrom<WrapperConfig> for Bidirectional {
    type Error = Error;
    fn try_from(c: WrapperConfig) -> Result<Self> {
        let layer = inner_layer(&c.layer)?;
        let merge_mode = MergeMode::parse(c.merge_mode.unwrap_or(Some("concat".into())).as_deref())?;
        let mut config = layer.kind.config();
        let go_backwards = config.get("go_backwards").and_then(Value::as_bool).ok_or_else(|| {
            Error::Value(format!("`layer` must be a recurrent layer (layer_lstm(), layer_gru(), layer_simple_rnn()), got {}", layer.class_name()))
        })?;
        let forward = Layer { name: format!("forward_{}", layer.name), ..layer.clone() };
        config["go_backwards"] = Value::Bool(!go_backwards);
        let backward = Layer { name: format!("backward_{}", layer.name), ..Layer::from_config(layer.class_name(), &config, 0)? };
        Ok(Self { layer, merge_mode, forward, backward })
    }
}

impl From<Bidirectional> for WrapperConfig {
    fn from(b: Bidirectional) -> Self {
        WrapperConfig { layer: b.layer.keras_config(), merge_mode: Some(b.merge_mode.name().map(String::from)) }
    }
}

struct BidirectionalCache {
    forward: Cache,
    backward: Cache,
    /// Both outputs (the backward one in time order), for `mul`'s gradient.
    outputs: Option<(Tensor, Tensor)>,
    weights_forward: usize,
    sequences: bool,
}

impl Bidirectional {
    fn returns_sequences(&self, output: &[usize]) -> bool {
        output.len() >= 2
    }

    fn named(&self, direction: &Layer, input: &[usize]) -> Vec<WeightSpec> {
        direction.weight_specs(input).into_iter().map(|s| WeightSpec { name: format!("{}/{}", direction.name, s.name), ..s }).collect()
    }
}

impl Bidirectional {
    /// Each direction's inputs: the sequence, then its half of the initial states (Keras
    /// gives the forward layer's first, then the backward one's).
    fn direction_inputs<T: Clone>(inputs: &[T]) -> Result<(Vec<T>, Vec<T>)> {
        let states = &inputs[1..];
        if !states.len().is_multiple_of(2) {
            return Err(Error::Value(format!("Bidirectional takes as many initial states for each direction, got {} in all", states.len())));
        }
        let (f, b) = states.split_at(states.len() / 2);
        let with = |half: &[T]| std::iter::once(inputs[0].clone()).chain(half.iter().cloned()).collect();
        Ok((with(f), with(b)))
    }
}

impl LayerType for Bidirectional {
    const CLASS_NAME: &'static str = "Bidirectional";
    const NAME_PREFIX: &'static str = "bidirectional";
    /// The sequence, then (optionally) the initial states of both directions.
    const INPUTS: Inputs = Inputs::OneOrMore;

    fn output_shape(&self, _name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (f, b) = Self::direction_inputs(inputs)?;
        self.backward.node_output_shape(&b)?;
        let mut out = self.forward.node_output_shape(&f)?;
        if self.merge_mode == MergeMode::Concat {
            if let Some(last) = out.last_mut() {
                *last *= 2;
            }
        }
        Ok(out)
    }

    fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        let mut specs = self.named(&self.forward, input);
        specs.extend(self.named(&self.backward, input));
        specs
    }

    fn forward(&self, _name: &str, weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let nf = self.forward.weight_specs(&x.dims()[1..]).len();
        let (f, b) = Self::direction_inputs(xs)?;
        let (yf, cf) = self.forward.forward_node(&weights[..nf], &f, ctx)?;
        let (yb, cb) = self.backward.forward_node(&weights[nf..], &b, ctx)?;
        let (yf, mut yb) = (yf.value, yb.value);
        let sequences = self.returns_sequences(&yf.dims()[1..]);
        if sequences {
            yb = super::recurrent::reverse_along(&yb, 1)?;
        }
        let value = match self.merge_mode {
            MergeMode::Concat => Tensor::cat(&[&yf, &yb], D::Minus1)?,
            MergeMode::Sum => (&yf + &yb)?,
            MergeMode::Ave => ((&yf + &yb)? * 0.5)?,
            MergeMode::Mul => (&yf * &yb)?,
            MergeMode::Separate => yf.clone(),
        };
        // Both outputs: for `mul`'s gradient, the second output of `Separate`, and the shapes
        // of zero gradients when only the final states are read.
        let outputs = Some((yf, yb));
        Ok((LayerOutput::plain(value), Cache::new(BidirectionalCache { forward: cf, backward: cb, outputs, weights_forward: nf, sequences })))
    }

    fn backward(&self, name: &str, weights: &[Tensor], t: &[Option<Tensor>], cache: &Cache, grad: OutputGrad, need_input_grad: bool) -> Result<LayerGrads> {
        self.backward_more(name, weights, t, cache, Some(grad), Vec::new(), need_input_grad)
    }

    /// With `Separate`, `grad` is the forward direction's output's and `more[0]` the backward
    /// one's (either missing where nothing read that output); then come the gradients of
    /// the forward layer's final states and the backward one's (`return_state`).
    fn backward_more(
        &self,
        _name: &str,
        weights: &[Tensor],
        _t: &[Option<Tensor>],
        cache: &Cache,
        grad: Option<OutputGrad>,
        more: Vec<Option<Tensor>>,
        need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let c = cache.get::<BidirectionalCache>()?;
        let lost = || Error::State("Bidirectional lost its outputs".into());
        let mut more = more.into_iter();
        let separate_grad = if self.merge_mode == MergeMode::Separate { more.next().flatten() } else { None };
        let states_f = self.forward.kind.more_outputs(&c.forward)?.len();
        let mut state_grads: Vec<Option<Tensor>> = more.collect();
        state_grads.resize(2 * states_f, None);
        let state_grads_b = state_grads.split_off(states_f);
        let dy = grad.map(|g| g.value(Self::CLASS_NAME)).transpose()?;
        let (df, mut db) = match (self.merge_mode, &c.outputs) {
            (MergeMode::Separate, Some((yf, yb))) => {
                let df = match dy {
                    Some(g) => g,
                    None => yf.zeros_like()?,
                };
                let db = match separate_grad {
                    Some(g) => g,
                    None => yb.zeros_like()?,
                };
                (df, db)
            }
            // Only the final states are read (an encoder's): nothing reaches the outputs.
            (_, Some((yf, yb))) if dy.is_none() => (yf.zeros_like()?, yb.zeros_like()?),
            (MergeMode::Concat, _) => {
                let dy = dy.ok_or_else(lost)?;
                let half = dy.dim(D::Minus1)? / 2;
                (dy.narrow(D::Minus1, 0, half)?.contiguous()?, dy.narrow(D::Minus1, half, half)?.contiguous()?)
            }
            (MergeMode::Sum, _) => {
                let dy = dy.ok_or_else(lost)?;
                (dy.clone(), dy)
            }
            (MergeMode::Ave, _) => {
                let dy = dy.ok_or_else(lost)?;
                ((&dy * 0.5)?, (&dy * 0.5)?)
            }
            (MergeMode::Mul, Some((yf, yb))) => {
                let dy = dy.ok_or_else(lost)?;
                ((&dy * yb)?, (&dy * yf)?)
            }
            (MergeMode::Mul | MergeMode::Separate, None) => return Err(lost()),
        };
        if c.sequences {
            db = super::recurrent::reverse_along(&db, 1)?;
        }
        let nf = c.weights_forward;
        let (f, b) = (&self.forward, &self.backward);
        let gf = f.kind.backward_more(&f.name, &weights[..nf], &[], &c.forward, Some(OutputGrad::Value(df)), state_grads, need_input_grad)?;
        let gb = b.kind.backward_more(&b.name, &weights[nf..], &[], &c.backward, Some(OutputGrad::Value(db)), state_grads_b, need_input_grad)?;
        let input = match (gf.input, gb.input) {
            (Some(a), Some(b)) => Some((a + b)?),
            _ => None,
        };
        let more_inputs = gf.more_inputs.into_iter().chain(gb.more_inputs).collect();
        Ok(LayerGrads { input, weights: gf.weights.into_iter().chain(gb.weights).collect(), more_inputs })
    }

    /// The backward direction's output with `Separate`, then each direction's final states.
    fn more_output_shapes(&self, inputs: &[Vec<usize>]) -> Vec<Vec<usize>> {
        let Ok((f, b)) = Self::direction_inputs(inputs) else { return Vec::new() };
        let mut shapes = match (self.merge_mode, self.backward.node_output_shape(&b)) {
            (MergeMode::Separate, Ok(shape)) => vec![shape],
            _ => Vec::new(),
        };
        shapes.extend(self.forward.more_output_shapes(&f));
        shapes.extend(self.backward.more_output_shapes(&b));
        shapes
    }

    fn more_outputs(&self, cache: &Cache) -> Result<Vec<Tensor>> {
        let c = cache.get::<BidirectionalCache>()?;
        let mut outputs = match (self.merge_mode, &c.outputs) {
            (MergeMode::Separate, Some((_, yb))) => vec![yb.clone()],
            _ => Vec::new(),
        };
        outputs.extend(self.forward.kind.more_outputs(&c.forward)?);
        outputs.extend(self.backward.kind.more_outputs(&c.backward)?);
        Ok(outputs)
    }

    fn weight_regularizers(&self) -> Vec<Option<crate::regularizer::Regularizer>> {
        let mut all = padded(&self.forward, self.forward.kind.weight_regularizers(), &[1, 1]);
        all.extend(padded(&self.backward, self.backward.kind.weight_regularizers(), &[1, 1]));
        all
    }

    fn weight_constraints(&self) -> Vec<Option<crate::constraint::Constraint>> {
        let mut all = padded(&self.forward, self.forward.kind.weight_constraints(), &[1, 1]);
        all.extend(padded(&self.backward, self.backward.kind.weight_constraints(), &[1, 1]));
        all
    }

    fn compute_mask(&self, xs: &[Tensor], mask: Option<&Tensor>) -> Result<Option<Tensor>> {
        self.forward.kind.compute_mask(xs, mask)
    }

    fn reset_states(&self) {
        self.forward.kind.reset_states();
        self.backward.kind.reset_states();
    }

    fn working_elements_per_row(&self, input: &[usize]) -> Option<u64> {
        let one = self.forward.kind.working_elements_per_row(input)?;
        one.checked_mul(2)?.checked_add(crate::memory::elements(&self.forward.output_shape(input).ok()?)?)
    }

    fn is_stateful(&self) -> bool {
        self.forward.kind.is_stateful()
    }

    fn example() -> Example {
        Example {
            config: serde_json::json!({ "layer": { "class_name": "GRU", "config": { "units": 2, "return_sequences": true, "name": "gru" } }, "merge_mode": "concat" }),
            inputs: vec![vec![4, 3]],
            index_bound: None,
        }
    }
}
