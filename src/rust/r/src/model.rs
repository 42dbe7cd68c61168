//! Models as R holds them (R/model.R): creation, structure for print/summary, weights.
use crate::convert::{self, host_to_r};
use crate::{guard, handle, ModelHandle};
use extendr_api::prelude::*;
use rustgpu_core::parallel::MergeDevice;
use rustgpu_core::{Error, Executor, Model};

/// @noRd
#[extendr]
fn rg_model_new(name: &str) -> Robj {
    guard(|| Ok(ModelHandle::new_pointer(Model::new(name.to_string()))))
}

/// TRUE when `ptr` still points at a live model.
/// @noRd
#[extendr]
fn rg_is_live(mut ptr: Robj) -> bool {
    handle(&mut ptr).is_ok()
}

/// Structure for print/summary: layers, shapes, parameter counts, devices.
/// @noRd
#[extendr]
fn rg_model_info(mut ptr: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let m = h.model();
        let arch = &m.arch;
        let names: Vec<String> = arch.layers.iter().map(|l| l.name.clone()).collect();
        let classes: Vec<String> = arch.layers.iter().map(|l| l.class_name().to_string()).collect();
        // Layers with several outputs print them as Keras does: "[(None, 4), (None, 4)]".
        let all_shapes = if arch.is_built() { arch.layer_output_shapes() } else { Vec::new() };
        let shapes: Vec<String> = (0..arch.layers.len())
            .map(|i| match (arch.output_shapes.get(i), all_shapes.get(i)) {
                (Some(_), Some(all)) if all.len() > 1 => {
                    let each: Vec<String> = all.iter().map(|s| format!("(None, {})", rustgpu_core::shape::join_dims(s))).collect();
                    format!("[{}]", each.join(", "))
                }
                (Some(s), _) => format!("(None, {})", rustgpu_core::shape::join_dims(s)),
                (None, _) => "(unbuilt)".to_string(),
            })
            .collect();
        // Each layer's output shapes as integers (0: a size each batch gives), for
        // `layer$output_shape`; empty before the model is built.
        let dims: Vec<Robj> = (0..arch.layers.len())
            .map(|i| {
                let outputs = all_shapes.get(i).cloned().unwrap_or_default();
                List::from_values(outputs.iter().map(|s| Robj::from(s.iter().map(|d| *d as i32).collect::<Vec<_>>()))).into()
            })
            .collect();
        let params: Vec<f64> = (0..arch.layers.len())
            .map(|i| match arch.weight_ranges.get(i) {
                Some(r) => m.weights[r.clone()].iter().map(|w| w.value.len() as f64).sum(),
                None => f64::NAN,
            })
            .collect();
        let (trainable, frozen) = m.count_params();
        let devices: Vec<String> = match (&h.executor, h.executor.replica_set()) {
            (_, Some(set)) => {
                set.devices.iter().map(|d| format!("{} ({}, {} thread{})", d.label(), d.name, d.threads, if d.threads == 1 { "" } else { "s" })).collect()
            }
            (Executor::Local(d), None) => vec![d.name.clone()],
            (Executor::Workers(d, w), None) => vec![format!("{} (worker rank {} of {})", d.name, w.rank(), w.size())],
            (Executor::Replicated(_), None) => Vec::new(),
        };
        let merge = match h.executor.replica_set() {
            Some(set) if set.merge == MergeDevice::FirstReplica => "first GPU",
            _ => "CPU",
        };
        let input_shape: Robj = match &arch.input_shape {
            Some(s) => s.iter().map(|v| *v as i32).collect::<Vec<_>>().into(),
            None => ().into(),
        };
        let weight_names: Vec<String> = m.weights.iter().map(|w| w.name.clone()).collect();
        Ok(list!(
            name = m.name.clone(),
            layer_names = names,
            layer_classes = classes,
            output_shapes = shapes,
            output_dims = List::from_values(dims),
            layer_params = params,
            trainable_params = trainable as f64,
            non_trainable_params = frozen as f64,
            built = arch.is_built(),
            input_shape = input_shape,
            replicas = h.executor.replica_count() as i32,
            parallel = matches!(h.executor, Executor::Replicated(_)),
            functional = arch.graph.is_some(),
            output_names = arch.output_names(),
            input_names = arch.graph.as_ref().map(|g| g.input_names.clone()).unwrap_or_default(),
            // Every input's shape as integers (0: a size each batch gives), for `$input_shape`.
            input_dims = List::from_values(arch.input_shapes().unwrap_or_default().iter().map(|s| Robj::from(s.iter().map(|d| *d as i32).collect::<Vec<_>>()))),
            input_shapes = arch
                .graph
                .as_ref()
                .map(|g| g.input_shapes.iter().map(|s| format!("(None, {})", rustgpu_core::shape::join_dims(s))).collect::<Vec<_>>())
                .unwrap_or_default(),
            devices = devices,
            merge = merge,
            cpu_relocation = h.cpu_relocation,
            compiled = h.compiled.is_some(),
            weight_names = weight_names
        )
        .into())
    })
}

/// @noRd
#[extendr]
fn rg_get_weights(mut ptr: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let ws = h.model().get_weights();
        Ok(List::from_values(ws.iter().map(host_to_r)).into())
    })
}

/// @noRd
#[extendr]
fn rg_set_weights(mut ptr: Robj, weights: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let list: List = weights.try_into().map_err(|_| Error::Value("`weights` must be a list of arrays".into()))?;
        let mut values = Vec::with_capacity(list.len());
        for (i, (_, w)) in list.iter().enumerate() {
            let what = format!("weights[[{}]]", i + 1);
            let arr = convert::RArray::new(&w, &what, false)?;
            arr.check_finite(&what)?;
            values.push(arr.all());
        }
        h.model().set_weights(values)?;
        Ok(().into())
    })
}

/// Copies the newest values of layers shared between models: `from` names layers of the
/// model `src`, `to` the same layers in the model `dst`.
/// @noRd
#[extendr]
fn rg_take_layer_weights(mut dst: Robj, mut src: Robj, from: Vec<String>, to: Vec<String>) -> Robj {
    guard(|| {
        // A snapshot of the source first: the two may share one model (a parallel model and
        // its template), whose lock must not be taken twice.
        let source = handle(&mut src)?.model().clone();
        let pairs: Vec<(String, String)> = from.into_iter().zip(to).collect();
        handle(&mut dst)?.model().take_layer_weights(&source, &pairs)?;
        Ok(().into())
    })
}

extendr_module! {
    mod model;
    fn rg_take_layer_weights;
    fn rg_model_new;
    fn rg_is_live;
    fn rg_model_info;
    fn rg_get_weights;
    fn rg_set_weights;
}
