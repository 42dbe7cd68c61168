# Layers: each layer_*() checks its arguments, builds Keras's config for its layer (the
# fields of Keras's get_config(), with Keras's names) and calls make_layer(). The core reads
# that config with the same parser as a saved model's, so adding a layer type to R is one
# function here.

# A layer made without a model is a function: calling it on a tensor (from layer_input())
# applies it, and calling the same layer twice shares its weights, as in Keras.
new_layer <- function(class_name, name, config, input_shape = NULL, id = next_layer_id(), weights = NULL, trainable = NULL) {
  # Each layer's initial weights come from its own seed, drawn from R's RNG, so set.seed()
  # makes model initialisation reproducible. `id` names the layer across the models that
  # use it (shared-layers.R).
  spec <- list(class_name = class_name, name = name, config = config, input_shape = input_shape,
               seed = new_seed(), id = id, weights = weights)
  # Keras's `trainable = FALSE` on a layer: frozen in every model made with it.
  if (!is.null(trainable)) .shared$frozen[id] <- !trainable
  # `initial_state`: a recurrent layer's initial states, extra inputs of the application
  # (`decoder_lstm(x, initial_state = encoder_states)`, as in R keras).
  apply_layer <- function(object, initial_state = NULL) {
    if (!is.null(initial_state)) object <- c(list(object), if (is_tensor(initial_state)) list(initial_state) else initial_state)
    compose_layer(object, self)
  }
  self <- structure(apply_layer, class = "rustgpu_layer", spec = spec)
  self
}

#' @export
`$.rustgpu_layer` <- function(x, name) {
  if (name %in% c("input", "output")) return(layer_node(x, NULL, name))
  if (name %in% c("input_shape", "output_shape")) return(layer_shape(x, sub("_shape", "", name)))
  if (identical(name, "trainable")) return(!isTRUE(.shared$frozen[attr(x, "spec")$id]))
  attr(x, "spec")[[name]]
}

# `layer$trainable <- FALSE`, as on a Keras layer: the layer frozen (or thawed) in every model
# made with it (a compiled model takes the change when compiled again, as in Keras).
#' @export
`$<-.rustgpu_layer` <- function(x, name, value) {
  if (!identical(name, "trainable")) value_error(sprintf("A layer's `%s` cannot be set: only `trainable` can.", name))
  check_bool(value, "trainable")
  .shared$frozen[attr(x, "spec")$id] <- !value
  x
}

# The one way a layer_*() function makes its layer: `config` holds the layer type's Keras
# config fields (`name` is added here), `object` is the model, tensor(s) or nothing.
make_layer <- function(class_name, object, config, input_shape = NULL, name = NULL, weights = NULL, trainable = NULL,
                         call = rlang::caller_env()) {
  if (!is.null(trainable)) check_bool(trainable, "trainable", call = call)
  if (!is.null(weights) && (!is.list(weights) || !all(vapply(weights, is.numeric, logical(1))))) {
    value_error(sprintf("`weights` must be a list of arrays (the layer's initial weights), not %s.", describe(weights)), call = call)
  }
  layer <- new_layer(class_name, layer_name(name, class_name, call = call), config,
                     check_shape(input_shape, "input_shape", call = call), weights = weights, trainable = trainable)
  compose_layer(object, layer, call = call)
}

compose_layer <- function(object, layer, call = rlang::caller_env()) {
  if (missing(object) || is.null(object)) {
    return(layer)
  }
  if (is_tensor(object) || (is.list(object) && length(object) > 0 && all(vapply(object, is_tensor, logical(1))))) {
    return(apply_layer_to_tensors(layer, object))
  }
  check_model(object, call = call)
  if (isTRUE(model_info(object)$functional)) {
    state_error("Layers join a functional model by being applied to tensors (see keras_model()), not added to it.",
                call = call)
  }
  if (is_parallel_model(object)) {
    state_error("Add layers to the template model, not to the parallel model made by multi_gpu_model().", call = call)
  }
  add_layer(object, layer, call = call)
  invisible(object)
}

# `register = FALSE` for the scratch model keras_model() builds its layers in.
add_layer <- function(model, layer, input_shape = attr(layer, "spec")$input_shape, register = TRUE, call = rlang::caller_env()) {
  config <- c(list(name = layer$name), layer$config)
  if (inherits(config[["function"]], "rustgpu_traced_fn")) {
    # A lambda's function is traced for the shape the layer gets: the model's output so far.
    shapes <- if (!register) NULL else if (!is.null(input_shape)) list(input_shape) else {
      out <- model$output_shape
      if (is.null(out)) NULL else list(unlist(out[-1]))
    }
    config <- traced_config(config, shapes, call = call)
  }
  call_backend(rg_add_layer(model$ptr, layer$class_name, config, input_shape, layer$seed), call = call)
  if (register) {
    model$layer_specs <- c(model$layer_specs, list(layer))
    register_layer(model, layer)
  }
  invisible(model)
}

# Evaluate a piped model first, so that layers are named in the order they are added.
force_model <- function(object) {
  if (!missing(object)) force(object)
  invisible()
}

activation_name <- function(activation, call = rlang::caller_env()) {
  if (is.null(activation)) return("linear")
  if (inherits(activation, "rustgpu_activation")) return(attr(activation, "activation_name"))
  if (is.function(activation)) {
    value_error(paste0("`activation` must be an activation's name or one of the activation_*() functions, not another function: ",
                       "apply it in a layer_lambda() instead."), call = call)
  }
  check_string(activation, "activation", call = call)
  activation
}

# Keras's default layer names: "dense", "dense_1", ... (the prefix comes from the core's
# registry of layer types).
layer_name <- function(name, class_name, call = rlang::caller_env()) {
  check_string(name, "name", allow_null = TRUE, call = call)
  if (!is.null(name)) {
    # Names are HDF5 group names in saved files, where "/" separates groups.
    if (grepl("/", name, fixed = TRUE) || name %in% c(".", "..")) {
      value_error(sprintf("`name` \"%s\" cannot be a layer name: it must not contain \"/\" or be \".\" or \"..\".", name), call = call)
    }
    return(name)
  }
  types <- layer_types()
  prefix <- types$name_prefix[match(class_name, types$class_name)]
  if (is.na(prefix)) state_error(sprintf("Layer type \"%s\" is not in this build's registry.", class_name), call = call)
  rg_unique_name(prefix)
}

layer_types <- local({
  types <- NULL
  function() {
    if (is.null(types)) types <<- rg_layer_types()
    types
  }
})

new_seed <- function() sample.int(.Machine$integer.max, 1)

#' Add a densely-connected layer
#'
#' `output = activation(input %*% kernel + bias)`, applied to the last axis.
#'
#' @param object A model to add the layer to; missing or `NULL` returns the layer itself.
#' @param units Positive integer, the dimensionality of the output.
#' @param activation Name of the activation: one of "linear" (also `NULL`), "relu",
#'   "sigmoid", "tanh", "softmax", "elu", "selu", "softplus", "gelu", "hard_sigmoid",
#'   "softsign", "exponential"; or one of the [activations] functions.
#' @param use_bias Whether the layer uses a bias vector.
#' @param kernel_initializer,bias_initializer Initializers ([initializers]) or their names:
#'   "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
#'   "lecun_normal", "random_uniform" (Keras 2 also calls it "uniform"), "random_normal"
#'   ("normal"), "truncated_normal", "variance_scaling", "orthogonal", "identity", "zeros", "ones".
#' @param kernel_regularizer,bias_regularizer Penalties on the weights ([regularizers]), or `NULL`.
#' @param activity_regularizer A penalty on the layer's output ([regularizers]), added to the
#'   loss divided by the batch's rows (as Keras), or `NULL`.
#' @param kernel_constraint,bias_constraint Projections applied after each update
#'   ([constraints]), or `NULL`.
#' @param trainable `FALSE` freezes the layer in every model made with it (as Keras's layer
#'   attribute; see [freeze_weights()]).
#' @param weights The layer's initial weights, a list of arrays in Keras's layouts (e.g. a
#'   pretrained embedding matrix), set when the layer joins a built model.
#' @param input_shape Shape of one sample (without the batch axis); only for the first layer.
#' @param name Name of the layer (default: a unique "dense", "dense_1", ...).
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(units = 16, activation = "relu", input_shape = 4) %>%
#'   layer_dense(units = 3, activation = "softmax")
#' summary(model)
#' @export
layer_dense <- function(object, units, activation = NULL, use_bias = TRUE,
                        kernel_initializer = "glorot_uniform", bias_initializer = "zeros",
                        kernel_regularizer = NULL, bias_regularizer = NULL, activity_regularizer = NULL,
                        kernel_constraint = NULL, bias_constraint = NULL, input_shape = NULL, name = NULL,
                        trainable = NULL, weights = NULL) {
  force_model(object)
  check_count(units, "units", min = 1)
  check_bool(use_bias, "use_bias")
  kernel_initializer <- initializer_config(kernel_initializer, "kernel_initializer")
  bias_initializer <- initializer_config(bias_initializer, "bias_initializer")
  make_layer("Dense", object, list(
    units = units, activation = activation_name(activation), use_bias = use_bias,
    kernel_initializer = kernel_initializer, bias_initializer = bias_initializer,
    kernel_regularizer = regularizer_config(kernel_regularizer, "kernel_regularizer"),
    activity_regularizer = regularizer_config(activity_regularizer, "activity_regularizer"),
    bias_regularizer = regularizer_config(bias_regularizer, "bias_regularizer"),
    kernel_constraint = constraint_config(kernel_constraint, "kernel_constraint"),
    bias_constraint = constraint_config(bias_constraint, "bias_constraint")
  ), input_shape, name, weights = weights, trainable = trainable)
}

#' Apply an activation function to an output
#'
#' @inheritParams layer_dense
#' @param activation Name of the activation function (see [layer_dense()]).
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(3, input_shape = 2) %>%
#'   layer_activation("softmax")
#' @export
layer_activation <- function(object, activation, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  make_layer("Activation", object, list(activation = activation_name(activation)), input_shape, name, weights = weights, trainable = trainable)
}

#' Apply dropout to the input
#'
#' During training, sets each input value to 0 with probability `rate` and scales the
#' others by `1 / (1 - rate)`; at inference the layer passes its input through.
#'
#' @inheritParams layer_dense
#' @param rate Fraction of the input units to drop, in `[0, 1)`.
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(8, activation = "relu", input_shape = 4) %>%
#'   layer_dropout(rate = 0.2) %>%
#'   layer_dense(1)
#' @export
layer_dropout <- function(object, rate, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_number(rate, "rate", min = 0, max = 1, max_inclusive = FALSE)
  make_layer("Dropout", object, list(rate = rate), input_shape, name, weights = weights, trainable = trainable)
}

#' Batch normalization layer
#'
#' Normalizes each channel (the last axis) with the batch's mean and variance while
#' training, and with moving averages of them at inference, then scales by `gamma` and
#' shifts by `beta`, as Keras's BatchNormalization. The moving statistics are
#' non-trainable weights. On a parallel model ([multi_gpu_model()], [mirrored_strategy()])
#' each replica uses its own rows' statistics (as in Keras) and the moving averages take
#' their row-weighted mean; with `synchronized = TRUE` the replicas add up their statistics
#' and normalize with the whole batch's, so that training equals one device's on the
#' whole batch.
#'
#' @inheritParams layer_dense
#' @param axis Only -1 (the channels axis, Keras's default) is supported.
#' @param momentum Momentum of the moving averages, in `[0, 1)`.
#' @param epsilon Small number added to the variance, > 0.
#' @param center,scale Whether to learn `beta` and `gamma`.
#' @param synchronized Whether replicas share their batch statistics (Keras's
#'   `synchronized`). It changes nothing on one device.
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(8, input_shape = 4) %>%
#'   layer_batch_normalization() %>%
#'   layer_activation("relu") %>%
#'   layer_dense(1)
#' summary(model)
#' @export
layer_batch_normalization <- function(object, axis = -1L, momentum = 0.99, epsilon = 0.001, center = TRUE,
                                      scale = TRUE, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL,
                                      synchronized = FALSE) {
  force_model(object)
  if (!identical(as.numeric(axis), -1)) value_error("Only `axis = -1` (the channels axis) is supported.")
  check_number(momentum, "momentum", min = 0, max = 1, max_inclusive = FALSE)
  check_number(epsilon, "epsilon", min = 0, min_inclusive = FALSE)
  check_bool(center, "center")
  check_bool(scale, "scale")
  check_bool(synchronized, "synchronized")
  make_layer("BatchNormalization", object, list(
    axis = -1L, momentum = momentum, epsilon = epsilon, center = center, scale = scale, synchronized = synchronized
  ), input_shape, name, weights = weights, trainable = trainable)
}

#' @export
print.rustgpu_layer <- function(x, ...) {
  cat(sprintf("<%s layer \"%s\">\n", x$class_name, x$name))
  invisible(x)
}

#' Turn integer indices into dense vectors
#'
#' As Keras's Embedding: each index in `0..(input_dim - 1)` selects a row of the
#' `(input_dim, output_dim)` embedding matrix. Input `(batch, length)` of whole numbers;
#' output `(batch, length, output_dim)`.
#'
#' @inheritParams layer_dense
#' @param input_dim Size of the vocabulary (largest index + 1).
#' @param embeddings_regularizer A penalty on the embeddings ([regularizers]), or `NULL`.
#' @param embeddings_constraint A projection applied to the embeddings after each update
#'   ([constraints]), or `NULL`.
#' @param output_dim Size of each vector.
#' @param embeddings_initializer Initializer or its name ([initializers]; Keras's default "uniform" draws from
#'   (-0.05, 0.05)).
#' @param input_length Length of the input sequences (sets `input_shape`).
#' @param mask_zero Whether index 0 is padding: recurrent layers after the embedding then
#'   skip those steps (index 0 cannot be a word; `input_dim` counts it).
#' @param batch_size Accepted for compatibility.
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_embedding(input_dim = 10, output_dim = 3, input_length = 4) %>%
#'   layer_flatten() %>%
#'   layer_dense(1)
#' dim(predict(model, matrix(c(0, 1, 2, 9), 1)))
#' @export
layer_embedding <- function(object, input_dim, output_dim, embeddings_initializer = "uniform",
                            embeddings_regularizer = NULL, activity_regularizer = NULL,
                            embeddings_constraint = NULL, mask_zero = FALSE, input_length = NULL, input_shape = NULL,
                            batch_size = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_count(input_dim, "input_dim", min = 1)
  check_count(output_dim, "output_dim", min = 1)
  embeddings_initializer <- initializer_config(embeddings_initializer, "embeddings_initializer")
  check_count(input_length, "input_length", min = 1, allow_null = TRUE)
  check_bool(mask_zero, "mask_zero")
  if (is.null(input_shape) && !is.null(input_length)) input_shape <- input_length
  make_layer("Embedding", object, list(
    input_dim = input_dim, output_dim = output_dim, embeddings_initializer = embeddings_initializer,
    embeddings_regularizer = regularizer_config(embeddings_regularizer, "embeddings_regularizer"),
    activity_regularizer = regularizer_config(activity_regularizer, "activity_regularizer"),
    embeddings_constraint = constraint_config(embeddings_constraint, "embeddings_constraint"),
    mask_zero = mask_zero, input_length = input_length
  ), input_shape, name, weights = weights, trainable = trainable)
}
