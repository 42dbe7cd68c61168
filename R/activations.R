# Activation functions as objects (R keras's activation_*()): each computes on tensors and
# arrays as the k_*() functions do, and names its Keras activation, so that
# `layer_dense(activation = activation_relu)` is `activation = "relu"`.

new_activation <- function(name, f) structure(f, class = c("rustgpu_activation", "function"), activation_name = name)

#' Activation functions
#'
#' Keras's activations as R functions: pass one as a layer's `activation` (it then stands
#' for its name, `activation = activation_relu` being `activation = "relu"`), or call it on
#' an array or a tensor (in a [layer_lambda()] function or a custom loss) to apply it.
#'
#' @param x A tensor or an array.
#' @param alpha Slope below zero (`activation_relu()`), scale of the negative part
#'   (`activation_elu()`).
#' @param max_value,threshold `activation_relu()`: clip at `max_value`; values below
#'   `threshold` become 0.
#' @param axis The axis that `activation_softmax()` normalizes (-1 the last).
#' @return The activation of `x`, of its shape.
#' @examples
#' activation_relu(c(-1, 0.5, 2))
#' activation_softmax(matrix(1:4, 2))
#' model <- keras_model_sequential() %>%
#'   layer_dense(4, activation = activation_tanh, input_shape = 3)
#' @name activations
NULL

#' @rdname activations
#' @export
activation_relu <- new_activation("relu", function(x, alpha = 0, max_value = NULL, threshold = 0) {
  k_relu(x, alpha = alpha, max_value = max_value, threshold = threshold)
})

#' @rdname activations
#' @export
activation_elu <- new_activation("elu", function(x, alpha = 1) k_elu(x, alpha))

#' @rdname activations
#' @export
activation_selu <- new_activation("selu", function(x) {
  # tf.keras's constants.
  1.0507009873554804934193349852946 * k_elu(x, 1.6732632423543772848170429916717)
})

#' @rdname activations
#' @export
activation_sigmoid <- new_activation("sigmoid", function(x) k_sigmoid(x))

#' @rdname activations
#' @export
activation_hard_sigmoid <- new_activation("hard_sigmoid", function(x) k_hard_sigmoid(x))

#' @rdname activations
#' @export
activation_tanh <- new_activation("tanh", function(x) k_tanh(x))

#' @rdname activations
#' @export
activation_softmax <- new_activation("softmax", function(x, axis = -1) k_softmax(x, axis))

#' @rdname activations
#' @export
activation_softplus <- new_activation("softplus", function(x) k_softplus(x))

#' @rdname activations
#' @export
activation_softsign <- new_activation("softsign", function(x) k_softsign(x))

#' @rdname activations
#' @export
activation_exponential <- new_activation("exponential", function(x) k_exp(x))

#' @rdname activations
#' @export
activation_linear <- new_activation("linear", function(x) x)

#' @export
print.rustgpu_activation <- function(x, ...) {
  cat(sprintf("<activation \"%s\">\n", attr(x, "activation_name")))
  invisible(x)
}
