//! Losses and metrics called as functions (R/losses.R): `loss_mean_squared_error(y_true,
//! y_pred)` gives each sample's loss, computed by the core's loss of that name.
use crate::convert::{host_to_r, RArray};
use crate::guard;
use extendr_api::prelude::*;
use rustgpu_core::loss::Loss;
use rustgpu_core::metrics::Metric;
use rustgpu_core::{HostTensor, Result};

fn array(r: &Robj, what: &str) -> Result<HostTensor> {
    let a = RArray::new(r, what, true)?;
    a.check_finite(what)?;
    Ok(a.all())
}

/// Each sample's loss.
/// @noRd
#[extendr]
fn rg_loss_values(name: &str, y_true: Robj, y_pred: Robj) -> Robj {
    guard(|| Ok(host_to_r(&Loss::parse(name)?.values(&array(&y_true, "y_true")?, &array(&y_pred, "y_pred")?)?)))
}

/// Each sample's metric.
/// @noRd
#[extendr]
fn rg_metric_values(name: &str, y_true: Robj, y_pred: Robj) -> Robj {
    guard(|| Ok(host_to_r(&Metric::values(name, &array(&y_true, "y_true")?, &array(&y_pred, "y_pred")?)?)))
}

/// Every loss and metric name the core knows.
/// @noRd
#[extendr]
fn rg_loss_names() -> Robj {
    list!(losses = Loss::names(), metrics = Metric::names()).into()
}

extendr_module! {
    mod losses;
    fn rg_loss_values;
    fn rg_metric_values;
    fn rg_loss_names;
}
