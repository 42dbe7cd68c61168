# The backend (R keras's k_*() functions) and tracing. Model code written in R (a lambda
# layer's function, a custom loss or metric) is called once with symbolic tensors: each
# k_*() function, arithmetic operator or math function applied to them records one op in the
# core's trace (src/rust/r/src/backend.rs), which then runs on every device and replica with
# no R in the step. Called on plain arrays, the same functions compute at once and return
# arrays. Axes count from 1, as R keras's (its `as_axis()`): `axis = -1` is the last axis.

# --- symbolic tensors --------------------------------------------------------

new_tracer <- function(input_shapes = list(), weight_shapes = list()) {
  tracer <- new.env(parent = emptyenv())
  tracer$ptr <- call_backend(rg_trace_new(lapply(input_shapes, as.numeric), lapply(weight_shapes, as.numeric)))
  tracer
}

traced_tensor <- function(tracer, node, shape) {
  structure(list(tracer = tracer, node = node, shape = shape), class = "rustgpu_traced_tensor")
}

is_traced <- function(x) inherits(x, "rustgpu_traced_tensor")

trace_error <- function(message, call = rlang::caller_env()) {
  rustgpu_abort(message, c("rustgpu_trace_error", "rustgpu_value_error"), call = call)
}

# The node of `x` in `tracer`: a tensor of the trace, or an R number/array made a constant.
as_node <- function(tracer, x, call = rlang::caller_env()) {
  if (is_traced(x)) {
    # A weight a layer's build() added stands for that weight in the trace of its call().
    if (!is.null(x$weight_index) && !identical(x$tracer, tracer) && identical(x$tracer$group$active, tracer)) {
      return(tracer$weight_nodes[[x$weight_index]])
    }
    if (!identical(x$tracer, tracer)) {
      trace_error("A tensor of another traced function was used here: each function must compute from its own inputs.", call = call)
    }
    return(x$node)
  }
  if (is_tensor(x)) {
    if (isTRUE(tracer$graph)) return(graph_leaf_node(tracer, x, call = call))
    if (!is.null(tracer$model)) return(model_tensor_node(tracer, x, call = call))
    trace_error(paste0("A layer's output tensor (from the functional API) was used inside a traced function: ",
                       "pass it to the layer as an input instead (layer_lambda() on a list of tensors)."), call = call)
  }
  if (!(is.numeric(x) || is.logical(x)) || anyNA(x)) {
    value_error(sprintf("Backend functions take tensors or numbers (no NA), not %s.", describe(x)), call = call)
  }
  dims <- dim(x)
  if (is.null(dims)) dims <- if (length(x) == 1) integer(0) else length(x)
  # The core holds values row-major (as Keras); R arrays are column-major.
  values <- if (length(dims) > 1) as.vector(aperm(x, rev(seq_along(dims)))) else as.vector(x)
  op <- list(op = "constant", shape = I(as.numeric(dims)), values = I(as.numeric(values)))
  call_backend(rg_trace_record(tracer$ptr, op, numeric(0)), call = call)$node
}

# The loss being traced, whose function may read the model's tensors.
.tracing <- new.env(parent = emptyenv())

# The node of a model tensor (a layer's output in the functional API) in a loss's trace: an
# input of the trace, fed with that layer's output when the loss is computed.
model_tensor_node <- function(tracer, x, call = rlang::caller_env()) {
  key <- as.character(x$id)
  if (!is.null(tracer$extras[[key]])) return(tracer$extras[[key]]$trace_node)
  model_node <- unname(model_field(tracer$model, "tensor_nodes")[key])
  if (!length(model_node) || is.na(model_node) || x$kind != "node") {
    trace_error("The loss reads a tensor that is not a layer output of the model being compiled.", call = call)
  }
  node <- call_backend(rg_trace_add_input(tracer$ptr, as.numeric(c(NA, shape_with_na(functional_shape(x))))), call = call)
  tracer$extras[[key]] <- list(trace_node = node, model_node = model_node)
  node
}

# Records `op` on `args` (tensors or numbers); with no symbolic tensor among them, the op is
# computed at once and its value returned as an array.
k_op <- function(op, args, call = rlang::caller_env()) {
  tracer <- NULL
  for (a in args) if (is_traced(a)) { tracer <- a$tracer; break }
  # A layer's weights belong to its build(); in its call() they join the call's trace.
  if (!is.null(tracer$group)) tracer <- tracer$group$active
  if (is.null(tracer) && any(vapply(args, is_tensor, logical(1)))) {
    # In a loss being traced, the model's tensors are the loss's inputs; elsewhere, an op on
    # them is a lambda layer.
    tracer <- .tracing$loss
    if (is.null(tracer)) return(functional_op(op, args, call = call))
  }
  eager <- is.null(tracer)
  if (eager) tracer <- new_tracer()
  out <- record_op(tracer, op, args, call = call)
  if (eager) eager_value(out, call = call) else out
}

# `op` on `args` recorded in `tracer`: the traced result. In the expression graph (below),
# the result also keeps its recipe, to be computed again when k_function()'s function runs.
record_op <- function(tracer, op, args, call = rlang::caller_env()) {
  nodes <- vapply(args, function(a) as.numeric(as_node(tracer, a, call = call)), numeric(1))
  res <- call_backend(rg_trace_record(tracer$ptr, op, nodes), call = call)
  out <- traced_tensor(tracer, res$node, res$shape)
  if (isTRUE(tracer$graph)) out$recipe <- list(op = op, args = args)
  out
}

# A backend function or operator applied to tensors of the functional API (layer outputs):
# a lambda layer applying it, as tf.keras makes one for a TensorFlow op on Keras tensors;
# an op whose result has no batch axis (a sum over everything, a shape) cannot be a layer
# and becomes an expression of the model's tensors instead, for k_gradients()/k_function().
functional_op <- function(op, args, call = rlang::caller_env()) {
  # (Where the op cannot be recorded, the lambda layer below reports why.)
  expr <- tryCatch(record_op(graph_tracer(), op, args, call = call), error = function(e) NULL)
  if (!is.null(expr) && !(length(expr$shape) > 0 && is.na(expr$shape[[1]]))) return(expr)
  which_tensors <- which(vapply(args, is_tensor, logical(1)))
  apply_op <- function(xs) {
    if (length(which_tensors) == 1) xs <- list(xs)
    args[which_tensors] <- xs
    k_op(op, args, call = call)
  }
  inputs <- args[which_tensors]
  layer_lambda(if (length(inputs) == 1) inputs[[1]] else inputs, apply_op)
}

# Operators and math functions on tensors, symbolic (being traced) or of the functional API
# (where they become lambda layers): one set of rules for both.
#' @export
Ops.rustgpu_tensor <- function(e1, e2) tensor_ops(.Generic, e1, if (!missing(e2)) e2, missing(e2))

#' @export
Math.rustgpu_tensor <- function(x, ...) tensor_math(.Generic, x, ...)

eager_value <- function(t, call = rlang::caller_env()) {
  call_backend(rg_trace_eval(t$tracer$ptr, t$node, new_seed()), call = call)[[1]]
}

# The shape of a tensor or array, NA where unknown.
shape_of <- function(x) {
  if (is_traced(x)) return(x$shape)
  if (is_tensor(x)) return(c(NA, shape_with_na(functional_shape(x))))
  if (is.null(dim(x))) {
    if (length(x) == 1) integer(0) else length(x)
  } else {
    dim(x)
  }
}

rank_of <- function(x) length(shape_of(x))

# R keras's axis (from 1; -1 the last; other negatives as Python's after subtracting 1) as
# the core's (from 0), for a tensor of rank `rank`. `new_axis`: an axis of the result of
# inserting one (expand_dims, stack).
core_axis <- function(axis, rank, call = rlang::caller_env(), new_axis = FALSE) {
  if (length(axis) != 1 || is.na(axis) || axis != round(axis)) value_error(sprintf("`axis` must be a whole number, got %s.", describe(axis)), call = call)
  py <- if (axis == -1) -1L else as.integer(axis) - 1L
  n <- rank + as.integer(new_axis)
  a <- if (py < 0) n + py else py
  if (a < 0 || a >= n) value_error(sprintf("`axis` %s is outside a tensor of rank %d (axes count from 1; -1 is the last).", axis, rank), call = call)
  a
}

core_axes <- function(axis, rank, call = rlang::caller_env()) {
  if (is.null(axis)) return(seq_len(rank) - 1L)
  sort(unique(vapply(as.list(axis), core_axis, integer(1), rank = rank, call = call)))
}

# --- what R does with symbolic tensors ---------------------------------------

#' @export
print.rustgpu_traced_tensor <- function(x, ...) {
  cat(sprintf("<symbolic tensor of shape (%s)>\n", paste(ifelse(is.na(x$shape), "None", x$shape), collapse = ", ")))
  invisible(x)
}

#' @export
dim.rustgpu_traced_tensor <- function(x) as.integer(unclass(x)$shape)

#' @export
c.rustgpu_traced_tensor <- function(...) list(...)

not_traceable <- function(x, ...) {
  trace_error(paste0("A tensor's values are not known while the function is traced (it runs once, on symbolic tensors, ",
                     "to record its operations): use k_switch() instead of `if`, and backend functions instead of converting tensors to R values."))
}

#' @export
as.logical.rustgpu_traced_tensor <- not_traceable
#' @export
as.numeric.rustgpu_traced_tensor <- not_traceable
#' @export
as.double.rustgpu_traced_tensor <- not_traceable
#' @export
as.integer.rustgpu_traced_tensor <- not_traceable
#' @export
as.vector.rustgpu_traced_tensor <- function(x, mode = "any") not_traceable(x)
#' @export
as.array.rustgpu_traced_tensor <- not_traceable

binary_ops <- c("+" = "add", "-" = "sub", "*" = "mul", "/" = "div", "^" = "pow", "==" = "equal", "!=" = "not_equal",
                ">" = "greater", ">=" = "greater_equal", "<" = "less", "<=" = "less_equal")

#' @export
Ops.rustgpu_traced_tensor <- function(e1, e2) tensor_ops(.Generic, e1, if (!missing(e2)) e2, missing(e2))

#' @export
Math.rustgpu_traced_tensor <- function(x, ...) tensor_math(.Generic, x, ...)

tensor_ops <- function(generic, e1, e2, unary, call = rlang::caller_env(2)) {
  if (unary) {
    return(switch(generic,
      "-" = k_op(list(op = "unary", f = "neg"), list(e1), call = call),
      "+" = e1,
      "!" = k_op(list(op = "binary", f = "equal"), list(e1, 0), call = call),
      trace_error(sprintf("`%s` is not defined for tensors.", generic), call = call)
    ))
  }
  if (generic == "^" && !is_traced(e2) && !is_tensor(e2) && is.numeric(e2) && length(e2) == 1) {
    return(k_op(list(op = "pow_scalar", exponent = e2), list(e1), call = call))
  }
  if (generic %in% c("&", "|")) {
    a <- k_not_equal(e1, 0)
    b <- k_not_equal(e2, 0)
    return(if (generic == "&") a * b else k_maximum(a, b))
  }
  f <- binary_ops[generic]
  if (is.na(f)) trace_error(sprintf("`%s` is not defined for tensors.", generic), call = call)
  k_op(list(op = "binary", f = unname(f)), list(e1, e2), call = call)
}

tensor_math <- function(generic, x, ..., call = rlang::caller_env(2)) {
  f <- switch(generic, abs = "abs", sqrt = "sqrt", exp = "exp", log = "log", tanh = "tanh", sign = "sign",
              round = "round", floor = "floor", sin = "sin", cos = "cos", NULL)
  if (is.null(f)) trace_error(sprintf("`%s()` is not defined for tensors: use the backend functions (k_*()).", generic), call = call)
  out <- k_op(list(op = "unary", f = f), list(x), call = call)
  base <- list(...)
  if (generic == "log" && length(base)) out / log(base[[1]]) else out
}

# x[i, j, ...] with R's indices (from 1); a missing index takes the whole axis, which the
# batch axis must be. As R (and R keras's tensors), a single index drops its axis.
#' @export
`[.rustgpu_traced_tensor` <- function(x, ..., drop = TRUE) {
  index_tensor(x, as.list(substitute(list(...)))[-1], unclass(x)$shape, drop, parent.frame(), rlang::caller_env())
}

# A layer output indexed (`features[1, , , ]`, a sample of the batch): an expression of the
# model's tensors (see k_function()) where the batch axis goes, a lambda layer otherwise.
#' @export
`[.rustgpu_tensor` <- function(x, ..., drop = TRUE) {
  index_tensor(x, as.list(substitute(list(...)))[-1], c(NA, shape_with_na(functional_shape(x))), drop, parent.frame(), rlang::caller_env())
}

# x[i, j, ...] for a tensor of `shape` (NA: unknown), indices unevaluated (`env` evaluates
# them). An axis of unknown size takes positive indices, checked when the values come.
index_tensor <- function(x, idx, shape, drop, env, call) {
  if (length(idx) != length(shape)) value_error(sprintf("A tensor of rank %d takes %d indices, got %d.", length(shape), length(shape), length(idx)), call = call)
  out <- x
  dropped <- integer()
  for (a in seq_along(idx)) {
    if (identical(idx[[a]], quote(expr = ))) next
    i <- eval(idx[[a]], env)
    if (!is.numeric(i) || anyNA(i) || any(i != round(i))) value_error("Tensor indices must be whole numbers.", call = call)
    if (is.na(shape[a])) {
      if (any(i < 1)) value_error(sprintf("Axis %d's size is known only when the model runs: give positive indices.", a), call = call)
    } else {
      if (all(i < 0)) i <- setdiff(seq_len(shape[a]), -i)
      if (any(i < 1 | i > shape[a])) value_error(sprintf("An index is outside axis %d of size %d.", a, shape[a]), call = call)
    }
    out <- k_op(list(op = "take", axis = a - 1, indices = I(as.numeric(i) - 1)), list(out), call = call)
    if (length(i) == 1) dropped <- c(dropped, a)
  }
  if (drop && length(dropped)) out <- drop_axes(out, dropped - 1L)
  out
}

# x[[i]]: the entry at Python's index i (from 0), as R keras's tensors (Python objects) take
# it: k_shape(x)[[1]] is the size of the second axis. An entry of k_shape() remembers which
# size it is, so that random draws can take it as a dimension.
#' @export
`[[.rustgpu_traced_tensor` <- function(x, i) {
  shape <- unclass(x)$shape
  if (length(shape) != 1 || is.na(shape)) value_error("`[[` picks one entry of a rank-1 tensor of known size (such as k_shape()'s).")
  if (length(i) != 1 || i != round(i) || i < 0 || i >= shape) {
    value_error(sprintf("`[[` takes an index from 0 (as Python's) below %d, got %s.", shape, describe(i)))
  }
  out <- drop_axes(k_op(list(op = "take", axis = 0, indices = I(as.numeric(i))), list(x)), 0L)
  of <- attr(x, "shape_of")
  if (!is.null(of)) attr(out, "size_of") <- c(node = of, axis = i)
  out
}

# `x` without its axes `axes` (from 0), each of size 1.
drop_axes <- function(x, axes) k_reshape(x, shape_of(x)[-(axes + 1)])

# --- tracing a function ------------------------------------------------------

# Calls `f` on symbolic tensors of `input_shapes` (each with the batch axis first, NA) and
# returns the trace's JSON. `single`: the function takes one tensor, not a list.
trace_function <- function(f, input_shapes, extra_args = list(), single = length(input_shapes) == 1, what = "the function",
                           call = rlang::caller_env()) {
  tracer <- new_tracer(input_shapes)
  traced_call(tracer, input_shapes, function(xs) do.call(f, c(if (single) xs else list(xs), extra_args)), what, call = call)
}

# Calls `run` on symbolic tensors of `input_shapes` in `tracer` and returns the trace's JSON.
traced_call <- function(tracer, input_shapes, run, what, call = rlang::caller_env()) {
  xs <- lapply(seq_along(input_shapes), function(i) traced_tensor(tracer, i - 1, input_shapes[[i]]))
  # One handler: a second, for rustgpu's errors, would run inside this one's scope, and the
  # error it re-raised would come back here.
  out <- tryCatch(run(xs), error = function(e) {
    if (inherits(e, "rustgpu_error")) stop(e)
    msg <- conditionMessage(e)
    # `if (tensor > 0)`: R asks for a value the trace does not have.
    if (grepl("condition has length|argument is not interpretable as logical|missing value where TRUE/FALSE", msg)) {
      msg <- paste(msg, "(a tensor's values are not known while the function is traced: use k_switch() instead of `if`)")
    }
    trace_error(sprintf("%s could not be traced: %s", what, msg), call = call)
  })
  if (is_traced(out) && !identical(out$tracer, tracer)) out <- traced_tensor(tracer, as_node(tracer, out, call = call), out$shape)
  if (!is_traced(out)) {
    if (is.numeric(out)) out <- traced_tensor(tracer, as_node(tracer, out, call = call), shape_of(out))
    else trace_error(sprintf("%s must return a tensor, not %s.", what, describe(out)), call = call)
  }
  call_backend(rg_trace_json(tracer$ptr, out$node), call = call)
}

# A loss or metric function as compile() passes it to the core: its name and trace, from
# y_true and y_pred shaped as the model's output.
# `model`: a functional model whose layer outputs the function may read (a loss's, as R
# keras's variational autoencoder's reads its encoder's outputs).
traced_loss_spec <- function(f, name, output_shape, model = NULL, call = rlang::caller_env()) {
  shape <- c(NA, shape_with_na(output_shape))
  tracer <- new_tracer(list(shape, shape))
  tracer$model <- model
  tracer$extras <- list()
  if (!is.null(model)) {
    .tracing$loss <- tracer
    on.exit(.tracing$loss <- NULL)
  }
  json <- traced_call(tracer, list(shape, shape), function(xs) f(xs[[1]], xs[[2]]), sprintf("The function \"%s\"", name), call = call)
  extra_nodes <- vapply(tracer$extras, function(e) as.numeric(e$model_node), numeric(1))
  sprintf("{\"name\": %s, \"trace\": %s, \"extra_nodes\": [%s]}", encode_string(name), json, paste(extra_nodes, collapse = ", "))
}

encode_string <- function(s) paste0("\"", gsub("([\"\\\\])", "\\\\\\1", s), "\"")

# --- lambda layers -----------------------------------------------------------

#' Wrap an R function as a layer
#'
#' R keras's `layer_lambda()`: a layer computing `f(x)` (or `f(list_of_tensors)` when
#' applied to a list of tensors), written with the backend functions (`k_*()`), arithmetic
#' and R's math functions. `f` is traced once, when the layer is applied, on symbolic tensors
#' of the input's shape: what it records runs in the model on every device and replica,
#' without R. Its values are not known while it is traced, so `f` cannot branch on them
#' (use [k_switch()]). A model with a lambda layer saves the trace with the model, and
#' loads without `f`.
#'
#' @param object Model or tensor(s) to apply the layer to, or missing.
#' @param f An R function of the input tensor (or list of tensors).
#' @param output_shape Not needed: the trace knows the output shape (kept in the config).
#' @param mask Not supported (must be `NULL`).
#' @param arguments A named list of further arguments to `f`.
#' @param input_shape,batch_input_shape,batch_size,dtype,name,trainable,weights As for the
#'   other layers.
#' @return A layer (or the model/tensor it was applied to).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(4, input_shape = 3) %>%
#'   layer_lambda(function(x) k_concatenate(list(k_relu(x), k_relu(-x))))
#' dim(predict(model, matrix(runif(6), 2)))
#' @export
layer_lambda <- function(object, f, output_shape = NULL, mask = NULL, arguments = NULL, input_shape = NULL,
                         batch_input_shape = NULL, batch_size = NULL, dtype = NULL, name = NULL, trainable = NULL,
                         weights = NULL) {
  force_model(object)
  if (!is.function(f)) value_error(sprintf("`f` must be an R function of the layer's input, not %s.", describe(f)))
  if (!is.null(mask)) value_error("`mask` is not supported by layer_lambda(): leave it NULL.")
  if (!is.null(arguments) && (!is.list(arguments) || is.null(names(arguments)))) value_error("`arguments` must be a named list.")
  fn <- new.env(parent = emptyenv())
  fn$f <- f
  fn$arguments <- as.list(arguments)
  fn$trace <- function(shapes, call) lambda_trace(fn, shapes, call = call)
  class(fn) <- "rustgpu_traced_fn"
  config <- list(`function` = fn, function_type = "rustgpu_trace", output_shape = output_shape)
  make_layer("Lambda", object, config, input_shape = input_shape_of(input_shape, batch_input_shape), name = name,
               trainable = trainable, weights = weights)
}

# The config fields a traced layer's function gives for inputs of `shapes` (without the
# batch axis): traced once per set of shapes.
traced_fields <- function(fn, shapes, call = rlang::caller_env()) {
  shapes <- lapply(shapes, as.integer)
  if (!is.null(fn$fields) && identical(fn$shapes, shapes)) return(fn$fields)
  fn$fields <- fn$trace(shapes, call)
  fn$shapes <- shapes
  fn$fields
}

lambda_trace <- function(fn, shapes, call = rlang::caller_env()) {
  list(`function` = trace_function(fn$f, lapply(shapes, function(s) c(NA, shape_with_na(s))), extra_args = fn$arguments,
                                   what = "The function of layer_lambda()", call = call))
}

# A layer's config for the core, with its traced function (and what else the trace gives)
# for inputs of `shapes`; NULL shapes: as traced when the layer was applied.
traced_config <- function(config, shapes, call = rlang::caller_env()) {
  fn <- config[["function"]]
  if (!inherits(fn, "rustgpu_traced_fn")) return(config)
  if (is.null(shapes) && is.null(fn$fields)) {
    state_error("A layer written in R needs its input shape: give the model's first layer an `input_shape`.", call = call)
  }
  fields <- if (is.null(shapes)) fn$fields else traced_fields(fn, shapes, call = call)
  config[names(fields)] <- fields
  # A wrapper class's trace gives its weights and losses but no function.
  if (is.null(fields[["function"]])) config[["function"]] <- NULL
  config
}

# The shape (without the batch axis) of a tensor of the functional API.
functional_shape <- function(t) {
  if (t$kind == "input") return(as.integer(t$shape))
  sources <- list()
  # Each tensor once: a graph with merges (DenseNet's concatenations) has exponentially many paths.
  seen <- new.env(parent = emptyenv())
  walk <- function(u) {
    key <- as.character(u$id)
    if (!is.null(seen[[key]])) return()
    seen[[key]] <- TRUE
    if (u$kind == "input") sources[[key]] <<- u else for (v in u$inputs) walk(v)
  }
  walk(t)
  probe <- functional_model(unname(sources), t, name = "shape_probe", register = FALSE)
  as.integer(call_backend(rg_output_shapes(probe$ptr))[[1]])
}

# The seed of a prediction's random draws (lambda layers draw in inference too, as Keras's):
# from R's RNG, which is left alone for models without lambda layers.
inference_seed <- function(model) {
  if ("Lambda" %in% model_info(model)$layer_classes) new_seed() else 0
}

# --- expressions of a model's tensors: k_gradients() and k_function() --------

# Ops on layer outputs that are not layers (see functional_op()) and gradients are traced in
# one graph whose inputs are layer outputs and gradients; each traced tensor keeps its
# recipe, and k_function()'s function computes the recipes its outputs need: layer outputs by
# the model, gradients by the core (src/rust/core/src/gradients.rs), the rest on arrays.
.graph <- new.env(parent = emptyenv())

graph_tracer <- function() {
  if (is.null(.graph$tracer)) {
    tracer <- new_tracer()
    tracer$graph <- TRUE
    tracer$leaves <- list()
    .graph$tracer <- tracer
  }
  .graph$tracer
}

# A layer output read by an expression: an input of the graph.
graph_leaf_node <- function(tracer, x, call = rlang::caller_env()) {
  key <- as.character(x$id)
  if (!is.null(tracer$leaves[[key]])) return(tracer$leaves[[key]])
  node <- call_backend(rg_trace_add_input(tracer$ptr, as.numeric(c(NA, shape_with_na(functional_shape(x))))), call = call)
  tracer$leaves[[key]] <- node
  node
}

is_graph_expr <- function(x) is_traced(x) && isTRUE(x$tracer$graph)

#' Gradients and functions of a model's tensors
#'
#' R keras's `k_gradients()` and `k_function()`, as the gradient-ascent examples use them
#' (deep dream, filter visualization, style transfer, class activation maps):
#' `k_gradients(loss, variables)` gives, for each variable (a model input or a layer's
#' output), a tensor holding the gradient of `loss` (summed if it is not a scalar, as
#' TensorFlow does) there; `k_function(inputs, outputs)` gives an R function that takes a
#' list of arrays, one per input, and returns the outputs' values as arrays. `loss` is
#' computed from layer outputs with backend functions (`k_sum()`, `k_square()`, arithmetic,
#' ...). Models run in inference mode (Keras's learning phase 0: batch normalization uses its
#' moving statistics, dropout passes through); gradients come from rustgpu's backward passes.
#'
#' @param loss A tensor computed from layer outputs.
#' @param variables A tensor (a model input or a layer output), or a list of them.
#' @param inputs A list of model input tensors (from [layer_input()]).
#' @param outputs A tensor or list of tensors: layer outputs, expressions of them, gradients.
#' @param updates,name,... Accepted for compatibility; updates are not supported.
#' @return `k_gradients()`: a list of tensors. `k_function()`: a function of a list of arrays
#'   returning a list of arrays.
#' @examples
#' input <- layer_input(shape = 3)
#' hidden <- input %>% layer_dense(4, activation = "tanh")
#' loss <- k_sum(k_square(hidden))
#' grads <- k_gradients(loss, input)[[1]]
#' f <- k_function(list(input), list(loss, grads))
#' f(list(matrix(0.5, 2, 3)))
#' @export
k_gradients <- function(loss, variables) {
  if (is_tensor(loss)) loss <- record_op(graph_tracer(), list(op = "reshape", shape = I(-1)), list(loss))
  if (!is_graph_expr(loss)) {
    value_error("`loss` must be a tensor computed from a model's tensors (layer outputs and backend functions on them).")
  }
  if (is_tensor(variables)) variables <- list(variables)
  if (!is.list(variables) || !length(variables) || !all(vapply(variables, is_tensor, logical(1)))) {
    value_error("`variables` must be a model input or a layer's output tensor, or a list of them.")
  }
  lapply(variables, function(v) {
    tracer <- graph_tracer()
    shape <- as.numeric(c(NA, shape_with_na(functional_shape(v))))
    node <- call_backend(rg_trace_add_input(tracer$ptr, shape))
    out <- traced_tensor(tracer, node, shape)
    out$recipe <- list(grad = list(loss = loss, wrt = v))
    out
  })
}

#' @rdname k_gradients
#' @export
k_function <- function(inputs, outputs, updates = NULL, name = NULL, ...) {
  if (is_tensor(inputs)) inputs <- list(inputs)
  if (!is.list(inputs) || !length(inputs) || !all(vapply(inputs, function(t) is_tensor(t) && t$kind == "input", logical(1)))) {
    value_error("`inputs` must be a list of model inputs (tensors from layer_input(), or `model$input`).")
  }
  if (length(updates)) value_error("`updates` are not supported by k_function(): leave them NULL.")
  single <- !is.list(outputs) || is_tensor(outputs) || is_traced(outputs)
  if (single) outputs <- list(outputs)
  for (o in outputs) {
    if (!is_tensor(o) && !is_graph_expr(o)) value_error("`outputs` must hold tensors computed from the model's tensors.")
  }
  models <- new.env(parent = emptyenv())
  function(values, ...) {
    if (!is.list(values) || is.data.frame(values)) values <- list(values)
    if (length(values) != length(inputs)) {
      value_error(sprintf("This function takes a list of %d array%s, one per input, not %d.", length(inputs),
                          if (length(inputs) == 1) "" else "s", length(values)))
    }
    env <- new.env(parent = emptyenv())
    env$inputs <- inputs
    env$values <- values
    env$models <- models
    env$computed <- list()
    # Gradients first: each computes its loss's value too, which the outputs often read
    # (deep dream's list(loss, grads)), saving a forward pass.
    for (g in expression_gradients_in(outputs)) expression_value(g, env)
    leaves <- expression_leaves(outputs, computed = env$computed)
    env$leaf_values <- leaf_values(leaves, env)
    out <- lapply(outputs, expression_value, env = env)
    if (single) out[[1]] else out
  }
}

# The layer outputs the expressions read directly (not those only a gradient's loss reads,
# nor those only expressions already `computed` read).
expression_leaves <- function(xs, computed = list()) {
  found <- list()
  seen <- new.env(parent = emptyenv())
  walk <- function(x) {
    if (is_tensor(x)) {
      found[[as.character(x$id)]] <<- x
      return()
    }
    if (!is_graph_expr(x) || is.null(x$recipe$args)) return()
    key <- as.character(x$node)
    if (!is.null(seen[[key]]) || !is.null(computed[[key]])) return()
    seen[[key]] <- TRUE
    for (a in x$recipe$args) walk(a)
  }
  for (x in xs) walk(x)
  found
}

# The gradient tensors the expressions read.
expression_gradients_in <- function(xs) {
  found <- list()
  seen <- new.env(parent = emptyenv())
  walk <- function(x) {
    if (!is_graph_expr(x)) return()
    key <- as.character(x$node)
    if (!is.null(seen[[key]])) return()
    seen[[key]] <- TRUE
    if (!is.null(x$recipe$grad)) found[[length(found) + 1]] <<- x else for (a in x$recipe$args) walk(a)
  }
  for (x in xs) walk(x)
  found
}

# A model from `env$inputs` to `outputs` (made once per function), with the newest weights.
expression_model <- function(outputs, env) {
  key <- paste(vapply(outputs, function(t) as.character(t$id), character(1)), collapse = ",")
  model <- env$models[[key]]
  if (is.null(model)) {
    model <- keras_model(env$inputs, outputs)
    env$models[[key]] <- model
  }
  check_model(model)
  model
}

# The values of layer outputs (the batch axis first), by one pass of the model.
leaf_values <- function(leaves, env) {
  input_ids <- vapply(env$inputs, function(t) as.character(t$id), character(1))
  out <- list()
  for (key in names(leaves)) {
    k <- match(key, input_ids)
    if (!is.na(k)) out[[key]] <- env$values[[k]]
  }
  rest <- leaves[setdiff(names(leaves), names(out))]
  if (length(rest)) {
    # One inference pass over all the inputs at once, by the core (the rows of a layer
    # output need not be the inputs': a model may stack constants onto its input's batch).
    model <- expression_model(unname(rest), env)
    tracer <- new_tracer(lapply(rest, function(l) c(NA, shape_with_na(functional_shape(l)))))
    json <- call_backend(rg_trace_json(tracer$ptr, as.numeric(seq_along(rest) - 1)))
    out[names(rest)] <- call_backend(rg_expression_gradients(model$ptr, json, env$values, integer(), new_seed()))$values
  }
  out
}

expression_value <- function(x, env) {
  if (is_tensor(x)) return(env$leaf_values[[as.character(x$id)]])
  if (!is_graph_expr(x)) return(x)
  key <- as.character(x$node)
  if (!is.null(env$computed[[key]])) return(env$computed[[key]])
  recipe <- x$recipe
  value <- if (!is.null(recipe$grad)) gradient_value(recipe$grad, env) else {
    k_op(recipe$op, lapply(recipe$args, expression_value, env = env))
  }
  env$computed[[key]] <- value
  value
}

# d sum(loss) / d wrt, by the core: the model from the inputs to the loss's layer outputs and
# `wrt`, the loss traced from those outputs.
gradient_value <- function(grad, env) {
  loss <- grad$loss
  leaves <- unname(expression_leaves(list(loss)))
  if (!length(leaves)) value_error("The loss of k_gradients() reads no layer output.")
  reads_gradient <- function(x) is_graph_expr(x) && (!is.null(x$recipe$grad) || any(vapply(x$recipe$args, reads_gradient, logical(1))))
  if (reads_gradient(loss)) value_error("Gradients of gradients are not supported.")
  tracer <- new_tracer(lapply(leaves, function(l) c(NA, shape_with_na(functional_shape(l)))))
  nodes <- list()
  for (i in seq_along(leaves)) nodes[[as.character(leaves[[i]]$id)]] <- traced_tensor(tracer, i - 1, NULL)
  replay <- new.env(parent = emptyenv())
  trace_again <- function(x) {
    if (is_tensor(x)) return(nodes[[as.character(x$id)]])
    if (!is_graph_expr(x)) return(x)
    key <- as.character(x$node)
    if (is.null(replay[[key]])) replay[[key]] <- record_op(tracer, x$recipe$op, lapply(x$recipe$args, trace_again))
    replay[[key]]
  }
  out <- trace_again(loss)
  wrt <- grad$wrt
  input_ids <- vapply(env$inputs, function(t) as.character(t$id), character(1))
  k <- match(as.character(wrt$id), input_ids)
  outputs <- leaves
  if (is.na(k)) {
    # A layer output: the model gives it too (an input of the trace that the loss ignores).
    outputs <- c(leaves, list(wrt))
    call_backend(rg_trace_add_input(tracer$ptr, as.numeric(c(NA, shape_with_na(functional_shape(wrt))))))
  }
  json <- call_backend(rg_trace_json(tracer$ptr, out$node))
  model <- expression_model(outputs, env)
  code <- if (!is.na(k)) -k else unname(model_field(model, "tensor_nodes")[as.character(wrt$id)])
  if (is.null(code) || is.na(code)) value_error("k_gradients(): this variable is not a tensor of the model.")
  res <- call_backend(rg_expression_gradients(model$ptr, json, env$values, as.integer(code), new_seed()))
  env$computed[[as.character(loss$node)]] <- res$values[[1]]
  res$gradients[[1]]
}
