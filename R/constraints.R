new_constraint <- function(class_name, config = list()) {
  structure(list(class_name = class_name, config = config), class = "rustgpu_constraint")
}

#' Weight constraints
#'
#' Projections applied to a weight after every optimizer update, as Keras applies them: give
#' them to a layer's `kernel_constraint`, `bias_constraint` (dense and convolution layers) or
#' `embeddings_constraint` (embedding layer).
#'
#' - `constraint_maxnorm()`: scales the weights so that their norm over `axis` is at most
#'   `max_value` (each unit's incoming weights, with the default `axis = 0` of a dense kernel).
#' - `constraint_nonneg()`: sets negative weights to zero.
#' - `constraint_unitnorm()`: scales the weights to norm 1 over `axis`.
#' - `constraint_minmaxnorm()`: moves the norm over `axis` into `[min_value, max_value]`, by
#'   the fraction `rate` per update (1: all the way).
#'
#' `axis` counts the weight's own axes from 0, as Keras does (a convolution kernel is
#' `(rows, cols, input_channels, filters)`: use `axis = c(0, 1, 2)` for each filter's norm).
#'
#' @param max_value,min_value Limits of the norm.
#' @param axis Axis or axes (from 0) along which the norm is taken.
#' @param rate Fraction of the way to the allowed range moved at each update.
#' @return A constraint.
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(4, input_shape = 3, kernel_constraint = constraint_maxnorm(1), bias_constraint = constraint_nonneg())
#' constraint_minmaxnorm(0.5, 1, rate = 0.5)
#' @name constraints
NULL

#' @rdname constraints
#' @export
constraint_maxnorm <- function(max_value = 2, axis = 0) {
  check_number(max_value, "max_value", min = 0)
  new_constraint("MaxNorm", list(max_value = max_value, axis = check_axis(axis)))
}

#' @rdname constraints
#' @export
constraint_nonneg <- function() new_constraint("NonNeg")

#' @rdname constraints
#' @export
constraint_unitnorm <- function(axis = 0) new_constraint("UnitNorm", list(axis = check_axis(axis)))

#' @rdname constraints
#' @export
constraint_minmaxnorm <- function(min_value = 0, max_value = 1, rate = 1, axis = 0) {
  check_number(min_value, "min_value", min = 0)
  check_number(max_value, "max_value", min = min_value)
  check_number(rate, "rate", min = 0)
  new_constraint("MinMaxNorm", list(min_value = min_value, max_value = max_value, rate = rate, axis = check_axis(axis)))
}

#' @export
print.rustgpu_constraint <- function(x, ...) {
  fields <- vapply(names(x$config), function(n) sprintf("%s = %s", n, paste(format(x$config[[n]]), collapse = ", ")), character(1))
  cat(sprintf("<constraint: %s%s>\n", x$class_name, if (length(fields)) paste0("(", paste(fields, collapse = "; "), ")") else ""))
  invisible(x)
}

check_axis <- function(axis, call = rlang::caller_env()) {
  if (!is.numeric(axis) || length(axis) == 0 || anyNA(axis) || any(axis != round(axis))) {
    value_error(sprintf("`axis` must be one or more whole numbers (axes from 0), not %s.", describe(axis)), call = call)
  }
  # One axis is written as a number, several as a list (Keras's forms).
  if (length(axis) == 1) as.integer(axis) else as.list(as.integer(axis))
}

# A layer's constraint argument as its config holds it: NULL, or Keras's {class_name, config}.
constraint_config <- function(x, arg, call = rlang::caller_env()) {
  if (is.null(x)) return(NULL)
  if (inherits(x, "rustgpu_constraint") || (is.list(x) && is.character(x$class_name))) return(unclass(x))
  value_error(sprintf("`%s` must be a constraint such as constraint_maxnorm(2), or NULL, not %s.", arg, describe(x)), call = call)
}
