//! Functional models (R/functional.R): the graph R traced from outputs back to inputs.
use crate::{guard, handle, ModelHandle};
use extendr_api::prelude::*;
use rustgpu_core::{Error, Model, Result};

/// R's node references: -(k + 1) for model input k, j for node j's first output, and
/// j + k * STATE_CODE for its output k >= 1 (a recurrent layer's states; R/functional.R).
pub(crate) fn source(code: i32) -> rustgpu_core::model::Source {
    const STATE_CODE: i32 = 1 << 20;
    if code < 0 {
        rustgpu_core::model::Source::Input((-code - 1) as usize)
    } else if code >= STATE_CODE {
        rustgpu_core::model::Source::State((code % STATE_CODE) as usize, (code / STATE_CODE) as usize)
    } else {
        rustgpu_core::model::Source::Node(code as usize)
    }
}

/// A functional model from the layers defined on `scratch` (a model used only to hold
/// them) and the wiring R traced from the output tensors back to the inputs.
/// @noRd
#[extendr]
fn rg_make_functional(mut scratch: Robj, name: &str, input_names: Vec<String>, input_shapes: List, nodes: List, outputs: Vec<i32>) -> Robj {
    guard(|| {
        let layers = handle(&mut scratch)?.model().arch.layers.clone();
        let shapes = input_shapes
            .values()
            .map(|v| v.as_integer_vector().map(|s| s.into_iter().map(|d| d.max(0) as usize).collect::<Vec<_>>()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::Value("input shapes must be integer vectors".into()))?;
        let nodes = nodes
            .values()
            .map(|n| {
                let l: List = n.try_into().map_err(|_| Error::Value("malformed node".into()))?;
                let get = |k: &str| l.iter().find(|(name, _)| *name == k).map(|(_, v)| v);
                let layer = get("layer").and_then(|v| v.as_integer()).ok_or_else(|| Error::Value("node without a layer".into()))?;
                let inputs = get("inputs").and_then(|v| v.as_integer_vector()).unwrap_or_default();
                Ok(rustgpu_core::model::Node { layer: layer as usize, inputs: inputs.into_iter().map(source).collect() })
            })
            .collect::<Result<Vec<_>>>()?;
        let graph = rustgpu_core::model::Graph { input_names, input_shapes: shapes, nodes, outputs: outputs.into_iter().map(source).collect() };
        Ok(ModelHandle::new_pointer(Model::functional(name.to_string(), layers, graph)?))
    })
}

extendr_module! {
    mod functional;
    fn rg_make_functional;
}
