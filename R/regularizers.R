# Regularizers: penalties on a layer's weights that Keras adds to the loss.

new_regularizer <- function(l1, l2) {
  structure(list(class_name = "L1L2", config = list(l1 = l1, l2 = l2)), class = "rustgpu_regularizer")
}

#' Weight regularizers
#'
#' Penalties on a layer's weights, added to the loss that training minimizes and reports
#' (as Keras does): `regularizer_l1(l)` adds `l * sum(abs(w))`, `regularizer_l2(l)` adds
#' `l * sum(w^2)`, `regularizer_l1_l2()` both. Give them to a layer's `kernel_regularizer`,
#' `bias_regularizer` (or `embeddings_regularizer`).
#'
#' @param l,l1,l2 Penalty factors (>= 0).
#' @return A regularizer.
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(4, kernel_regularizer = regularizer_l2(0.01), input_shape = 3)
#' @name regularizers
NULL

#' @rdname regularizers
#' @export
regularizer_l1 <- function(l = 0.01) {
  check_number(l, "l", min = 0)
  new_regularizer(l, 0)
}

#' @rdname regularizers
#' @export
regularizer_l2 <- function(l = 0.01) {
  check_number(l, "l", min = 0)
  new_regularizer(0, l)
}

#' @rdname regularizers
#' @export
regularizer_l1_l2 <- function(l1 = 0.01, l2 = 0.01) {
  check_number(l1, "l1", min = 0)
  check_number(l2, "l2", min = 0)
  new_regularizer(l1, l2)
}

#' @export
print.rustgpu_regularizer <- function(x, ...) {
  cat(sprintf("<regularizer: l1 = %s, l2 = %s>\n", format(x$config$l1), format(x$config$l2)))
  invisible(x)
}

# A layer's regularizer argument as its config holds it: NULL, or Keras's {class_name, config}.
regularizer_config <- function(x, arg, call = rlang::caller_env()) {
  if (is.null(x)) return(NULL)
  if (inherits(x, "rustgpu_regularizer") || (is.list(x) && is.character(x$class_name))) return(unclass(x))
  value_error(sprintf("`%s` must be a regularizer such as regularizer_l2(0.01), or NULL, not %s.", arg, describe(x)), call = call)
}

#' Penalize a layer's output (activity regularization)
#'
#' As Keras's ActivityRegularization layer: passes its input through and adds
#' `l1 * sum(abs(x)) + l2 * sum(x^2)` of it, divided by the batch's rows, to the loss (the
#' reported loss includes it). The `activity_regularizer` argument of dense, convolution and
#' embedding layers does the same on their output.
#'
#' @inheritParams layer_dense
#' @param l1,l2 The penalty's factors.
#' @return The model, invisibly (or the layer when `object` is missing, or a tensor).
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(4, input_shape = 3, activation = "relu") %>%
#'   layer_activity_regularization(l1 = 0.01)
#' @export
layer_activity_regularization <- function(object, l1 = 0, l2 = 0, input_shape = NULL, name = NULL) {
  force_model(object)
  check_number(l1, "l1", min = 0)
  check_number(l2, "l2", min = 0)
  make_layer("ActivityRegularization", object, list(l1 = l1, l2 = l2), input_shape, name)
}
