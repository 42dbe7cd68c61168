# Optimizers: configurations that compile() hands to the Rust side, with Keras's defaults.

new_optimizer <- function(name, ...) {
  structure(list(name = name, ...), class = "rustgpu_optimizer")
}

#' Optimizers
#'
#' Keras's optimizers with tf.keras 2.x's update rules and defaults.
#' `optimizer_sgd()`: `m <- momentum * m - learning_rate * g`, then `w <- w + m`
#' (or the Nesterov form). `optimizer_rmsprop()`: `v <- rho * v + (1 - rho) * g^2`,
#' `w <- w - learning_rate * g / sqrt(v + epsilon)`. `optimizer_adam()`: Adam with
#' bias correction.
#'
#' @param learning_rate Learning rate (> 0).
#' @param momentum Momentum (>= 0).
#' @param nesterov Whether to use Nesterov momentum.
#' @param rho Discounting factor for the squared-gradient average, in `[0, 1)`.
#' @param epsilon Small constant for numerical stability (> 0).
#' @param centered Whether RMSprop normalises by the gradient's estimated variance.
#' @param beta_1,beta_2 Decay rates of the first and second moment estimates, in `[0, 1)`.
#' @param amsgrad Whether to use the AMSGrad variant of Adam.
#' @return An optimizer for [compile()].
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
#' compile(model, optimizer = optimizer_sgd(learning_rate = 0.1, momentum = 0.9), loss = "mse")
#' @name optimizers
NULL

#' @rdname optimizers
#' @export
optimizer_sgd <- function(learning_rate = 0.01, momentum = 0, nesterov = FALSE) {
  check_number(learning_rate, "learning_rate", min = 0, min_inclusive = FALSE)
  check_number(momentum, "momentum", min = 0)
  check_bool(nesterov, "nesterov")
  new_optimizer("sgd", learning_rate = learning_rate, momentum = momentum, nesterov = nesterov)
}

#' @rdname optimizers
#' @export
optimizer_rmsprop <- function(learning_rate = 0.001, rho = 0.9, momentum = 0, epsilon = 1e-07,
                              centered = FALSE) {
  check_number(learning_rate, "learning_rate", min = 0, min_inclusive = FALSE)
  check_number(rho, "rho", min = 0, max = 1, max_inclusive = FALSE)
  check_number(momentum, "momentum", min = 0)
  check_number(epsilon, "epsilon", min = 0, min_inclusive = FALSE)
  check_bool(centered, "centered")
  new_optimizer("rmsprop", learning_rate = learning_rate, rho = rho, momentum = momentum,
                epsilon = epsilon, centered = centered)
}

#' @rdname optimizers
#' @export
optimizer_adam <- function(learning_rate = 0.001, beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-07,
                           amsgrad = FALSE) {
  check_number(learning_rate, "learning_rate", min = 0, min_inclusive = FALSE)
  check_number(beta_1, "beta_1", min = 0, max = 1, max_inclusive = FALSE)
  check_number(beta_2, "beta_2", min = 0, max = 1, max_inclusive = FALSE)
  check_number(epsilon, "epsilon", min = 0, min_inclusive = FALSE)
  check_bool(amsgrad, "amsgrad")
  new_optimizer("adam", learning_rate = learning_rate, beta_1 = beta_1, beta_2 = beta_2,
                epsilon = epsilon, amsgrad = amsgrad)
}

#' @export
print.rustgpu_optimizer <- function(x, ...) {
  args <- x[names(x) != "name"]
  cat(sprintf("<optimizer %s: %s>\n", x$name,
              paste(sprintf("%s = %s", names(args), vapply(args, format, "")), collapse = ", ")))
  invisible(x)
}

as_optimizer <- function(optimizer, call = rlang::caller_env()) {
  if (inherits(optimizer, "rustgpu_optimizer")) return(optimizer)
  if (is.character(optimizer) && length(optimizer) == 1 && !is.na(optimizer)) {
    name <- tolower(optimizer)
    if (name %in% c("sgd", "rmsprop", "adam")) return(new_optimizer(name))
  }
  value_error(sprintf(
    "`optimizer` must be \"sgd\", \"rmsprop\", \"adam\" or an optimizer such as optimizer_adam(), not %s.",
    describe(optimizer)), call = call)
}
