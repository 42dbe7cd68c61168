# Layers that reshape, resize or re-activate their input: advanced activations, up-sampling,
# cropping, permute.

#' Activation layers with a parameter
#'
#' `layer_activation_relu()`: Keras's ReLU layer (ReLU6 with `max_value = 6`, leaky with
#' `negative_slope`). `layer_activation_selu()`: an activation layer of "selu".
#' `layer_activation_leaky_relu()`: `x` where positive, `alpha * x` elsewhere.
#' `layer_activation_parametric_relu()`: the same with `alpha` learned (PReLU).
#' `layer_activation_elu()`: `x` where positive, `alpha * (exp(x) - 1)` elsewhere.
#' `layer_activation_thresholded_relu()`: `x` where `x > theta`, 0 elsewhere.
#' `layer_activation_softmax()`: softmax over the last axis.
#'
#' @inheritParams layer_dense
#' @param alpha,theta The parameter.
#' @param axis Only -1 (the last axis).
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(4, input_shape = 3) %>%
#'   layer_activation_leaky_relu(alpha = 0.1)
#' @name layer_activation_leaky_relu
NULL

#' @rdname layer_activation_leaky_relu
#' @param max_value,negative_slope,threshold ReLU: values above `threshold` pass (clipped at
#'   `max_value`, `NULL` for none), the others become `negative_slope * (x - threshold)`;
#'   all >= 0.
#' @export
layer_activation_relu <- function(object, max_value = NULL, negative_slope = 0, threshold = 0, input_shape = NULL,
                                  name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  if (!is.null(max_value)) check_number(max_value, "max_value", min = 0)
  check_number(negative_slope, "negative_slope", min = 0)
  check_number(threshold, "threshold", min = 0)
  make_layer("ReLU", object, list(max_value = max_value, negative_slope = negative_slope, threshold = threshold),
             input_shape, name, weights = weights, trainable = trainable)
}

#' @rdname layer_activation_leaky_relu
#' @export
layer_activation_leaky_relu <- function(object, alpha = 0.3, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_number(alpha, "alpha")
  make_layer("LeakyReLU", object, list(alpha = alpha), input_shape, name, weights = weights, trainable = trainable)
}

#' @rdname layer_activation_leaky_relu
#' @param alpha_initializer,alpha_regularizer PReLU's `alpha`: its initializer and penalty.
#' @param alpha_constraint Only `NULL`.
#' @param shared_axes Sample axes (from 1) along which PReLU shares one `alpha`, or `NULL`.
#' @export
layer_activation_parametric_relu <- function(object, alpha_initializer = "zeros", alpha_regularizer = NULL,
                                             alpha_constraint = NULL, shared_axes = NULL, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  if (!is.null(alpha_constraint)) value_error("`alpha_constraint` is not supported yet: leave it NULL.")
  if (!is.null(shared_axes) && (!is.numeric(shared_axes) || anyNA(shared_axes) || any(shared_axes < 1))) {
    value_error("`shared_axes` must be sample axes numbered from 1, or NULL.")
  }
  make_layer("PReLU", object, list(
    alpha_initializer = initializer_config(alpha_initializer, "alpha_initializer"),
    alpha_regularizer = regularizer_config(alpha_regularizer, "alpha_regularizer"),
    shared_axes = if (is.null(shared_axes)) NULL else I(as.integer(shared_axes))
  ), input_shape, name, weights = weights, trainable = trainable)
}

#' @rdname layer_activation_leaky_relu
#' @export
layer_activation_selu <- function(object, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  make_layer("Activation", object, list(activation = "selu"), input_shape, name, weights = weights, trainable = trainable)
}

#' @rdname layer_activation_leaky_relu
#' @export
layer_activation_elu <- function(object, alpha = 1, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_number(alpha, "alpha")
  make_layer("ELU", object, list(alpha = alpha), input_shape, name, weights = weights, trainable = trainable)
}

#' @rdname layer_activation_leaky_relu
#' @export
layer_activation_thresholded_relu <- function(object, theta = 1, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_number(theta, "theta", min = 0)
  make_layer("ThresholdedReLU", object, list(theta = theta), input_shape, name, weights = weights, trainable = trainable)
}

#' @rdname layer_activation_leaky_relu
#' @export
layer_activation_softmax <- function(object, axis = -1L, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  if (!identical(as.numeric(axis), -1)) value_error("Only `axis = -1` (the last axis) is supported.")
  make_layer("Softmax", object, list(axis = -1L), input_shape, name, weights = weights, trainable = trainable)
}

#' Up-sampling and cropping
#'
#' `layer_upsampling_1d()` repeats each step `size` times; `layer_upsampling_2d()` each pixel
#' `size[1]` times down and `size[2]` times across (nearest neighbour). `layer_cropping_1d()`
#' cuts `cropping = c(start, end)` steps off a sequence; `layer_cropping_2d()` cuts
#' `list(c(top, bottom), c(left, right))` (or one number for all sides, or two for rows and
#' columns) off each image.
#'
#' @inheritParams layer_conv_2d
#' @param size Repetitions: one number (1D), or one or two (2D).
#' @param interpolation `"nearest"` (each pixel repeated) or `"bilinear"` (interpolated as
#'   TensorFlow's `tf.image.resize()` does, with half-pixel centers).
#' @param cropping What to cut off, as described above.
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_upsampling_2d(size = c(2, 2), input_shape = c(3, 3, 1)) %>%
#'   layer_cropping_2d(cropping = 1)
#' dim(predict(model, array(1, c(1, 3, 3, 1))))
#' @name layer_upsampling_1d
NULL

#' @rdname layer_upsampling_1d
#' @export
layer_upsampling_1d <- function(object, size = 2L, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_count(size, "size", min = 1)
  make_layer("UpSampling1D", object, list(size = size), input_shape, name, weights = weights, trainable = trainable)
}

#' @rdname layer_upsampling_1d
#' @export
layer_upsampling_2d <- function(object, size = c(2L, 2L), data_format = NULL, interpolation = "nearest",
                                input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  data_format <- check_data_format(data_format)
  check_choice(interpolation, "interpolation", c("nearest", "bilinear"))
  make_layer("UpSampling2D", object, list(size = as_pair(size, "size", min = 1), interpolation = interpolation, data_format = data_format),
               input_shape, name, weights = weights, trainable = trainable)
}

#' @rdname layer_upsampling_1d
#' @export
layer_cropping_1d <- function(object, cropping = c(1L, 1L), input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  make_layer("Cropping1D", object, list(cropping = as_pair(cropping, "cropping", min = 0)), input_shape, name, weights = weights, trainable = trainable)
}

#' @rdname layer_upsampling_1d
#' @export
layer_cropping_2d <- function(object, cropping = list(c(0L, 0L), c(0L, 0L)), data_format = NULL,
                              input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  data_format <- check_data_format(data_format)
  crops <- if (is.list(cropping) && length(cropping) == 2) {
    list(as_pair(cropping[[1]], "cropping[[1]]", min = 0), as_pair(cropping[[2]], "cropping[[2]]", min = 0))
  } else {
    p <- as_pair(cropping, "cropping", min = 0)
    list(c(p[1], p[1]), c(p[2], p[2]))
  }
  make_layer("Cropping2D", object, list(cropping = crops, data_format = data_format), input_shape, name, weights = weights, trainable = trainable)
}

#' Permute the axes of each sample
#'
#' @inheritParams layer_dense
#' @param dims The new order of the sample axes, numbered from 1 (the batch axis excluded):
#'   `c(2, 1)` swaps a matrix sample's rows and columns.
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>% layer_permute(c(2, 1), input_shape = c(2, 3))
#' dim(predict(model, array(1:6, c(1, 2, 3))))
#' @export
layer_permute <- function(object, dims, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  if (!is.numeric(dims) || anyNA(dims) || !setequal(dims, seq_along(dims)) || anyDuplicated(dims)) {
    value_error("`dims` must be a permutation of 1, 2, ..., one entry per sample axis.")
  }
  make_layer("Permute", object, list(dims = I(as.integer(dims))), input_shape, name, weights = weights, trainable = trainable)
}

#' Noise and spatial dropout layers
#'
#' Active in training only (identity in prediction and evaluation), as Keras's:
#' `layer_gaussian_noise()` adds normal noise of standard deviation `stddev`;
#' `layer_gaussian_dropout()` multiplies by normal noise of mean 1 and variance
#' `rate / (1 - rate)`; `layer_spatial_dropout_1d()` and `_2d()` drop whole channels with
#' probability `rate` (scaling the others by `1 / (1 - rate)`); `layer_alpha_dropout()` sets
#' dropped values to SELU's negative saturation and rescales so that inputs of mean 0 and
#' variance 1 keep them (for SELU networks).
#'
#' @inheritParams layer_dense
#' @inheritParams layer_recurrent
#' @param stddev Standard deviation of the noise.
#' @param rate Fraction to drop, in `[0, 1)`.
#' @param data_format "channels_last", "channels_first", or `NULL` for
#'   [k_image_data_format()] (up-sampling, cropping and spatial dropout in 2-D).
#' @param seed Unused (the noise comes from each step's seed, from R's random numbers).
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(4, input_shape = 3) %>%
#'   layer_gaussian_noise(0.1) %>%
#'   layer_alpha_dropout(0.1)
#' @name layer_gaussian_noise
NULL

#' @rdname layer_gaussian_noise
#' @export
layer_gaussian_noise <- function(object, stddev, input_shape = NULL, name = NULL, seed = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_number(stddev, "stddev", min = 0)
  make_layer("GaussianNoise", object, list(stddev = stddev), input_shape, name, weights = weights, trainable = trainable)
}

#' @rdname layer_gaussian_noise
#' @param noise_shape Not supported (`NULL`: one draw per value).
#' @export
layer_alpha_dropout <- function(object, rate, noise_shape = NULL, seed = NULL, input_shape = NULL, batch_input_shape = NULL,
                                batch_size = NULL, dtype = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_number(rate, "rate", min = 0, max = 1, max_inclusive = FALSE)
  if (!is.null(noise_shape)) {
    rustgpu_abort("`noise_shape` is not supported by layer_alpha_dropout() yet: leave it NULL (one draw per value).",
                  c("rustgpu_unsupported_error", "rustgpu_value_error"))
  }
  make_layer("AlphaDropout", object, list(rate = rate), input_shape_of(input_shape, batch_input_shape), name,
             weights = weights, trainable = trainable)
}

#' @rdname layer_gaussian_noise
#' @export
layer_gaussian_dropout <- function(object, rate, input_shape = NULL, name = NULL, seed = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_number(rate, "rate", min = 0, max = 1, max_inclusive = FALSE)
  make_layer("GaussianDropout", object, list(rate = rate), input_shape, name, weights = weights, trainable = trainable)
}

#' @rdname layer_gaussian_noise
#' @export
layer_spatial_dropout_1d <- function(object, rate, input_shape = NULL, name = NULL, seed = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_number(rate, "rate", min = 0, max = 1, max_inclusive = FALSE)
  make_layer("SpatialDropout1D", object, list(rate = rate), input_shape, name, weights = weights, trainable = trainable)
}

#' @rdname layer_gaussian_noise
#' @export
layer_spatial_dropout_2d <- function(object, rate, data_format = NULL, input_shape = NULL, name = NULL, seed = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_number(rate, "rate", min = 0, max = 1, max_inclusive = FALSE)
  data_format <- check_data_format(data_format)
  make_layer("SpatialDropout2D", object, list(rate = rate, data_format = data_format), input_shape, name, weights = weights, trainable = trainable)
}

#' Layer normalization
#'
#' Keras's LayerNormalization over the last axis: each sample's features normalized to mean 0
#' and variance 1 (`(x - mean) / sqrt(var + epsilon)`), then scaled by `gamma` and shifted by
#' `beta`.
#'
#' @inheritParams layer_dense
#' @param axis Only -1 (the last axis).
#' @param epsilon Added to the variance (> 0).
#' @param center,scale Whether to learn `beta` and `gamma`.
#' @param beta_initializer,gamma_initializer Initializers (or their names).
#' @param beta_regularizer,gamma_regularizer Penalties ([regularizers]), or `NULL`.
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(4, input_shape = 3) %>%
#'   layer_layer_normalization()
#' @export
layer_layer_normalization <- function(object, axis = -1L, epsilon = 0.001, center = TRUE, scale = TRUE,
                                      beta_initializer = "zeros", gamma_initializer = "ones",
                                      beta_regularizer = NULL, gamma_regularizer = NULL, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  if (!identical(as.numeric(axis), -1)) value_error("Only `axis = -1` (the last axis) is supported.")
  check_number(epsilon, "epsilon", min = 0, min_inclusive = FALSE)
  check_bool(center, "center")
  check_bool(scale, "scale")
  make_layer("LayerNormalization", object, list(
    axis = I(-1L), epsilon = epsilon, center = center, scale = scale,
    beta_initializer = initializer_config(beta_initializer, "beta_initializer"),
    gamma_initializer = initializer_config(gamma_initializer, "gamma_initializer"),
    beta_regularizer = regularizer_config(beta_regularizer, "beta_regularizer"),
    gamma_regularizer = regularizer_config(gamma_regularizer, "gamma_regularizer")
  ), input_shape, name, weights = weights, trainable = trainable)
}
