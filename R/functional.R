# The functional API: layer_input() makes a symbolic tensor, layers applied to tensors make
# new ones, and keras_model() traces the graph from the outputs back to the inputs.

.tensors <- new.env(parent = emptyenv())
.tensors$count <- 0L

next_tensor_id <- function() {
  .tensors$count <- .tensors$count + 1L
  .tensors$count
}

is_tensor <- function(x) inherits(x, "rustgpu_tensor")

#' Input layer of a functional model
#'
#' A symbolic tensor standing for one input of a model: apply layers to it, then build the
#' model with [keras_model()].
#'
#' @param shape Shape of one sample (without the batch axis).
#' @param name Name of the input.
#' @param dtype The type of the values fed to it: "float32" (default), or an integer type such
#'   as "int32" for word indices. Arrays given to `fit()`/`predict()` are numbers either way
#'   (indices are checked by the layer that reads them).
#' @param batch_shape The shape with its batch axis first, as Keras's `batch_shape`: the batch
#'   size (`NA` or `NULL` for any) is not fixed here; give `shape` or this.
#' @return A tensor. Several tensors combine with `c()` into a list, as in R keras.
#' @examples
#' inputs <- layer_input(shape = 4)
#' outputs <- inputs %>% layer_dense(8, activation = "relu") %>% layer_dense(1)
#' model <- keras_model(inputs, outputs)
#' summary(model)
#' @export
layer_input <- function(shape = NULL, batch_shape = NULL, name = NULL, dtype = "float32") {
  if (is.null(shape) && !is.null(batch_shape)) {
    batch_shape <- as.list(batch_shape)
    if (length(batch_shape) < 2) value_error("`batch_shape` must hold the batch axis and at least one more.")
    shape <- unlist(batch_shape[-1])
  }
  shape <- check_shape(shape, "shape")
  if (is.null(shape)) value_error("`shape` is required.")
  check_string(name, "name", allow_null = TRUE)
  check_string(dtype, "dtype")
  if (!grepl("^(float(16|32|64)|u?int(8|16|32|64)|bool)$", dtype)) {
    value_error(sprintf("`dtype` must be a Keras type such as \"float32\" or \"int32\", not \"%s\".", dtype))
  }
  if (is.null(name)) name <- rg_unique_name("input")
  structure(list(id = next_tensor_id(), kind = "input", shape = shape, name = name, dtype = dtype), class = "rustgpu_tensor")
}

#' @export
c.rustgpu_tensor <- function(...) flatten_tensors(list(...))

# Tensors and (nested) lists of tensors as one flat list, as Keras flattens a model's inputs
# and outputs: c(decoder_input, list(state_h, state_c)) is three tensors.
flatten_tensors <- function(x) {
  if (is_tensor(x)) return(list(x))
  if (!is.list(x)) return(list(x))
  do.call(c, c(list(list()), lapply(unname(x), flatten_tensors)))
}

apply_layer_to_tensors <- function(layer, inputs) {
  if (is_tensor(inputs)) inputs <- list(inputs)
  fn <- layer$config[["function"]]
  if (inherits(fn, "rustgpu_traced_fn")) traced_fields(fn, lapply(inputs, functional_shape))
  out <- structure(list(id = next_tensor_id(), kind = "node", layer = layer, inputs = unname(inputs)), class = "rustgpu_tensor")
  # A layer with more outputs (a recurrent layer's final states with `return_state`, the
  # backward direction of bidirectional(merge_mode = NULL)) gives them as tensors of kind
  # "state" (output `index` of the node that `inputs` holds).
  more <- more_outputs(layer)
  if (more > 0) {
    states <- lapply(seq_len(more), function(k) {
      structure(list(id = next_tensor_id(), kind = "state", layer = layer, inputs = list(out), index = k), class = "rustgpu_tensor")
    })
    .tensors$states[[as.character(out$id)]] <- states
    out <- c(list(out), states)
  }
  # Each application is a node of the layer, as Keras's inbound nodes: layer$output reads it.
  # Keyed by the layer's identity, not its name (names repeat after k_clear_session()).
  key <- as.character(layer$id)
  .tensors$nodes[[key]] <- c(.tensors$nodes[[key]], list(list(input = unname(inputs), output = out)))
  out
}

# How many outputs after the first a layer's application has.
more_outputs <- function(layer) {
  states <- function(class_name, config) if (!isTRUE(config$return_state)) 0L else if (identical(class_name, "LSTM")) 2L else 1L
  config <- layer$config
  if (identical(layer$class_name, "Bidirectional")) {
    separate <- "merge_mode" %in% names(config) && is.null(config$merge_mode)
    return(as.integer(separate) + 2L * states(config$layer$class_name, config$layer$config))
  }
  states(layer$class_name, config)
}

# The first tensor a layer application made (its others are its states).
main_tensor <- function(out) if (is_tensor(out)) out else out[[1]]

layer_nodes <- function(layer) .tensors$nodes[[as.character(attr(layer, "spec")$id)]]

layer_node <- function(layer, node_index, what, call = rlang::caller_env()) {
  name <- attr(layer, "spec")$name
  nodes <- layer_nodes(layer)
  if (is.null(node_index)) {
    if (length(nodes) == 0) state_error(sprintf("Layer \"%s\" has not been applied to a tensor yet: it has no %s.", name, what), call = call)
    if (length(nodes) > 1) {
      state_error(sprintf("Layer \"%s\" has multiple inbound nodes, hence the notion of \"layer %s\" is ill-defined: use get_%s_at(layer, node_index).",
                          name, what, what), call = call)
    }
    node_index <- 1
  }
  check_count(node_index, "node_index", min = 1, call = call)
  if (node_index > length(nodes)) {
    value_error(sprintf("Layer \"%s\" has %d inbound node%s; `node_index` %d is beyond them.", name, length(nodes),
                        if (length(nodes) == 1) "" else "s", as.integer(node_index)), call = call)
  }
  value <- nodes[[node_index]][[what]]
  if (is.list(value) && !is_tensor(value) && length(value) == 1) value[[1]] else value
}

#' A layer's input or output tensor
#'
#' Keras's `get_input_at()` and `get_output_at()`: the tensors of the layer's `node_index`-th
#' application (from 1) in the functional API; `layer$input` and `layer$output` are those of
#' a layer applied once.
#'
#' @param object A layer applied to tensors.
#' @param node_index Which application, from 1.
#' @return A tensor (or a list of them, for a merge layer's inputs).
#' @examples
#' x <- layer_input(shape = 3)
#' hidden <- layer_dense(units = 4)
#' y <- hidden(x)
#' identical(get_output_at(hidden, 1), hidden$output)
#' @export
get_output_at <- function(object, node_index) {
  if (!inherits(object, "rustgpu_layer")) value_error(sprintf("`object` must be a layer, not %s.", describe(object)))
  layer_node(object, node_index, "output")
}

#' @rdname get_output_at
#' @export
get_input_at <- function(object, node_index) {
  if (!inherits(object, "rustgpu_layer")) value_error(sprintf("`object` must be a layer, not %s.", describe(object)))
  layer_node(object, node_index, "input")
}

#' A layer's input or output shape
#'
#' Keras's `get_input_shape_at()` and `get_output_shape_at()`: the shapes of the tensors of
#' the layer's `node_index`-th application (from 1), the batch axis first as `NULL`.
#' `layer$input_shape` and `layer$output_shape` are those of a layer applied once (or
#' applied several times to tensors of one shape).
#'
#' @inheritParams get_output_at
#' @return A shape (a list whose first element, the batch axis, is `NULL`), or a list of
#'   shapes for a merge layer's inputs.
#' @examples
#' conv <- layer_conv_2d(filters = 4, kernel_size = 3, padding = "same")
#' a <- layer_input(shape = c(8, 8, 3))
#' b <- layer_input(shape = c(16, 16, 3))
#' conv(a)
#' conv(b)
#' get_input_shape_at(conv, 2)
#' @export
get_input_shape_at <- function(object, node_index) {
  tensor_shapes(get_input_at(object, node_index))
}

#' @rdname get_input_shape_at
#' @export
get_output_shape_at <- function(object, node_index) {
  tensor_shapes(get_output_at(object, node_index))
}

tensor_shapes <- function(x) if (is_tensor(x)) keras_shape(functional_shape(x)) else lapply(x, tensor_shapes)

# The model inputs a tensor is computed from (Keras's get_source_inputs()), in the order met.
source_inputs <- function(t) {
  found <- list()
  seen <- new.env(parent = emptyenv())
  walk <- function(u) {
    key <- as.character(u$id)
    if (!is.null(seen[[key]])) return()
    seen[[key]] <- TRUE
    if (u$kind == "input") found[[length(found) + 1]] <<- u else for (v in u$inputs) walk(v)
  }
  walk(t)
  found
}

# `layer$input_shape`: the shape shared by all its applications, as Keras's.
layer_shape <- function(layer, what, call = rlang::caller_env()) {
  spec <- attr(layer, "spec")
  nodes <- layer_nodes(layer)
  if (length(nodes) == 0) {
    if (what == "input" && !is.null(spec$input_shape)) return(keras_shape(spec$input_shape))
    state_error(sprintf("Layer \"%s\" has not been applied to a tensor yet: it has no %s shape.", spec$name, what), call = call)
  }
  shapes <- lapply(seq_along(nodes), function(i) tensor_shapes(layer_node(layer, i, what, call = call)))
  if (length(unique(shapes)) > 1) {
    state_error(sprintf(paste0("Layer \"%s\" has multiple inbound nodes with different %s shapes, hence the notion of ",
                               "\"%s shape\" is ill-defined for the layer: use get_%s_shape_at(layer, node_index)."),
                        spec$name, what, what, what), call = call)
  }
  shapes[[1]]
}

#' @export
print.rustgpu_tensor <- function(x, ...) {
  what <- if (x$kind == "input") sprintf("input \"%s\" of shape (None, %s)", x$name, shape_text(x$shape))
          else if (x$kind == "state") sprintf("state %d of layer \"%s\"", x$index, x$layer$name)
          else sprintf("output of layer \"%s\"", x$layer$name)
  cat(sprintf("<tensor: %s>\n", what))
  invisible(x)
}

#' Build a model from inputs and outputs (the functional API)
#'
#' Layers applied to tensors form a graph; `keras_model()` makes the model that computes
#' `outputs` from `inputs`. Layers may be shared (the same layer applied twice uses one set
#' of weights) and merged ([layer_add()], [layer_concatenate()], [layer_multiply()]); a model
#' may have several inputs, given to `fit()`/`predict()` as a list of arrays.
#'
#' @param inputs An input tensor from [layer_input()], or a list of them.
#' @param outputs The output tensor, or a list of them: `fit()` then takes `y` as a list
#'   (one array per output), `compile()` a loss per output and optional `loss_weights`, and
#'   `predict()` returns a list.
#' @param name Name of the model.
#' @return A model.
#' @examples
#' a <- layer_input(shape = 3)
#' b <- layer_input(shape = 3)
#' shared <- layer_dense(units = 4, activation = "tanh")
#' merged <- layer_add(list(shared(a), shared(b)))
#' outputs <- merged %>% layer_dense(2, activation = "softmax")
#' model <- keras_model(list(a, b), outputs)
#' predict(model, list(matrix(runif(6), 2), matrix(runif(6), 2)))
#' @export
keras_model <- function(inputs, outputs, name = NULL) {
  functional_model(inputs, outputs, name)
}

# keras_model(); `register = FALSE` for a model made only to read a tensor's shape, which
# must not count as a user of its layers (shared-layers.R).
functional_model <- function(inputs, outputs, name = NULL, register = TRUE) {
  check_string(name, "name", allow_null = TRUE)
  if (is.list(inputs)) inputs <- flatten_tensors(inputs)
  if (is.list(outputs)) outputs <- flatten_tensors(outputs)
  if (is_tensor(inputs)) inputs <- list(inputs)
  if (is_tensor(outputs)) outputs <- list(outputs)
  if (!is.list(inputs) || length(inputs) == 0 || !all(vapply(inputs, function(t) is_tensor(t) && t$kind == "input", logical(1)))) {
    value_error("`inputs` must be a tensor from layer_input(), or a list of them.")
  }
  if (!is.list(outputs) || length(outputs) == 0 || !all(vapply(outputs, is_tensor, logical(1)))) {
    value_error("`outputs` must be a tensor made by applying layers to inputs, or a list of them.")
  }
  if (is.null(name)) name <- rg_unique_name("model")
  input_ids <- vapply(inputs, function(t) t$id, integer(1))

  graph <- new.env(parent = emptyenv())
  graph$layers <- list()      # layer objects, in first-use order
  graph$nodes <- list()       # list(layer = 0-based index, inputs = codes)
  graph$node_of <- integer()  # tensor id -> 0-based node index
  # Codes: -(k + 1) for input k, j for node j (0-based), j + k * 2^20 for its state k
  # (src/rust/r/src/functional.rs).
  visit <- function(t) {
    if (t$kind == "state") return(visit(t$inputs[[1]]) + t$index * 2^20)
    if (t$kind == "input") {
      k <- match(t$id, input_ids)
      if (is.na(k)) value_error(sprintf("Input \"%s\" is used by the outputs but is not in `inputs`.", t$name), call = NULL)
      return(-k)
    }
    key <- as.character(t$id)
    if (!is.na(graph$node_of[key])) return(graph$node_of[[key]])
    codes <- vapply(t$inputs, visit, numeric(1))
    names <- vapply(graph$layers, function(l) l$name, character(1))
    li <- match(t$layer$name, names)
    if (is.na(li)) {
      graph$layers[[length(graph$layers) + 1]] <- t$layer
      li <- length(graph$layers)
    }
    graph$nodes[[length(graph$nodes) + 1]] <- list(layer = as.integer(li - 1), inputs = as.integer(codes))
    graph$node_of[key] <- length(graph$nodes) - 1L
    length(graph$nodes) - 1L
  }
  output_codes <- vapply(outputs, visit, numeric(1))
  keras_layer_order(graph)

  scratch <- new_model(call_backend(rg_model_new(paste0(name, "_layers"))), name)
  for (layer in graph$layers) add_layer(scratch, layer, input_shape = NULL, register = FALSE)
  ptr <- call_backend(rg_make_functional(
    scratch$ptr, name, vapply(inputs, function(t) t$name, character(1)),
    lapply(inputs, function(t) as.integer(t$shape)), graph$nodes, as.integer(output_codes)
  ))
  model <- new_model(ptr, name, kind = "functional")
  # Keras's model$inputs / $outputs (and $input / $output: one tensor, or the list).
  model$inputs <- inputs
  model$outputs <- outputs
  model$layer_specs <- graph$layers
  # Which node made each tensor: a custom loss reading the model's tensors is fed from them.
  model$tensor_nodes <- graph$node_of
  if (register) for (layer in graph$layers) register_layer(model, layer)
  model
}

# Keras's order of a functional model's layers (which is its weights' order): deepest first,
# a layer's depth being its longest path to an output (its nodes' deepest, as tf-keras's
# _map_graph_network), ties in the order the trace from the outputs first reached them.
keras_layer_order <- function(graph) {
  n <- length(graph$nodes)
  if (n == 0) return(invisible())
  node_depth <- integer(n)
  layer_depth <- integer(length(graph$layers))
  for (j in rev(seq_len(n))) {
    node <- graph$nodes[[j]]
    li <- node$layer + 1L
    depth <- max(node_depth[j], layer_depth[li])
    layer_depth[li] <- depth
    node_depth[j] <- depth
    for (code in node$inputs[node$inputs >= 0]) {
      i <- code %% 2^20 + 1
      node_depth[i] <- max(node_depth[i], depth + 1L)
    }
  }
  order <- order(-layer_depth, seq_along(layer_depth))
  graph$layers <- graph$layers[order]
  new_index <- match(seq_along(order), order) - 1L
  graph$nodes <- lapply(graph$nodes, function(node) {
    node$layer <- new_index[node$layer + 1L]
    node
  })
  invisible()
}

# model(tensors): the model's layers applied to new tensors, node for node, so that the new
# graph shares the layers (and their weights) with the model.
apply_model_to_tensors <- function(model, inputs, call = rlang::caller_env()) {
  check_model(model, "model", call = call)
  if (is_parallel_model(model)) state_error("Call the template model on tensors, not the parallel model.", call = call)
  if (is_tensor(inputs)) inputs <- list(inputs)
  model_inputs <- model_field(model, "inputs")
  if (is.null(model_inputs)) {
    # A sequential model: its layers in order, on one tensor.
    if (length(inputs) != 1) value_error(sprintf("A sequential model takes one tensor, not %d.", length(inputs)), call = call)
    x <- inputs[[1]]
    for (layer in model_layer_specs(model, call = call)) x <- apply_layer_to_tensors(layer, x)
    return(x)
  }
  if (length(inputs) != length(model_inputs)) {
    value_error(sprintf("Model \"%s\" has %d input%s but was called on %d tensor%s.", model$name, length(model_inputs),
                        if (length(model_inputs) == 1) "" else "s", length(inputs), if (length(inputs) == 1) "" else "s"), call = call)
  }
  made <- new.env(parent = emptyenv())
  for (k in seq_along(inputs)) made[[as.character(model_inputs[[k]]$id)]] <- inputs[[k]]
  retrace <- function(t) {
    key <- as.character(t$id)
    if (!is.null(made[[key]])) return(made[[key]])
    if (t$kind == "state") {
      main <- retrace(t$inputs[[1]])
      return(.tensors$states[[as.character(main$id)]][[t$index]])
    }
    ins <- lapply(t$inputs, retrace)
    out <- main_tensor(apply_layer_to_tensors(t$layer, if (length(ins) == 1) ins[[1]] else ins))
    made[[key]] <- out
    out
  }
  outs <- lapply(model$outputs, retrace)
  if (length(outs) == 1) outs[[1]] else outs
}

# sequential_model %>% model: the model's layers added to the sequential model (a functional
# model qualifies when its layers form one chain).
add_model_layers <- function(outer, model, call = rlang::caller_env()) {
  check_model(outer, call = call)
  check_model(model, "model", call = call)
  if (isTRUE(model_info(outer)$functional)) {
    state_error("A model joins a functional model by being called on its tensors: model(tensor).", call = call)
  }
  if (is_parallel_model(outer) || is_parallel_model(model)) {
    state_error("Compose template models, not the parallel models made by multi_gpu_model().", call = call)
  }
  layers <- model_layer_specs(model, chain = TRUE, call = call)
  # The first layer needs the inner model's input shape when the outer model has none yet.
  first_shape <- if (length(model_info(outer)$layer_names) == 0) model_input_shape(model) else NULL
  for (i in seq_along(layers)) {
    add_layer(outer, layers[[i]], input_shape = if (i == 1 && !is.null(first_shape)) first_shape else attr(layers[[i]], "spec")$input_shape,
              call = call)
  }
  invisible(outer)
}

model_input_shape <- function(model) {
  inputs <- model_field(model, "inputs")
  if (!is.null(inputs)) return(as.integer(inputs[[1]]$shape))
  shape <- model_info(model)$input_shape
  if (is.null(shape)) NULL else as.integer(shape)
}

# The model's layers as R layer objects, in order: those it was built from, or (for a model
# read from a file or a config) layers made from its config, with the model's layer ids.
# `chain = TRUE` asks for layers that form one chain from input to output.
model_layer_specs <- function(model, chain = FALSE, call = rlang::caller_env()) {
  specs <- model_field(model, "layer_specs")
  if (!is.null(model_field(model, "inputs")) && chain) {
    # Walk back from the output: each node must have one input, down to the model's input.
    t <- model$outputs
    if (length(t) != 1 || length(model$inputs) != 1) {
      state_error(sprintf("Model \"%s\" has several inputs or outputs: call it on tensors in a functional model instead.", model$name), call = call)
    }
    t <- t[[1]]
    chain_layers <- list()
    while (t$kind != "input") {
      if (length(t$inputs) != 1) {
        state_error(sprintf("Model \"%s\" is not a chain of layers (layer \"%s\" merges several tensors): call it on tensors in a functional model instead.",
                            model$name, t$layer$name), call = call)
      }
      chain_layers <- c(list(t$layer), chain_layers)
      t <- t$inputs[[1]]
    }
    if (anyDuplicated(vapply(chain_layers, function(l) l$name, character(1)))) {
      state_error(sprintf("Model \"%s\" uses a layer twice: call it on tensors in a functional model instead.", model$name), call = call)
    }
    return(chain_layers)
  }
  if (!is.null(specs)) return(specs)
  if (length(model_info(model)$layer_names) == 0) return(list())
  if (isTRUE(model_info(model)$functional)) {
    state_error(sprintf("Model \"%s\" was read from a file or a config: calling it like a layer needs the model built in this session (keras_model()).",
                        model$name), call = call)
  }
  ids <- layer_ids(model)
  layers <- get_config(model)$config$layers
  layers <- Filter(function(l) !identical(l$class_name, "InputLayer"), layers)
  specs <- lapply(layers, function(l) {
    config <- l$config[setdiff(names(l$config), c("name", "batch_input_shape", "trainable", "dtype"))]
    new_layer(l$class_name, l$config$name, config, id = ids[[l$config$name]])
  })
  model$layer_specs <- specs
  specs
}

merge_layer <- function(inputs, class_name, config, name, batch_size = NULL, dtype = NULL, trainable = NULL, weights = NULL,
                        call = rlang::caller_env()) {
  if (missing(inputs)) inputs <- NULL
  if (!is.null(inputs) && (!is.list(inputs) || length(inputs) < 2 || !all(vapply(inputs, is_tensor, logical(1))))) {
    value_error("`inputs` must be a list of at least 2 tensors.", call = call)
  }
  # R keras's common layer arguments: a merge layer has no weights to set, computes in
  # float32, and takes its batch size from its inputs.
  if (!is.null(weights) && length(weights) > 0) {
    value_error(sprintf("`weights`: a %s layer has no weights; leave it NULL.", class_name), call = call)
  }
  if (!is.null(dtype) && !identical(dtype, "float32")) value_error("`dtype` must be \"float32\" (or NULL).", call = call)
  if (!is.null(batch_size)) check_count(batch_size, "batch_size", min = 1, call = call)
  make_layer(class_name, inputs, config, name = name, trainable = trainable, call = call)
}

#' Merge layers: add, multiply, subtract, average, maximum, minimum or concatenate tensors
#'
#' `layer_add()`, `layer_multiply()`, `layer_average()`, `layer_maximum()` and
#' `layer_minimum()` combine tensors of one shape element-wise; `layer_subtract()` takes the
#' first of two tensors minus the second; `layer_concatenate()` joins them along `axis`
#' (Keras's numbering: the batch axis is 0, -1 the last axis).
#'
#' @param inputs A list of tensors; missing returns the layer.
#' @param axis The axis to join along (Keras's numbering: batch axis 0, -1 the last).
#' @param name Name of the layer.
#' @param batch_size,dtype,trainable,weights R keras's common layer arguments: a merge layer
#'   computes in float32 (`dtype` NULL or "float32"), takes its batch size from its inputs and
#'   has no weights (`weights` NULL or an empty list); `trainable` is kept as given.
#' @return A tensor (or the layer when `inputs` is missing).
#' @examples
#' x <- layer_input(shape = 3)
#' y <- layer_concatenate(list(x %>% layer_dense(2), x %>% layer_dense(4)))
#' keras_model(x, y)
#' @export
layer_add <- function(inputs, batch_size = NULL, dtype = NULL, name = NULL, trainable = NULL, weights = NULL) {
  merge_layer(inputs, "Add", list(), name, batch_size, dtype, trainable, weights)
}

#' @rdname layer_add
#' @export
layer_multiply <- function(inputs, batch_size = NULL, dtype = NULL, name = NULL, trainable = NULL, weights = NULL) {
  merge_layer(inputs, "Multiply", list(), name, batch_size, dtype, trainable, weights)
}

#' @rdname layer_add
#' @export
layer_concatenate <- function(inputs, axis = -1L, batch_size = NULL, dtype = NULL, name = NULL, trainable = NULL, weights = NULL) {
  check_number(axis, "axis")
  if (axis != round(axis) || axis == 0) value_error("`axis` must be a whole number other than 0 (the batch axis): -1 is the last axis.")
  merge_layer(inputs, "Concatenate", list(axis = as.integer(axis)), name, batch_size, dtype, trainable, weights)
}

#' @rdname layer_add
#' @export
layer_subtract <- function(inputs, batch_size = NULL, dtype = NULL, name = NULL, trainable = NULL, weights = NULL) {
  merge_layer(inputs, "Subtract", list(), name, batch_size, dtype, trainable, weights)
}

#' @rdname layer_add
#' @export
layer_average <- function(inputs, batch_size = NULL, dtype = NULL, name = NULL, trainable = NULL, weights = NULL) {
  merge_layer(inputs, "Average", list(), name, batch_size, dtype, trainable, weights)
}

#' @rdname layer_add
#' @export
layer_maximum <- function(inputs, batch_size = NULL, dtype = NULL, name = NULL, trainable = NULL, weights = NULL) {
  merge_layer(inputs, "Maximum", list(), name, batch_size, dtype, trainable, weights)
}

#' @rdname layer_add
#' @export
layer_minimum <- function(inputs, batch_size = NULL, dtype = NULL, name = NULL, trainable = NULL, weights = NULL) {
  merge_layer(inputs, "Minimum", list(), name, batch_size, dtype, trainable, weights)
}

#' Dot products of two tensors
#'
#' Keras's Dot: for two `(batch, n)` tensors, each sample's dot product (`(batch, 1)`); for
#' `(batch, a, n)` and `(batch, b, n)` with `axes = 2`, the `(batch, a, b)` matrix products
#' (`axes = 1` contracts the first sample axis instead). With `normalize = TRUE` each input is
#' first scaled to unit length along that axis: the products are cosine similarities.
#'
#' @param inputs A list of two tensors; missing returns the layer.
#' @param axes The axis to contract, Keras's numbering (batch axis 0; -1 the last): one
#'   number, or the same number twice.
#' @param normalize Whether to L2-normalize the inputs first.
#' @inheritParams layer_add
#' @return A tensor (or the layer).
#' @examples
#' a <- layer_input(shape = 3)
#' b <- layer_input(shape = 3)
#' model <- keras_model(list(a, b), layer_dot(list(a, b), axes = 1, normalize = TRUE))
#' predict(model, list(matrix(c(1, 0, 0), 1), matrix(c(1, 1, 0), 1)))
#' @export
layer_dot <- function(inputs, axes, normalize = FALSE, batch_size = NULL, dtype = NULL, name = NULL, trainable = NULL, weights = NULL) {
  if (!is.numeric(axes) || !length(axes) %in% 1:2 || anyNA(axes) || any(axes != round(axes))) {
    value_error("`axes` must be one whole number, or two.")
  }
  check_bool(normalize, "normalize")
  axes <- if (length(axes) == 1) as.integer(axes) else I(as.integer(axes))
  merge_layer(inputs, "Dot", list(axes = axes, normalize = normalize), name, batch_size, dtype, trainable, weights)
}

# The tensors of a model's graph: a functional model's own; for a sequential model, its
# layers applied to an input of its input shape (made once per set of layers), so that
# `model$input`, `model$output` and `get_layer(model, name)$output` exist as in Keras.
model_tensors <- function(model, call = rlang::caller_env()) {
  inputs <- model_field(model, "inputs")
  if (!is.null(inputs)) return(list(inputs = inputs, outputs = model_field(model, "outputs")))
  shape <- model_input_shape(model)
  if (is.null(shape)) {
    state_error("This sequential model has no input shape yet: give its first layer an `input_shape`.", call = call)
  }
  layers <- model_layer_specs(model, call = call)
  made <- model_field(model, "sequential_tensors")
  if (is.null(made) || made$count != length(layers)) {
    x <- input <- layer_input(shape = shape)
    for (layer in layers) x <- apply_layer_to_tensors(layer, x)
    made <- list(count = length(layers), inputs = list(input), outputs = list(x))
    model$sequential_tensors <- made
  }
  made
}

# get_layer(model, name)$input / $output: the tensors of the layer's node in the model's graph.
layer_ref_tensor <- function(ref, what, call = rlang::caller_env()) {
  model <- .subset2(ref, "model")
  name <- .subset2(ref, "name")
  seen <- new.env(parent = emptyenv())
  hits <- list()
  visit <- function(t) {
    key <- as.character(t$id)
    if (!is.null(seen[[key]]) || t$kind == "input") return(invisible())
    seen[[key]] <- TRUE
    if (t$kind == "node" && identical(t$layer$name, name)) hits[[length(hits) + 1]] <<- t
    for (u in t$inputs) visit(u)
  }
  for (t in model_tensors(model, call = call)$outputs) visit(t)
  if (length(hits) == 0) state_error(sprintf("Layer \"%s\" is not on the path to the model's outputs.", name), call = call)
  if (length(hits) > 1) {
    state_error(sprintf("Layer \"%s\" has multiple inbound nodes in this model, hence the notion of \"layer %s\" is ill-defined.",
                        name, what), call = call)
  }
  t <- hits[[1]]
  if (what == "output") t else if (length(t$inputs) == 1) t$inputs[[1]] else t$inputs
}
