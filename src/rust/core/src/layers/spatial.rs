//! Layers that move values without weights: Flatten, Reshape and ZeroPadding2D.
use super::{Cache, DataFormat, Example, ForwardContext, InputDims, LayerGrads, LayerOutput, LayerType, OutputGrad};
use crate::error::{Error, Result};
use crate::shape::{image_dims, join_dims};
use candle_core::Tensor;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Flattens each sample to one axis (Keras's Flatten, channels last: row-major order).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Flatten {
    pub data_format: DataFormat,
}

fn reshape_backward(cache: &Cache, grad: OutputGrad, class: &str) -> Result<LayerGrads> {
    let InputDims(input_dims) = cache.get::<InputDims>()?;
    Ok(LayerGrads::input_only(grad.value(class)?.reshape(input_dims.as_slice())?))
}

impl LayerType for Flatten {
    const CLASS_NAME: &'static str = "Flatten";
    const NAME_PREFIX: &'static str = "flatten";

    fn normalize(&mut self) -> Result<()> {
        self.data_format.check()
    }

    fn output_shape(&self, _name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        Ok(vec![crate::shape::known_product(&inputs[0])])
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let dims = xs[0].dims().to_vec();
        let value = xs[0].reshape((dims[0], dims[1..].iter().product::<usize>()))?;
        Ok((LayerOutput::plain(value), Cache::new(InputDims(dims))))
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
        reshape_backward(cache, grad, Self::CLASS_NAME)
    }

    fn example() -> Example {
        Example { config: serde_json::json!({}), inputs: vec![vec![2, 3]], index_bound: None }
    }
}

/// Reshape each sample to `target_shape`; one entry may be -1 (inferred), as in Keras.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Reshape {
    pub target_shape: Vec<i64>,
}

impl LayerType for Reshape {
    const CLASS_NAME: &'static str = "Reshape";
    const NAME_PREFIX: &'static str = "reshape";

    fn normalize(&mut self) -> Result<()> {
        let unknown = self.target_shape.iter().filter(|d| **d == -1).count();
        if self.target_shape.is_empty() || unknown > 1 || self.target_shape.iter().any(|d| *d == 0 || *d < -1) {
            return Err(Error::Value(format!(
                "`target_shape` must be positive whole numbers with at most one -1, got ({})",
                self.target_shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let input = &inputs[0];
        if crate::shape::has_variable(input) {
            // Sizes are checked when a batch gives them; the wildcard stays unknown till then.
            return Ok(self.target_shape.iter().map(|d| if *d > 0 { *d as usize } else { crate::shape::VARIABLE }).collect());
        }
        let total: usize = input.iter().product();
        let known = self.target_shape.iter().filter(|d| **d > 0).try_fold(1usize, |acc, d| acc.checked_mul(*d as usize));
        let fits = match (known, self.target_shape.contains(&-1)) {
            (Some(k), false) => k == total,
            (Some(k), true) => k > 0 && total.is_multiple_of(k),
            (None, _) => false,
        };
        if !fits {
            let shown: Vec<String> = self.target_shape.iter().map(|d| d.to_string()).collect();
            return Err(Error::Value(format!(
                "layer \"{}\" (Reshape) cannot reshape ({}) ({} values per sample) to ({})",
                name,
                join_dims(input),
                total,
                shown.join(", ")
            )));
        }
        let known = known.unwrap_or(1).max(1);
        Ok(self.target_shape.iter().map(|d| if *d > 0 { *d as usize } else { total / known }).collect())
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let dims = xs[0].dims().to_vec();
        let mut shape = vec![dims[0]];
        shape.extend(self.output_shape(name, &[dims[1..].to_vec()])?);
        Ok((LayerOutput::plain(xs[0].reshape(shape)?), Cache::new(InputDims(dims))))
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
        reshape_backward(cache, grad, Self::CLASS_NAME)
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "target_shape": [-1, 2] }), inputs: vec![vec![3, 4]], index_bound: None }
    }
}

/// ZeroPadding2D's `padding`: ((top, bottom), (left, right)) rows and columns of zeros.
/// Read from a number, a pair (rows, columns) or a pair of pairs; written as a pair of pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Padding2D(pub (usize, usize), pub (usize, usize));

impl Default for Padding2D {
    fn default() -> Self {
        Padding2D((1, 1), (1, 1))
    }
}

impl<'de> Deserialize<'de> for Padding2D {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let whole = |x: &Value| x.as_u64().map(|n| n as usize);
        let side = |x: &Value| -> Option<(usize, usize)> {
            match x {
                Value::Number(_) => whole(x).map(|n| (n, n)),
                Value::Array(a) if a.len() == 2 => Some((whole(&a[0])?, whole(&a[1])?)),
                _ => None,
            }
        };
        let parsed = match &v {
            Value::Number(_) => side(&v).map(|p| Padding2D(p, p)),
            Value::Array(a) if a.len() == 2 => side(&a[0]).zip(side(&a[1])).map(|(r, c)| Padding2D(r, c)),
            _ => None,
        };
        parsed.ok_or_else(|| serde::de::Error::custom(format!("expected a whole number, a pair, or a pair of pairs, got {}", v)))
    }
}

impl Serialize for Padding2D {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        [[self.0 .0, self.0 .1], [self.1 .0, self.1 .1]].serialize(s)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ZeroPadding2D {
    pub padding: Padding2D,
    pub data_format: DataFormat,
}

impl LayerType for ZeroPadding2D {
    const CLASS_NAME: &'static str = "ZeroPadding2D";
    const NAME_PREFIX: &'static str = "zero_padding2d";

    fn normalize(&mut self) -> Result<()> {
        self.data_format.check()
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (h, w, c) = image_dims(name, Self::CLASS_NAME, &inputs[0])?;
        let Padding2D((t, b), (l, r)) = self.padding;
        let grow = |n: usize, a: usize, b: usize| if n == crate::shape::VARIABLE { Some(n) } else { n.checked_add(a).and_then(|v| v.checked_add(b)) };
        match (grow(h, t, b), grow(w, l, r)) {
            (Some(h), Some(w)) => Ok(vec![h, w, c]),
            _ => Err(Error::Value(format!("layer \"{}\" (ZeroPadding2D): `padding` is too large", name))),
        }
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let Padding2D((t, b), (l, r)) = self.padding;
        let value = xs[0].pad_with_zeros(1, t, b)?.pad_with_zeros(2, l, r)?;
        Ok((LayerOutput::plain(value), Cache::new(InputDims(xs[0].dims().to_vec()))))
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
        let InputDims(input_dims) = cache.get::<InputDims>()?;
        let dy = grad.value(Self::CLASS_NAME)?;
        let Padding2D((t, _), (l, _)) = self.padding;
        Ok(LayerGrads::input_only(dy.narrow(1, t, input_dims[1])?.narrow(2, l, input_dims[2])?.contiguous()?))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "padding": [[1, 2], [0, 1]] }), inputs: vec![vec![3, 3, 2]], index_bound: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::parse_config;

    #[test]
    fn reshape_infers_one_axis() {
        let r: Reshape = parse_config(&serde_json::json!({ "target_shape": [-1, 4] })).unwrap();
        assert_eq!(r.output_shape("r", &[vec![2, 3, 4]]).unwrap(), vec![6, 4]);
        assert!(r.output_shape("r", &[vec![5]]).is_err());
        assert!(parse_config::<Reshape>(&serde_json::json!({ "target_shape": [-1, -1] })).is_err());
    }

    #[test]
    fn zero_padding_reads_every_keras_form() {
        let read = |v: Value| parse_config::<ZeroPadding2D>(&serde_json::json!({ "padding": v })).unwrap().padding;
        assert_eq!(read(serde_json::json!(2)), Padding2D((2, 2), (2, 2)));
        assert_eq!(read(serde_json::json!([1, 3])), Padding2D((1, 1), (3, 3)));
        assert_eq!(read(serde_json::json!([[1, 0], [0, 2]])), Padding2D((1, 0), (0, 2)));
    }
}
