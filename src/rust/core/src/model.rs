//! The model: layers wired as a sequential stack or a functional graph, plus the master
//! weights (the only copy that is trained; replicas get snapshots of it each step).
use crate::error::{Error, Result};
use crate::layers::{Cache, ForwardContext, InferenceMap, Layer, LayerOutput, OutputGrad, WeightSpec};
use crate::shape::{check_input_shape, join_dims};
use crate::tensor::HostTensor;
use candle_core::Tensor;
use rand::SeedableRng;
use std::sync::Arc;

/// Called by [`Architecture::backward_with_extra`] with a layer's weight indices and
/// its final gradients (None: none reached the weight).
pub type OnLayerFinished<'a> = dyn FnMut(std::ops::Range<usize>, &[Option<Tensor>]) -> Result<()> + 'a;

/// One weight of the master copy. The values sit behind an `Arc` so that a step can hand
/// them to replica workers without copying; the optimizer writes them in place afterwards.
#[derive(Debug, Clone)]
pub struct Weight {
    /// Keras's name, e.g. "dense/kernel:0".
    pub name: String,
    pub shape: Vec<usize>,
    pub value: Arc<Vec<f32>>,
    pub trainable: bool,
    /// State the layer itself updates (batch normalization's moving statistics): never
    /// trained, whatever `freeze_weights()` says.
    pub layer_state: bool,
}

/// What a forward pass leaves for the loss and the backward pass.
pub struct Forward {
    pub outputs: Vec<ModelOutput>,
    /// Each node's cache, for `backward`.
    pub caches: Vec<Cache>,
    /// The outputs of nodes with an activity regularizer (node index, value).
    pub recorded: Vec<(usize, Tensor)>,
    /// Each model output's mask (batch, time), where one reaches it (Keras's `_keras_mask`
    /// on the output): the loss and the metrics then count only the unmasked steps.
    pub output_masks: Vec<Option<Tensor>>,
}

/// Where a node's input comes from: a model input, another node's (first) output, or
/// output k >= 1 of a node whose layer has several (a recurrent layer's states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Input(usize),
    Node(usize),
    State(usize, usize),
}

impl Source {
    /// The node it comes from, if any.
    pub fn node(&self) -> Option<usize> {
        match *self {
            Source::Input(_) => None,
            Source::Node(j) | Source::State(j, _) => Some(j),
        }
    }
}

/// One application of a layer (a layer used twice is shared: two nodes, one set of weights).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub layer: usize,
    pub inputs: Vec<Source>,
}

/// The wiring of a functional model; nodes are in topological order.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub input_names: Vec<String>,
    pub input_shapes: Vec<Vec<usize>>,
    pub nodes: Vec<Node>,
    pub outputs: Vec<Source>,
}

/// The layers a forward pass needs, shared read-only with replica workers.
#[derive(Debug, Clone, Default)]
pub struct Architecture {
    pub layers: Vec<Layer>,
    /// The functional graph; `None` for a sequential stack (layer i feeds layer i + 1).
    pub graph: Option<Graph>,
    /// Shape of the (first) input without the batch axis (known once built).
    pub input_shape: Option<Vec<usize>>,
    /// Output shape of each layer's first application (without the batch axis).
    pub output_shapes: Vec<Vec<usize>>,
    /// Range of each layer's weights in the flat weight list.
    pub weight_ranges: Vec<std::ops::Range<usize>>,
}

/// One output of a forward pass, with the logits when the last layer was softmax/sigmoid.
pub type ModelOutput = LayerOutput;

impl Architecture {
    pub fn is_built(&self) -> bool {
        self.input_shape.is_some()
    }

    /// The nodes to run, in order (a sequential stack is a chain).
    pub fn nodes(&self) -> std::borrow::Cow<'_, [Node]> {
        match &self.graph {
            Some(g) => std::borrow::Cow::Borrowed(&g.nodes),
            None => std::borrow::Cow::Owned(
                (0..self.layers.len()).map(|i| Node { layer: i, inputs: vec![if i == 0 { Source::Input(0) } else { Source::Node(i - 1) }] }).collect(),
            ),
        }
    }

    pub fn outputs(&self) -> Vec<Source> {
        match &self.graph {
            Some(g) => g.outputs.clone(),
            None if self.layers.is_empty() => vec![Source::Input(0)],
            None => vec![Source::Node(self.layers.len() - 1)],
        }
    }

    pub fn input_count(&self) -> usize {
        self.graph.as_ref().map_or(1, |g| g.input_names.len())
    }

    /// Input shapes (without the batch axis), once known.
    pub fn input_shapes(&self) -> Option<Vec<Vec<usize>>> {
        match &self.graph {
            Some(g) => Some(g.input_shapes.clone()),
            None => self.input_shape.clone().map(|s| vec![s]),
        }
    }

    /// Whether some layer can start a mask, which may then reach the outputs.
    pub fn makes_masks(&self) -> bool {
        self.layers.iter().any(|l| l.kind.makes_mask())
    }

    /// Forward pass over every node. `weights` follow `weight_ranges`. Also returns each
    /// node's cache for `backward`.
    pub fn forward(&self, weights: &[Tensor], inputs: &[Tensor], ctx: &mut ForwardContext) -> Result<(Vec<ModelOutput>, Vec<Cache>)> {
        let f = self.forward_recording(weights, inputs, ctx, &[])?;
        Ok((f.outputs, f.caches))
    }

    /// [`Self::forward`], also returning the outputs of the nodes whose layer has an activity
    /// regularizer and of the nodes `also_record` (node index, output value), for
    /// [`Self::activity_penalty`] and losses that read model tensors, and the outputs' masks.
    pub fn forward_recording(&self, weights: &[Tensor], inputs: &[Tensor], ctx: &mut ForwardContext, also_record: &[usize]) -> Result<Forward> {
        self.forward_folding(weights, inputs, ctx, also_record, None)
    }

    /// The outputs of an inference pass that no backward pass follows (`predict()`): a
    /// convolution followed by batch normalization and/or a ReLU and/or max pooling, where
    /// nothing else reads the values in between, runs as one convolution with the
    /// normalization and the ReLU folded into its weights and bias and the pooling run on its
    /// output (see [`Self::inference_folds`]). Equal to [`Self::forward`] with `training` false up to
    /// float rounding; no caches are usable.
    pub fn forward_inference(&self, weights: &[Tensor], inputs: &[Tensor], ctx: &mut ForwardContext) -> Result<Vec<LayerOutput>> {
        if ctx.training {
            return Ok(self.forward_folding(weights, inputs, ctx, &[], None)?.outputs);
        }
        let plan = self.inference_plan(weights)?;
        self.forward_planned(&plan, weights, inputs, ctx)
    }

    /// The folded layers and weights of [`Self::forward_inference`] for these weights, made
    /// once for all the batches of a `predict()` (for application_xception they are most of
    /// its 20.9 M weights, multiplied anew for every batch before).
    pub fn inference_plan(&self, weights: &[Tensor]) -> Result<InferencePlan> {
        let mut folds = self.inference_folds(weights)?;
        let nodes = self.nodes();
        let mut absorbed: Vec<Option<AbsorbedLayer>> = (0..folds.len()).map(|_| None).collect();
        for j in 0..folds.len() {
            let NodeFold::Absorb { affine, relu, pool } = &folds[j] else { continue };
            let layer = &self.layers[nodes[j].layer];
            let affine = affine.as_ref().map(|(scale, shift)| (scale, shift));
            absorbed[j] = layer.kind.absorbing(&weights[self.weight_ranges[nodes[j].layer].clone()], affine, *relu, pool.as_ref())?;
            if absorbed[j].is_none() {
                // The layer cannot take them (an activation of its own): it and the nodes
                // it would have taken run as they are.
                for fold in folds.iter_mut() {
                    if matches!(fold, NodeFold::Alias(i) if *i == j) {
                        *fold = NodeFold::Run;
                    }
                }
                folds[j] = NodeFold::Run;
            }
        }
        Ok(InferencePlan { folds, absorbed })
    }

    /// [`Self::forward_inference`] with a plan made by [`Self::inference_plan`] for `weights`.
    pub fn forward_planned(&self, plan: &InferencePlan, weights: &[Tensor], inputs: &[Tensor], ctx: &mut ForwardContext) -> Result<Vec<LayerOutput>> {
        Ok(self.forward_folding(weights, inputs, ctx, &[], Some(plan))?.outputs)
    }

    /// The nodes [`Self::forward_inference`] folds into others: (node, the nodes it takes in).
    pub fn inference_fold_plan(&self, weights: &[Tensor]) -> Result<Vec<(usize, Vec<usize>)>> {
        let folds = self.inference_folds(weights)?;
        Ok((0..folds.len())
            .filter(|&j| matches!(folds[j], NodeFold::Absorb { .. }))
            .map(|j| (j, (0..folds.len()).filter(|&k| matches!(folds[k], NodeFold::Alias(i) if i == j)).collect()))
            .collect())
    }

    /// For each node, what [`Self::forward_inference`] does with it: a node whose output is
    /// read only by a batch normalization (and/or that only by a ReLU, and/or that only by a
    /// max pooling) absorbs them, and those take its output as theirs.
    fn inference_folds(&self, weights: &[Tensor]) -> Result<Vec<NodeFold>> {
        let nodes = self.nodes();
        let mut folds: Vec<NodeFold> = (0..nodes.len()).map(|_| NodeFold::Run).collect();
        let only_readers = self.only_readers();
        let only_reader = |j: usize| only_readers[j];
        let map_of = |k: usize| -> Result<Option<InferenceMap>> {
            let layer = nodes[k].layer;
            self.layers[layer].kind.inference_map(&weights[self.weight_ranges[layer].clone()])
        };
        for j in 0..nodes.len() {
            if !matches!(folds[j], NodeFold::Run) {
                continue;
            }
            let Some(k) = only_reader(j) else { continue };
            let layer = &self.layers[nodes[j].layer];
            // A batch normalization and/or a ReLU after it...
            let (mut affine, mut relu) = (None, None);
            if layer.kind.absorbs_inference_maps(&weights[self.weight_ranges[nodes[j].layer].clone()])? {
                let relu_from = match map_of(k)? {
                    Some(InferenceMap::Affine { scale, shift }) => {
                        affine = Some((scale, shift, k));
                        only_reader(k)
                    }
                    Some(InferenceMap::Relu) => Some(k),
                    _ => None,
                };
                relu = match relu_from {
                    Some(r) if affine.is_none() => Some(r),
                    Some(r) => matches!(map_of(r)?, Some(InferenceMap::Relu)).then_some(r),
                    None => None,
                };
            }
            // ...and then a max pooling.
            let last = relu.or(affine.as_ref().map(|a| a.2)).unwrap_or(j);
            let pool = match only_reader(last) {
                Some(p) => match map_of(p)? {
                    Some(InferenceMap::MaxPool(window)) if layer.kind.absorbs_max_pool(&window) => Some((window, p)),
                    _ => None,
                },
                None => None,
            };
            if affine.is_none() && relu.is_none() && pool.is_none() {
                continue;
            }
            for &taken in affine.iter().map(|a| &a.2).chain(relu.iter()).chain(pool.iter().map(|p| &p.1)) {
                folds[taken] = NodeFold::Alias(j);
            }
            folds[j] = NodeFold::Absorb { affine: affine.map(|(scale, shift, _)| (scale, shift)), relu: relu.is_some(), pool: pool.map(|p| p.0) };
        }
        Ok(folds)
    }

    /// For each node, the one node that reads its output and reads only it, if there is one
    /// (none where the output is a model output too).
    fn only_readers(&self) -> Vec<Option<usize>> {
        let nodes = self.nodes();
        let mut readers = vec![0usize; nodes.len()];
        for s in nodes.iter().flat_map(|n| n.inputs.iter()).chain(self.outputs().iter()) {
            if let Source::Node(j) = *s {
                readers[j] += 1;
            }
        }
        (0..nodes.len())
            .map(|j| {
                if readers[j] != 1 || self.outputs().contains(&Source::Node(j)) {
                    return None;
                }
                (j + 1..nodes.len()).find(|&k| nodes[k].inputs.contains(&Source::Node(j))).filter(|&k| nodes[k].inputs.len() == 1)
            })
            .collect()
    }

    /// For each node, the ReLU node a training pass may let its layer take in (see
    /// [`LayerType::forward_then_relu`](crate::layers::LayerType::forward_then_relu)): the only
    /// reader of its output, a plain ReLU (a layer without weights whose inference map is a
    /// ReLU), where neither output is recorded or has an activity regularizer (those read the
    /// value before the ReLU).
    fn training_relu_takers(&self, also_record: &[usize]) -> Result<Vec<Option<usize>>> {
        let nodes = self.nodes();
        let free = |j: usize| !also_record.contains(&j) && self.layers[nodes[j].layer].kind.activity_regularizer().is_none();
        let mut takers = vec![None; nodes.len()];
        for (j, reader) in self.only_readers().into_iter().enumerate() {
            let Some(k) = reader.filter(|&k| free(j) && free(k) && self.weight_ranges[nodes[k].layer].is_empty()) else { continue };
            if matches!(self.layers[nodes[k].layer].kind.inference_map(&[])?, Some(InferenceMap::Relu)) {
                takers[j] = Some(k);
            }
        }
        Ok(takers)
    }

    fn forward_folding(
        &self,
        weights: &[Tensor],
        inputs: &[Tensor],
        ctx: &mut ForwardContext,
        also_record: &[usize],
        plan: Option<&InferencePlan>,
    ) -> Result<Forward> {
        let folds: &[NodeFold] = plan.map_or(&[], |p| &p.folds);
        if inputs.len() != self.input_count() {
            return Err(Error::Value(format!("the model has {} inputs but {} arrays were given", self.input_count(), inputs.len())));
        }
        let nodes = self.nodes();
        let mut values: Vec<LayerOutput> = Vec::with_capacity(nodes.len());
        // Each node's output mask (Keras's `_keras_mask`): made by Embedding(mask_zero) and
        // Masking, passed on by layers that keep the time axis, consumed by recurrent layers.
        let mut masks: Vec<Option<Tensor>> = Vec::with_capacity(nodes.len());
        // Each node's outputs after the first (recurrent layers' states).
        let mut more: Vec<Vec<Tensor>> = Vec::with_capacity(nodes.len());
        let mut caches = Vec::with_capacity(nodes.len());
        let mut recorded = Vec::new();
        // In training, a layer may take in the ReLU after it (batch normalization on the CPU:
        // one pass over the activations fewer each way, and one array fewer kept); the ReLU's
        // node then passes that output on, and its gradient back, as they are.
        let relu_takers = if ctx.training && plan.is_none() { self.training_relu_takers(also_record)? } else { Vec::new() };
        let mut relu_taken = vec![false; nodes.len()];
        let pick = |s: &Source, values: &[LayerOutput], more: &[Vec<Tensor>]| -> Result<Tensor> {
            Ok(match *s {
                Source::Input(k) => inputs[k].clone(),
                Source::Node(j) => values[j].value.clone(),
                Source::State(j, k) => more[j].get(k - 1).cloned().ok_or_else(|| Error::State(format!("node {} has no output {}", j, k)))?,
            })
        };
        for (j, node) in nodes.iter().enumerate() {
            crate::cancel::check()?;
            let xs: Vec<Tensor> = node.inputs.iter().map(|s| pick(s, &values, &more)).collect::<Result<_>>()?;
            let range = self.weight_ranges[node.layer].clone();
            ctx.mask = match node.inputs.first() {
                Some(Source::Node(i)) => masks[*i].clone(),
                _ => None,
            };
            let layer = &self.layers[node.layer];
            match (folds.get(j), plan.and_then(|p| p.absorbed.get(j)).and_then(|a| a.as_ref())) {
                (Some(NodeFold::Alias(i)), _) => {
                    // Folded into node i, whose output this node's is.
                    values.push(values[*i].clone());
                    masks.push(masks[*i].clone());
                    more.push(Vec::new());
                    caches.push(Cache::new(()));
                    ctx.mask = None;
                    continue;
                }
                (Some(NodeFold::Absorb { .. }), Some((absorbing, folded))) => {
                    let value = absorbing.forward(&layer.name, folded, &xs, ctx)?.0.value;
                    masks.push(layer.kind.compute_mask(&xs, ctx.mask.as_ref())?);
                    more.push(Vec::new());
                    values.push(LayerOutput::plain(value));
                    caches.push(Cache::new(()));
                    ctx.mask = None;
                    continue;
                }
                _ => {}
            }
            if relu_taken[j] {
                let Some(Source::Node(i)) = node.inputs.first() else { return Err(Error::State("a ReLU taken in without its input node".into())) };
                values.push(values[*i].clone());
                masks.push(masks[*i].clone());
                more.push(Vec::new());
                caches.push(Cache::new(ReluTakenIn));
                ctx.mask = None;
                continue;
            }
            let taken = match relu_takers.get(j).copied().flatten() {
                Some(k) => layer.forward_node_then_relu(&weights[range.clone()], &xs, ctx)?.map(|done| (k, done)),
                None => None,
            };
            let (out, cache) = match taken {
                Some((k, done)) => {
                    relu_taken[k] = true;
                    done
                }
                None => layer.forward_node(&weights[range], &xs, ctx)?,
            };
            masks.push(layer.kind.compute_mask(&xs, ctx.mask.as_ref())?);
            more.push(layer.kind.more_outputs(&cache)?);
            ctx.mask = None;
            if layer.kind.activity_regularizer().is_some() || also_record.contains(&j) {
                recorded.push((j, out.value.clone()));
            }
            values.push(out);
            caches.push(cache);
        }
        let outputs = self
            .outputs()
            .iter()
            .map(|s| match *s {
                Source::Node(j) => Ok(values[j].clone()),
                _ => Ok(LayerOutput::plain(pick(s, &values, &more)?)),
            })
            .collect::<Result<_>>()?;
        // A recurrent layer's states carry no mask (Keras's `compute_mask` gives None for them).
        let output_masks = self.outputs().iter().map(|s| if let Source::Node(j) = *s { masks[j].clone() } else { None }).collect();
        Ok(Forward { outputs, caches, recorded, output_masks })
    }

    /// Keras's activity regularization of the recorded node outputs: each layer's penalty on
    /// its output divided by the batch's rows (`total_rows`: replicas' parts add up), and the
    /// penalty's gradient with respect to each output, for [`Self::backward_with_extra`].
    pub fn activity_penalty(&self, recorded: &[(usize, Tensor)], total_rows: usize) -> Result<(f64, Vec<(usize, Tensor)>)> {
        let nodes = self.nodes();
        let mut penalty = 0.0;
        let mut grads = Vec::with_capacity(recorded.len());
        for (j, out) in recorded {
            let Some(r) = self.layers[nodes[*j].layer].kind.activity_regularizer() else { continue };
            let (p, g) = r.on_tensor(out, total_rows as f64)?;
            penalty += p;
            grads.push((*j, g));
        }
        Ok((penalty, grads))
    }

    /// New values of non-trainable weights (global weight index, value) from a training
    /// forward pass, e.g. batch normalization's moving statistics.
    pub fn state_updates(&self, caches: &[Cache]) -> Vec<(usize, Tensor)> {
        self.nodes()
            .iter()
            .zip(caches)
            .flat_map(|(node, cache)| {
                let start = self.weight_ranges[node.layer].start;
                self.layers[node.layer].state_updates(cache).into_iter().map(move |(i, t)| (start + i, t))
            })
            .collect()
    }

    /// Gradients of every weight (in `weights` order) from the gradients at the outputs.
    /// Gradients reaching a node from several consumers are summed, a shared layer's weight
    /// gradients too; model inputs need none, so layers reading only them skip it.
    pub fn backward(&self, weights: &[Tensor], caches: &[Cache], output_grads: Vec<OutputGrad>) -> Result<Vec<Tensor>> {
        self.backward_with_transposes(weights, &[], caches, output_grads)
    }

    /// Values every row of a batch of samples of these shapes produces across the model
    /// (each node's output, and the inputs), None when that overflows.
    pub fn activation_elements_per_row(&self, input_shapes: &[Vec<usize>]) -> Option<u64> {
        let shapes = self.node_shapes_for(input_shapes.to_vec());
        let total = shapes.inputs.iter().try_fold(0u64, |a, s| a.checked_add(crate::memory::elements(s)?))?;
        let total = shapes.outputs.iter().flatten().try_fold(total, |a, s| a.checked_add(crate::memory::elements(s)?))?;
        // What layers keep besides their outputs (recurrent layers' steps), from their inputs' shapes.
        self.nodes().iter().try_fold(total, |a, node| {
            let input = node.inputs.first().map(|s| shapes.of(s)).unwrap_or_default();
            a.checked_add(self.layers[node.layer].kind.working_elements_per_row(&input)?)
        })
    }

    /// The declared input shapes and each node's output shapes from them (empty where
    /// unknown; [`crate::shape::VARIABLE`] where a size comes with each batch).
    fn node_shapes(&self) -> NodeShapes {
        self.node_shapes_for(self.input_shapes().unwrap_or_default())
    }

    /// Each node's output shapes for inputs of these shapes, in one pass in node order:
    /// every node's inputs are computed before it. With a batch's sample shapes, the sizes
    /// that were variable are that batch's.
    fn node_shapes_for(&self, inputs: Vec<Vec<usize>>) -> NodeShapes {
        let mut shapes = NodeShapes { inputs, outputs: Vec::new() };
        for node in self.nodes().iter() {
            let ins: Vec<Vec<usize>> = node.inputs.iter().map(|s| shapes.of(s)).collect();
            let layer = &self.layers[node.layer];
            let mut outs = vec![layer.node_output_shape(&ins).unwrap_or_default()];
            outs.extend(layer.more_output_shapes(&ins));
            shapes.outputs.push(outs);
        }
        shapes
    }

    /// A per-weight setting of the layers (`of_layer` lists a layer's, in its weights' order;
    /// missing entries are None), aligned with the model's weights.
    fn per_weight<T: Clone>(&self, of_layer: impl Fn(&Layer) -> Vec<Option<T>>) -> Vec<Option<T>> {
        let n = self.weight_ranges.last().map_or(0, |r| r.end);
        let mut out = vec![None; n];
        for (layer, range) in self.layers.iter().zip(&self.weight_ranges) {
            for (slot, setting) in out[range.clone()].iter_mut().zip(of_layer(layer)) {
                *slot = setting;
            }
        }
        out
    }

    /// Each weight's regularizer (None for most), aligned with the model's weights.
    pub fn weight_regularizers(&self) -> Vec<Option<crate::regularizer::Regularizer>> {
        self.per_weight(|l| l.kind.weight_regularizers())
    }

    /// Each weight's constraint (None for most), aligned with the model's weights.
    pub fn weight_constraints(&self) -> Vec<Option<crate::constraint::Constraint>> {
        self.per_weight(|l| l.kind.weight_constraints())
    }

    /// Which weights' transposes the backward pass multiplies by (a dense kernel, for the
    /// layer's input gradient, needed when its input comes from another layer).
    pub fn transposed_kernels(&self) -> Vec<bool> {
        let n = self.weight_ranges.last().map_or(0, |r| r.end);
        let mut wanted = vec![false; n];
        for node in self.nodes().iter() {
            if node.inputs.iter().any(|s| s.node().is_some()) {
                let range = &self.weight_ranges[node.layer];
                for i in self.layers[node.layer].kind.transposed_weights() {
                    if let Some(slot) = wanted[range.clone()].get_mut(*i) {
                        *slot = true;
                    }
                }
            }
        }
        wanted
    }

    /// The backward pass, given (where `transposed[i]` is Some) weight i's transpose as a
    /// row-major tensor: a dense layer then multiplies by it as it is, where it would pack
    /// the kernel again for each call (see `kernels::matmul_by_transpose`).
    pub fn backward_with_transposes(
        &self,
        weights: &[Tensor],
        transposed: &[Option<Tensor>],
        caches: &[Cache],
        output_grads: Vec<OutputGrad>,
    ) -> Result<Vec<Tensor>> {
        self.backward_with_extra(weights, transposed, caches, output_grads, Vec::new(), &mut |_, _| Ok(()))
    }

    /// [`Self::backward_with_transposes`] with extra gradients at node outputs (node index,
    /// gradient), such as activity regularizers', calling `on_final` with each layer's weight
    /// indices and gradients (None: no gradient reached it, i.e. zeros) as soon as they are
    /// final (the layer's earliest node is done), in the order the backward pass finishes
    /// them: a multi-worker step sends them to the other workers while the pass goes on.
    pub fn backward_with_extra(
        &self,
        weights: &[Tensor],
        transposed: &[Option<Tensor>],
        caches: &[Cache],
        output_grads: Vec<OutputGrad>,
        extra: Vec<(usize, Tensor)>,
        on_final: &mut OnLayerFinished<'_>,
    ) -> Result<Vec<Tensor>> {
        Ok(self.backward_reaching(weights, transposed, caches, output_grads, extra, &[], on_final)?.0)
    }

    /// The gradients at model inputs or node outputs (`wanted`) from the gradients at the
    /// outputs, as Keras's `k_gradients()` of an expression of the outputs: None where none
    /// flows.
    pub fn gradients_at(&self, weights: &[Tensor], caches: &[Cache], output_grads: Vec<OutputGrad>, wanted: &[Source]) -> Result<Vec<Option<Tensor>>> {
        Ok(self.backward_reaching(weights, &[], caches, output_grads, Vec::new(), wanted, &mut |_, _| Ok(()))?.1)
    }

    /// The backward pass over every node: the weights' gradients, and the gradients reaching
    /// each of `wanted` (None where nothing flows there); `on_final` as in
    /// [`Self::backward_with_extra`].
    // The pass's inputs, what it should reach, and the hook.
    #[allow(clippy::too_many_arguments)]
    fn backward_reaching(
        &self,
        weights: &[Tensor],
        transposed: &[Option<Tensor>],
        caches: &[Cache],
        output_grads: Vec<OutputGrad>,
        extra: Vec<(usize, Tensor)>,
        wanted: &[Source],
        on_final: &mut OnLayerFinished<'_>,
    ) -> Result<(Vec<Tensor>, Vec<Option<Tensor>>)> {
        if let Some(s) = wanted.iter().find(|s| matches!(s, Source::State(..))) {
            return Err(Error::Value(format!("gradients at a layer's state ({:?}) are not supported: ask for a layer output", s)));
        }
        let wants_inputs = wanted.iter().any(|s| matches!(s, Source::Input(_)));
        let mut reached: Vec<Option<Tensor>> = vec![None; wanted.len()];
        let mut input_grads_acc: Vec<Option<Tensor>> = vec![None; self.input_count()];
        let nodes = self.nodes();
        let mut node_grads: Vec<Option<OutputGrad>> = vec![None; nodes.len()];
        // Gradients of nodes' outputs after the first (recurrent layers' states).
        let mut more_grads: Vec<Vec<Option<Tensor>>> = vec![Vec::new(); nodes.len()];
        let add = |node_grads: &mut Vec<Option<OutputGrad>>,
                   more_grads: &mut Vec<Vec<Option<Tensor>>>,
                   input_grads: &mut Vec<Option<Tensor>>,
                   source: &Source,
                   g: OutputGrad|
         -> Result<()> {
            match *source {
                Source::Input(k) => {
                    if wants_inputs {
                        let g = g.value("a model input")?;
                        if let Some(slot) = input_grads.get_mut(k) {
                            *slot = Some(match slot.take() {
                                Some(acc) => (acc + g)?,
                                None => g,
                            });
                        }
                    }
                }
                Source::Node(j) => node_grads[j] = Some(accumulate(node_grads[j].take(), g)?),
                Source::State(j, k) => {
                    let slots = &mut more_grads[j];
                    if slots.len() < k {
                        slots.resize(k, None);
                    }
                    let g = g.value("a layer's state")?;
                    slots[k - 1] = Some(match slots[k - 1].take() {
                        Some(acc) => (acc + g)?,
                        None => g,
                    });
                }
            }
            Ok(())
        };
        for (source, g) in self.outputs().iter().zip(output_grads) {
            add(&mut node_grads, &mut more_grads, &mut input_grads_acc, source, g)?;
        }
        for (j, g) in extra {
            node_grads[j] = Some(accumulate(node_grads[j].take(), OutputGrad::Value(g))?);
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; weights.len()];
        // Each layer's earliest node: once it is done, the layer's gradients are final.
        let mut earliest: Vec<Option<usize>> = vec![None; self.layers.len()];
        for (j, node) in nodes.iter().enumerate().rev() {
            earliest[node.layer] = Some(j);
        }
        let mut finished = |j: usize, grads: &[Option<Tensor>]| -> Result<()> {
            let layer = nodes[j].layer;
            match (earliest[layer] == Some(j), self.weight_ranges.get(layer)) {
                (true, Some(range)) if !range.is_empty() => on_final(range.clone(), &grads[range.clone()]),
                _ => Ok(()),
            }
        };
        for j in (0..nodes.len()).rev() {
            let g = node_grads[j].take();
            for (slot, w) in reached.iter_mut().zip(wanted) {
                if *w == Source::Node(j) {
                    *slot = match &g {
                        Some(OutputGrad::Value(v)) => Some(v.clone()),
                        Some(OutputGrad::Logits(_)) => return Err(Error::State("a gradient at logits cannot be read as a layer output's".into())),
                        None => None,
                    };
                }
            }
            let more = std::mem::take(&mut more_grads[j]);
            if g.is_none() && more.iter().all(Option::is_none) {
                finished(j, &grads)?;
                continue;
            }
            let node = &nodes[j];
            if let (Some(g), Ok(ReluTakenIn)) = (&g, caches[j].get::<ReluTakenIn>()) {
                // The layer before took this ReLU in: its backward pass applies the ReLU's
                // gradient to this, the ReLU's output gradient.
                if let Some(source) = node.inputs.first() {
                    add(&mut node_grads, &mut more_grads, &mut input_grads_acc, source, g.clone())?;
                }
                finished(j, &grads)?;
                continue;
            }
            let range = self.weight_ranges[node.layer].clone();
            let need_input = node.inputs.iter().any(|s| s.node().is_some() || wants_inputs);
            let transposes = transposed.get(range.clone()).unwrap_or(&[]);
            let layer = &self.layers[node.layer];
            let out = match (g, more.is_empty()) {
                (Some(g), true) => layer.backward_with(&weights[range.clone()], transposes, &caches[j], g, need_input)?,
                (g, _) => layer.kind.backward_more(&layer.name, &weights[range.clone()], transposes, &caches[j], g, more, need_input)?,
            };
            for (slot, w) in grads[range].iter_mut().zip(out.weights) {
                *slot = Some(match slot.take() {
                    Some(acc) => (acc + w)?,
                    None => w,
                });
            }
            finished(j, &grads)?;
            let input_grads = std::iter::once(out.input).chain(out.more_inputs.into_iter().map(Some));
            for (source, ig) in node.inputs.iter().zip(input_grads) {
                if let Some(ig) = ig {
                    add(&mut node_grads, &mut more_grads, &mut input_grads_acc, source, OutputGrad::Value(ig))?;
                }
            }
        }
        for (slot, w) in reached.iter_mut().zip(wanted) {
            if let Source::Input(k) = *w {
                *slot = input_grads_acc.get(k).cloned().flatten();
            }
        }
        let weight_grads = grads
            .into_iter()
            .zip(weights)
            .map(|(g, w)| match g {
                Some(g) => Ok(g),
                None => Ok(w.zeros_like()?),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((weight_grads, reached))
    }

    /// Every output shape of each layer's first application (a recurrent layer with
    /// `return_state` has its states after its output); empty for layers not applied.
    pub fn layer_output_shapes(&self) -> Vec<Vec<Vec<usize>>> {
        let shapes = self.node_shapes();
        let mut out = vec![Vec::new(); self.layers.len()];
        for (node, outputs) in self.nodes().iter().zip(shapes.outputs) {
            if out[node.layer].is_empty() {
                out[node.layer] = outputs;
            }
        }
        out
    }

    /// Shape of each model output (without the batch axis).
    pub fn output_shapes_of_outputs(&self) -> Vec<Vec<usize>> {
        let shapes = self.node_shapes();
        self.outputs().iter().map(|s| shapes.of(s)).collect()
    }

    /// Shape of each model output for inputs of these shapes (a batch's sample shapes).
    pub fn output_shapes_for(&self, input_shapes: &[Vec<usize>]) -> Vec<Vec<usize>> {
        let shapes = self.node_shapes_for(input_shapes.to_vec());
        self.outputs().iter().map(|s| shapes.of(s)).collect()
    }

    /// Whether a declared input has a size that each batch gives.
    pub fn has_variable_inputs(&self) -> bool {
        self.input_shapes().is_some_and(|s| s.iter().any(|s| crate::shape::has_variable(s)))
    }

    /// Names of the layers that produce the outputs (Keras prefixes per-output metrics with them).
    pub fn output_names(&self) -> Vec<String> {
        let nodes = self.nodes();
        self.outputs()
            .iter()
            .map(|s| match *s {
                Source::Input(k) => self.graph.as_ref().map(|g| g.input_names[k].clone()).unwrap_or_default(),
                Source::Node(j) | Source::State(j, _) => self.layers[nodes[j].layer].name.clone(),
            })
            .collect()
    }

    /// Layers that keep state between batches (stateful recurrent layers), by name.
    pub fn stateful_layers(&self) -> Vec<String> {
        self.layers.iter().filter(|l| l.kind.is_stateful()).map(|l| l.name.clone()).collect()
    }

    pub fn output_shape(&self) -> Option<&Vec<usize>> {
        self.output_shapes.last().or(self.input_shape.as_ref())
    }
}

/// The model inputs' shapes and every node's output shapes (its first output's, then the
/// others').
struct NodeShapes {
    inputs: Vec<Vec<usize>>,
    outputs: Vec<Vec<Vec<usize>>>,
}

impl NodeShapes {
    fn of(&self, s: &Source) -> Vec<usize> {
        let found = match *s {
            Source::Input(k) => self.inputs.get(k),
            Source::Node(j) => self.outputs[j].first(),
            Source::State(j, k) => self.outputs[j].get(k),
        };
        found.cloned().unwrap_or_default()
    }
}

fn accumulate(existing: Option<OutputGrad>, new: OutputGrad) -> Result<OutputGrad> {
    match (existing, new) {
        (None, g) => Ok(g),
        (Some(OutputGrad::Value(a)), OutputGrad::Value(b)) => Ok(OutputGrad::Value((a + b)?)),
        _ => Err(Error::State("an output whose loss uses logits cannot also feed other layers".into())),
    }
}

/// A model: its architecture and its master weights.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub arch: Arc<Architecture>,
    pub weights: Vec<Weight>,
}

impl Model {
    /// The weights' regularization penalty, which Keras adds to the loss.
    /// `regularizers` as `Architecture::weight_regularizers` gives them.
    /// Projects every trainable weight that has a constraint, as Keras does after each
    /// update. Constrained weights get new storage (never changed in place), so caches that
    /// key on a weight's storage (a parallel model's host weights, a device's copy) see them
    /// as new.
    pub fn apply_constraints(&mut self) -> Result<()> {
        let constraints = self.arch.weight_constraints();
        for (w, c) in self.weights.iter_mut().zip(constraints) {
            if let (Some(c), true) = (c, w.trainable) {
                w.value = Arc::new(c.apply(&w.shape, &w.value)?);
            }
        }
        Ok(())
    }

    /// Takes the current values of layers of `source` as those of this model's layers, pairs
    /// of (source layer, this model's layer) by name: how a layer used by several models keeps
    /// one set of weights (Keras's layers own their weights; here each model holds values,
    /// and the R side copies the newest into a model before it is used). The values are
    /// shared storage, not copied: an update replaces them. Checked first: on a mismatch
    /// nothing changes.
    pub fn take_layer_weights(&mut self, source: &Model, pairs: &[(String, String)]) -> Result<()> {
        let range_of = |m: &Model, name: &str| -> Result<std::ops::Range<usize>> {
            m.arch
                .layers
                .iter()
                .position(|l| l.name == name)
                .and_then(|i| m.arch.weight_ranges.get(i).cloned())
                .ok_or_else(|| Error::State(format!("model \"{}\" has no built layer \"{}\"", m.name, name)))
        };
        let mut assignments = Vec::new();
        for (from, to) in pairs {
            let (src, dst) = (range_of(source, from)?, range_of(self, to)?);
            if src.len() != dst.len() || src.clone().zip(dst.clone()).any(|(i, j)| source.weights[i].shape != self.weights[j].shape) {
                return Err(Error::Value(format!(
                    "layer \"{}\" is shared by models \"{}\" and \"{}\" with different weight shapes: a layer used in several models must see inputs of one shape",
                    to, source.name, self.name
                )));
            }
            assignments.extend(src.zip(dst));
        }
        for (i, j) in assignments {
            self.weights[j].value = source.weights[i].value.clone();
        }
        Ok(())
    }

    /// The layers' losses on their weights alone (Keras's `add_loss()` in a layer's
    /// `build()`): their total at the current weights and, with `gradient`, its gradient with
    /// respect to each weight (None for weights no such loss reads; an empty list when no
    /// layer has one). Computed once per step on the host, as the regularizers' penalty:
    /// it does not depend on the batch, so replicas need not each compute it.
    pub fn weight_losses(&self, gradient: bool) -> Result<(f64, Vec<Option<Vec<f32>>>)> {
        let mut total = 0f64;
        let mut grads: Vec<Option<Vec<f32>>> = Vec::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        for (layer, range) in self.arch.layers.iter().zip(&self.arch.weight_ranges) {
            let losses = layer.kind.weight_losses();
            if losses.is_empty() {
                continue;
            }
            let weights = self.weights[range.clone()]
                .iter()
                .map(|w| Ok(Tensor::from_slice(w.value.as_slice(), w.shape.as_slice(), &candle_core::Device::Cpu)?))
                .collect::<Result<Vec<_>>>()?;
            for loss in losses {
                // A loss reads the layer's first weights (a wrapper's own, before the wrapped layer's).
                let n = loss.weight_count().min(weights.len());
                let run = loss.forward(&[], &weights[..n], false, &mut rng)?;
                let value = run.outputs(loss).remove(0);
                total += value.to_dtype(candle_core::DType::F64)?.sum_all()?.to_scalar::<f64>()?;
                if !gradient {
                    continue;
                }
                let ones = value.ones_like()?;
                let g = loss.backward(&run, &[Some(ones)])?;
                if grads.is_empty() {
                    grads = vec![None; self.weights.len()];
                }
                for (i, gw) in range.clone().zip(g.weights) {
                    let Some(gw) = gw else { continue };
                    let gw = gw.flatten_all()?.to_vec1::<f32>()?;
                    match &mut grads[i] {
                        Some(acc) => acc.iter_mut().zip(&gw).for_each(|(a, b)| *a += *b),
                        slot => *slot = Some(gw),
                    }
                }
            }
        }
        Ok((total, grads))
    }

    pub fn regularization_penalty(&self, regularizers: &[Option<crate::regularizer::Regularizer>]) -> f64 {
        regularizers.iter().zip(&self.weights).filter_map(|(r, w)| r.map(|r| r.penalty(&w.value))).sum()
    }

    pub fn new(name: String) -> Self {
        Self { name, arch: Arc::new(Architecture::default()), weights: Vec::new() }
    }

    /// Appends a layer; `input_shape` (without the batch axis) is allowed on the first layer only.
    /// A built model builds the new layer at once, as Keras does.
    pub fn add(&mut self, layer: Layer, input_shape: Option<Vec<usize>>) -> Result<()> {
        if self.arch.graph.is_some() {
            return Err(Error::State("layers join a functional model by being applied to its tensors, not added".into()));
        }
        if self.arch.layers.iter().any(|l| l.name == layer.name) {
            return Err(Error::Value(format!("all layers in a model must have unique names; \"{}\" is already used", layer.name)));
        }
        if let Some(shape) = &input_shape {
            if !self.arch.layers.is_empty() {
                return Err(Error::Value("`input_shape` can only be given to the first layer of a sequential model".into()));
            }
            check_input_shape(shape)?;
        }
        // Check the layer fits before touching the model, so a bad layer leaves it unchanged.
        let mut arch = (*self.arch).clone();
        arch.layers.push(layer);
        let built_input = input_shape.or_else(|| self.arch.input_shape.clone());
        match built_input {
            Some(shape) => {
                let (arch, weights) = build(arch, &shape, &self.weights)?;
                self.arch = Arc::new(arch);
                self.weights = weights;
            }
            None => self.arch = Arc::new(arch),
        }
        Ok(())
    }

    /// Builds a sequential model for inputs of these shapes (without the batch axis) if not
    /// yet built; checks the shapes against the built ones otherwise.
    pub fn ensure_built(&mut self, input_shapes: &[Vec<usize>]) -> Result<()> {
        if let Some(expected) = self.arch.input_shapes() {
            if expected.len() != input_shapes.len() {
                let fix = if expected.len() == 1 { "pass `x` as one array".to_string() } else { format!("pass `x` as a list of {} arrays", expected.len()) };
                return Err(Error::Value(format!(
                    "the model has {} input{} but `x` holds {} array{}: {}",
                    expected.len(),
                    if expected.len() == 1 { "" } else { "s" },
                    input_shapes.len(),
                    if input_shapes.len() == 1 { "" } else { "s" },
                    fix
                )));
            }
            for (k, (want, got)) in expected.iter().zip(input_shapes).enumerate() {
                if !crate::shape::fits(want, got) {
                    let which = if expected.len() == 1 { "`x`".to_string() } else { format!("input {} of `x`", k + 1) };
                    return Err(Error::Value(format!(
                        "{} has shape (n, {}) but the model expects input shape (n, {})",
                        which,
                        join_dims(got),
                        join_dims(want)
                    )));
                }
            }
            return Ok(());
        }
        if self.arch.layers.is_empty() {
            return Err(Error::State("the model has no layers yet: add layers before using it".into()));
        }
        let [input_shape] = input_shapes else {
            return Err(Error::Value(format!("a sequential model takes one input array, got {}", input_shapes.len())));
        };
        check_input_shape(input_shape)?;
        let (arch, weights) = build((*self.arch).clone(), input_shape, &[])?;
        self.arch = Arc::new(arch);
        self.weights = weights;
        Ok(())
    }

    /// A functional model from its layers and their wiring, built at once (as Keras does).
    pub fn functional(name: String, layers: Vec<Layer>, graph: Graph) -> Result<Self> {
        for (i, l) in layers.iter().enumerate() {
            if layers[..i].iter().any(|o| o.name == l.name) {
                return Err(Error::Value(format!("all layers in a model must have unique names; \"{}\" is used twice", l.name)));
            }
        }
        for shape in &graph.input_shapes {
            check_input_shape(shape)?;
        }
        // Each node's output shapes: its first output's, then the others' (states).
        let mut node_shapes: Vec<Vec<Vec<usize>>> = Vec::with_capacity(graph.nodes.len());
        let mut first_inputs: Vec<Option<Vec<Vec<usize>>>> = vec![None; layers.len()];
        let mut output_shapes: Vec<Vec<usize>> = vec![Vec::new(); layers.len()];
        for (j, node) in graph.nodes.iter().enumerate() {
            let layer = layers.get(node.layer).ok_or_else(|| Error::Value(format!("node {} uses a layer that is not in the model", j)))?;
            let shapes = node
                .inputs
                .iter()
                .map(|s| match *s {
                    Source::Input(k) => graph.input_shapes.get(k).cloned().ok_or_else(|| Error::Value(format!("node {} reads a missing input", j))),
                    Source::Node(i) | Source::State(i, _) if i >= j => {
                        Err(Error::Value("the layers are not in an order that can be computed (a cycle?)".into()))
                    }
                    Source::Node(i) => Ok(node_shapes[i][0].clone()),
                    Source::State(i, k) => node_shapes[i].get(k).cloned().ok_or_else(|| {
                        Error::Value(format!(
                            "node {} reads output {} of layer \"{}\", which has {} output(s)",
                            j,
                            k + 1,
                            layers[graph.nodes[i].layer].name,
                            node_shapes[i].len()
                        ))
                    }),
                })
                .collect::<Result<Vec<_>>>()?;
            let out = layer.node_output_shape(&shapes)?;
            let mut outs = vec![out.clone()];
            outs.extend(layer.more_output_shapes(&shapes));
            match &first_inputs[node.layer] {
                None => {
                    first_inputs[node.layer] = Some(shapes);
                    output_shapes[node.layer] = out.clone();
                }
                Some(first) if *first != shapes && !layer.weight_specs(&first[0]).is_empty() => {
                    return Err(Error::Value(format!(
                        "shared layer \"{}\" was first applied to inputs of shape ({}), now to ({}): a layer with weights needs the same input shape each time",
                        layer.name,
                        join_dims(&first[0]),
                        join_dims(&shapes[0])
                    )));
                }
                Some(_) => {}
            }
            node_shapes.push(outs);
        }
        let mut weights = Vec::new();
        let mut weight_ranges = Vec::with_capacity(layers.len());
        for (layer, inputs) in layers.iter().zip(&first_inputs) {
            let inputs = inputs.as_ref().ok_or_else(|| Error::Value(format!("layer \"{}\" is not connected to the outputs", layer.name)))?;
            let start = weights.len();
            let mut rng = rand::rngs::StdRng::seed_from_u64(layer.seed);
            check_weight_specs(layer, &layer.weight_specs(&inputs[0]), &inputs[0])?;
            for spec in layer.weight_specs(&inputs[0]) {
                check_weight_memory(&layer.name, &spec)?;
                let value = Arc::new(spec.initializer.sample(&spec.shape, &mut rng).map_err(|e| in_layer(e, &layer.name))?);
                weights.push(Weight {
                    name: format!("{}/{}:0", layer.name, spec.name),
                    shape: spec.shape,
                    value,
                    trainable: spec.trainable,
                    layer_state: !spec.trainable,
                });
            }
            weight_ranges.push(start..weights.len());
        }
        let input_shape = graph.input_shapes.first().cloned();
        let arch = Architecture { layers, graph: Some(graph), input_shape, output_shapes, weight_ranges };
        Ok(Self { name, arch: Arc::new(arch), weights })
    }

    /// Removes the last layer (Keras's `pop_layer`).
    pub fn pop(&mut self) -> Result<()> {
        if self.arch.graph.is_some() {
            return Err(Error::State("pop_layer() works on sequential models only".into()));
        }
        if self.arch.layers.is_empty() {
            return Err(Error::State("there are no layers to remove".into()));
        }
        let mut arch = (*self.arch).clone();
        arch.layers.pop();
        if let Some(range) = arch.weight_ranges.pop() {
            self.weights.truncate(range.start);
            arch.output_shapes.pop();
        }
        self.arch = Arc::new(arch);
        Ok(())
    }

    /// Forgets the state stateful layers keep between batches (Keras's `reset_states()`).
    pub fn reset_states(&self) {
        for layer in &self.arch.layers {
            layer.kind.reset_states();
        }
    }

    pub fn count_params(&self) -> (usize, usize) {
        let mut trainable = 0;
        let mut frozen = 0;
        for w in &self.weights {
            let n = w.value.len();
            if w.trainable {
                trainable += n
            } else {
                frozen += n
            }
        }
        (trainable, frozen)
    }

    /// Marks the weights of the named layers trainable or not (`freeze_weights()`); state a
    /// layer updates itself stays untrained.
    pub fn set_trainable(&mut self, layers: &[String], trainable: bool) {
        let arch = self.arch.clone();
        for (layer, range) in arch.layers.iter().zip(&arch.weight_ranges) {
            if layers.contains(&layer.name) {
                for w in &mut self.weights[range.clone()] {
                    w.trainable = trainable && !w.layer_state;
                }
            }
        }
    }

    /// The weights holding NaN or infinite values (a file's float64 values beyond float32's
    /// range become infinite), each with the index of its first such value.
    pub fn nonfinite_weights(&self) -> Vec<(String, usize)> {
        self.weights.iter().filter_map(|w| w.value.iter().position(|v| !v.is_finite()).map(|i| (w.name.clone(), i))).collect()
    }

    pub fn get_weights(&self) -> Vec<HostTensor> {
        self.weights.iter().map(|w| HostTensor { shape: w.shape.clone(), data: (*w.value).clone() }).collect()
    }

    /// Replaces all weights; checks count and shapes first so a bad call changes nothing.
    pub fn set_weights(&mut self, values: Vec<HostTensor>) -> Result<()> {
        if !self.arch.is_built() {
            return Err(Error::State("the model is not built yet: give the first layer an `input_shape`, or fit/predict once, before setting weights".into()));
        }
        if values.len() != self.weights.len() {
            return Err(Error::Value(format!("`weights` must be a list of {} arrays (one per model weight), got {}", self.weights.len(), values.len())));
        }
        for (w, v) in self.weights.iter().zip(&values) {
            if w.shape != v.shape {
                return Err(Error::Value(format!(
                    "weight \"{}\" has shape ({}) but the array given has shape ({})",
                    w.name,
                    join_dims(&w.shape),
                    join_dims(&v.shape)
                )));
            }
        }
        for (w, v) in self.weights.iter_mut().zip(values) {
            w.value = Arc::new(v.data);
        }
        Ok(())
    }
}

/// Computes shapes for every layer and creates missing weights (keeping those in `existing`).
/// Refuses a weight that would not fit in memory (its size comes from the layer's config).
fn check_weight_memory(layer: &str, spec: &WeightSpec) -> Result<()> {
    let bytes = crate::memory::elements(&spec.shape).and_then(|n| crate::memory::bytes(n, 4));
    crate::memory::check(
        &format!("layer \"{}\"'s {} of shape ({})", layer, spec.name, crate::shape::join_dims(&spec.shape)),
        bytes,
        "use fewer units or filters, smaller kernels, or a smaller input",
    )
}

/// An initializer's error, naming the layer whose weight it was making.
fn in_layer(e: Error, layer: &str) -> Error {
    match e {
        Error::Value(m) => Error::Value(format!("layer \"{}\": {}", layer, m)),
        other => other,
    }
}

/// A layer's weights have known sizes (a weight cannot grow with a batch's variable size, as
/// Keras refuses a Dense on an input whose last size is None), and its weight constraints fit
/// them (their axes exist), checked when the weights are made: a constraint runs after an
/// update, too late to refuse it.
fn check_weight_specs(layer: &Layer, specs: &[WeightSpec], input: &[usize]) -> Result<()> {
    if let Some(spec) = specs.iter().find(|s| crate::shape::has_variable(&s.shape)) {
        return Err(Error::Value(format!(
            "layer \"{}\" ({}) needs the sizes of its input that its weight \"{}\" depends on, but its input has shape (None, {}): give those sizes in layer_input(shape = ) or `input_shape`",
            layer.name,
            layer.class_name(),
            spec.name,
            join_dims(input)
        )));
    }
    for (spec, c) in specs.iter().zip(layer.kind.weight_constraints()) {
        if let Some(c) = c {
            c.check_rank(spec.shape.len()).map_err(|e| in_layer(e, &layer.name))?;
        }
    }
    Ok(())
}

fn build(mut arch: Architecture, input_shape: &[usize], existing: &[Weight]) -> Result<(Architecture, Vec<Weight>)> {
    let mut shape = input_shape.to_vec();
    let mut weights = Vec::new();
    arch.output_shapes.clear();
    arch.weight_ranges.clear();
    for layer in &arch.layers {
        let start = weights.len();
        let mut rng = rand::rngs::StdRng::seed_from_u64(layer.seed);
        check_weight_specs(layer, &layer.weight_specs(&shape), &shape)?;
        for spec in layer.weight_specs(&shape) {
            let idx = weights.len();
            // A weight the model had keeps its values and its frozen state (adding a layer
            // after freeze_weights() leaves the frozen layers frozen, as in Keras).
            let (value, trainable) = match existing.get(idx) {
                Some(w) if w.shape == spec.shape => (w.value.clone(), w.trainable),
                _ => {
                    check_weight_memory(&layer.name, &spec)?;
                    (Arc::new(spec.initializer.sample(&spec.shape, &mut rng).map_err(|e| in_layer(e, &layer.name))?), spec.trainable)
                }
            };
            weights.push(Weight { name: format!("{}/{}:0", layer.name, spec.name), shape: spec.shape, value, trainable, layer_state: !spec.trainable });
        }
        arch.weight_ranges.push(start..weights.len());
        shape = layer.output_shape(&shape)?;
        arch.output_shapes.push(shape.clone());
    }
    arch.input_shape = Some(input_shape.to_vec());
    Ok((arch, weights))
}

/// A layer with maps or a pooling folded in, and its folded weights.
pub type AbsorbedLayer = (Box<dyn crate::layers::AnyLayer>, Vec<Tensor>);

/// What an inference pass does with each node, and the layers that take others in, ready
/// for a set of weights ([`Architecture::inference_plan`]).
pub struct InferencePlan {
    folds: Vec<NodeFold>,
    absorbed: Vec<Option<AbsorbedLayer>>,
}

/// The cache of a ReLU node whose input node's layer took it in during a training pass (see
/// [`LayerType::forward_then_relu`](crate::layers::LayerType::forward_then_relu)).
pub struct ReluTakenIn;

/// What [`Architecture::forward_inference`] does with a node.
enum NodeFold {
    /// Runs as in any forward pass.
    Run,
    /// Runs with the per-channel affine map and/or ReLU of the nodes that read it folded in,
    /// and/or the max pooling after them.
    Absorb { affine: Option<(Tensor, Tensor)>, relu: bool, pool: Option<crate::layers::PoolWindow> },
    /// Folded into that earlier node; its output is that node's.
    Alias(usize),
}

/// Makes the weights of a step as tensors on `device` (the per-step "weights out" transfer).
pub fn weights_to_device(weights: &[Arc<Vec<f32>>], shapes: &[Vec<usize>], device: &candle_core::Device) -> Result<Vec<Tensor>> {
    weights.iter().zip(shapes).map(|(w, s)| Ok(Tensor::from_slice(w.as_slice(), s.as_slice(), device)?)).collect()
}
