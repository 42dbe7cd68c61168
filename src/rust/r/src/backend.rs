//! Tracing R code (R/backend.R): a trace under construction behind an external pointer.
//! Each `k_*()` call on symbolic tensors records one op here and gets back the new node and
//! its shape; the finished trace goes to a layer's config or to compile() as JSON.
use crate::convert::{host_to_r, r_to_json};
use crate::guard;
use extendr_api::prelude::*;
use rustgpu_core::trace::{Op, SymShape, Trace};
use rustgpu_core::{Error, HostTensor, Result};

/// A shape from R: sizes, NA for unknown (the batch).
fn sym_shape(r: &Robj, what: &str) -> Result<SymShape> {
    let values: Vec<f64> = match r.rtype() {
        Rtype::Doubles => r.as_real_slice().unwrap_or(&[]).to_vec(),
        Rtype::Integers => r.as_integer_slice().unwrap_or(&[]).iter().map(|v| if *v == i32::MIN { f64::NAN } else { *v as f64 }).collect(),
        Rtype::Logicals | Rtype::Null => vec![f64::NAN; r.len()],
        _ => return Err(Error::Value(format!("{} must be numeric sizes (NA for unknown)", what))),
    };
    values
        .into_iter()
        .map(|v| {
            if v.is_nan() {
                Ok(None)
            } else if v >= 0.0 && v.fract() == 0.0 && v < 1e15 {
                Ok(Some(v as usize))
            } else {
                Err(Error::Value(format!("{} must hold whole sizes >= 0, got {}", what, v)))
            }
        })
        .collect()
}

fn shape_to_r(s: &SymShape) -> Robj {
    s.iter().map(|d| d.map_or(f64::NAN, |d| d as f64)).map(|v| if v.is_nan() { Rfloat::na() } else { Rfloat::from(v) }).collect::<Doubles>().into()
}

fn tracer(ptr: &mut Robj) -> Result<&mut Trace> {
    let ext: &mut ExternalPtr<Trace> = ptr.try_into().map_err(|_| Error::State("this traced function is gone (trace it again)".into()))?;
    ext.try_addr_mut().map_err(|_| Error::State("this traced function is gone".into()))
}

/// A new trace of inputs and weights of these shapes.
/// @noRd
#[extendr]
fn rg_trace_new(input_shapes: List, weight_shapes: List) -> Robj {
    guard(|| {
        let inputs = input_shapes.values().enumerate().map(|(i, s)| sym_shape(&s, &format!("input {}'s shape", i + 1))).collect::<Result<Vec<_>>>()?;
        let weights = weight_shapes
            .values()
            .enumerate()
            .map(|(i, s)| {
                sym_shape(&s, &format!("weight {}'s shape", i + 1))?
                    .into_iter()
                    .map(|d| d.ok_or_else(|| Error::Value("a weight's shape must be fully known".into())))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ExternalPtr::new(Trace::new(inputs, weights)).into())
    })
}

/// Records `op` (a named list: Keras-free names of the core's ops) on nodes `args` (from 0);
/// returns list(node, shape).
/// @noRd
#[extendr]
fn rg_trace_record(mut ptr: Robj, op: Robj, args: Robj) -> Robj {
    guard(|| {
        let t = tracer(&mut ptr)?;
        let op: Op = serde_json::from_value(r_to_json(&op)?).map_err(|e| Error::Value(format!("not an op: {}", e)))?;
        let args: Vec<usize> =
            sym_shape(&args, "args")?.into_iter().map(|a| a.ok_or_else(|| Error::Value("an op's argument is missing".into()))).collect::<Result<_>>()?;
        let node = t.record(op, args)?;
        Ok(list!(node = node as f64, shape = shape_to_r(t.shape(node)?)).into())
    })
}

/// Adds an input of `shape` (NA for unknown) to the trace: its node.
/// @noRd
#[extendr]
fn rg_trace_add_input(mut ptr: Robj, shape: Robj) -> Robj {
    guard(|| {
        let t = tracer(&mut ptr)?;
        let node = t.add_input(sym_shape(&shape, "shape")?)?;
        Ok((node as f64).into())
    })
}

/// Adds a weight of `shape` (fully known) to the trace: its node.
/// @noRd
#[extendr]
fn rg_trace_add_weight(mut ptr: Robj, shape: Robj) -> Robj {
    guard(|| {
        let t = tracer(&mut ptr)?;
        let shape = sym_shape(&shape, "shape")?
            .into_iter()
            .map(|d| d.ok_or_else(|| Error::Value("a weight's shape must be fully known".into())))
            .collect::<Result<Vec<_>>>()?;
        let node = t.add_weight(shape)?;
        Ok((node as f64).into())
    })
}

/// The finished trace with these output nodes, as JSON.
/// @noRd
#[extendr]
fn rg_trace_json(mut ptr: Robj, outputs: Robj) -> Robj {
    guard(|| {
        let t = tracer(&mut ptr)?;
        let outputs =
            sym_shape(&outputs, "outputs")?.into_iter().map(|o| o.ok_or_else(|| Error::Value("an output is missing".into()))).collect::<Result<_>>()?;
        t.set_outputs(outputs)?;
        Ok(serde_json::to_string(&*t).map_err(|e| Error::State(e.to_string()))?.into())
    })
}

/// Runs a trace without inputs (constants only: `k_*()` on R arrays) and returns the values
/// of `outputs` as R arrays.
/// @noRd
#[extendr]
fn rg_trace_eval(mut ptr: Robj, outputs: Robj, seed: Robj) -> Robj {
    guard(|| {
        let t = tracer(&mut ptr)?;
        let outputs =
            sym_shape(&outputs, "outputs")?.into_iter().map(|o| o.ok_or_else(|| Error::Value("an output is missing".into()))).collect::<Result<_>>()?;
        t.set_outputs(outputs)?;
        let values = t.evaluate(crate::seed_from(&seed))?;
        let values = values.iter().map(|v| Ok(host_to_r(&HostTensor::from_tensor(v)?))).collect::<Result<Vec<Robj>>>()?;
        Ok(List::from_values(values).into())
    })
}

/// `k_function()` on `k_gradients()`: the outputs of the traced expression (JSON) of the
/// model's outputs for inputs `xs` (one array per model input), and the gradients of its
/// first output at the model sources `wanted` (codes as rg_make_functional's: -k-1 for
/// input k, j for node j). list(values = list, gradients = list).
/// @noRd
#[extendr]
fn rg_expression_gradients(mut ptr: Robj, expression: &str, xs: List, wanted: Vec<i32>, seed: Robj) -> Robj {
    guard(|| {
        let trace: Trace = serde_json::from_str(expression).map_err(|e| Error::Value(format!("not a traced expression: {}", e)))?;
        let items: Vec<Robj> = xs.values().collect();
        let arrays =
            items.iter().enumerate().map(|(i, x)| crate::convert::RArray::new(x, &format!("inputs[[{}]]", i + 1), true)).collect::<Result<Vec<_>>>()?;
        for (i, a) in arrays.iter().enumerate() {
            a.check_finite(&format!("inputs[[{}]]", i + 1))?;
        }
        let hosts = arrays.iter().map(|a| a.all()).collect::<Vec<_>>();
        let h = crate::handle(&mut ptr)?;
        let model = h.model();
        let wanted: Vec<_> = wanted.into_iter().map(crate::functional::source).collect();
        let (values, grads) = rustgpu_core::gradients::expression_gradients(&model, &trace, &hosts, &wanted, crate::seed_from(&seed))?;
        let to_r = |ts: &[HostTensor]| List::from_values(ts.iter().map(host_to_r));
        Ok(list!(values = to_r(&values), gradients = to_r(&grads)).into())
    })
}

/// Each model output's shape without the batch axis (what a custom loss is traced for).
/// @noRd
#[extendr]
fn rg_output_shapes(mut ptr: Robj) -> Robj {
    guard(|| {
        let h = crate::handle(&mut ptr)?;
        let model = h.model.lock().unwrap_or_else(|e| e.into_inner());
        if !model.arch.is_built() {
            return Err(Error::State("the model has no input shape yet: give its first layer an `input_shape`".into()));
        }
        let shapes: Vec<Robj> = model.arch.output_shapes_of_outputs().iter().map(|s| s.iter().map(|d| *d as f64).collect::<Doubles>().into()).collect();
        Ok(List::from_values(shapes).into())
    })
}

extendr_module! {
    mod backend;
    fn rg_output_shapes;
    fn rg_expression_gradients;
    fn rg_trace_new;
    fn rg_trace_record;
    fn rg_trace_add_input;
    fn rg_trace_add_weight;
    fn rg_trace_json;
    fn rg_trace_eval;
}
