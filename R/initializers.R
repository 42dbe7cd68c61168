# Initializers: objects naming a core initializer class and its Keras config; layer_*()
# functions pass them (or a name such as "glorot_uniform") in their layer's config.

new_initializer <- function(class_name, ...) {
  config <- list(...)
  config <- config[!vapply(config, is.null, logical(1))]
  structure(list(class_name = class_name, config = config), class = "rustgpu_initializer")
}

#' @export
print.rustgpu_initializer <- function(x, ...) {
  args <- x$config
  cat(sprintf("<initializer %s%s>\n", x$class_name,
              if (length(args)) paste0(": ", paste(sprintf("%s = %s", names(args), vapply(args, format, "")), collapse = ", ")) else ""))
  invisible(x)
}

# A layer's initializer argument as its config holds it: a name, or Keras's
# {class_name, config} for an initializer object.
initializer_config <- function(x, arg, call = rlang::caller_env()) {
  if (inherits(x, "rustgpu_initializer")) return(unclass(x))
  if (!is.character(x) || length(x) != 1 || is.na(x) || !nzchar(x)) {
    value_error(sprintf("`%s` must be an initializer name such as \"glorot_uniform\" or an initializer such as initializer_random_normal(), not %s.",
                        arg, describe(x)), call = call)
  }
  x
}

check_seed <- function(seed, call = rlang::caller_env()) {
  check_count(seed, "seed", min = 0, allow_null = TRUE, call = call)
  if (is.null(seed)) NULL else as.integer(seed)
}

#' Weight initializers
#'
#' Keras's initializers, for a layer's `kernel_initializer`, `bias_initializer` and the like
#' (each also has a name: `kernel_initializer = "he_normal"` is `initializer_he_normal()`).
#' Distributions, limits and defaults are tf.keras's; the random draws are rustgpu's own, so
#' they differ from TensorFlow's. A `seed` makes the initializer draw the same values every
#' time; without one, a layer's weights come from R's random numbers ([set.seed()]).
#'
#' `initializer_variance_scaling()` draws with variance `scale / n`, `n` the weight's fan-in,
#' fan-out or their mean (`mode`), from a normal truncated at two standard deviations
#' (`distribution = "normal"` or `"truncated_normal"`), a normal, or a uniform. Glorot, He and
#' LeCun are its presets: `scale` 1 with `fan_avg`, 2 with `fan_in`, 1 with `fan_in`.
#'
#' @param value The constant.
#' @param mean,stddev Mean and standard deviation of the normal.
#' @param minval,maxval Bounds of the uniform.
#' @param scale Scaling factor (> 0).
#' @param mode `"fan_in"`, `"fan_out"` or `"fan_avg"`.
#' @param distribution `"normal"` (truncated), `"truncated_normal"`, `"untruncated_normal"` or `"uniform"`.
#' @param gain Multiplier of the orthogonal (or identity) matrix.
#' @param seed A whole number, or `NULL`.
#' @return An initializer for a layer's `*_initializer` argument.
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(4, kernel_initializer = initializer_random_normal(stddev = 0.01, seed = 1),
#'               bias_initializer = initializer_constant(0.1), input_shape = 3)
#' get_weights(model)[[2]]
#' @name initializers
NULL

#' @rdname initializers
#' @export
initializer_zeros <- function() new_initializer("Zeros")

#' @rdname initializers
#' @export
initializer_ones <- function() new_initializer("Ones")

#' @rdname initializers
#' @export
initializer_constant <- function(value = 0) {
  check_number(value, "value")
  new_initializer("Constant", value = value)
}

#' @rdname initializers
#' @export
initializer_random_normal <- function(mean = 0, stddev = 0.05, seed = NULL) {
  check_number(mean, "mean")
  check_number(stddev, "stddev", min = 0)
  new_initializer("RandomNormal", mean = mean, stddev = stddev, seed = check_seed(seed))
}

#' @rdname initializers
#' @export
initializer_random_uniform <- function(minval = -0.05, maxval = 0.05, seed = NULL) {
  check_number(minval, "minval")
  check_number(maxval, "maxval")
  if (maxval <= minval) value_error("`maxval` must be greater than `minval`.")
  new_initializer("RandomUniform", minval = minval, maxval = maxval, seed = check_seed(seed))
}

#' @rdname initializers
#' @export
initializer_truncated_normal <- function(mean = 0, stddev = 0.05, seed = NULL) {
  check_number(mean, "mean")
  check_number(stddev, "stddev", min = 0)
  new_initializer("TruncatedNormal", mean = mean, stddev = stddev, seed = check_seed(seed))
}

#' @rdname initializers
#' @export
initializer_variance_scaling <- function(scale = 1, mode = c("fan_in", "fan_out", "fan_avg"),
                                         distribution = c("normal", "uniform", "truncated_normal", "untruncated_normal"),
                                         seed = NULL) {
  check_number(scale, "scale", min = 0, min_inclusive = FALSE)
  mode <- match.arg(mode)
  distribution <- match.arg(distribution)
  new_initializer("VarianceScaling", scale = scale, mode = mode, distribution = distribution, seed = check_seed(seed))
}

#' @rdname initializers
#' @export
initializer_orthogonal <- function(gain = 1, seed = NULL) {
  check_number(gain, "gain")
  new_initializer("Orthogonal", gain = gain, seed = check_seed(seed))
}

#' @rdname initializers
#' @export
initializer_identity <- function(gain = 1) {
  check_number(gain, "gain")
  new_initializer("Identity", gain = gain)
}

#' @rdname initializers
#' @export
initializer_glorot_normal <- function(seed = NULL) new_initializer("GlorotNormal", seed = check_seed(seed))

#' @rdname initializers
#' @export
initializer_glorot_uniform <- function(seed = NULL) new_initializer("GlorotUniform", seed = check_seed(seed))

#' @rdname initializers
#' @export
initializer_he_normal <- function(seed = NULL) new_initializer("HeNormal", seed = check_seed(seed))

#' @rdname initializers
#' @export
initializer_he_uniform <- function(seed = NULL) new_initializer("HeUniform", seed = check_seed(seed))

#' @rdname initializers
#' @export
initializer_lecun_normal <- function(seed = NULL) new_initializer("LecunNormal", seed = check_seed(seed))

#' @rdname initializers
#' @export
initializer_lecun_uniform <- function(seed = NULL) new_initializer("LecunUniform", seed = check_seed(seed))
