# Convolution, pooling and reshaping layers (channels last, as Keras's default).

# A length-2 integer pair from a scalar or a pair, e.g. kernel_size = 3 -> c(3, 3).
as_pair <- function(x, arg, min = 1, call = rlang::caller_env()) as_tuple(x, arg, 2, min = min, call = call)

# One or `n` whole numbers >= `min`, as `n` of them.
as_tuple <- function(x, arg, n, min = 1, call = rlang::caller_env()) {
  if (!is.numeric(x) || !length(x) %in% c(1, n) || anyNA(x) || any(!is.finite(x)) || any(x != round(x)) ||
      any(x < min) || any(x > .Machine$integer.max)) {
    value_error(sprintf("`%s` must be one or %s whole numbers >= %s, not %s.", arg, c("two", "three")[n - 1], min, describe(x)), call = call)
  }
  as.numeric(rep_len(x, n))
}

check_padding <- function(padding, call = rlang::caller_env()) {
  if (!is.character(padding) || length(padding) != 1 || !padding %in% c("valid", "same")) {
    value_error(sprintf("`padding` must be \"valid\" or \"same\", not %s.", describe(padding)), call = call)
  }
  padding
}

# A layer's `data_format`: NULL takes k_image_data_format() (channels last unless
# k_set_image_data_format() said otherwise), as Keras does.
check_data_format <- function(data_format, call = rlang::caller_env()) {
  if (is.null(data_format)) return(k_image_data_format())
  check_choice(data_format, "data_format", c("channels_last", "channels_first"), call = call)
}

#' 2D convolution layer
#'
#' Convolves its `(height, width, channels)` input with `filters` kernels of
#' `kernel_size`, as Keras's Conv2D with channels last. The kernel has Keras's layout
#' `(kernel_h, kernel_w, input_channels, filters)`.
#'
#' @inheritParams layer_dense
#' @param filters Number of output channels.
#' @param kernel_size One or two whole numbers: the window's height and width.
#' @param strides One or two whole numbers: the step between windows.
#' @param padding "valid" (no padding) or "same" (pad so that the output is
#'   `ceiling(input / strides)`, as TensorFlow does).
#' @param data_format "channels_last" (inputs `(batch, ..., channels)`), "channels_first"
#'   (`(batch, channels, ...)`), or `NULL` for [k_image_data_format()]. Weights have the same
#'   layout either way.
#' @param dilation_rate One or two whole numbers: spacing between kernel taps. Values
#'   above 1 cannot be combined with strides above 1.
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_conv_2d(8, c(3, 3), activation = "relu", input_shape = c(12, 12, 1)) %>%
#'   layer_max_pooling_2d() %>%
#'   layer_flatten() %>%
#'   layer_dense(2, activation = "softmax")
#' summary(model)
#' @export
layer_conv_2d <- function(object, filters, kernel_size, strides = c(1L, 1L), padding = "valid",
                          data_format = NULL, dilation_rate = c(1L, 1L), activation = NULL, use_bias = TRUE,
                          kernel_initializer = "glorot_uniform", bias_initializer = "zeros", kernel_regularizer = NULL,
                          bias_regularizer = NULL, activity_regularizer = NULL, kernel_constraint = NULL,
                          bias_constraint = NULL, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  convolution_layer("Conv2D", 2, object, filters, kernel_size, strides, padding, data_format, dilation_rate, activation,
                    use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
                    activity_regularizer, kernel_constraint, bias_constraint, input_shape, name, trainable, weights)
}

#' 3D convolution layer
#'
#' Convolves its `(depth, height, width, channels)` input (a video's frames, a volume) with
#' `filters` kernels of `kernel_size`, as Keras's Conv3D. The kernel has Keras's layout
#' `(kernel_d, kernel_h, kernel_w, input_channels, filters)`.
#'
#' @inheritParams layer_conv_2d
#' @param kernel_size One or three whole numbers: the window's depth, height and width.
#' @param strides One or three whole numbers: the step between windows.
#' @param dilation_rate One or three whole numbers: spacing between kernel taps.
#' @param batch_input_shape,batch_size,dtype Accepted for compatibility (`batch_input_shape`
#'   gives the input shape after its batch axis).
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_conv_3d(4, c(2, 3, 3), padding = "same", activation = "relu", input_shape = c(5, 8, 8, 1)) %>%
#'   layer_flatten() %>%
#'   layer_dense(2, activation = "softmax")
#' summary(model)
#' @export
layer_conv_3d <- function(object, filters, kernel_size, strides = c(1L, 1L, 1L), padding = "valid",
                          data_format = NULL, dilation_rate = c(1L, 1L, 1L), activation = NULL, use_bias = TRUE,
                          kernel_initializer = "glorot_uniform", bias_initializer = "zeros", kernel_regularizer = NULL,
                          bias_regularizer = NULL, activity_regularizer = NULL, kernel_constraint = NULL,
                          bias_constraint = NULL, input_shape = NULL, batch_input_shape = NULL, batch_size = NULL,
                          dtype = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  convolution_layer("Conv3D", 3, object, filters, kernel_size, strides, padding, data_format, dilation_rate, activation,
                    use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
                    activity_regularizer, kernel_constraint, bias_constraint,
                    input_shape_of(input_shape, batch_input_shape), name, trainable, weights)
}

# The convolutions' shared arguments, checked, as the core's config of `class_name` over
# `n` spatial axes.
convolution_layer <- function(class_name, n, object, filters, kernel_size, strides, padding, data_format, dilation_rate,
                              activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                              bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint, input_shape,
                              name, trainable, weights, call = rlang::caller_env()) {
  check_count(filters, "filters", min = 1, call = call)
  kernel_size <- as_tuple(kernel_size, "kernel_size", n, call = call)
  strides <- as_tuple(strides, "strides", n, call = call)
  dilation_rate <- as_tuple(dilation_rate, "dilation_rate", n, call = call)
  if (any(strides > 1) && any(dilation_rate > 1)) {
    value_error("`strides` > 1 cannot be combined with `dilation_rate` > 1 (as in Keras).", call = call)
  }
  check_padding(padding, call = call)
  data_format <- check_data_format(data_format, call = call)
  check_bool(use_bias, "use_bias", call = call)
  kernel_initializer <- initializer_config(kernel_initializer, "kernel_initializer")
  bias_initializer <- initializer_config(bias_initializer, "bias_initializer")
  make_layer(class_name, object, list(
    filters = filters, data_format = data_format, kernel_size = kernel_size, strides = strides, padding = padding,
    dilation_rate = dilation_rate, activation = activation_name(activation), use_bias = use_bias,
    kernel_initializer = kernel_initializer, bias_initializer = bias_initializer,
    kernel_regularizer = regularizer_config(kernel_regularizer, "kernel_regularizer"),
    activity_regularizer = regularizer_config(activity_regularizer, "activity_regularizer"),
    bias_regularizer = regularizer_config(bias_regularizer, "bias_regularizer"),
    kernel_constraint = constraint_config(kernel_constraint, "kernel_constraint"),
    bias_constraint = constraint_config(bias_constraint, "bias_constraint")
  ), input_shape, name, weights = weights, trainable = trainable, call = call)
}

#' Max pooling for 2D inputs
#'
#' Takes the maximum over `pool_size` windows of each channel. Its gradient goes to the
#' position of each window's maximum.
#'
#' @inheritParams layer_conv_2d
#' @param pool_size One or two whole numbers: the window's height and width.
#' @param strides One or two whole numbers, or `NULL` for `pool_size`.
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_max_pooling_2d(pool_size = c(2, 2), input_shape = c(4, 4, 1))
#' predict(model, array(1:16, c(1, 4, 4, 1)))[1, , , 1]
#' @export
layer_max_pooling_2d <- function(object, pool_size = c(2L, 2L), strides = NULL, padding = "valid",
                                 data_format = NULL, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  pooling_2d(object, "MaxPooling2D", pool_size, strides, padding, data_format, input_shape, name, trainable = trainable, weights = weights)
}

# Max and average pooling take the same window arguments.
pooling_2d <- function(object, class_name, pool_size, strides, padding, data_format, input_shape, name, trainable = NULL, weights = NULL,
                       call = rlang::caller_env()) {
  pool_size <- as_pair(pool_size, "pool_size", call = call)
  strides <- if (is.null(strides)) pool_size else as_pair(strides, "strides", call = call)
  check_padding(padding, call = call)
  data_format <- check_data_format(data_format, call = call)
  make_layer(class_name, object, list(pool_size = pool_size, strides = strides, padding = padding, data_format = data_format),
               input_shape, name, weights = weights, trainable = trainable, call = call)
}

#' Flatten each sample to a vector
#'
#' Row-major (channels-last) order, as Keras.
#'
#' @inheritParams layer_conv_2d
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>% layer_flatten(input_shape = c(2, 3))
#' predict(model, array(1:6, c(1, 2, 3)))
#' @export
layer_flatten <- function(object, data_format = NULL, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  data_format <- check_data_format(data_format)
  make_layer("Flatten", object, list(data_format = data_format), input_shape, name, weights = weights, trainable = trainable)
}

#' Average pooling for 2D inputs
#'
#' The mean of each `pool_size` window of each channel; with "same" padding the padded
#' positions are left out of the mean (as TensorFlow does).
#'
#' @inheritParams layer_max_pooling_2d
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>% layer_average_pooling_2d(input_shape = c(4, 4, 1))
#' predict(model, array(1:16, c(1, 4, 4, 1)))[1, , , 1]
#' @export
layer_average_pooling_2d <- function(object, pool_size = c(2L, 2L), strides = NULL, padding = "valid",
                                     data_format = NULL, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  pooling_2d(object, "AveragePooling2D", pool_size, strides, padding, data_format, input_shape, name, trainable = trainable, weights = weights)
}

global_pooling <- function(object, class_name, data_format, keepdims, input_shape, name, trainable = NULL, weights = NULL,
                           call = rlang::caller_env()) {
  data_format <- check_data_format(data_format, call = call)
  if (!identical(keepdims, FALSE)) value_error("Only `keepdims = FALSE` is supported yet.", call = call)
  make_layer(class_name, object, list(keepdims = FALSE, data_format = data_format), input_shape, name, weights = weights, trainable = trainable, call = call)
}

#' Global pooling for 2D inputs
#'
#' `(batch, height, width, channels)` to `(batch, channels)`: the mean (or the maximum) of
#' each channel over all pixels.
#'
#' @inheritParams layer_conv_2d
#' @param keepdims Only `FALSE` (Keras's default) is supported.
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>% layer_global_average_pooling_2d(input_shape = c(2, 2, 3))
#' predict(model, array(1:12, c(1, 2, 2, 3)))
#' @export
layer_global_average_pooling_2d <- function(object, data_format = NULL, keepdims = FALSE, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  global_pooling(object, "GlobalAveragePooling2D", data_format, keepdims, input_shape, name, trainable = trainable, weights = weights)
}

#' @rdname layer_global_average_pooling_2d
#' @export
layer_global_max_pooling_2d <- function(object, data_format = NULL, keepdims = FALSE, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  global_pooling(object, "GlobalMaxPooling2D", data_format, keepdims, input_shape, name, trainable = trainable, weights = weights)
}

#' Global average and max pooling for 1D inputs
#'
#' `(batch, steps, channels)` to `(batch, channels)`: the mean (or the maximum) of each
#' channel over the steps, as Keras's GlobalAveragePooling1D (GlobalMaxPooling1D).
#'
#' @inheritParams layer_conv_2d
#' @param keepdims Only `FALSE` (Keras's default) is supported.
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>% layer_global_average_pooling_1d(input_shape = c(3, 2))
#' predict(model, array(1:6, c(1, 3, 2)))
#' @export
layer_global_average_pooling_1d <- function(object, data_format = NULL, keepdims = FALSE, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  global_pooling(object, "GlobalAveragePooling1D", data_format, keepdims, input_shape, name, trainable = trainable, weights = weights)
}

#' @rdname layer_global_average_pooling_1d
#' @export
layer_global_max_pooling_1d <- function(object, data_format = NULL, keepdims = FALSE, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  global_pooling(object, "GlobalMaxPooling1D", data_format, keepdims, input_shape, name, trainable = trainable, weights = weights)
}

#' Zero-padding for 2D inputs
#'
#' Adds rows and columns of zeros around each image.
#'
#' @inheritParams layer_conv_2d
#' @param padding One whole number (the same on all sides), two (rows above and below,
#'   columns left and right), or `list(c(top, bottom), c(left, right))`.
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>% layer_zero_padding_2d(list(c(1, 0), c(0, 1)), input_shape = c(2, 2, 1))
#' predict(model, array(1:4, c(1, 2, 2, 1)))[1, , , 1]
#' @export
layer_zero_padding_2d <- function(object, padding = c(1L, 1L), data_format = NULL, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  data_format <- check_data_format(data_format)
  pads <- if (is.list(padding) && length(padding) == 2) {
    c(as_pair(padding[[1]], "padding[[1]]", min = 0), as_pair(padding[[2]], "padding[[2]]", min = 0))
  } else {
    p <- as_pair(padding, "padding", min = 0)
    c(p[1], p[1], p[2], p[2])
  }
  make_layer("ZeroPadding2D", object, list(padding = list(pads[1:2], pads[3:4]), data_format = data_format), input_shape, name, weights = weights, trainable = trainable)
}

#' Reshape each sample
#'
#' @inheritParams layer_conv_2d
#' @param target_shape The new shape of one sample (without the batch axis); one entry may
#'   be -1, inferred from the others.
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>% layer_reshape(c(2, -1), input_shape = 6)
#' dim(predict(model, matrix(1:6, 1)))
#' @export
layer_reshape <- function(object, target_shape, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  if (!is.numeric(target_shape) || length(target_shape) == 0 || anyNA(target_shape) ||
      any(target_shape != round(target_shape)) || any(target_shape == 0 | target_shape < -1) ||
      sum(target_shape == -1) > 1) {
    value_error(sprintf("`target_shape` must be positive whole numbers with at most one -1, not %s.", describe(target_shape)))
  }
  make_layer("Reshape", object, list(target_shape = I(as.numeric(target_shape))), input_shape, name, weights = weights, trainable = trainable)
}

depthwise_layer <- function(object, filters, kernel_size, strides, padding, data_format, depth_multiplier,
                            dilation_rate, activation, use_bias, depthwise_initializer, pointwise_initializer,
                            bias_initializer, input_shape, name, trainable = NULL, weights = NULL,
                            call = rlang::caller_env()) {
  kernel_size <- as_pair(kernel_size, "kernel_size", call = call)
  strides <- as_pair(strides, "strides", call = call)
  dilation_rate <- as_pair(dilation_rate, "dilation_rate", call = call)
  if (any(strides > 1) && any(dilation_rate > 1)) {
    value_error("`strides` > 1 cannot be combined with `dilation_rate` > 1 (as in Keras).", call = call)
  }
  check_padding(padding, call = call)
  data_format <- check_data_format(data_format, call = call)
  check_count(depth_multiplier, "depth_multiplier", min = 1, call = call)
  check_bool(use_bias, "use_bias", call = call)
  depthwise_initializer <- initializer_config(depthwise_initializer, "depthwise_initializer", call = call)
  pointwise_initializer <- initializer_config(pointwise_initializer, "pointwise_initializer", call = call)
  bias_initializer <- initializer_config(bias_initializer, "bias_initializer", call = call)
  config <- list(
    kernel_size = kernel_size, strides = strides, padding = padding, dilation_rate = dilation_rate,
    depth_multiplier = depth_multiplier, activation = activation_name(activation, call = call),
    use_bias = use_bias, depthwise_initializer = depthwise_initializer, bias_initializer = bias_initializer,
    data_format = data_format
  )
  if (is.null(filters)) {
    return(make_layer("DepthwiseConv2D", object, config, input_shape, name, weights = weights, trainable = trainable, call = call))
  }
  config <- c(list(filters = filters, pointwise_initializer = pointwise_initializer), config)
  make_layer("SeparableConv2D", object, config, input_shape, name, weights = weights, trainable = trainable, call = call)
}

#' Depthwise separable 2D convolution
#'
#' `layer_separable_conv_2d()` convolves each input channel with its own
#' `depth_multiplier` kernels (the depthwise step) and mixes the results with a 1x1
#' convolution to `filters` channels (the pointwise step), as Keras's SeparableConv2D.
#' `layer_depthwise_conv_2d()` is the depthwise step alone (Keras's DepthwiseConv2D).
#' Kernels have Keras's layouts: depthwise `(kh, kw, channels, depth_multiplier)`,
#' pointwise `(1, 1, channels * depth_multiplier, filters)`.
#'
#' @inheritParams layer_conv_2d
#' @param depth_multiplier Depthwise kernels per input channel.
#' @param depthwise_initializer,pointwise_initializer Initializers (or their names, see [initializers]) for the kernels.
#' @param bias_initializer Initializer (or its name) for the bias.
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_separable_conv_2d(8, 3, padding = "same", input_shape = c(10, 10, 3)) %>%
#'   layer_depthwise_conv_2d(3, depth_multiplier = 2)
#' summary(model)
#' @export
layer_separable_conv_2d <- function(object, filters, kernel_size, strides = c(1L, 1L), padding = "valid",
                                    data_format = NULL, dilation_rate = c(1L, 1L), depth_multiplier = 1L,
                                    activation = NULL, use_bias = TRUE, depthwise_initializer = "glorot_uniform",
                                    pointwise_initializer = "glorot_uniform", bias_initializer = "zeros",
                                    input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_count(filters, "filters", min = 1)
  depthwise_layer(object, filters, kernel_size, strides, padding, data_format, depth_multiplier, dilation_rate,
                  activation, use_bias, depthwise_initializer, pointwise_initializer, bias_initializer, input_shape,
                  name, trainable = trainable, weights = weights)
}

#' @rdname layer_separable_conv_2d
#' @export
layer_depthwise_conv_2d <- function(object, kernel_size, strides = c(1L, 1L), padding = "valid",
                                    depth_multiplier = 1L, data_format = NULL, dilation_rate = c(1L, 1L),
                                    activation = NULL, use_bias = TRUE, depthwise_initializer = "glorot_uniform",
                                    bias_initializer = "zeros", input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  depthwise_layer(object, NULL, kernel_size, strides, padding, data_format, depth_multiplier, dilation_rate,
                  activation, use_bias, depthwise_initializer, "glorot_uniform", bias_initializer, input_shape,
                  name, trainable = trainable, weights = weights)
}

#' 1D convolution and max pooling
#'
#' Over `(steps, channels)` inputs, as Keras's Conv1D and MaxPooling1D (channels last; the
#' kernel has Keras's layout `(kernel_size, input_channels, filters)`).
#'
#' @inheritParams layer_conv_2d
#' @param kernel_size Length of the window.
#' @param strides Step between windows.
#' @param padding "valid" or "same".
#' @param dilation_rate Spacing between kernel taps.
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_conv_1d(4, 3, activation = "relu", input_shape = c(10, 2)) %>%
#'   layer_max_pooling_1d(2)
#' dim(predict(model, array(runif(20), c(1, 10, 2))))
#' @export
layer_conv_1d <- function(object, filters, kernel_size, strides = 1L, padding = "valid", data_format = NULL,
                          dilation_rate = 1L, activation = NULL, use_bias = TRUE,
                          kernel_initializer = "glorot_uniform", bias_initializer = "zeros", kernel_regularizer = NULL,
                          bias_regularizer = NULL, activity_regularizer = NULL, kernel_constraint = NULL,
                          bias_constraint = NULL, input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_count(filters, "filters", min = 1)
  for (arg in c("kernel_size", "strides", "dilation_rate")) check_count(get(arg), arg, min = 1)
  if (strides > 1 && dilation_rate > 1) value_error("`strides` > 1 cannot be combined with `dilation_rate` > 1 (as in Keras).")
  if (identical(padding, "causal")) value_error("`padding = \"causal\"` is not supported yet: use \"valid\" or \"same\".")
  check_padding(padding)
  data_format <- check_data_format(data_format)
  check_bool(use_bias, "use_bias")
  kernel_initializer <- initializer_config(kernel_initializer, "kernel_initializer")
  bias_initializer <- initializer_config(bias_initializer, "bias_initializer")
  make_layer("Conv1D", object, list(
    filters = filters, data_format = data_format, kernel_size = kernel_size, strides = strides, padding = padding,
    dilation_rate = dilation_rate, activation = activation_name(activation), use_bias = use_bias,
    kernel_initializer = kernel_initializer, bias_initializer = bias_initializer,
    kernel_regularizer = regularizer_config(kernel_regularizer, "kernel_regularizer"),
    activity_regularizer = regularizer_config(activity_regularizer, "activity_regularizer"),
    bias_regularizer = regularizer_config(bias_regularizer, "bias_regularizer"),
    kernel_constraint = constraint_config(kernel_constraint, "kernel_constraint"),
    bias_constraint = constraint_config(bias_constraint, "bias_constraint")
  ), input_shape, name, weights = weights, trainable = trainable)
}

#' @rdname layer_conv_1d
#' @param pool_size Length of the pooling window.
#' @export
layer_max_pooling_1d <- function(object, pool_size = 2L, strides = NULL, padding = "valid", data_format = NULL,
                                 input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  pooling_1d(object, "MaxPooling1D", pool_size, strides, padding, data_format, input_shape, name, trainable = trainable, weights = weights)
}

#' @rdname layer_conv_1d
#' @export
layer_average_pooling_1d <- function(object, pool_size = 2L, strides = NULL, padding = "valid", data_format = NULL,
                                     input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  pooling_1d(object, "AveragePooling1D", pool_size, strides, padding, data_format, input_shape, name, trainable = trainable, weights = weights)
}

pooling_1d <- function(object, class_name, pool_size, strides, padding, data_format, input_shape, name, trainable = NULL, weights = NULL,
                       call = rlang::caller_env()) {
  check_count(pool_size, "pool_size", min = 1, call = call)
  if (is.null(strides)) strides <- pool_size
  check_count(strides, "strides", min = 1, call = call)
  check_padding(padding, call = call)
  data_format <- check_data_format(data_format, call = call)
  make_layer(class_name, object, list(pool_size = pool_size, strides = strides, padding = padding, data_format = data_format),
               input_shape, name, weights = weights, trainable = trainable, call = call)
}

#' Transposed 2D convolution
#'
#' Keras's Conv2DTranspose ("deconvolution"): the input-gradient of a convolution, run
#' forward, which up-samples: each input pixel spreads `kernel %*% its channels` over a
#' `kernel_size` patch of the output, patches `strides` apart, overlaps summed. The output is
#' `h * strides + max(kernel_size - strides, 0)` high with `padding = "valid"`, `h * strides`
#' with `"same"` (and the same across).
#'
#' @inheritParams layer_conv_2d
#' @param output_padding `NULL`, or one or two whole numbers below `strides`: extra rows and
#'   columns at the end of the output (Keras's output length `(h - 1) * strides + kernel +
#'   output_padding`, less `2 * (kernel %/% 2)` with "same" padding).
#' @return The model, invisibly (or the layer when `object` is missing).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_conv_2d_transpose(2, c(3, 3), strides = c(2, 2), padding = "same", input_shape = c(4, 4, 1))
#' dim(predict(model, array(runif(16), c(1, 4, 4, 1))))
#' @export
layer_conv_2d_transpose <- function(object, filters, kernel_size, strides = c(1L, 1L), padding = "valid",
                                    output_padding = NULL, data_format = NULL, dilation_rate = c(1L, 1L),
                                    activation = NULL, use_bias = TRUE, kernel_initializer = "glorot_uniform",
                                    bias_initializer = "zeros", kernel_regularizer = NULL, bias_regularizer = NULL,
                                    activity_regularizer = NULL, kernel_constraint = NULL, bias_constraint = NULL,
                                    input_shape = NULL, name = NULL, trainable = NULL, weights = NULL) {
  force_model(object)
  check_count(filters, "filters", min = 1)
  if (!is.null(output_padding)) output_padding <- as_pair(output_padding, "output_padding", min = 0)
  check_padding(padding)
  data_format <- check_data_format(data_format)
  if (any(as_pair(dilation_rate, "dilation_rate") != 1)) value_error("`dilation_rate` other than 1 is not supported yet.")
  check_bool(use_bias, "use_bias")
  make_layer("Conv2DTranspose", object, list(
    filters = filters, data_format = data_format, output_padding = output_padding, kernel_size = as_pair(kernel_size, "kernel_size"), strides = as_pair(strides, "strides"),
    padding = padding, activation = activation_name(activation), use_bias = use_bias,
    kernel_initializer = initializer_config(kernel_initializer, "kernel_initializer"),
    bias_initializer = initializer_config(bias_initializer, "bias_initializer"),
    kernel_regularizer = regularizer_config(kernel_regularizer, "kernel_regularizer"),
    activity_regularizer = regularizer_config(activity_regularizer, "activity_regularizer"),
    bias_regularizer = regularizer_config(bias_regularizer, "bias_regularizer"),
    kernel_constraint = constraint_config(kernel_constraint, "kernel_constraint"),
    bias_constraint = constraint_config(bias_constraint, "bias_constraint")
  ), input_shape, name, weights = weights, trainable = trainable)
}
