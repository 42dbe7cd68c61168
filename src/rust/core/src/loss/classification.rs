//! Keras's margin and divergence losses: `hinge`, `squared_hinge` (labels 0/1 are read as
//! -1/1, as tf-keras does when every label is 0 or 1), `categorical_hinge`,
//! `kullback_leibler_divergence` and `cosine_similarity` (Keras 2.2's `cosine_proximity`:
//! minus the cosine of prediction and target).
use super::{per_element_mean, values_per_row, LossFunction, EPSILON};
use crate::error::Result;
use crate::layers::OutputGrad;
use crate::model::ModelOutput;
use candle_core::{Tensor, D};

/// tf-keras's `_maybe_convert_labels`: labels that are all 0 or 1 become -1 or 1.
fn signed_labels(y: &Tensor) -> Result<Tensor> {
    let binary = y.eq(0f32)?.to_dtype(y.dtype())?.add(&y.eq(1f32)?.to_dtype(y.dtype())?)?.flatten_all()?.min(0)?.to_scalar::<f32>()? > 0.0;
    Ok(if binary { y.affine(2.0, -1.0)? } else { y.clone() })
}

/// Rows (and sequence steps) of an output: the divisor of losses summed over the last axis.
fn positions(p: &Tensor) -> Result<f64> {
    let classes = p.dim(D::Minus1)?.max(1);
    Ok((p.elem_count() / classes) as f64)
}

pub struct Hinge;

impl LossFunction for Hinge {
    fn name(&self) -> &str {
        "hinge"
    }

    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        let y = signed_labels(y)?;
        per_element_mean(&(y.mul(&out.value)?.neg()? + 1.0)?.relu()?)
    }

    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        let y = signed_labels(y)?;
        let margin = (y.mul(&out.value)?.neg()? + 1.0)?;
        let active = margin.gt(0f32)?.to_dtype(y.dtype())?;
        let n = total_rows as f64 * values_per_row(&out.value)?;
        Ok(OutputGrad::Value((y.neg()?.mul(&active)? / n)?))
    }
}

pub struct SquaredHinge;

impl LossFunction for SquaredHinge {
    fn name(&self) -> &str {
        "squared_hinge"
    }

    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        let y = signed_labels(y)?;
        per_element_mean(&(y.mul(&out.value)?.neg()? + 1.0)?.relu()?.sqr()?)
    }

    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        let y = signed_labels(y)?;
        let margin = (y.mul(&out.value)?.neg()? + 1.0)?.relu()?;
        let n = total_rows as f64 * values_per_row(&out.value)?;
        Ok(OutputGrad::Value(((y.neg()?.mul(&margin)? * 2.0)? / n)?))
    }
}

pub struct CategoricalHinge;

impl LossFunction for CategoricalHinge {
    fn name(&self) -> &str {
        "categorical_hinge"
    }

    /// `max(0, max((1 - y) * p) - sum(y * p) + 1)`.
    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        let p = &out.value;
        let pos = y.mul(p)?.sum(D::Minus1)?;
        let neg = y.affine(-1.0, 1.0)?.mul(p)?.max(D::Minus1)?;
        per_element_mean(&((neg - pos)? + 1.0)?.relu()?.unsqueeze(D::Minus1)?)
    }

    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        let p = &out.value;
        let off = y.affine(-1.0, 1.0)?.mul(p)?;
        let neg = off.max_keepdim(D::Minus1)?;
        let pos = y.mul(p)?.sum_keepdim(D::Minus1)?;
        let active = ((&neg - &pos)? + 1.0)?.gt(0f32)?.to_dtype(p.dtype())?;
        // The largest off-target value's position (the first, as argmax takes it).
        let classes = p.dim(D::Minus1)?;
        let first_max = off.argmax_keepdim(D::Minus1)?;
        let ids = Tensor::arange(0u32, classes as u32, p.device())?.broadcast_as(p.shape())?;
        let at_max = ids.broadcast_eq(&first_max)?.to_dtype(p.dtype())?.mul(&y.affine(-1.0, 1.0)?)?;
        let d = (at_max - y)?.broadcast_mul(&active)?;
        let n = total_rows as f64 * positions(p)? / p.dim(0)?.max(1) as f64;
        Ok(OutputGrad::Value((d / n)?))
    }
}

pub struct KullbackLeiblerDivergence;

impl LossFunction for KullbackLeiblerDivergence {
    fn name(&self) -> &str {
        "kullback_leibler_divergence"
    }

    /// `sum(y * log(y / p))` with both clipped to [eps, 1].
    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        let yc = y.clamp(EPSILON as f32, 1f32)?;
        let pc = out.value.clamp(EPSILON as f32, 1f32)?;
        per_element_mean(&yc.mul(&yc.div(&pc)?.log()?)?.sum(D::Minus1)?.unsqueeze(D::Minus1)?)
    }

    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        let p = &out.value;
        let yc = y.clamp(EPSILON as f32, 1f32)?;
        let pc = p.clamp(EPSILON as f32, 1f32)?;
        let inside = p.ge(EPSILON as f32)?.to_dtype(p.dtype())?.mul(&p.le(1f32)?.to_dtype(p.dtype())?)?;
        let d = yc.div(&pc)?.neg()?.mul(&inside)?;
        let n = total_rows as f64 * positions(p)? / p.dim(0)?.max(1) as f64;
        Ok(OutputGrad::Value((d / n)?))
    }
}

pub struct CosineSimilarity;

/// `x / sqrt(max(sum(x^2), 1e-12))` over the last axis, and that norm.
fn l2_normalize(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.maximum(1e-12f32)?.sqrt()?;
    Ok((x.broadcast_div(&norm)?, norm))
}

impl LossFunction for CosineSimilarity {
    fn name(&self) -> &str {
        "cosine_similarity"
    }

    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        let (yn, _) = l2_normalize(y)?;
        let (pn, _) = l2_normalize(&out.value)?;
        per_element_mean(&yn.mul(&pn)?.sum(D::Minus1)?.neg()?.unsqueeze(D::Minus1)?)
    }

    /// d/dp of -(yn . p / |p|) = -(yn - (yn . pn) pn) / |p| (where |p|^2 > 1e-12).
    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        let p = &out.value;
        let (yn, _) = l2_normalize(y)?;
        let (pn, norm) = l2_normalize(p)?;
        let dot = yn.mul(&pn)?.sum_keepdim(D::Minus1)?;
        let d = yn.sub(&pn.broadcast_mul(&dot)?)?.broadcast_div(&norm)?.neg()?;
        let n = total_rows as f64 * positions(p)? / p.dim(0)?.max(1) as f64;
        Ok(OutputGrad::Value((d / n)?))
    }
}
