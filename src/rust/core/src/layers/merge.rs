//! Merge layers of the functional API: Add, Multiply, Subtract, Average, Maximum, Minimum
//! (inputs of one shape) and Concatenate (along any sample axis).
use super::{Cache, Example, ForwardContext, Inputs, LayerGrads, LayerOutput, LayerType, OutputGrad};
use crate::error::{Error, Result};
use crate::shape::{join_dims, VARIABLE};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// The inputs, which the gradients of Multiply need and Concatenate's widths come from.
struct MergeCache {
    inputs: Vec<Tensor>,
}

fn shown(inputs: &[Vec<usize>]) -> String {
    inputs.iter().map(|s| format!("({})", join_dims(s))).collect::<Vec<_>>().join(", ")
}

/// Two sizes that can meet: equal, or one variable (a batch gives it).
fn compatible(a: usize, b: usize) -> bool {
    a == b || a == VARIABLE || b == VARIABLE
}

/// The size where two compatible sizes meet: the known one if any.
fn met(a: usize, b: usize) -> usize {
    if a == VARIABLE {
        b
    } else {
        a
    }
}

fn same_shapes(name: &str, class: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
    if inputs.iter().any(|s| s.len() != inputs[0].len() || s.iter().zip(&inputs[0]).any(|(a, b)| !compatible(*a, *b))) {
        return Err(Error::Value(format!("layer \"{}\" ({}) needs inputs of one shape, got {}", name, class, shown(inputs))));
    }
    Ok(inputs.iter().skip(1).fold(inputs[0].clone(), |acc, s| acc.iter().zip(s).map(|(a, b)| met(*a, *b)).collect()))
}

fn split_grads(grads: Vec<Tensor>) -> LayerGrads {
    let mut grads = grads.into_iter();
    LayerGrads { input: grads.next(), weights: Vec::new(), more_inputs: grads.collect() }
}

fn two_inputs_example() -> Example {
    Example { config: serde_json::json!({}), inputs: vec![vec![2, 3], vec![2, 3]], index_bound: None }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Add {}

impl LayerType for Add {
    const CLASS_NAME: &'static str = "Add";
    const NAME_PREFIX: &'static str = "add";
    const INPUTS: Inputs = Inputs::Several;

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        same_shapes(name, Self::CLASS_NAME, inputs)
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let value = xs[1..].iter().try_fold(xs[0].clone(), |acc, x| acc + x)?;
        Ok((LayerOutput::plain(value), Cache::new(MergeCache { inputs: xs.to_vec() })))
    }

    fn backward(
        &self,
        _name: &str,
        _weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let dy = grad.value(Self::CLASS_NAME)?;
        Ok(split_grads(cache.get::<MergeCache>()?.inputs.iter().map(|_| dy.clone()).collect()))
    }

    fn example() -> Example {
        two_inputs_example()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Multiply {}

impl LayerType for Multiply {
    const CLASS_NAME: &'static str = "Multiply";
    const NAME_PREFIX: &'static str = "multiply";
    const INPUTS: Inputs = Inputs::Several;

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        same_shapes(name, Self::CLASS_NAME, inputs)
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let value = xs[1..].iter().try_fold(xs[0].clone(), |acc, x| acc * x)?;
        Ok((LayerOutput::plain(value), Cache::new(MergeCache { inputs: xs.to_vec() })))
    }

    /// Each input's gradient: the output gradient times every other input.
    fn backward(
        &self,
        _name: &str,
        _weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let dy = grad.value(Self::CLASS_NAME)?;
        let inputs = &cache.get::<MergeCache>()?.inputs;
        let grads = (0..inputs.len())
            .map(|i| inputs.iter().enumerate().filter(|(j, _)| *j != i).try_fold(dy.clone(), |acc, (_, x)| acc.mul(x)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(split_grads(grads))
    }

    fn example() -> Example {
        two_inputs_example()
    }
}

/// Concatenate along `axis` (Keras's: counted with the batch axis as 0, -1 the last).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Concatenate {
    pub axis: i64,
}

impl Default for Concatenate {
    fn default() -> Self {
        Self { axis: -1 }
    }
}

impl Concatenate {
    /// Keras's `axis` (counted with the batch axis as 0; negative from the end) as an index
    /// into a sample's `rank` axes. The batch axis itself cannot be joined.
    fn sample_axis(&self, name: &str, rank: usize) -> Result<usize> {
        let full = rank as i64 + 1;
        let a = if self.axis < 0 { self.axis + full } else { self.axis };
        if a < 1 || a >= full {
            return Err(Error::Value(format!(
                "layer \"{}\" (Concatenate): `axis` {} is not a sample axis of inputs with {} axes per sample",
                name, self.axis, rank
            )));
        }
        Ok((a - 1) as usize)
    }
}

impl LayerType for Concatenate {
    const CLASS_NAME: &'static str = "Concatenate";
    const NAME_PREFIX: &'static str = "concatenate";
    const INPUTS: Inputs = Inputs::Several;

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let first = &inputs[0];
        let rank = first.len();
        let axis = self.sample_axis(name, rank)?;
        let others_match = |s: &Vec<usize>| s.len() == rank && (0..rank).all(|k| k == axis || compatible(s[k], first[k]));
        if !inputs.iter().all(others_match) {
            return Err(Error::Value(format!("layer \"{}\" (Concatenate) needs inputs that differ only in axis {}, got {}", name, self.axis, shown(inputs))));
        }
        let mut out = (0..rank).map(|k| inputs.iter().fold(VARIABLE, |acc, s| met(acc, s[k]))).collect::<Vec<_>>();
        out[axis] = if inputs.iter().any(|s| s[axis] == VARIABLE) { VARIABLE } else { inputs.iter().map(|s| s[axis]).sum() };
        Ok(out)
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let axis = self.sample_axis(name, xs[0].rank() - 1)? + 1;
        let value = Tensor::cat(xs, axis)?;
        Ok((LayerOutput::plain(value), Cache::new(MergeCache { inputs: xs.to_vec() })))
    }

    /// Each input's gradient: its slice of the output gradient.
    fn backward(
        &self,
        name: &str,
        _weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let dy = grad.value(Self::CLASS_NAME)?;
        let axis = self.sample_axis(name, dy.rank() - 1)? + 1;
        let mut start = 0;
        let grads = cache
            .get::<MergeCache>()?
            .inputs
            .iter()
            .map(|x| {
                let width = x.dim(axis)?;
                let g = dy.narrow(axis, start, width)?.contiguous()?;
                start += width;
                Ok(g)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(split_grads(grads))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "axis": 1 }), inputs: vec![vec![2, 3], vec![1, 3], vec![3, 3]], index_bound: None }
    }
}

/// Subtract: the first input minus the second (exactly two inputs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Subtract {}

impl LayerType for Subtract {
    const CLASS_NAME: &'static str = "Subtract";
    const NAME_PREFIX: &'static str = "subtract";
    const INPUTS: Inputs = Inputs::Several;

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        if inputs.len() != 2 {
            return Err(Error::Value(format!("layer \"{}\" (Subtract) needs exactly 2 inputs, got {}", name, inputs.len())));
        }
        same_shapes(name, Self::CLASS_NAME, inputs)
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        self.output_shape(name, &xs.iter().map(|x| x.dims()[1..].to_vec()).collect::<Vec<_>>())?;
        Ok((LayerOutput::plain((&xs[0] - &xs[1])?), Cache::new(())))
    }

    fn backward(
        &self,
        _name: &str,
        _weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        _cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let dy = grad.value(Self::CLASS_NAME)?;
        Ok(split_grads(vec![dy.clone(), dy.neg()?]))
    }

    fn example() -> Example {
        two_inputs_example()
    }
}

/// Average: the elementwise mean of the inputs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Average {}

impl LayerType for Average {
    const CLASS_NAME: &'static str = "Average";
    const NAME_PREFIX: &'static str = "average";
    const INPUTS: Inputs = Inputs::Several;

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        same_shapes(name, Self::CLASS_NAME, inputs)
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let sum = xs[1..].iter().try_fold(xs[0].clone(), |acc, x| acc + x)?;
        Ok((LayerOutput::plain((sum / xs.len() as f64)?), Cache::new(MergeCache { inputs: xs.to_vec() })))
    }

    fn backward(
        &self,
        _name: &str,
        _weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let n = cache.get::<MergeCache>()?.inputs.len();
        let dy = (grad.value(Self::CLASS_NAME)? / n as f64)?;
        Ok(split_grads((0..n).map(|_| dy.clone()).collect()))
    }

    fn example() -> Example {
        two_inputs_example()
    }
}

/// The elementwise maximum (or minimum) of the inputs; the gradient goes to the input that
/// won (the first, on a tie).
fn extremum_grads(inputs: &[Tensor], dy: &Tensor, max: bool) -> Result<LayerGrads> {
    let best = inputs[1..].iter().try_fold(inputs[0].clone(), |acc, x| if max { acc.maximum(x) } else { acc.minimum(x) })?;
    let mut taken = best.zeros_like()?;
    let mut grads = Vec::with_capacity(inputs.len());
    for x in inputs {
        // Where this input is the extremum and no earlier input already was.
        let wins = x.eq(&best)?.to_dtype(x.dtype())?.mul(&taken.affine(-1.0, 1.0)?)?;
        taken = (taken + &wins)?;
        grads.push(dy.mul(&wins)?);
    }
    Ok(split_grads(grads))
}

/// Maximum and Minimum: one layer each, Keras's class names, the same code.
macro_rules! extremum_layer {
    ($name:ident, $class:literal, $prefix:literal, $op:ident, $max:literal) => {
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct $name {}

        impl LayerType for $name {
            const CLASS_NAME: &'static str = $class;
            const NAME_PREFIX: &'static str = $prefix;
            const INPUTS: Inputs = Inputs::Several;

            fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
                same_shapes(name, Self::CLASS_NAME, inputs)
            }

            fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
                let value = xs[1..].iter().try_fold(xs[0].clone(), |acc, x| acc.$op(x))?;
                Ok((LayerOutput::plain(value), Cache::new(MergeCache { inputs: xs.to_vec() })))
            }

            fn backward(
                &self,
                _name: &str,
                _weights: &[Tensor],
                _transposed: &[Option<Tensor>],
                cache: &Cache,
                grad: OutputGrad,
                _need_input_grad: bool,
            ) -> Result<LayerGrads> {
                extremum_grads(&cache.get::<MergeCache>()?.inputs, &grad.value(Self::CLASS_NAME)?, $max)
            }

            fn example() -> Example {
                two_inputs_example()
            }
        }
    };
}

extremum_layer!(Maximum, "Maximum", "maximum", maximum, true);
extremum_layer!(Minimum, "Minimum", "minimum", minimum, false);

/// Keras's Dot's `axes`: one axis for both inputs, or one each (counted with the batch axis).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DotAxes {
    One(i64),
    Two([i64; 2]),
}

/// Dot: the dot products of two tensors along `axes` (2-D inputs: one value per sample; 3-D:
/// a batch of matrix products), each input first L2-normalized along its axis with
/// `normalize` (giving cosine similarities).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Dot {
    pub axes: DotAxes,
    pub normalize: bool,
}

impl Default for Dot {
    fn default() -> Self {
        Self { axes: DotAxes::One(-1), normalize: false }
    }
}

/// The inputs (normalized where asked) and their norms, for the gradients.
struct DotCache {
    used: Vec<Tensor>,
    norms: Vec<Option<Tensor>>,
}

impl Dot {
    /// The dot axis of each input as an index into the full tensor (batch axis 0).
    fn axis_pair(&self, name: &str, rank: usize) -> Result<(usize, usize)> {
        let (a, b) = match self.axes {
            DotAxes::One(a) => (a, a),
            DotAxes::Two([a, b]) => (a, b),
        };
        let full = rank as i64 + 1;
        let fix = |a: i64| if a < 0 { a + full } else { a };
        let (a, b) = (fix(a), fix(b));
        if a != b || a < 1 || a >= full {
            return Err(Error::Value(format!("layer \"{}\" (Dot): `axes` must name the same sample axis of both inputs, got {:?}", name, self.axes)));
        }
        Ok((a as usize, b as usize))
    }

    fn product(&self, a: &Tensor, b: &Tensor, axis: usize) -> Result<Tensor> {
        Ok(match (a.rank(), axis) {
            (2, _) => a.mul(b)?.sum_keepdim(1)?,
            (3, 2) => a.matmul(&b.transpose(1, 2)?.contiguous()?)?,
            (3, _) => a.transpose(1, 2)?.contiguous()?.matmul(b)?,
            _ => unreachable!("checked in output_shape"),
        })
    }
}

impl LayerType for Dot {
    const CLASS_NAME: &'static str = "Dot";
    const NAME_PREFIX: &'static str = "dot";
    const INPUTS: Inputs = Inputs::Several;

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let [a, b] = inputs else {
            return Err(Error::Value(format!("layer \"{}\" (Dot) needs exactly 2 inputs, got {}", name, inputs.len())));
        };
        if a.len() != b.len() || !(1..=2).contains(&a.len()) {
            return Err(Error::Value(format!("layer \"{}\" (Dot) needs two inputs of 1 or 2 axes per sample, got {}", name, shown(inputs))));
        }
        let (axis, _) = self.axis_pair(name, a.len())?;
        if a[axis - 1] != b[axis - 1] {
            return Err(Error::Value(format!("layer \"{}\" (Dot): the inputs' axis {} differ, got {}", name, axis, shown(inputs))));
        }
        Ok(match (a.len(), axis) {
            (1, _) => vec![1],
            (2, 2) => vec![a[0], b[0]],
            _ => vec![a[1], b[1]],
        })
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        self.output_shape(name, &xs.iter().map(|x| x.dims()[1..].to_vec()).collect::<Vec<_>>())?;
        let (axis, _) = self.axis_pair(name, xs[0].rank() - 1)?;
        let mut used = Vec::new();
        let mut norms = Vec::new();
        for x in xs {
            if self.normalize {
                let norm = x.sqr()?.sum_keepdim(axis)?.maximum(1e-12f32)?.sqrt()?;
                used.push(x.broadcast_div(&norm)?);
                norms.push(Some(norm));
            } else {
                used.push(x.clone());
                norms.push(None);
            }
        }
        let value = self.product(&used[0], &used[1], axis)?;
        Ok((LayerOutput::plain(value), Cache::new(DotCache { used, norms })))
    }

    fn backward(
        &self,
        name: &str,
        _weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let DotCache { used, norms } = cache.get::<DotCache>()?;
        let dy = grad.value(Self::CLASS_NAME)?;
        let (a, b) = (&used[0], &used[1]);
        let axis = self.axis_pair(name, a.rank() - 1)?.0;
        // Gradients with respect to the (normalized) inputs.
        let (ga, gb) = match (a.rank(), axis) {
            (2, _) => (b.broadcast_mul(&dy)?, a.broadcast_mul(&dy)?),
            (3, 2) => (dy.matmul(b)?, dy.transpose(1, 2)?.contiguous()?.matmul(a)?),
            _ => (b.matmul(&dy.transpose(1, 2)?.contiguous()?)?, a.matmul(&dy)?),
        };
        // Through x / |x|: (g - u (u . g)) / |x|.
        let through = |g: Tensor, u: &Tensor, norm: &Option<Tensor>| -> Result<Tensor> {
            Ok(match norm {
                Some(n) => g.sub(&u.broadcast_mul(&u.mul(&g)?.sum_keepdim(axis)?)?)?.broadcast_div(n)?,
                None => g,
            })
        };
        Ok(split_grads(vec![through(ga, a, &norms[0])?, through(gb, b, &norms[1])?]))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "axes": 2, "normalize": true }), inputs: vec![vec![3, 4], vec![2, 4]], index_bound: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_checked() {
        assert_eq!(Concatenate::default().output_shape("c", &[vec![4, 2], vec![4, 3]]).unwrap(), vec![4, 5]);
        assert_eq!(Concatenate { axis: 2 }.output_shape("c", &[vec![4, 2], vec![4, 3]]).unwrap(), vec![4, 5]);
        assert!(Concatenate { axis: 1 }.output_shape("c", &[vec![4, 2], vec![4, 3]]).is_err());
        assert!(Add {}.output_shape("a", &[vec![4, 2], vec![4, 3]]).is_err());
    }
}
