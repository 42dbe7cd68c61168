//! A layer class written in R (an R6 class inheriting `KerasLayer`, made by
//! `create_layer()`): the trace of its `call()` and the weights its `build()` added. It shows
//! and saves under the R class's name, with its trace and weight specs in the config, so a
//! saved model loads without the R code.
use super::lambda::{check_traced_function, check_traced_inputs, traced_backward, traced_forward, traced_output_shape};
use super::{Cache, Example, ForwardContext, Inputs, LayerGrads, LayerOutput, LayerType, OutputGrad, WeightSpec};
use crate::error::{Error, Result};
use crate::initializer::Initializer;
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
}

/// A weight `build()` added with `self$add_weight()`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomWeight {
    pub name: String,
    pub shape: Vec<usize>,
    pub initializer: Initializer,
    #[serde(default = "yes")]
    pub trainable: bool,
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
            crate::memory::check(
                &format!("weight \"{}\" of layer class {}", w.name, self.layer_class),
                crate::memory::elements(&w.shape).and_then(|n| crate::memory::bytes(n, 4)),
                "give the weight a smaller shape",
            )?;
        }
        Ok(())
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
