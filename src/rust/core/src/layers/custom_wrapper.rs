//! A layer wrapper class written in R (an R6 class inheriting `KerasWrapper`, made by
//! `create_wrapper()`): the wrapped layer, run as it is, plus the weights the wrapper's
//! `build()` added and the losses it put on them (R keras's custom-wrapper vignette adds a
//! weight and a loss on it). Its weights are the wrapper's own, then the wrapped layer's (as
//! tf.keras lists a layer's own weights before those of the layers it tracks). It shows and
//! saves under the R class's name, so a saved model loads without the R code.
use super::custom::{check_custom_weights, CustomWeight};
use super::{Cache, Example, ForwardContext, Inputs, Layer, LayerGrads, LayerOutput, LayerType, OutputGrad, WeightSpec};
use crate::constraint::Constraint;
use crate::error::{Error, Result};
use crate::regularizer::Regularizer;
use crate::trace::{Op, Trace, Unary};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "CustomWrapperConfig", into = "CustomWrapperConfig")]
pub struct CustomWrapper {
    pub layer: Layer,
    pub layer_class: String,
    pub weight_specs: Vec<CustomWeight>,
    pub losses: Vec<Trace>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct CustomWrapperConfig {
    /// The wrapped layer's Keras `{"class_name", "config"}`.
    layer: Value,
    #[serde(default)]
    layer_class: String,
    #[serde(default)]
    weight_specs: Vec<CustomWeight>,
    #[serde(default, deserialize_with = "super::lambda::traced_functions", skip_serializing_if = "Vec::is_empty")]
    losses: Vec<Trace>,
}

impl TryFrom<CustomWrapperConfig> for CustomWrapper {
    type Error = Error;
    fn try_from(c: CustomWrapperConfig) -> Result<Self> {
        let layer = super::wrappers::inner_layer(&c.layer)?;
        let layer_class = if c.layer_class.is_empty() { CustomWrapper::CLASS_NAME.to_string() } else { c.layer_class };
        check_custom_weights(&c.weight_specs, &c.losses, &layer_class)?;
        Ok(Self { layer, layer_class, weight_specs: c.weight_specs, losses: c.losses })
    }
}

impl From<CustomWrapper> for CustomWrapperConfig {
    fn from(w: CustomWrapper) -> Self {
        CustomWrapperConfig { layer: w.layer.keras_config(), layer_class: w.layer_class, weight_specs: w.weight_specs, losses: w.losses }
    }
}

impl CustomWrapper {
    fn own(&self) -> usize {
        self.weight_specs.len()
    }
}

impl LayerType for CustomWrapper {
    const CLASS_NAME: &'static str = "CustomWrapper";
    const NAME_PREFIX: &'static str = "custom_wrapper";
    const INPUTS: Inputs = Inputs::OneOrMore;
    const PROPAGATES_MASK: bool = true;

    fn shown_class_name(&self) -> &str {
        &self.layer_class
    }

    fn output_shape(&self, _name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        self.layer.node_output_shape(inputs)
    }

    fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        let own = self.weight_specs.iter().map(|w| WeightSpec {
            name: w.name.clone(),
            shape: w.shape.clone(),
            initializer: w.initializer.clone(),
            trainable: w.trainable,
        });
        let inner = self.layer.weight_specs(input).into_iter().map(|s| WeightSpec { name: format!("{}/{}", self.layer.name, s.name), ..s });
        own.chain(inner).collect()
    }

    fn forward(&self, _name: &str, weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        self.layer.forward_node(&weights[self.own()..], xs, ctx)
    }

    fn backward(&self, _name: &str, weights: &[Tensor], transposed: &[Option<Tensor>], cache: &Cache, grad: OutputGrad, need: bool) -> Result<LayerGrads> {
        let (own, inner) = weights.split_at(self.own());
        let mut grads = self.layer.backward_with(inner, transposed.get(self.own()..).unwrap_or(&[]), cache, grad, need)?;
        // The wrapper's own weights take no part in the output: their gradient comes from
        // the losses on them alone (Model::weight_losses).
        let mut all = own.iter().map(|w| Ok(w.zeros_like()?)).collect::<Result<Vec<_>>>()?;
        all.append(&mut grads.weights);
        grads.weights = all;
        Ok(grads)
    }

    fn state_updates(&self, cache: &Cache) -> Vec<(usize, Tensor)> {
        self.layer.state_updates(cache).into_iter().map(|(i, t)| (i + self.own(), t)).collect()
    }

    fn weight_regularizers(&self) -> Vec<Option<Regularizer>> {
        let mut all: Vec<Option<Regularizer>> = self.weight_specs.iter().map(|w| w.regularizer).collect();
        all.extend(self.layer.kind.weight_regularizers());
        all
    }

    fn weight_constraints(&self) -> Vec<Option<Constraint>> {
        let mut all: Vec<Option<Constraint>> = self.weight_specs.iter().map(|w| w.constraint.clone()).collect();
        all.extend(self.layer.kind.weight_constraints());
        all
    }

    fn activity_regularizer(&self) -> Option<Regularizer> {
        self.layer.kind.activity_regularizer()
    }

    /// The losses are on the wrapper's own weights, the first ones; the wrapped layer's
    /// weights follow and no loss reads them.
    fn weight_losses(&self) -> &[Trace] {
        &self.losses
    }

    fn compute_mask(&self, xs: &[Tensor], mask: Option<&Tensor>) -> Result<Option<Tensor>> {
        self.layer.kind.compute_mask(xs, mask)
    }

    fn makes_mask(&self) -> bool {
        self.layer.kind.makes_mask()
    }

    fn reset_states(&self) {
        self.layer.kind.reset_states()
    }

    fn is_stateful(&self) -> bool {
        self.layer.kind.is_stateful()
    }

    fn working_elements_per_row(&self, input: &[usize]) -> Option<u64> {
        self.layer.kind.working_elements_per_row(input)
    }

    fn example() -> Example {
        // R keras's vignette: a dense layer wrapped with one extra weight and log(weight) as
        // a loss.
        let mut loss = Trace::new(Vec::new(), vec![vec![1]]);
        let log = loss.record(Op::Unary { f: Unary::Log }, vec![loss.weight_node(0)]).unwrap_or_default();
        let _ = loss.set_outputs(vec![log]);
        let specs = serde_json::json!([{ "name": "custom_weight", "shape": [1], "initializer": { "class_name": "Ones", "config": {} } }]);
        Example {
            config: serde_json::json!({
                "layer": { "class_name": "Dense", "config": { "name": "dense_inner", "units": 2, "activation": "tanh" } },
                "layer_class": "LoggedWrapper",
                "weight_specs": specs,
                "losses": [loss],
            }),
            inputs: vec![vec![3]],
            index_bound: None,
        }
    }
}
