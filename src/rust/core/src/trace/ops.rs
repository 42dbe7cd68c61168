//! The ops a trace records: for each, its output shape from its arguments' (with the batch
//! size unknown), its forward value and its vector-Jacobian product. Differentiable ops give
//! each argument's gradient; comparisons, arg-max, one-hot, rounding and random draws give
//! none (as TensorFlow's gradients of these are zero or undefined).
use super::SymShape;
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unary {
    Neg,
    Abs,
    Sign,
    Sqrt,
    Exp,
    Log,
    Tanh,
    Sigmoid,
    Relu,
    Softplus,
    Round,
    Floor,
    Sin,
    Cos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Maximum,
    Minimum,
    Equal,
    NotEqual,
    Greater,
    GreaterEqual,
    Less,
    LessEqual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    Sum,
    Mean,
    Max,
    Min,
    /// Over one axis (a front end chains several).
    Prod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// Parameters: mean, standard deviation.
    Normal,
    /// Parameters: lower and upper bound.
    Uniform,
}

/// A dimension of a random draw: fixed, or the size of another node's axis at run time (the
/// batch size, which a trace does not know).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    Fixed(usize),
    Of { node: usize, axis: usize },
}

/// One recorded op. Axes count from 0 (the batch axis); a front end resolves its own
/// conventions (R keras counts from 1, negative from the end) before recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Input {
        index: usize,
    },
    Weight {
        index: usize,
    },
    Constant {
        shape: Vec<usize>,
        values: Vec<f32>,
    },
    Unary {
        f: Unary,
    },
    Elu {
        alpha: f64,
    },
    PowScalar {
        exponent: f64,
    },
    Clip {
        min: f64,
        max: f64,
    },
    /// Two arguments, broadcast as numpy does.
    Binary {
        f: Binary,
    },
    /// Arguments: condition (non-zero is true), value where true, value where false.
    Where,
    Reduce {
        f: Reduction,
        axes: Vec<usize>,
        keepdims: bool,
    },
    /// -1 for the one dimension inferred from the element count.
    Reshape {
        shape: Vec<i64>,
    },
    Permute {
        perm: Vec<usize>,
    },
    /// The entries `indices` of `axis`, in that order.
    Take {
        axis: usize,
        indices: Vec<usize>,
    },
    Concat {
        axis: usize,
    },
    Tile {
        reps: Vec<usize>,
    },
    /// Keras's `dot`: (..., k) by (k, n), or batched matrix products (b, m, k) by (b, k, n).
    Dot,
    Softmax {
        axis: usize,
    },
    ArgMax {
        axis: usize,
    },
    OneHot {
        classes: usize,
    },
    Random {
        distribution: Distribution,
        shape: Vec<Dim>,
        a: f64,
        b: f64,
    },
    /// Inverted dropout in training, identity otherwise.
    Dropout {
        rate: f64,
    },
    /// The argument's dimensions, as a vector.
    ShapeOf,
    StopGradient,
}

/// How many arguments an op takes (None: any number from one).
pub(super) fn arity(op: &Op) -> Option<usize> {
    Some(match op {
        Op::Input { .. } | Op::Weight { .. } | Op::Constant { .. } | Op::Random { .. } => 0,
        Op::Binary { .. } | Op::Dot => 2,
        Op::Where => 3,
        Op::Concat { .. } => return None,
        _ => 1,
    })
}

fn bad(msg: String) -> Error {
    Error::Value(msg)
}

/// A shape as Keras prints it: (None, 3).
pub fn show(shape: &SymShape) -> String {
    shape.iter().map(|d| d.map_or("None".to_string(), |n| n.to_string())).collect::<Vec<_>>().join(", ")
}

fn check_axis(axis: usize, rank: usize, what: &str) -> Result<()> {
    if axis >= rank {
        return Err(bad(format!("{}: axis {} is outside a tensor of rank {} (axes count from 1, or from the end when negative)", what, axis + 1, rank)));
    }
    Ok(())
}

/// numpy's broadcast of two shapes; an unknown dimension meets 1 as unknown and a known one
/// as the known one.
pub fn broadcast(a: &SymShape, b: &SymShape) -> Result<SymShape> {
    let rank = a.len().max(b.len());
    let at = |s: &SymShape, i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { Some(1) };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (Some(1), d) | (d, Some(1)) => Ok(d),
            (Some(x), Some(y)) if x == y => Ok(Some(x)),
            (Some(x), Some(y)) => Err(bad(format!("shapes ({}) and ({}) cannot be broadcast together ({} against {})", show(a), show(b), x, y))),
            (None, d) | (d, None) => Ok(d),
        })
        .collect()
}

/// The output shape of `op` on arguments of these shapes; `shapes` are every node's so far.
pub(super) fn output_shape(op: &Op, args: &[&SymShape], shapes: &[SymShape]) -> Result<SymShape> {
    let x = args.first().copied();
    let first = || x.ok_or_else(|| bad("missing argument".into()));
    Ok(match op {
        Op::Input { .. } | Op::Weight { .. } => return Err(bad("inputs and weights are made with the trace".into())),
        Op::Constant { shape, values } => {
            if crate::memory::elements(shape) != Some(values.len() as u64) {
                return Err(bad(format!(
                    "a constant of shape ({}) needs that many values, got {}",
                    show(&shape.iter().map(|d| Some(*d)).collect()),
                    values.len()
                )));
            }
            shape.iter().map(|d| Some(*d)).collect()
        }
        Op::Unary { .. } | Op::Elu { .. } | Op::PowScalar { .. } | Op::Clip { .. } | Op::Dropout { .. } | Op::StopGradient => first()?.clone(),
        Op::Binary { .. } => broadcast(args[0], args[1])?,
        Op::Where => broadcast(&broadcast(args[0], args[1])?, args[2])?,
        Op::Reduce { f, axes, keepdims } => {
            let x = first()?;
            for a in axes {
                check_axis(*a, x.len(), "a reduction")?;
            }
            if *f == Reduction::Prod && axes.len() != 1 {
                return Err(bad("a product reduces over one axis at a time".into()));
            }
            x.iter()
                .enumerate()
                .filter_map(|(i, d)| match (axes.contains(&i), keepdims) {
                    (true, true) => Some(Some(1)),
                    (true, false) => None,
                    (false, _) => Some(*d),
                })
                .collect()
        }
        Op::Reshape { shape } => {
            let x = first()?;
            let wildcards = shape.iter().filter(|d| **d == -1).count();
            if wildcards > 1 || shape.iter().any(|d| *d < -1) {
                return Err(bad(format!("a reshape takes sizes >= 0 and at most one -1, got {:?}", shape)));
            }
            let mismatch = || bad(format!("cannot reshape ({}) to {:?}: the sizes do not match", show(x), shape));
            let fixed = shape.iter().filter(|d| **d >= 0).try_fold(1u64, |a, d| a.checked_mul(*d as u64)).ok_or_else(mismatch)?;
            let total: Option<u64> = x.iter().try_fold(1u64, |a, d| a.checked_mul((*d)? as u64));
            let inferred = match total {
                Some(t) if wildcards == 1 && fixed > 0 && t % fixed == 0 => Some((t / fixed) as usize),
                Some(t) if (wildcards == 1 && (fixed == 0 || t % fixed != 0)) || (wildcards == 0 && t != fixed) => return Err(mismatch()),
                _ => None,
            };
            shape.iter().map(|d| if *d == -1 { inferred } else { Some(*d as usize) }).collect()
        }
        Op::Permute { perm } => {
            let x = first()?;
            let mut seen = perm.clone();
            seen.sort_unstable();
            if seen != (0..x.len()).collect::<Vec<_>>() {
                return Err(bad(format!("a permutation of the {} axes of ({}) is needed, got {:?} (counting from 0)", x.len(), show(x), perm)));
            }
            perm.iter().map(|p| x[*p]).collect()
        }
        Op::Take { axis, indices } => {
            let x = first()?;
            check_axis(*axis, x.len(), "an index")?;
            // An axis of unknown size (the batch's) is checked when the values come.
            if let Some(n) = x[*axis] {
                if let Some(i) = indices.iter().find(|i| **i >= n) {
                    return Err(bad(format!("index {} is outside an axis of size {}", i + 1, n)));
                }
            }
            let mut out = x.clone();
            out[*axis] = Some(indices.len());
            out
        }
        Op::Concat { axis } => {
            let x = first()?;
            check_axis(*axis, x.len(), "a concatenation")?;
            let mut out = x.clone();
            out[*axis] = Some(0);
            for s in args {
                if s.len() != x.len() || s.iter().zip(x.iter()).enumerate().any(|(i, (a, b))| i != *axis && a.is_some() && b.is_some() && a != b) {
                    return Err(bad(format!("cannot concatenate ({}) and ({}) along axis {}", show(x), show(s), axis + 1)));
                }
                out[*axis] = match (out[*axis], s[*axis]) {
                    (Some(a), Some(b)) => Some(a + b),
                    _ => None,
                };
            }
            out
        }
        Op::Tile { reps } => {
            let x = first()?;
            if reps.len() != x.len() || reps.contains(&0) {
                return Err(bad(format!("tiling ({}) needs one repeat count >= 1 per axis, got {:?}", show(x), reps)));
            }
            x.iter().zip(reps).map(|(d, r)| d.and_then(|d| d.checked_mul(*r))).collect()
        }
        Op::Dot => {
            let (a, b) = (args[0], args[1]);
            if a.len() < 2 || b.len() < 2 {
                return Err(bad(format!("a dot product needs tensors of rank >= 2, got ({}) and ({})", show(a), show(b))));
            }
            let k = a[a.len() - 1];
            let bk = b[b.len() - 2];
            if matches!((k, bk), (Some(x), Some(y)) if x != y) {
                return Err(bad(format!("cannot multiply ({}) by ({}): {} against {}", show(a), show(b), k.unwrap_or(0), bk.unwrap_or(0))));
            }
            if b.len() == 2 {
                let mut out = a[..a.len() - 1].to_vec();
                out.push(b[1]);
                out
            } else if a.len() == b.len() {
                let mut out = broadcast(&a[..a.len() - 2].to_vec(), &b[..b.len() - 2].to_vec())?;
                out.push(a[a.len() - 2]);
                out.push(b[b.len() - 1]);
                out
            } else {
                return Err(bad(format!("a dot product of ({}) and ({}) is not supported: use rank 2 for the second, or equal ranks", show(a), show(b))));
            }
        }
        Op::Softmax { axis } => {
            check_axis(*axis, first()?.len(), "softmax")?;
            first()?.clone()
        }
        Op::ArgMax { axis } => {
            let x = first()?;
            check_axis(*axis, x.len(), "argmax")?;
            x.iter().enumerate().filter(|(i, _)| i != axis).map(|(_, d)| *d).collect()
        }
        Op::OneHot { classes } => {
            if *classes == 0 {
                return Err(bad("one_hot needs num_classes >= 1".into()));
            }
            let mut out = first()?.clone();
            out.push(Some(*classes));
            out
        }
        Op::Random { shape, distribution, a, b } => {
            if !a.is_finite() || !b.is_finite() || (*distribution == Distribution::Normal && *b < 0.0) || (*distribution == Distribution::Uniform && b < a) {
                return Err(bad(format!("a random draw needs finite parameters (a standard deviation >= 0, maxval >= minval), got {} and {}", a, b)));
            }
            shape
                .iter()
                .map(|d| match *d {
                    Dim::Fixed(n) => Ok(Some(n)),
                    Dim::Of { node, axis } => {
                        let s = shapes.get(node).ok_or_else(|| bad(format!("a random draw's size refers to node {}, which comes later", node)))?;
                        check_axis(axis, s.len(), "a random draw's size")?;
                        Ok(s[axis])
                    }
                })
                .collect::<Result<_>>()?
        }
        Op::ShapeOf => vec![Some(first()?.len())],
    })
}

fn float(t: Tensor) -> Result<Tensor> {
    Ok(t.to_dtype(DType::F32)?)
}

/// `g` summed down to `shape` (undoing a broadcast).
pub(super) fn sum_to(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let mut g = g.clone();
    let extra = g.rank().saturating_sub(shape.len());
    if extra > 0 {
        // Leading axes summed as the rows of a matrix (a bias's gradient): candle's sum over
        // a leading axis walks it with strides, several times slower.
        let lead: usize = g.dims()[..extra].iter().product();
        let rest = g.dims()[extra..].to_vec();
        g = crate::kernels::sum_rows(&g.contiguous()?.reshape((lead, rest.iter().product::<usize>()))?)?.reshape(rest)?;
    }
    for (i, d) in shape.iter().enumerate() {
        if *d == 1 && g.dim(i)? != 1 {
            g = g.sum_keepdim(i)?;
        }
    }
    Ok(g)
}

fn compare(f: Binary, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    float(match f {
        Binary::Equal => a.broadcast_eq(b)?,
        Binary::NotEqual => a.broadcast_ne(b)?,
        Binary::Greater => a.broadcast_gt(b)?,
        Binary::GreaterEqual => a.broadcast_ge(b)?,
        Binary::Less => a.broadcast_lt(b)?,
        Binary::LessEqual => a.broadcast_le(b)?,
        _ => unreachable!("not a comparison"),
    })
}

fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok((x.neg()?.exp()? + 1.0)?.recip()?)
}

/// What a forward step computed besides its value (dropout's mask).
pub(super) type Aux = Option<Tensor>;

/// The dimensions a random draw or reshape resolves at run time.
fn resolve_dims(shape: &[Dim], values: &[Tensor]) -> Result<Vec<usize>> {
    shape
        .iter()
        .map(|d| match *d {
            Dim::Fixed(n) => Ok(n),
            Dim::Of { node, axis } => Ok(values[node].dim(axis)?),
        })
        .collect()
}

/// The forward value of `op` on `args`; `values` are every node's so far.
pub(super) fn forward(op: &Op, args: &[&Tensor], values: &[Tensor], training: bool, rng: &mut rand::rngs::StdRng, device: &Device) -> Result<(Tensor, Aux)> {
    let x = args.first().copied();
    let x = || x.ok_or_else(|| bad("missing argument".into()));
    let value = match op {
        Op::Input { .. } | Op::Weight { .. } => return Err(bad("inputs and weights are given to the run".into())),
        Op::Constant { shape, values } => Tensor::from_slice(values, shape.as_slice(), device)?,
        Op::Unary { f } => {
            let x = x()?;
            match f {
                Unary::Neg => x.neg()?,
                Unary::Abs => x.abs()?,
                Unary::Sign => x.sign()?,
                Unary::Sqrt => x.sqrt()?,
                Unary::Exp => x.exp()?,
                Unary::Log => x.log()?,
                Unary::Tanh => x.tanh()?,
                Unary::Sigmoid => sigmoid(x)?,
                Unary::Relu => x.relu()?,
                // log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), without overflow.
                Unary::Softplus => (x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?,
                Unary::Round => x.round()?,
                Unary::Floor => x.floor()?,
                Unary::Sin => x.sin()?,
                Unary::Cos => x.cos()?,
            }
        }
        Op::Elu { alpha } => {
            let x = x()?;
            let negative = ((x.minimum(0f32)?.exp()? - 1.0)? * *alpha)?;
            (x.relu()? + negative)?
        }
        Op::PowScalar { exponent } => x()?.powf(*exponent)?,
        Op::Clip { min, max } => x()?.clamp(*min as f32, *max as f32)?,
        Op::Binary { f } => {
            let (a, b) = (args[0], args[1]);
            match f {
                Binary::Add => a.broadcast_add(b)?,
                Binary::Sub => a.broadcast_sub(b)?,
                Binary::Mul => a.broadcast_mul(b)?,
                Binary::Div => a.broadcast_div(b)?,
                Binary::Pow => pow(a, b)?,
                Binary::Maximum => a.broadcast_maximum(b)?,
                Binary::Minimum => a.broadcast_minimum(b)?,
                _ => compare(*f, a, b)?,
            }
        }
        Op::Where => {
            let shape = broadcast_dims(&[args[0].dims(), args[1].dims(), args[2].dims()])?;
            let cond = args[0].broadcast_as(shape.as_slice())?.ne(0f32)?;
            cond.where_cond(&args[1].broadcast_as(shape.as_slice())?.contiguous()?, &args[2].broadcast_as(shape.as_slice())?.contiguous()?)?
        }
        Op::Reduce { f, axes, keepdims } => {
            let kept = reduce_keep(*f, x()?, axes)?;
            if *keepdims {
                kept
            } else {
                squeeze_axes(&kept, axes)?
            }
        }
        Op::Reshape { shape } => {
            let x = x()?;
            let fixed: usize = shape.iter().filter(|d| **d >= 0).map(|d| *d as usize).product();
            let dims: Vec<usize> = shape.iter().map(|d| if *d == -1 { x.elem_count() / fixed.max(1) } else { *d as usize }).collect();
            if dims.iter().product::<usize>() != x.elem_count() {
                let have: SymShape = x.dims().iter().map(|d| Some(*d)).collect();
                return Err(bad(format!("cannot reshape ({}) to {:?}: the sizes do not match", show(&have), shape)));
            }
            x.reshape(dims)?
        }
        Op::Permute { perm } => x()?.permute(perm.clone())?.contiguous()?,
        Op::Take { axis, indices } => {
            let x = x()?;
            let n = x.dim(*axis)?;
            if let Some(i) = indices.iter().find(|i| **i >= n) {
                return Err(Error::Value(format!("index {} is outside an axis of size {}", i + 1, n)));
            }
            let ids: Vec<u32> = indices.iter().map(|i| *i as u32).collect();
            x.index_select(&Tensor::new(ids.as_slice(), device)?, *axis)?
        }
        Op::Concat { axis } => Tensor::cat(args, *axis)?,
        Op::Tile { reps } => x()?.repeat(reps.as_slice())?,
        Op::Dot => dot(args[0], args[1])?,
        Op::Softmax { axis } => {
            let x = x()?;
            let e = x.broadcast_sub(&x.max_keepdim(*axis)?)?.exp()?;
            e.broadcast_div(&e.sum_keepdim(*axis)?)?
        }
        Op::ArgMax { axis } => float(x()?.argmax(*axis)?)?,
        Op::OneHot { classes } => {
            let x = x()?;
            let ids = x.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            let mut out = vec![0f32; ids.len() * classes];
            for (r, id) in ids.iter().enumerate() {
                // Ids outside [0, classes) give a row of zeros, as TensorFlow's one_hot.
                if *id >= 0.0 && (*id as usize) < *classes && id.fract() == 0.0 {
                    out[r * classes + *id as usize] = 1.0;
                }
            }
            let mut shape = x.dims().to_vec();
            shape.push(*classes);
            Tensor::from_vec(out, shape, device)?
        }
        Op::Random { distribution, shape, a, b } => {
            let dims = resolve_dims(shape, values)?;
            let n = crate::memory::elements(&dims).ok_or_else(|| bad("a random draw's size overflows".into()))?;
            crate::memory::check("a random draw", crate::memory::bytes(n, 4), "draw fewer values")?;
            let values = match distribution {
                Distribution::Normal => crate::random::normal(rng, n as usize, *a, *b),
                Distribution::Uniform => crate::random::uniform(rng, n as usize, *a, *b),
            };
            Tensor::from_vec(values, dims, device)?
        }
        Op::Dropout { rate } => {
            let x = x()?;
            if !training || *rate == 0.0 {
                x.clone()
            } else {
                let mask = crate::random::keep_mask(rng, x.dims(), *rate, device)?;
                return Ok((x.mul(&mask)?, Some(mask)));
            }
        }
        Op::ShapeOf => {
            let dims: Vec<f32> = x()?.dims().iter().map(|d| *d as f32).collect();
            Tensor::new(dims.as_slice(), device)?
        }
        Op::StopGradient => x()?.detach(),
    };
    Ok((value, None))
}

fn broadcast_dims(shapes: &[&[usize]]) -> Result<Vec<usize>> {
    let mut out: SymShape = shapes[0].iter().map(|d| Some(*d)).collect();
    for s in &shapes[1..] {
        out = broadcast(&out, &s.iter().map(|d| Some(*d)).collect())?;
    }
    Ok(out.into_iter().map(|d| d.unwrap_or(1)).collect())
}

/// a^b elementwise; a negative base with a whole exponent keeps its sign rule.
fn pow(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let shape = broadcast_dims(&[a.dims(), b.dims()])?;
    let (av, bv) = (a.broadcast_as(shape.as_slice())?.flatten_all()?.to_vec1::<f32>()?, b.broadcast_as(shape.as_slice())?.flatten_all()?.to_vec1::<f32>()?);
    let out: Vec<f32> = av.iter().zip(&bv).map(|(x, y)| x.powf(*y)).collect();
    Ok(Tensor::from_vec(out, shape, a.device())?)
}

fn reduce_keep(f: Reduction, x: &Tensor, axes: &[usize]) -> Result<Tensor> {
    let mut t = x.clone();
    for a in axes {
        t = match f {
            Reduction::Sum => t.sum_keepdim(*a)?,
            Reduction::Mean => t.mean_keepdim(*a)?,
            Reduction::Max => t.max_keepdim(*a)?,
            Reduction::Min => t.min_keepdim(*a)?,
            Reduction::Prod => {
                let mut acc = t.narrow(*a, 0, 1)?;
                for i in 1..t.dim(*a)? {
                    acc = acc.mul(&t.narrow(*a, i, 1)?)?;
                }
                acc
            }
        };
    }
    Ok(t)
}

fn squeeze_axes(t: &Tensor, axes: &[usize]) -> Result<Tensor> {
    let dims: Vec<usize> = t.dims().iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| *d).collect();
    Ok(t.reshape(dims)?)
}

/// Keras's dot: (..., k) by (k, n) as one matrix product over the leading axes; equal ranks
/// as batched products.
fn dot(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if b.rank() == 2 {
        let k = a.dim(D::Minus1)?;
        let rows = a.elem_count() / k.max(1);
        let out = crate::kernels::matmul(&a.reshape((rows, k))?, b)?;
        let mut dims = a.dims()[..a.rank() - 1].to_vec();
        dims.push(b.dim(1)?);
        Ok(out.reshape(dims)?)
    } else {
        Ok(a.contiguous()?.broadcast_matmul(&b.contiguous()?)?)
    }
}

fn transpose_last(t: &Tensor) -> Result<Tensor> {
    Ok(t.transpose(t.rank() - 2, t.rank() - 1)?.contiguous()?)
}

/// Each argument's gradient from the output's gradient `g` (None where there is none).
/// `wanted[i]`: whether argument i's gradient is needed (ops whose gradients are costly skip
/// the others).
pub(super) fn backward(op: &Op, args: &[&Tensor], out: &Tensor, aux: &Aux, g: &Tensor, wanted: &[bool]) -> Result<Vec<Option<Tensor>>> {
    let one = |t: Tensor| Ok(vec![Some(t)]);
    let x = args.first().copied();
    match op {
        Op::Input { .. } | Op::Weight { .. } | Op::Constant { .. } | Op::Random { .. } | Op::ShapeOf | Op::StopGradient => Ok(vec![None; args.len()]),
        Op::ArgMax { .. } | Op::OneHot { .. } => Ok(vec![None]),
        Op::Unary { f } => {
            let x = x.expect("checked arity");
            match f {
                Unary::Neg => one(g.neg()?),
                Unary::Abs => one(g.mul(&x.sign()?)?),
                Unary::Sign | Unary::Round | Unary::Floor => Ok(vec![None]),
                Unary::Sqrt => one(g.div(&(out * 2.0)?)?),
                Unary::Exp => one(g.mul(out)?),
                Unary::Log => one(g.div(x)?),
                Unary::Tanh => one(g.mul(&(1.0 - out.sqr()?)?)?),
                Unary::Sigmoid => one(g.mul(&out.mul(&(1.0 - out)?)?)?),
                // sign(relu(x)) is the 0/1 mask: one pass fewer than comparing x with 0.
                Unary::Relu => one(g.mul(&out.sign()?)?),
                Unary::Softplus => one(g.mul(&sigmoid(x)?)?),
                Unary::Sin => one(g.mul(&x.cos()?)?),
                Unary::Cos => one(g.mul(&x.sin()?.neg()?)?),
            }
        }
        Op::Elu { alpha } => {
            let x = x.expect("checked arity");
            let pos = float(x.gt(0f32)?)?;
            // e^x alpha = out + alpha where x <= 0.
            let slope = (&pos + (1.0 - &pos)?.mul(&(out + *alpha)?)?)?;
            one(g.mul(&slope)?)
        }
        Op::PowScalar { exponent } => one(g.mul(&(x.expect("checked arity").powf(exponent - 1.0)? * *exponent)?)?),
        Op::Clip { min, max } => {
            let x = x.expect("checked arity");
            let inside = float(x.ge(*min as f32)?)?.mul(&float(x.le(*max as f32)?)?)?;
            one(g.mul(&inside)?)
        }
        Op::Binary { f } => {
            let (a, b) = (args[0], args[1]);
            let (ga, gb) = match f {
                Binary::Add => (Some(g.clone()), Some(g.clone())),
                Binary::Sub => (Some(g.clone()), Some(g.neg()?)),
                Binary::Mul => (Some(g.broadcast_mul(b)?), Some(g.broadcast_mul(a)?)),
                Binary::Div => (Some(g.broadcast_div(b)?), Some(g.broadcast_mul(a)?.broadcast_div(&b.sqr()?)?.neg()?)),
                Binary::Pow => {
                    // d/da a^b = b a^(b-1) = b out / a; d/db = out ln a (where a > 0).
                    let ga = g.broadcast_mul(&pow(a, &(b - 1.0)?)?.broadcast_mul(b)?)?;
                    let ln_a = a.relu()?.log()?;
                    let gb = g.mul(out)?.broadcast_mul(&ln_a.where_cond_finite()?)?;
                    (Some(ga), Some(gb))
                }
                // As TensorFlow: ties go to the first argument.
                Binary::Maximum => {
                    let first = compare(Binary::GreaterEqual, a, b)?;
                    (Some(g.mul(&first)?), Some(g.mul(&(1.0 - first)?)?))
                }
                Binary::Minimum => {
                    let first = compare(Binary::LessEqual, a, b)?;
                    (Some(g.mul(&first)?), Some(g.mul(&(1.0 - first)?)?))
                }
                _ => (None, None),
            };
            Ok(vec![ga.map(|t| sum_to(&t, a.dims())).transpose()?, gb.map(|t| sum_to(&t, b.dims())).transpose()?])
        }
        Op::Where => {
            let cond = float(args[0].broadcast_as(out.dims())?.ne(0f32)?)?;
            Ok(vec![None, Some(sum_to(&g.mul(&cond)?, args[1].dims())?), Some(sum_to(&g.mul(&(1.0 - cond)?)?, args[2].dims())?)])
        }
        Op::Reduce { f, axes, keepdims } => {
            let x = x.expect("checked arity");
            let kept_shape: Vec<usize> = x.dims().iter().enumerate().map(|(i, d)| if axes.contains(&i) { 1 } else { *d }).collect();
            let g = g.reshape(kept_shape.as_slice())?;
            let out = if *keepdims { out.clone() } else { out.reshape(kept_shape.as_slice())? };
            let gx = match f {
                Reduction::Sum => g.broadcast_as(x.dims())?.contiguous()?,
                Reduction::Mean => {
                    let count: usize = axes.iter().map(|a| x.dims()[*a]).product();
                    (g.broadcast_as(x.dims())? / count.max(1) as f64)?
                }
                // As TensorFlow: the gradient is shared among the entries that tie for the extreme.
                Reduction::Max | Reduction::Min => {
                    let hit = float(x.broadcast_eq(&out)?)?;
                    let mut count = hit.clone();
                    for a in axes {
                        count = count.sum_keepdim(*a)?;
                    }
                    hit.broadcast_mul(&g.div(&count)?)?
                }
                Reduction::Prod => {
                    // Each entry's gradient is the product of the others along the axis
                    // (prefix times suffix), exact where entries are 0.
                    let a = axes[0];
                    let n = x.dim(a)?;
                    let mut prefix = vec![x.narrow(a, 0, 1)?.ones_like()?];
                    for i in 1..n {
                        prefix.push(prefix[i - 1].mul(&x.narrow(a, i - 1, 1)?)?);
                    }
                    let mut suffix = vec![x.narrow(a, 0, 1)?.ones_like()?; n];
                    for i in (0..n.saturating_sub(1)).rev() {
                        suffix[i] = suffix[i + 1].mul(&x.narrow(a, i + 1, 1)?)?;
                    }
                    let others: Vec<Tensor> = prefix.iter().zip(&suffix).map(|(p, s)| p.mul(s)).collect::<candle_core::Result<_>>()?;
                    Tensor::cat(&others, a)?.broadcast_mul(&g)?
                }
            };
            one(gx)
        }
        Op::Reshape { .. } => one(g.reshape(x.expect("checked arity").dims())?),
        Op::Permute { perm } => {
            let mut inverse = vec![0; perm.len()];
            for (i, p) in perm.iter().enumerate() {
                inverse[*p] = i;
            }
            one(g.permute(inverse)?.contiguous()?)
        }
        Op::Take { axis, indices } => {
            let x = x.expect("checked arity");
            let ids: Vec<u32> = indices.iter().map(|i| *i as u32).collect();
            one(x.zeros_like()?.index_add(&Tensor::new(ids.as_slice(), x.device())?, &g.contiguous()?, *axis)?)
        }
        Op::Concat { axis } => {
            let mut at = 0;
            args.iter()
                .map(|a| {
                    let n = a.dim(*axis)?;
                    let part = g.narrow(*axis, at, n)?.contiguous()?;
                    at += n;
                    Ok(Some(part))
                })
                .collect()
        }
        Op::Tile { reps } => {
            // The output's axis i is reps[i] copies of the input's: view it as (reps[i], d[i]).
            let x = x.expect("checked arity");
            let mut split = Vec::with_capacity(2 * reps.len());
            for (r, d) in reps.iter().zip(x.dims()) {
                split.push(*r);
                split.push(*d);
            }
            let mut t = g.reshape(split)?;
            for i in (0..reps.len()).rev() {
                t = t.sum(2 * i)?;
            }
            one(t)
        }
        Op::Dot => {
            let (a, b) = (args[0], args[1]);
            if b.rank() == 2 {
                // The dense layer's kernels (transposed views without copies, no zero-filling):
                // candle's matmul with copied transposes made a traced dense layer's step 2.1x
                // the built-in's (bench/traced_layers.R).
                let k = a.dim(D::Minus1)?;
                let rows = a.elem_count() / k.max(1);
                let g2 = g.reshape((rows, b.dim(1)?))?;
                let ga = if wanted[0] { Some(crate::kernels::matmul_by_transpose(&g2, b)?.reshape(a.dims())?) } else { None };
                let gb = if wanted[1] { Some(crate::kernels::matmul(&a.reshape((rows, k))?.t()?, &g2)?) } else { None };
                Ok(vec![ga, gb])
            } else {
                let ga = g.contiguous()?.broadcast_matmul(&transpose_last(b)?)?;
                let gb = transpose_last(a)?.broadcast_matmul(&g.contiguous()?)?;
                Ok(vec![Some(sum_to(&ga, a.dims())?), Some(sum_to(&gb, b.dims())?)])
            }
        }
        Op::Softmax { axis } => one(out.mul(&g.broadcast_sub(&g.mul(out)?.sum_keepdim(*axis)?)?)?),
        Op::Dropout { .. } => one(match aux {
            Some(mask) => g.mul(mask)?,
            None => g.clone(),
        }),
    }
}

trait FiniteOrZero {
    fn where_cond_finite(&self) -> Result<Tensor>;
}

impl FiniteOrZero for Tensor {
    /// Non-finite entries (ln 0) set to 0: d/db a^b is taken as 0 where a <= 0.
    fn where_cond_finite(&self) -> Result<Tensor> {
        let v: Vec<f32> = self.flatten_all()?.to_vec1::<f32>()?.into_iter().map(|x| if x.is_finite() { x } else { 0.0 }).collect();
        Ok(Tensor::from_vec(v, self.dims(), self.device())?)
    }
}
