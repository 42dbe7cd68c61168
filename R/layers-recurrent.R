# Recurrent layers and the wrappers used with them. Each function checks its arguments and
# builds Keras's config; the core's recurrent loop (src/rust/core/src/layers/recurrent.rs)
# runs them.

# The config fields every recurrent layer shares, checked, from the arguments of the
# layer_*() function whose environment `call` is (they share these arguments' names).
recurrent_config <- function(call) {
  args <- mget(c("units", "activation", "use_bias", "return_sequences", "return_state", "go_backwards", "stateful",
                 "unroll", "kernel_initializer", "recurrent_initializer", "bias_initializer", "kernel_regularizer",
                 "recurrent_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
                 "recurrent_constraint", "bias_constraint", "dropout", "recurrent_dropout"), envir = call)
  do.call(recurrent_config_of, c(args, list(call = call)))
}

recurrent_config_of <- function(units, activation, use_bias, return_sequences, return_state, go_backwards, stateful,
                                unroll, kernel_initializer, recurrent_initializer, bias_initializer,
                                kernel_regularizer, recurrent_regularizer, bias_regularizer, activity_regularizer,
                                kernel_constraint, recurrent_constraint, bias_constraint, dropout, recurrent_dropout,
                                call) {
  check_count(units, "units", min = 1, call = call)
  flags <- list(use_bias = use_bias, return_sequences = return_sequences, return_state = return_state,
                go_backwards = go_backwards, stateful = stateful, unroll = unroll)
  for (arg in names(flags)) check_bool(flags[[arg]], arg, call = call)
  check_number(dropout, "dropout", min = 0, max = 1, max_inclusive = FALSE, call = call)
  check_number(recurrent_dropout, "recurrent_dropout", min = 0, max = 1, max_inclusive = FALSE, call = call)
  c(list(units = units, activation = activation_name(activation, call = call)), flags, list(
    kernel_initializer = initializer_config(kernel_initializer, "kernel_initializer", call = call),
    recurrent_initializer = initializer_config(recurrent_initializer, "recurrent_initializer", call = call),
    bias_initializer = initializer_config(bias_initializer, "bias_initializer", call = call),
    kernel_regularizer = regularizer_config(kernel_regularizer, "kernel_regularizer", call = call),
    recurrent_regularizer = regularizer_config(recurrent_regularizer, "recurrent_regularizer", call = call),
    bias_regularizer = regularizer_config(bias_regularizer, "bias_regularizer", call = call),
    activity_regularizer = regularizer_config(activity_regularizer, "activity_regularizer", call = call),
    kernel_constraint = constraint_config(kernel_constraint, "kernel_constraint", call = call),
    recurrent_constraint = constraint_config(recurrent_constraint, "recurrent_constraint", call = call),
    bias_constraint = constraint_config(bias_constraint, "bias_constraint", call = call),
    dropout = dropout, recurrent_dropout = recurrent_dropout
  ))
}

# Keras's `batch_input_shape` is `input_shape` with the batch size in front.
input_shape_of <- function(input_shape, batch_input_shape, call = rlang::caller_env()) {
  if (!is.null(input_shape) || is.null(batch_input_shape)) return(input_shape)
  shape <- as.list(batch_input_shape)
  if (length(shape) < 2) {
    value_error("`batch_input_shape` must give the batch size and at least one more axis, e.g. c(32, 10, 1).", call = call)
  }
  shape[-1]
}

#' Recurrent layers: simple RNN, LSTM and GRU
#'
#' Layers that read a sequence `(batch, time, features)` step by step, carrying a state.
#' `layer_simple_rnn()` is a fully connected RNN; `layer_lstm()` a long short-term memory
#' layer (Hochreiter & Schmidhuber, 1997); `layer_gru()` a gated recurrent unit (Cho et al.,
#' 2014). The weights are in Keras's layout and gate order (LSTM i, f, c, o; GRU z, r, h), so
#' models with these layers load from and save to Keras's HDF5 files. Steps masked by
#' [layer_masking()] or `layer_embedding(mask_zero = TRUE)` are skipped: the state and output
#' stay as they were.
#'
#' `layer_cudnn_lstm()` and `layer_cudnn_gru()` (R keras 2.2's names for cuDNN's kernels) are
#' the same layers with cuDNN's fixed activations (tanh, sigmoid), no dropout, and for GRU
#' `reset_after = TRUE`.
#'
#' @inheritParams layer_dense
#' @param units Positive integer, the dimensionality of the output and state.
#' @param activation The activation of the output (and LSTM's cell state): "tanh" by default.
#' @param recurrent_activation The activation of the gates: "sigmoid" (Keras 2's default;
#'   R keras 2.2 used "hard_sigmoid", also available).
#' @param return_sequences `TRUE` returns the output of every step, `(batch, time, units)`;
#'   `FALSE` the last, `(batch, units)`.
#' @param return_state Whether to return the final states as well: applied to a tensor, the
#'   layer then gives a list of tensors, the output and the states (LSTM's h and c; GRU's and
#'   simple RNN's h), e.g. `c(output, state_h, state_c) %<-% layer_lstm(x, 8, return_state = TRUE)`.
#'   Initial states go in when calling a layer: `layer(x, initial_state = list(state_h, state_c))`.
#' @param go_backwards Read the sequence from its end (the outputs come in the order read).
#' @param stateful Keep each row's final state as the next batch's initial state (batches must
#'   then keep their size and row order); [reset_states()] sets them back to zero.
#' @param unroll Accepted for compatibility; the computation is the same.
#' @param reset_after GRU only: apply the reset gate after the recurrent product (Keras 2's
#'   default and cuDNN's form, with two bias rows) or before.
#' @param unit_forget_bias LSTM only: start the forget gate's bias at 1.
#' @param recurrent_initializer Initializer of the recurrent kernel ("orthogonal").
#' @param recurrent_regularizer,recurrent_constraint Penalty and projection of the recurrent kernel.
#' @param dropout Fraction of the inputs dropped in training (one mask for all steps).
#' @param recurrent_dropout Fraction of the recurrent state dropped in training.
#' @param batch_input_shape The input shape with the batch size in front (`c(32, 10, 1)`), an
#'   alternative to `input_shape`.
#' @param batch_size The batch size of stateful layers (accepted; batches give it).
#' @param dtype Only "float32".
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_lstm(units = 8, input_shape = c(5, 3)) %>%
#'   layer_dense(units = 1)
#' x <- array(runif(4 * 5 * 3), dim = c(4, 5, 3))
#' dim(predict(model, x))
#' @name layer_recurrent
NULL

#' @rdname layer_recurrent
#' @export
layer_simple_rnn <- function(object, units, activation = "tanh", use_bias = TRUE,
                             return_sequences = FALSE, return_state = FALSE, go_backwards = FALSE, stateful = FALSE,
                             unroll = FALSE, kernel_initializer = "glorot_uniform", recurrent_initializer = "orthogonal",
                             bias_initializer = "zeros", kernel_regularizer = NULL, recurrent_regularizer = NULL,
                             bias_regularizer = NULL, activity_regularizer = NULL, kernel_constraint = NULL,
                             recurrent_constraint = NULL, bias_constraint = NULL, dropout = 0.0, recurrent_dropout = 0.0,
                             input_shape = NULL, batch_input_shape = NULL, batch_size = NULL, dtype = NULL,
                             name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  config <- recurrent_config(environment())
  make_layer("SimpleRNN", object, config, input_shape_of(input_shape, batch_input_shape), name,
               weights = weights, trainable = trainable)
}

#' @rdname layer_recurrent
#' @export
layer_lstm <- function(object, units, activation = "tanh", recurrent_activation = "sigmoid", use_bias = TRUE,
                       return_sequences = FALSE, return_state = FALSE, go_backwards = FALSE, stateful = FALSE,
                       unroll = FALSE, kernel_initializer = "glorot_uniform", recurrent_initializer = "orthogonal",
                       bias_initializer = "zeros", unit_forget_bias = TRUE, kernel_regularizer = NULL,
                       recurrent_regularizer = NULL, bias_regularizer = NULL, activity_regularizer = NULL,
                       kernel_constraint = NULL, recurrent_constraint = NULL, bias_constraint = NULL, dropout = 0.0,
                       recurrent_dropout = 0.0, input_shape = NULL, batch_input_shape = NULL, batch_size = NULL,
                       dtype = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_bool(unit_forget_bias, "unit_forget_bias")
  config <- recurrent_config(environment())
  config <- c(config, list(recurrent_activation = activation_name(recurrent_activation), unit_forget_bias = unit_forget_bias))
  make_layer("LSTM", object, config, input_shape_of(input_shape, batch_input_shape), name,
               weights = weights, trainable = trainable)
}

#' @rdname layer_recurrent
#' @export
layer_gru <- function(object, units, activation = "tanh", recurrent_activation = "sigmoid", use_bias = TRUE,
                      return_sequences = FALSE, return_state = FALSE, go_backwards = FALSE, stateful = FALSE,
                      unroll = FALSE, reset_after = TRUE, kernel_initializer = "glorot_uniform",
                      recurrent_initializer = "orthogonal", bias_initializer = "zeros", kernel_regularizer = NULL,
                      recurrent_regularizer = NULL, bias_regularizer = NULL, activity_regularizer = NULL,
                      kernel_constraint = NULL, recurrent_constraint = NULL, bias_constraint = NULL, dropout = 0.0,
                      recurrent_dropout = 0.0, input_shape = NULL, batch_input_shape = NULL, batch_size = NULL,
                      dtype = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_bool(reset_after, "reset_after")
  config <- recurrent_config(environment())
  config <- c(config, list(recurrent_activation = activation_name(recurrent_activation), reset_after = reset_after))
  make_layer("GRU", object, config, input_shape_of(input_shape, batch_input_shape), name,
               weights = weights, trainable = trainable)
}

#' @rdname layer_recurrent
#' @export
layer_cudnn_lstm <- function(object, units, kernel_initializer = "glorot_uniform", recurrent_initializer = "orthogonal",
                             bias_initializer = "zeros", unit_forget_bias = TRUE, kernel_regularizer = NULL,
                             recurrent_regularizer = NULL, bias_regularizer = NULL, activity_regularizer = NULL,
                             kernel_constraint = NULL, recurrent_constraint = NULL, bias_constraint = NULL,
                             return_sequences = FALSE, return_state = FALSE, stateful = FALSE, input_shape = NULL,
                             batch_input_shape = NULL, batch_size = NULL, dtype = NULL, name = NULL, trainable = NULL,
                             weights = NULL) {
  layer_lstm(object, units, kernel_initializer = kernel_initializer, recurrent_initializer = recurrent_initializer,
             bias_initializer = bias_initializer, unit_forget_bias = unit_forget_bias,
             kernel_regularizer = kernel_regularizer, recurrent_regularizer = recurrent_regularizer,
             bias_regularizer = bias_regularizer, activity_regularizer = activity_regularizer,
             kernel_constraint = kernel_constraint, recurrent_constraint = recurrent_constraint,
             bias_constraint = bias_constraint, return_sequences = return_sequences, return_state = return_state,
             stateful = stateful, input_shape = input_shape, batch_input_shape = batch_input_shape, name = name,
             trainable = trainable, weights = weights)
}

#' @rdname layer_recurrent
#' @export
layer_cudnn_gru <- function(object, units, kernel_initializer = "glorot_uniform", recurrent_initializer = "orthogonal",
                            bias_initializer = "zeros", kernel_regularizer = NULL, recurrent_regularizer = NULL,
                            bias_regularizer = NULL, activity_regularizer = NULL, kernel_constraint = NULL,
                            recurrent_constraint = NULL, bias_constraint = NULL, return_sequences = FALSE,
                            return_state = FALSE, stateful = FALSE, input_shape = NULL, batch_input_shape = NULL,
                            batch_size = NULL, dtype = NULL, name = NULL, trainable = NULL, weights = NULL) {
  layer_gru(object, units, reset_after = TRUE, kernel_initializer = kernel_initializer,
            recurrent_initializer = recurrent_initializer, bias_initializer = bias_initializer,
            kernel_regularizer = kernel_regularizer, recurrent_regularizer = recurrent_regularizer,
            bias_regularizer = bias_regularizer, activity_regularizer = activity_regularizer,
            kernel_constraint = kernel_constraint, recurrent_constraint = recurrent_constraint,
            bias_constraint = bias_constraint, return_sequences = return_sequences, return_state = return_state,
            stateful = stateful, input_shape = input_shape, batch_input_shape = batch_input_shape, name = name,
            trainable = trainable, weights = weights)
}

# Keras's {class_name, config} of a layer made by a layer_*() function without a model.
wrapped_layer_config <- function(layer, call = rlang::caller_env()) {
  if (inherits(layer, "rustgpu_model")) {
    rustgpu_abort(paste0("A model cannot be wrapped here (time_distributed() takes one): ",
                         "wrap a layer made without a model, e.g. layer_lstm(units = 8)."),
                  c("rustgpu_unsupported_error", "rustgpu_value_error"), call = call)
  }
  if (!inherits(layer, "rustgpu_layer")) {
    value_error(sprintf("`layer` must be a layer made without a model, such as layer_lstm(units = 32), not %s.",
                        describe(layer)), call = call)
  }
  list(class_name = layer$class_name, config = c(list(name = layer$name), layer$config))
}

#' Bidirectional wrapper for recurrent layers
#'
#' Runs a recurrent layer over the sequence forwards and a copy of it backwards, and merges
#' the two outputs. The weights are the forward layer's, then the backward one's, as Keras's.
#'
#' @inheritParams layer_recurrent
#' @param layer A recurrent layer made without a model, e.g. `layer_lstm(units = 32)`.
#' @param merge_mode How the outputs are combined: "concat" (default), "sum", "mul", "ave",
#'   or `NULL` for both separately (applied to a tensor, the layer then gives a list of the
#'   forward and the backward output).
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   bidirectional(layer_gru(units = 4), input_shape = c(6, 2)) %>%
#'   layer_dense(units = 1)
#' summary(model)
#' @export
bidirectional <- function(object, layer, merge_mode = "concat", input_shape = NULL, batch_input_shape = NULL,
                          batch_size = NULL, dtype = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  inner <- wrapped_layer_config(layer)
  if (!is.null(merge_mode)) check_string(merge_mode, "merge_mode")
  make_layer("Bidirectional", object, list(layer = inner, merge_mode = merge_mode),
               if (is.null(input_shape) && is.null(batch_input_shape)) attr(layer, "spec")$input_shape else input_shape_of(input_shape, batch_input_shape), name,
               weights = weights, trainable = trainable)
}

#' Apply a layer to every time step of an input
#'
#' The wrapped layer sees each step `(batch, ...)` of a `(batch, time, ...)` input in turn,
#' with one set of weights for all steps (they are named as the wrapper's, as in Keras).
#'
#' A model may be wrapped too (`input %>% time_distributed(encoder)`, R keras's video
#' example): its layers run on every step, sharing their weights with the model; they join
#' the graph between two reshapes (steps to rows and back), which `summary()` shows.
#'
#' @inheritParams bidirectional
#' @param layer A layer made without a model, e.g. `layer_dense(units = 10)`, or a model
#'   (with one input).
#' @examples
#' model <- keras_model_sequential() %>%
#'   time_distributed(layer_dense(units = 3), input_shape = c(5, 4))
#' dim(predict(model, array(1, dim = c(2, 5, 4))))
#' @export
time_distributed <- function(object, layer, input_shape = NULL, batch_input_shape = NULL, batch_size = NULL,
                             dtype = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  if (inherits(layer, "rustgpu_model")) {
    return(time_distributed_model(if (missing(object)) NULL else object, layer, input_shape_of(input_shape, batch_input_shape), name))
  }
  inner <- wrapped_layer_config(layer)
  make_layer("TimeDistributed", object, list(layer = inner), input_shape_of(input_shape, batch_input_shape), name,
               weights = weights, trainable = trainable)
}

# time_distributed(model): the steps become rows (batch * time), the model's layers run on
# them, shared with the model (as model(x) shares them), and the rows become steps again.
# That is how Keras's TimeDistributed runs its layer; the two reshapes are lambda layers, so
# summary() and saved files show the model's layers between them, as for any model used as
# a layer here (the README's "flattened").
time_distributed_model <- function(object, model, input_shape, name, call = rlang::caller_env()) {
  check_model(model, "layer", call = call)
  if (is_parallel_model(model)) state_error("Wrap the template model, not the parallel model made by multi_gpu_model().", call = call)
  if (is.null(object)) {
    state_error("time_distributed() of a model needs what to apply it to: a tensor, or a sequential model.", call = call)
  }
  if (is.null(name)) name <- layer_name(NULL, "TimeDistributed", call = call)
  in_shape <- if (is_tensor(object)) functional_shape(object) else if (!is.null(input_shape)) {
    check_shape(input_shape, "input_shape", call = call)
  } else {
    out <- object$output_shape
    if (is.null(out)) state_error("Give time_distributed() an `input_shape` (the model's first layer).", call = call)
    shape_with_na(unlist(lapply(out[-1], function(d) if (is.null(d)) NA else d)))
  }
  steps <- in_shape[1]
  if (length(in_shape) < 2 || is.na(steps) || steps == 0) {
    rustgpu_abort(sprintf(paste0("time_distributed() of a model needs inputs (batch, time, ...) with a known number ",
                                 "of steps, got (None, %s)."), shape_text(in_shape)),
                  c("rustgpu_unsupported_error", "rustgpu_value_error"), call = call)
  }
  to_rows <- function(x) k_reshape(x, c(-1, shape_of(x)[-(1:2)]))
  to_steps <- function(x) k_reshape(x, c(-1, steps, shape_of(x)[-1]))
  if (is_tensor(object)) {
    rows <- layer_lambda(object, to_rows, name = paste0(name, "_steps_to_rows"))
    out <- apply_model_to_tensors(model, rows, call = call)
    each <- if (is_tensor(out)) list(out) else out
    back <- lapply(seq_along(each), function(k) {
      layer_lambda(each[[k]], to_steps, name = paste0(name, "_rows_to_steps", if (length(each) > 1) paste0("_", k) else ""))
    })
    return(if (is_tensor(out)) back[[1]] else back)
  }
  check_model(object, call = call)
  layer_lambda(object, to_rows, input_shape = input_shape, name = paste0(name, "_steps_to_rows"))
  add_model_layers(object, model, call = call)
  layer_lambda(object, to_steps, name = paste0(name, "_rows_to_steps"))
  invisible(object)
}

#' Repeat the input n times
#'
#' `(batch, features)` becomes `(batch, n, features)`: e.g. an encoder's summary fed to every
#' step of a decoder.
#'
#' @inheritParams layer_dense
#' @param n Positive integer, the number of repetitions.
#' @param batch_size Accepted for compatibility.
#' @examples
#' model <- keras_model_sequential() %>% layer_repeat_vector(n = 3, input_shape = 2)
#' predict(model, matrix(1:2, nrow = 1))
#' @export
layer_repeat_vector <- function(object, n, input_shape = NULL, batch_size = NULL, name = NULL, trainable = NULL,
                                weights = NULL) {
  force_model(object)
  check_count(n, "n", min = 1)
  make_layer("RepeatVector", object, list(n = n), input_shape, name, weights = weights, trainable = trainable)
}

#' Mask time steps
#'
#' Steps whose features all equal `mask_value` are masked: recurrent layers after it skip
#' them (their state and output stay as they were), and they are set to zero.
#'
#' @inheritParams layer_recurrent
#' @param mask_value The value that marks padding.
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_masking(mask_value = 0, input_shape = c(4, 1)) %>%
#'   layer_simple_rnn(units = 2)
#' x <- array(c(1, 2, 0, 0), dim = c(1, 4, 1))
#' predict(model, x)
#' @export
layer_masking <- function(object, mask_value = 0.0, input_shape = NULL, batch_input_shape = NULL, batch_size = NULL,
                          dtype = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_number(mask_value, "mask_value")
  make_layer("Masking", object, list(mask_value = mask_value), input_shape_of(input_shape, batch_input_shape), name,
               weights = weights, trainable = trainable)
}

#' Reset the states of stateful layers
#'
#' Sets the states that stateful recurrent layers carry between batches back to zero, e.g.
#' between epochs over the same sequences.
#'
#' @param object A model.
#' @return The model, invisibly.
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_gru(units = 2, stateful = TRUE, batch_input_shape = c(1, 3, 1))
#' x <- array(1, dim = c(1, 3, 1))
#' first <- predict(model, x)
#' reset_states(model)
#' all.equal(predict(model, x), first)
#' @export
reset_states <- function(object) {
  check_model(object)
  call_backend(rg_reset_states(object$ptr))
  invisible(object)
}

#' Convolutional LSTM
#'
#' Keras's ConvLSTM2D: an LSTM over a sequence of images `(time, height, width, channels)`
#' whose input and recurrent transformations are 2-d convolutions (the recurrent one with
#' "same" padding). The kernels have Keras's layouts, `(kernel_h, kernel_w, channels, 4 *
#' filters)` and `(kernel_h, kernel_w, filters, 4 * filters)`, gates in the LSTM's order.
#' `return_state`, `stateful`, dropout and channels-first data are not supported yet (a
#' classed error says so).
#'
#' @inheritParams layer_conv_2d
#' @inheritParams layer_recurrent
#' @param recurrent_activation Activation of the gates: "hard_sigmoid" (Keras's default for
#'   this layer) or another.
#' @param unit_forget_bias Start the forget gate's biases at 1.
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_conv_lstm_2d(4, c(3, 3), padding = "same", return_sequences = TRUE, input_shape = list(NULL, 8, 8, 1)) %>%
#'   layer_conv_3d(1, c(3, 3, 3), padding = "same", activation = "sigmoid")
#' summary(model)
#' @export
layer_conv_lstm_2d <- function(object, filters, kernel_size, strides = c(1L, 1L), padding = "valid", data_format = NULL,
                               dilation_rate = c(1L, 1L), activation = "tanh", recurrent_activation = "hard_sigmoid",
                               use_bias = TRUE, kernel_initializer = "glorot_uniform", recurrent_initializer = "orthogonal",
                               bias_initializer = "zeros", unit_forget_bias = TRUE, kernel_regularizer = NULL,
                               recurrent_regularizer = NULL, bias_regularizer = NULL, activity_regularizer = NULL,
                               kernel_constraint = NULL, recurrent_constraint = NULL, bias_constraint = NULL,
                               return_sequences = FALSE, go_backwards = FALSE, stateful = FALSE, dropout = 0.0,
                               recurrent_dropout = 0.0, batch_size = NULL, name = NULL, trainable = NULL, weights = NULL,
                               input_shape = NULL) {
  force_model(object)
  units <- filters
  return_state <- FALSE
  unroll <- FALSE
  config <- recurrent_config(environment())
  names(config)[names(config) == "units"] <- "filters"
  if (!identical(check_data_format(data_format), "channels_last")) {
    value_error("`data_format = \"channels_first\"` is not supported by layer_conv_lstm_2d() yet: give frames channels last.")
  }
  kernel_size <- as_pair(kernel_size, "kernel_size")
  strides <- as_pair(strides, "strides")
  dilation_rate <- as_pair(dilation_rate, "dilation_rate")
  check_padding(padding)
  check_bool(unit_forget_bias, "unit_forget_bias")
  config <- c(config, list(kernel_size = kernel_size, strides = strides, padding = padding, data_format = "channels_last",
                           dilation_rate = dilation_rate, recurrent_activation = activation_name(recurrent_activation),
                           unit_forget_bias = unit_forget_bias))
  make_layer("ConvLSTM2D", object, config, input_shape, name, weights = weights, trainable = trainable)
}
