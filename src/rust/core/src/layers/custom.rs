//! A layer class written in R (an R6 class inheriting `KerasLayer`, made by
//! `create_layer()`): the trace of its `call()` and the weights its `build()` added. It shows
//! and saves under the R class's name, with its trace and weight specs in the config, so a
//! saved model loads without the R code.
use super::lambda::{check_traced_function, check_traced_inputs, traced_backward, traced_forward, traced_output_shape};
use super::{Cache, Example, ForwardContext, Inputs, LayerGrads, LayerOutput, LayerType, OutputGrad, WeightSpec};
use crate::constraint::Constraint;
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use crate::regularizer::Regularizer;
use crate::trace::{Binary, Op, Trace};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CustomLayer {
    /// The R class's name: what summary() shows and saved files write as the class name.
    #[serde(default)]
    pub layer_class: String,
    /// `call()`'s trace: the layer's inputs, then its weights in `weight_specs`' order.
    #[serde(deserialize_with = "super::lambda::traced_function")]
    pub function: Trace,
    #[serde(default)]
    pub weight_specs: Vec<CustomWeight>,
    /// Losses on the weights alone (`self$add_loss()` in `build()`, regularizers written as
    /// R functions): see [`LayerType::weight_losses`].
    #[serde(default, deserialize_with = "super::lambda::traced_functions", skip_serializing_if = "Vec::is_empty")]
    pub losses: Vec<Trace>,
}

/// A weight `build()` added with `self$add_weight()`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomWeight {
    pub name: String,
    pub shape: Vec<usize>,
    pub initializer: Initializer,
    #[serde(default = "yes")]
    pub trainable: bool,
    /// Keras's regularizer objects (L1, L2, L1L2); a regularizer written as a function is
    /// one of the layer's `losses` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regularizer: Option<Regularizer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<Constraint>,
}

/// Checks a layer's weights (`specs`) and the losses on them: weights that fit in memory,
/// loss traces that take no inputs and exactly these weights, with one output.
pub(super) fn check_custom_weights(specs: &[CustomWeight], losses: &[Trace], class: &str) -> Result<()> {
    for w in specs {
        crate::memory::check(
            &format!("weight \"{}\" of layer class {}", w.name, class),
            crate::memory::elements(&w.shape).and_then(|n| crate::memory::bytes(n, 4)),
            "give the weight a smaller shape",
        )?;
        if let Some(c) = &w.constraint {
            c.check_rank(w.shape.len())?;
        }
    }
    for (k, loss) in losses.iter().enumerate() {
        let weights_fit = loss.weight_count() == specs.len()
            && specs.iter().enumerate().all(|(i, w)| loss.shape(loss.weight_node(i)).is_ok_and(|s| s.iter().copied().eq(w.shape.iter().map(|d| Some(*d)))));
        if loss.input_count() != 0 || loss.outputs.len() != 1 || !weights_fit {
            return Err(Error::Value(format!(
                "layer class {}: loss {} must be computed from the layer's {} weights alone, with one value",
                class,
                k + 1,
                specs.len()
            )));
        }
    }
    Ok(())
}

fn yes() -> bool {
    true
}

impl LayerType for CustomLayer {
    const CLASS_NAME: &'static str = "CustomLayer";
    const NAME_PREFIX: &'static str = "custom_layer";
    const INPUTS: Inputs = Inputs::OneOrMore;

    fn normalize(&mut self) -> Result<()> {
        if self.layer_class.is_empty() {
            self.layer_class = Self::CLASS_NAME.into();
        }
        check_traced_function(&self.function, &self.layer_class)?;
        if self.weight_specs.len() != self.function.weight_count() {
            return Err(Error::Value(format!(
                "layer class {}: its function uses {} weights but {} are declared",
                self.layer_class,
                self.function.weight_count(),
                self.weight_specs.len()
            )));
        }
        for (i, w) in self.weight_specs.iter().enumerate() {
            let traced: Vec<Option<usize>> = w.shape.iter().map(|d| Some(*d)).collect();
            if self.function.shape(self.function.weight_node(i))? != &traced {
                return Err(Error::Value(format!("layer class {}: weight \"{}\" was traced with another shape", self.layer_class, w.name)));
            }
        }
        check_custom_weights(&self.weight_specs, &self.losses, &self.layer_class)
    }

    fn shown_class_name(&self) -> &str {
        &self.layer_class
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        traced_output_shape(&self.function, name, &self.layer_class, inputs)
    }

    fn weight_specs(&self, _input: &[usize]) -> Vec<WeightSpec> {
        self.weight_specs
            .iter()
            .map(|w| WeightSpec { name: w.name.clone(), shape: w.shape.clone(), initializer: w.initializer.clone(), trainable: w.trainable })
            .collect()
    }

    fn weight_regularizers(&self) -> Vec<Option<Regularizer>> {
        self.weight_specs.iter().map(|w| w.regularizer).collect()
    }

    fn weight_constraints(&self) -> Vec<Option<Constraint>> {
        self.weight_specs.iter().map(|w| w.constraint.clone()).collect()
    }

    fn weight_losses(&self) -> &[Trace] {
        &self.losses
    }

    /// Every value the trace computes is kept for the backward pass.
    fn working_elements_per_row(&self, _input: &[usize]) -> Option<u64> {
        self.function.elements_per_row()
    }

    fn forward(&self, name: &str, weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let shapes: Vec<Vec<usize>> = xs.iter().map(|x| x.dims()[1..].to_vec()).collect();
        check_traced_inputs(&self.function, name, &self.layer_class, &shapes)?;
        traced_forward(&self.function, xs, weights, ctx)
    }

    fn backward(&self, _name: &str, weights: &[Tensor], _t: &[Option<Tensor>], cache: &Cache, grad: OutputGrad, need: bool) -> Result<LayerGrads> {
        traced_backward(&self.function, cache, grad.value(&self.layer_class)?, weights, need)
    }

    fn example() -> Example {
        // x %*% kernel + bias, as the custom-layer vignette's layer (plus a bias).
        let mut t = Trace::new(vec![vec![None, Some(3)]], vec![vec![3, 2], vec![2]]);
        let xw = t.record(Op::Dot, vec![t.input_node(0), t.weight_node(0)]).unwrap_or_default();
        let out = t.record(Op::Binary { f: Binary::Add }, vec![xw, t.weight_node(1)]).unwrap_or_default();
        let _ = t.set_outputs(vec![out]);
        let specs = serde_json::json!([
            { "name": "kernel", "shape": [3, 2], "initializer": { "class_name": "RandomNormal", "config": {} } },
            { "name": "bias", "shape": [2], "initializer": { "class_name": "Zeros", "config": {} } }
        ]);
        Example { config: serde_json::json!({ "layer_class": "AffineLayer", "function": t, "weight_specs": specs }), inputs: vec![vec![3]], index_bound: None }
    }
}
