# R keras's backend functions, k_*(): each records an op on symbolic tensors (while a lambda
# layer's function or a custom loss or metric is traced) or computes at once on arrays.
# Definitions follow tf.keras's backend; axes count from 1 as in R keras.

unary <- function(f) function(x) k_op(list(op = "unary", f = f), list(x), call = rlang::caller_env())

binary <- function(f) function(x, y) k_op(list(op = "binary", f = f), list(x, y), call = rlang::caller_env())

# Arithmetic that broadcasts as Keras's does on arrays too (R's operators would not).
k_add <- binary("add")
k_sub <- binary("sub")
k_mul <- binary("mul")
k_div <- binary("div")

#' Element-wise backend functions
#'
#' R keras's element-wise backend functions. On the symbolic tensors of a function being
#' traced (a [layer_lambda()] function, a custom loss or metric) they record the operation;
#' on arrays they compute at once. `k_clip()` and `k_relu(max_value = )` clip;
#' `k_relu(alpha = )` is leaky.
#'
#' @param x,y Tensors or arrays (numbers broadcast).
#' @param a Exponent.
#' @param min_value,max_value Bounds.
#' @param alpha Slope for negative values (`k_relu()`), scale of the negative part (`k_elu()`).
#' @param threshold Values below it are set to 0 (`k_relu()`).
#' @param axis Axis (from 1; -1 the last).
#' @param condition,then_expression,else_expression `k_switch()`: where `condition` is
#'   non-zero, `then_expression`, else `else_expression`.
#' @param dtype Ignored: tensors hold float32 values (Keras's `floatx`).
#' @param name Ignored (the name of TensorFlow's op).
#' @return A tensor (an array when computed at once).
#' @examples
#' k_square(c(1, 2, 3))
#' k_clip(c(-2, 0.5, 3), 0, 1)
#' k_softmax(matrix(c(1, 2, 3, 4), 2))
#' @name k_elementwise
NULL

#' @rdname k_elementwise
#' @export
k_abs <- unary("abs")
#' @rdname k_elementwise
#' @export
k_sqrt <- unary("sqrt")
#' @rdname k_elementwise
#' @export
k_exp <- unary("exp")
#' @rdname k_elementwise
#' @export
k_log <- unary("log")
#' @rdname k_elementwise
#' @export
k_sign <- unary("sign")
#' @rdname k_elementwise
#' @export
k_round <- unary("round")
#' @rdname k_elementwise
#' @export
k_sigmoid <- unary("sigmoid")
#' @rdname k_elementwise
#' @export
k_tanh <- unary("tanh")
#' @rdname k_elementwise
#' @export
k_softplus <- unary("softplus")

#' @rdname k_elementwise
#' @export
k_square <- function(x) k_pow(x, 2)

#' @rdname k_elementwise
#' @export
k_pow <- function(x, a) {
  if (!is_traced(a) && is.numeric(a) && length(a) == 1) return(k_op(list(op = "pow_scalar", exponent = a), list(x)))
  k_op(list(op = "binary", f = "pow"), list(x, a))
}

#' @rdname k_elementwise
#' @export
k_clip <- function(x, min_value = NULL, max_value = NULL) {
  if (!is.null(min_value)) check_number(min_value, "min_value")
  if (!is.null(max_value)) check_number(max_value, "max_value")
  lo <- if (is.null(min_value)) -3.4e38 else max(min_value, -3.4e38)
  hi <- if (is.null(max_value)) 3.4e38 else min(max(max_value, lo), 3.4e38)
  k_op(list(op = "clip", min = lo, max = hi), list(x))
}

#' @rdname k_elementwise
#' @export
k_softsign <- function(x) x / (1 + k_abs(x))

#' @rdname k_elementwise
#' @export
k_hard_sigmoid <- function(x) k_clip(0.2 * x + 0.5, 0, 1)

#' @rdname k_elementwise
#' @export
k_relu <- function(x, alpha = 0, max_value = NULL, threshold = 0) {
  out <- if (threshold != 0) x * k_greater(x, threshold) else k_op(list(op = "unary", f = "relu"), list(x))
  if (alpha != 0) out <- out - alpha * k_op(list(op = "unary", f = "relu"), list(-x))
  if (!is.null(max_value)) out <- k_minimum(out, max_value)
  out
}

#' @rdname k_elementwise
#' @export
k_elu <- function(x, alpha = 1) k_op(list(op = "elu", alpha = alpha), list(x))

#' @rdname k_elementwise
#' @export
k_softmax <- function(x, axis = -1) k_op(list(op = "softmax", axis = core_axis(axis, rank_of(x))), list(x))

#' @rdname k_elementwise
#' @export
k_maximum <- binary("maximum")
#' @rdname k_elementwise
#' @export
k_minimum <- binary("minimum")
#' @rdname k_elementwise
#' @export
k_equal <- binary("equal")
#' @rdname k_elementwise
#' @export
k_not_equal <- binary("not_equal")
#' @rdname k_elementwise
#' @export
k_greater <- binary("greater")
#' @rdname k_elementwise
#' @export
k_greater_equal <- binary("greater_equal")
#' @rdname k_elementwise
#' @export
k_less <- binary("less")
#' @rdname k_elementwise
#' @export
k_less_equal <- binary("less_equal")

#' @rdname k_elementwise
#' @export
k_switch <- function(condition, then_expression, else_expression) {
  k_op(list(op = "where"), list(condition, then_expression, else_expression))
}

#' @rdname k_elementwise
#' @export
k_cast <- function(x, dtype) x

#' @rdname k_elementwise
#' @export
k_stop_gradient <- function(x) k_op(list(op = "stop_gradient"), list(x))

#' Reductions
#'
#' Sums, means, extremes and other reductions over `axis` (from 1, `-1` the last; `NULL`:
#' every axis), keeping the reduced axes with size 1 when `keepdims`. `k_any()`/`k_all()`
#' give 1 where any/all values are non-zero; `k_argmax()` gives indices from 0, as Keras's.
#'
#' @param x A tensor or array.
#' @param axis Axis or axes.
#' @param keepdims Whether to keep the reduced axes.
#' @return A tensor (an array when computed at once).
#' @examples
#' x <- matrix(1:6, 2)
#' k_sum(x, axis = 2)
#' k_mean(x, axis = 1, keepdims = TRUE)
#' k_logsumexp(x)
#' @name k_reductions
NULL

reduce <- function(f, x, axis, keepdims) {
  call <- rlang::caller_env(2)
  check_bool(keepdims, "keepdims", call = call)
  axes <- core_axes(axis, rank_of(x), call = call)
  if (!length(axes)) return(x)
  k_op(list(op = "reduce", f = f, axes = I(as.numeric(axes)), keepdims = keepdims), list(x), call = call)
}

#' @rdname k_reductions
#' @export
k_sum <- function(x, axis = NULL, keepdims = FALSE) reduce("sum", x, axis, keepdims)
#' @rdname k_reductions
#' @export
k_mean <- function(x, axis = NULL, keepdims = FALSE) reduce("mean", x, axis, keepdims)
#' @rdname k_reductions
#' @export
k_max <- function(x, axis = NULL, keepdims = FALSE) reduce("max", x, axis, keepdims)
#' @rdname k_reductions
#' @export
k_min <- function(x, axis = NULL, keepdims = FALSE) reduce("min", x, axis, keepdims)

#' @rdname k_reductions
#' @export
k_prod <- function(x, axis = NULL, keepdims = FALSE) {
  # One axis at a time, last first, so the remaining axes keep their numbers.
  axes <- rev(core_axes(axis, rank_of(x)))
  for (a in axes) x <- k_op(list(op = "reduce", f = "prod", axes = I(as.numeric(a)), keepdims = keepdims), list(x))
  x
}

#' @rdname k_reductions
#' @export
k_var <- function(x, axis = NULL, keepdims = FALSE) {
  centered <- k_sub(x, k_mean(x, axis = axis, keepdims = TRUE))
  k_mean(k_square(centered), axis = axis, keepdims = keepdims)
}

#' @rdname k_reductions
#' @export
k_std <- function(x, axis = NULL, keepdims = FALSE) k_sqrt(k_var(x, axis = axis, keepdims = keepdims))

#' @rdname k_reductions
#' @export
k_logsumexp <- function(x, axis = NULL, keepdims = FALSE) {
  top <- k_stop_gradient(k_max(x, axis = axis, keepdims = TRUE))
  out <- k_add(k_log(k_sum(k_exp(k_sub(x, top)), axis = axis, keepdims = TRUE)), top)
  if (keepdims) out else reduce_drop(out, x, axis)
}

# `out`, reduced with keepdims = TRUE over `axis` of `x`, without those axes.
reduce_drop <- function(out, x, axis) {
  axes <- core_axes(axis, rank_of(x))
  k_reshape(out, shape_of(x)[-(axes + 1)])
}

#' @rdname k_reductions
#' @export
k_any <- function(x, axis = NULL, keepdims = FALSE) k_max(k_not_equal(x, 0), axis = axis, keepdims = keepdims)
#' @rdname k_reductions
#' @export
k_all <- function(x, axis = NULL, keepdims = FALSE) k_min(k_not_equal(x, 0), axis = axis, keepdims = keepdims)

#' @rdname k_reductions
#' @export
k_argmax <- function(x, axis = -1) k_op(list(op = "arg_max", axis = core_axis(axis, rank_of(x))), list(x))
#' @rdname k_reductions
#' @export
k_argmin <- function(x, axis = -1) k_argmax(-x, axis = axis)

#' Shapes, products and building tensors
#'
#' R keras's backend functions that reshape, combine and make tensors. Axes count from 1
#' (`-1` the last), shapes may use `-1` (or `NA`) for the one size to infer. `k_shape()`
#' gives a tensor of `x`'s sizes whose entries (`k_shape(x)[[i]]`, Python's index from 0, as
#' R keras) can size a random draw; `k_int_shape()` the known sizes (`NULL` for the batch).
#'
#' @param x,y,reference Tensors or arrays.
#' @param axes `k_batch_dot()`: the axes to contract (from 1).
#' @param shape A shape.
#' @param axis Axis (from 1; -1 the last).
#' @param pattern A permutation of the axes (from 1).
#' @param tensors A list of tensors.
#' @param indices Indices (from 1) into the first axis of `reference`; `k_one_hot()`: class
#'   ids from 0.
#' @param n,rep Repeat counts.
#' @param num_classes Number of classes.
#' @param value Values of the constant.
#' @param dtype,name,constraint Ignored (float32 values, names are the layer's).
#' @return A tensor (an array when computed at once); `k_int_shape()` a list, `k_ndim()` a number.
#' @examples
#' k_dot(matrix(1:6, 2), matrix(1:3, 3))
#' k_concatenate(list(matrix(1, 2, 2), matrix(0, 2, 1)))
#' k_one_hot(c(0, 2), 3)
#' @name k_shapes
NULL

#' @rdname k_shapes
#' @export
k_dot <- function(x, y) k_op(list(op = "dot"), list(x, y))

#' @rdname k_shapes
#' @export
k_batch_dot <- function(x, y, axes = NULL) {
  rx <- rank_of(x)
  ry <- rank_of(y)
  if (is.null(axes)) axes <- c(rx, ry - 1)
  if (length(axes) == 1) axes <- c(axes, axes)
  a <- core_axis(axes[[1]], rx)
  b <- core_axis(axes[[2]], ry)
  if (rx == 2 && ry == 2 && a == 1 && b == 1) return(k_sum(x * y, axis = 2, keepdims = TRUE))
  if (rx != 3 || ry != 3) value_error("k_batch_dot() takes two matrices (batch, n) or two rank-3 tensors here.")
  if (a == 1) x <- k_permute_dimensions(x, c(1, 3, 2))
  if (b == 2) y <- k_permute_dimensions(y, c(1, 3, 2))
  k_dot(x, y)
}

#' @rdname k_shapes
#' @export
k_transpose <- function(x) k_permute_dimensions(x, rev(seq_len(rank_of(x))))

#' @rdname k_shapes
#' @export
k_permute_dimensions <- function(x, pattern) {
  perm <- vapply(as.list(pattern), core_axis, integer(1), rank = rank_of(x))
  k_op(list(op = "permute", perm = I(as.numeric(perm))), list(x))
}

#' @rdname k_shapes
#' @export
k_reshape <- function(x, shape) {
  shape <- unlist(lapply(as.list(shape), function(d) if (is.null(d) || is.na(d)) -1 else d))
  k_op(list(op = "reshape", shape = I(as.numeric(shape))), list(x))
}

#' @rdname k_shapes
#' @export
k_flatten <- function(x) k_reshape(x, -1)

#' @rdname k_shapes
#' @export
k_batch_flatten <- function(x) {
  rest <- shape_of(x)[-1]
  if (anyNA(rest)) value_error("k_batch_flatten() needs every size but the batch's known.")
  k_reshape(x, c(-1, prod(rest)))
}

#' @rdname k_shapes
#' @export
k_expand_dims <- function(x, axis = -1) {
  shape <- shape_of(x)
  a <- core_axis(axis, length(shape), new_axis = TRUE)
  k_reshape(x, append(shape, 1, after = a))
}

#' @rdname k_shapes
#' @export
k_squeeze <- function(x, axis) {
  shape <- shape_of(x)
  a <- core_axis(axis, length(shape))
  if (!identical(as.numeric(shape[a + 1]), 1)) value_error(sprintf("k_squeeze(): axis %s has size %s, not 1.", axis, shape[a + 1]))
  k_reshape(x, shape[-(a + 1)])
}

#' @rdname k_shapes
#' @export
k_concatenate <- function(tensors, axis = -1) {
  if (!is.list(tensors) || !length(tensors)) value_error("`tensors` must be a list of tensors.")
  a <- core_axis(axis, rank_of(tensors[[1]]))
  k_op(list(op = "concat", axis = a), tensors)
}

#' @rdname k_shapes
#' @export
k_stack <- function(x, axis = 1) {
  if (!is.list(x) || !length(x)) value_error("`x` must be a list of tensors.")
  a <- core_axis(axis, rank_of(x[[1]]), new_axis = TRUE)
  expanded <- lapply(x, function(t) k_reshape(t, append(shape_of(t), 1, after = a)))
  k_op(list(op = "concat", axis = a), expanded)
}

#' @rdname k_shapes
#' @export
k_gather <- function(reference, indices) {
  if (is_traced(indices)) trace_error("k_gather() takes fixed indices (R numbers) here, not a tensor.")
  k_op(list(op = "take", axis = 0, indices = I(as.numeric(indices) - 1)), list(reference))
}

#' @rdname k_shapes
#' @export
k_tile <- function(x, n) {
  n <- as.numeric(n)
  if (length(n) != rank_of(x)) value_error(sprintf("`n` must give one repeat count per axis (%d).", rank_of(x)))
  k_op(list(op = "tile", reps = I(n)), list(x))
}

#' @rdname k_shapes
#' @export
k_repeat_elements <- function(x, rep, axis) {
  shape <- shape_of(x)
  a <- core_axis(axis, length(shape))
  if (is.na(shape[a + 1])) value_error("k_repeat_elements() repeats along an axis of known size.")
  k_op(list(op = "take", axis = a, indices = I(rep(seq_len(shape[a + 1]) - 1, each = rep))), list(x))
}

#' @rdname k_shapes
#' @export
k_one_hot <- function(indices, num_classes) {
  check_count(num_classes, "num_classes")
  k_op(list(op = "one_hot", classes = num_classes), list(indices))
}

#' @rdname k_shapes
#' @export
k_l2_normalize <- function(x, axis = NULL) {
  k_div(x, k_sqrt(k_maximum(k_sum(k_square(x), axis = axis, keepdims = TRUE), 1e-12)))
}

#' @rdname k_shapes
#' @export
k_zeros_like <- function(x, dtype = NULL, name = NULL) x * 0

#' @rdname k_shapes
#' @export
k_ones_like <- function(x, dtype = NULL, name = NULL) x * 0 + 1

#' @rdname k_shapes
#' @export
k_constant <- function(value, dtype = NULL, shape = NULL, name = NULL) {
  if (!is.null(shape)) value <- array(rep_len(as.numeric(value), prod(shape)), dim = shape)
  value
}

#' @rdname k_shapes
#' @export
k_variable <- function(value, dtype = NULL, name = NULL, constraint = NULL) value

#' @rdname k_shapes
#' @export
k_shape <- function(x) {
  out <- k_op(list(op = "shape_of"), list(x))
  if (is_traced(out)) attr(out, "shape_of") <- x$node
  out
}

#' @rdname k_shapes
#' @export
k_int_shape <- function(x) lapply(shape_of(x), function(d) if (is.na(d)) NULL else as.integer(d))

#' @rdname k_shapes
#' @export
k_ndim <- function(x) rank_of(x)

#' Random draws, dropout, constants and evaluation
#'
#' `k_random_normal()` and `k_random_uniform()` draw a tensor of `shape`, whose entries may
#' be sizes from [k_shape()] (the batch's, known only when the model runs); in a model they
#' draw anew at each step from the step's seed (so `set.seed()` before `fit()` reproduces
#' them). `k_dropout()` zeroes values with probability `level` and scales the others.
#' `k_eval()` gives an array's (or a computed tensor's) values.
#'
#' @param shape A shape: numbers, sizes from `k_shape(x)[[i]]`, or `k_shape(x)` itself.
#' @param mean,stddev Normal parameters.
#' @param minval,maxval Uniform bounds.
#' @param x A tensor.
#' @param level Fraction of values to drop.
#' @param noise_shape Not supported (must be `NULL`).
#' @param dtype Ignored (float32).
#' @param seed Ignored: draws come from the step's seed, from R's RNG.
#' @return A tensor (an array when computed at once); `k_epsilon()` Keras's fuzz factor
#'   (1e-7), `k_floatx()` "float32".
#' @examples
#' dim(k_random_normal(c(2, 3)))
#' k_epsilon()
#' @name k_random
NULL

# A random draw's shape as the core's dimensions, and the trace its sizes come from.
random_shape <- function(shape, call = rlang::caller_env()) {
  if (is_traced(shape) && !is.null(attr(shape, "shape_of"))) {
    n <- shape$shape
    return(list(tracer = shape$tracer, dims = lapply(seq_len(n) - 1, function(a) list(of = list(node = attr(shape, "shape_of"), axis = a)))))
  }
  tracer <- NULL
  dims <- lapply(as.list(shape), function(d) {
    of <- if (is_traced(d)) attr(d, "size_of") else NULL
    if (!is.null(of)) {
      tracer <<- d$tracer
      return(list(of = list(node = unname(of[["node"]]), axis = unname(of[["axis"]]))))
    }
    if (!is.numeric(d) || length(d) != 1 || is.na(d) || d < 0 || d != round(d)) {
      value_error("A random draw's `shape` takes whole sizes or entries of k_shape().", call = call)
    }
    list(fixed = d)
  })
  list(tracer = tracer, dims = dims)
}

random_draw <- function(distribution, shape, a, b, call = rlang::caller_env()) {
  s <- random_shape(shape, call = call)
  op <- list(op = "random", distribution = distribution, shape = s$dims, a = a, b = b)
  tracer <- s$tracer
  eager <- is.null(tracer)
  if (eager) tracer <- new_tracer()
  res <- call_backend(rg_trace_record(tracer$ptr, op, numeric(0)), call = call)
  out <- traced_tensor(tracer, res$node, res$shape)
  if (eager) eager_value(out, call = call) else out
}

#' @rdname k_random
#' @export
k_random_normal <- function(shape, mean = 0, stddev = 1, dtype = NULL, seed = NULL) {
  random_draw("normal", shape, mean, stddev)
}

#' @rdname k_random
#' @export
k_random_uniform <- function(shape, minval = 0, maxval = 1, dtype = NULL, seed = NULL) {
  random_draw("uniform", shape, minval, maxval)
}

#' @rdname k_random
#' @export
k_dropout <- function(x, level, noise_shape = NULL, seed = NULL) {
  if (!is.null(noise_shape)) value_error("k_dropout(noise_shape = ) is not supported: leave it NULL.")
  check_number(level, "level", min = 0)
  if (level >= 1) value_error("`level` must be below 1.")
  k_op(list(op = "dropout", rate = level), list(x))
}

#' @rdname k_random
#' @export
k_eval <- function(x) {
  if (is_traced(x)) trace_error("k_eval() reads values, which a tensor being traced does not have yet.")
  x
}

#' @rdname k_random
#' @export
k_get_value <- k_eval

#' @rdname k_random
#' @export
k_epsilon <- function() 1e-7

#' @rdname k_random
#' @export
k_floatx <- function() "float32"

#' Crossentropies on tensors
#'
#' tf.keras's backend crossentropies: per sample (and per position), from probabilities
#' clipped to `[k_epsilon(), 1 - k_epsilon()]` or from logits.
#'
#' @param target Targets (`k_sparse_categorical_crossentropy()`: class ids from 0).
#' @param output Predictions.
#' @param from_logits Whether `output` holds logits.
#' @param axis The class axis.
#' @return A tensor (an array when computed at once).
#' @examples
#' k_categorical_crossentropy(rbind(c(0, 1)), rbind(c(0.3, 0.7)))
#' @name k_crossentropy
NULL

#' @rdname k_crossentropy
#' @export
k_categorical_crossentropy <- function(target, output, from_logits = FALSE, axis = -1) {
  if (from_logits) {
    log_p <- k_sub(output, k_logsumexp(output, axis = axis, keepdims = TRUE))
    return(-k_sum(k_mul(target, log_p), axis = axis))
  }
  output <- k_div(output, k_sum(output, axis = axis, keepdims = TRUE))
  output <- k_clip(output, k_epsilon(), 1 - k_epsilon())
  -k_sum(k_mul(target, k_log(output)), axis = axis)
}

#' @rdname k_crossentropy
#' @export
k_sparse_categorical_crossentropy <- function(target, output, from_logits = FALSE, axis = -1) {
  shape <- shape_of(output)
  ts <- shape_of(target)
  if (length(ts) == length(shape)) target <- k_reshape(target, ts[-length(ts)])
  k_categorical_crossentropy(k_one_hot(target, shape[length(shape)]), output, from_logits = from_logits, axis = axis)
}

#' @rdname k_crossentropy
#' @export
k_binary_crossentropy <- function(target, output, from_logits = FALSE) {
  if (from_logits) {
    return(k_relu(output) - output * target + k_softplus(-k_abs(output)))
  }
  output <- k_clip(output, k_epsilon(), 1 - k_epsilon())
  -(target * k_log(output + k_epsilon()) + (1 - target) * k_log(1 - output + k_epsilon()))
}

#' The backend as an object
#'
#' R keras's `backend()`: an object whose members are the backend functions under Keras's
#' names (`K <- backend(); K$mean(x)` is `k_mean(x)`).
#'
#' @param convert Ignored (R keras's conversion of Python objects).
#' @return An environment of functions.
#' @examples
#' K <- backend()
#' K$square(3)
#' @export
backend <- function(convert = TRUE) {
  ns <- asNamespace("rustgpu")
  K <- new.env(parent = emptyenv())
  for (name in grep("^k_", getNamespaceExports(ns), value = TRUE)) {
    assign(sub("^k_", "", name), get(name, envir = ns), envir = K)
  }
  K
}

#' Backend settings
#'
#' R keras's backend settings, for scripts that set them: rustgpu computes in float32, so
#' `k_set_floatx("float32")` is accepted and any other value is a classed error saying so.
#' `k_set_image_data_format()` sets the `data_format` that spatial layers (convolutions,
#' pooling, up-sampling, padding, cropping, flatten) take when theirs is `NULL`:
#' "channels_last" (Keras's default) or "channels_first" (for this R session; the option
#' `rustgpu.image_data_format`). `use_implementation()` and `use_backend()` choose R keras's Python
#' implementation and backend; rustgpu is neither, so they accept R keras's values and change
#' nothing.
#'
#' @param floatx,data_format The setting.
#' @param implementation,backend R keras's choices.
#' @return The setting (`k_image_data_format()`), or the argument, invisibly.
#' @examples
#' k_image_data_format()
#' k_set_image_data_format("channels_last")
#' @name backend_settings
NULL

#' @rdname backend_settings
#' @export
k_image_data_format <- function() getOption("rustgpu.image_data_format", "channels_last")

#' @rdname backend_settings
#' @export
k_set_image_data_format <- function(data_format) {
  check_choice(data_format, "data_format", c("channels_last", "channels_first"))
  options(rustgpu.image_data_format = data_format)
  invisible(data_format)
}

#' @rdname backend_settings
#' @export
k_set_floatx <- function(floatx) {
  if (!identical(floatx, "float32")) value_error(sprintf("floatx \"%s\" is not supported: rustgpu computes in float32.", paste(floatx, collapse = ", ")))
  invisible(floatx)
}

#' @rdname backend_settings
#' @export
use_implementation <- function(implementation = c("keras", "tensorflow")) {
  invisible(match_choice(implementation, c("keras", "tensorflow"), "implementation"))
}

#' @rdname backend_settings
#' @export
use_backend <- function(backend = c("tensorflow", "cntk", "theano", "plaidml")) {
  invisible(match_choice(backend, c("tensorflow", "cntk", "theano", "plaidml"), "backend"))
}

match_choice <- function(value, choices, arg, call = rlang::caller_env()) {
  if (identical(value, choices)) return(choices[[1]])
  if (!is.character(value) || length(value) != 1 || !value %in% choices) {
    value_error(sprintf("`%s` must be one of %s, not %s.", arg, paste0("\"", choices, "\"", collapse = ", "), describe(value)), call = call)
  }
  value
}

#' Constant tensors, placeholders and type tests
#'
#' `k_zeros()`, `k_ones()` and `k_eye()` make arrays of a shape (Keras's variables hold
#' values; here arrays do). `k_placeholder()` is an input of a functional model, as
#' [layer_input()] makes: `shape` holds the batch axis first (any value, `NULL` or `NA`: the
#' batch size is free); other sizes given as `NULL` or `NA` vary with each batch. `k_is_tensor()` and
#' `k_is_keras_tensor()` tell symbolic tensors from arrays; `k_is_placeholder()` tells
#' model inputs.
#'
#' @param shape Sizes of the axes.
#' @param ndim Number of axes, the batch axis included, when `shape` is not given: every
#'   size varies.
#' @param size Rows (and columns) of the identity matrix.
#' @param dtype,name,sparse Keras's arguments: values are float32; `name` names a
#'   placeholder's input; sparse tensors are not supported.
#' @param x An object.
#' @return An array, a tensor, or `TRUE`/`FALSE`.
#' @examples
#' k_zeros(c(2, 3))
#' k_eye(3)
#' input <- k_placeholder(shape = list(NULL, 4))
#' k_is_placeholder(input)
#' @name k_constants
NULL

#' @rdname k_constants
#' @export
k_zeros <- function(shape, dtype = NULL, name = NULL) k_constant(0, shape = check_array_shape(shape))

#' @rdname k_constants
#' @export
k_ones <- function(shape, dtype = NULL, name = NULL) k_constant(1, shape = check_array_shape(shape))

#' @rdname k_constants
#' @export
k_eye <- function(size, dtype = NULL, name = NULL) {
  size <- check_array_shape(size, "size")
  if (length(size) == 1) size <- c(size, size)
  if (length(size) != 2) value_error(sprintf("`size` must be one or two sizes, not %d.", length(size)))
  diag(1, size[[1]], size[[2]])
}

check_array_shape <- function(shape, arg = "shape", call = rlang::caller_env()) {
  if (is.list(shape)) shape <- unlist(lapply(shape, function(d) if (is.null(d)) NA else d))
  if (!is.numeric(shape) || length(shape) == 0 || anyNA(shape) || any(shape < 0) || any(shape != round(shape))) {
    value_error(sprintf("`%s` must be whole sizes >= 0, not %s.", arg, describe(shape)), call = call)
  }
  total <- prod(shape)
  if (total > 2^31 - 1) value_error(sprintf("`%s` asks for %.0f values, more than an R array holds.", arg, total), call = call)
  as.integer(shape)
}

#' @rdname k_constants
#' @export
k_placeholder <- function(shape = NULL, ndim = NULL, dtype = NULL, sparse = FALSE, name = NULL) {
  if (isTRUE(sparse)) value_error("Sparse placeholders are not supported: rustgpu's tensors are dense.")
  if (is.null(shape)) {
    if (is.null(ndim)) value_error("Give `shape` (the batch axis first) or `ndim`.")
    check_count(ndim, "ndim", min = 2)
    # Every size after the batch axis varies, as Keras's placeholder of `ndim` axes.
    shape <- c(list(NULL), rep(list(NULL), ndim - 1))
  }
  shape <- as.list(shape)
  if (length(shape) < 2) value_error("`shape` must hold the batch axis and at least one more (e.g. list(NULL, 4)).")
  layer_input(shape = shape[-1], name = name, dtype = if (is.null(dtype)) "float32" else dtype)
}

#' @rdname k_constants
#' @export
k_is_tensor <- function(x) is_tensor(x) || is_traced(x)

#' @rdname k_constants
#' @export
k_is_keras_tensor <- function(x) is_tensor(x)

#' @rdname k_constants
#' @export
k_is_placeholder <- function(x) is_tensor(x) && identical(x$kind, "input")

#' @rdname k_elementwise
#' @export
k_sin <- unary("sin")

#' @rdname k_elementwise
#' @export
k_cos <- unary("cos")

#' @rdname k_elementwise
#' @export
k_identity <- function(x, name = NULL) x

#' The learning phase and the session
#'
#' Keras's learning phase says whether layers such as dropout and batch normalization act
#' as in training (1) or in inference (0). rustgpu decides it per call, as tf.keras 2 does:
#' `fit()` and `train_on_batch()` train, `predict()` and `evaluate()` infer, whatever the
#' setting; `k_set_learning_phase()` records the value that `k_learning_phase()` reports.
#' `k_clear_session()` starts layer and model names afresh ("dense", "dense_1", ...
#' again). `use_session_with_seed()` seeds R's generator, from which every layer's initial
#' weights and each `fit()`'s shuffling and dropout draw, so that a script gives the same
#' results each time it runs.
#'
#' @param value 0 (inference) or 1 (training).
#' @param seed A whole number.
#' @param disable_gpu,disable_parallel_cpu R keras's arguments: results here do not depend
#'   on the device or on threads (each step sums in a fixed order), so they change nothing.
#' @param quiet `FALSE` prints what was done.
#' @return `k_learning_phase()`: 0 or 1; the others return their argument, invisibly.
#' @examples
#' k_set_learning_phase(0)
#' k_learning_phase()
#' use_session_with_seed(42)
#' @name learning_phase
NULL

#' @rdname learning_phase
#' @export
k_learning_phase <- function() getOption("rustgpu.learning_phase", 0L)

#' @rdname learning_phase
#' @export
k_set_learning_phase <- function(value) {
  if (!(identical(as.numeric(value), 0) || identical(as.numeric(value), 1))) {
    value_error(sprintf("`value` must be 0 (inference) or 1 (training), not %s.", describe(value)))
  }
  options(rustgpu.learning_phase = as.integer(value))
  invisible(value)
}

#' @rdname learning_phase
#' @export
k_clear_session <- function() {
  rg_reset_unique_names()
  .graph$tracer <- NULL
  invisible(NULL)
}

#' @rdname learning_phase
#' @export
use_session_with_seed <- function(seed, disable_gpu = TRUE, disable_parallel_cpu = TRUE, quiet = FALSE) {
  check_count(seed, "seed", min = 0)
  check_bool(disable_gpu, "disable_gpu")
  check_bool(disable_parallel_cpu, "disable_parallel_cpu")
  check_bool(quiet, "quiet")
  k_clear_session()
  set.seed(seed)
  if (!quiet) message(sprintf("Set session seed to %d", as.integer(seed)))
  invisible(seed)
}

#' Sequences of values along an axis
#'
#' `k_arange()`: numbers from `start` up to (not including) `stop` by `step`, as Keras's
#' (`k_arange(5)` is 0 to 4). `k_repeat()`: a 2-d tensor `(batch, features)` repeated `n`
#' times along a new second axis, `(batch, n, features)`. `k_reverse()`: the values in
#' reverse order along `axes` (on symbolic tensors too; the batch axis cannot be reversed
#' there, its size being unknown). `k_cumsum()` and `k_cumprod()`: running sums and products
#' along `axis`, on arrays.
#'
#' @param start,stop,step The range (`stop = NULL`: from 0 to `start`).
#' @param dtype "int32" (whole numbers) or a float type.
#' @param x A tensor or an array.
#' @param n How many times.
#' @param axes,axis Axes (from 1; -1 the last).
#' @return An array, or a tensor of a function being traced.
#' @examples
#' k_arange(5)
#' k_repeat(matrix(1:6, 2), 3)[1, , ]
#' k_reverse(matrix(1:6, 2), 2)
#' k_cumsum(matrix(1:6, 2), axis = 2)
#' @name k_sequences
NULL

#' @rdname k_sequences
#' @export
k_arange <- function(start, stop = NULL, step = 1, dtype = "int32") {
  if (is.null(stop)) {
    stop <- start
    start <- 0
  }
  check_number(start, "start")
  check_number(stop, "stop")
  check_number(step, "step")
  if (step == 0) value_error("`step` must not be 0.")
  count <- max(0, ceiling((stop - start) / step))
  if (count > 2^31 - 1) value_error(sprintf("k_arange() would make %.0f values, more than an R array holds.", count))
  out <- start + step * seq_len(count) - step
  array(if (grepl("^u?int", dtype)) as.integer(out) else out, dim = length(out))
}

#' @rdname k_sequences
#' @export
k_repeat <- function(x, n) {
  check_count(n, "n")
  if (rank_of(x) != 2) value_error(sprintf("k_repeat() takes a 2-d tensor (batch, features), not one of %d axes.", rank_of(x)))
  k_tile(k_expand_dims(x, 2), c(1, n, 1))
}

#' @rdname k_sequences
#' @export
k_reverse <- function(x, axes) {
  shape <- shape_of(x)
  for (axis in axes) {
    a <- core_axis(axis, length(shape))
    size <- shape[[a + 1]]
    if (is.na(size)) value_error("k_reverse() cannot reverse the batch axis of a symbolic tensor: its size is not known until the model runs.")
    x <- k_op(list(op = "take", axis = a, indices = I(as.numeric(rev(seq_len(size) - 1)))), list(x))
  }
  x
}

#' @rdname k_sequences
#' @export
k_cumsum <- function(x, axis = 1) cumulate(x, axis, cumsum)

#' @rdname k_sequences
#' @export
k_cumprod <- function(x, axis = 1) cumulate(x, axis, cumprod)

cumulate <- function(x, axis, f, call = rlang::caller_env()) {
  if (is_traced(x) || is_tensor(x)) {
    trace_error("k_cumsum() and k_cumprod() compute on arrays; on symbolic tensors they are not supported yet.", call = call)
  }
  if (!is.numeric(x)) value_error(sprintf("`x` must be a numeric array, not %s.", describe(x)), call = call)
  dims <- dim(x)
  if (is.null(dims)) return(f(x))
  a <- core_axis(axis, length(dims), call = call) + 1L
  out <- apply(x, seq_along(dims)[-a], f)
  if (length(dims) == 1) return(array(out, dims))
  aperm(array(out, c(dims[a], dims[-a])), order(c(a, seq_along(dims)[-a])))
}
