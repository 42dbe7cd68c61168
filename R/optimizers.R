# Optimizers: configurations that compile() hands to the core, which parses them with the
# same parser as a saved file's optimizer config (Keras's field names).

new_optimizer <- function(name, ...) {
  fields <- list(...)
  fields <- fields[!vapply(fields, is.null, logical(1))]
  structure(c(list(name = name), fields), class = "rustgpu_optimizer")
}

# Keras 2's `lr` (what R keras 2.x called the learning rate) is taken through `...`; any
# other extra argument is an error.
learning_rate_arg <- function(learning_rate, dots, lr_given_too, call = rlang::caller_env()) {
  nms <- names(dots)
  if (length(dots) > 0 && (is.null(nms) || any(nms == "") || any(nms != "lr"))) {
    bad <- if (is.null(nms)) rep("", length(dots)) else nms
    bad <- bad[bad != "lr"]
    value_error(sprintf("Unknown argument%s %s: the optimizer takes the arguments listed in ?optimizers.",
                        if (length(bad) > 1) "s" else "",
                        paste(ifelse(bad == "", "(unnamed)", sprintf("`%s`", bad)), collapse = ", ")),
                call = call)
  }
  if (!is.null(dots$lr)) {
    if (lr_given_too) value_error("Give `learning_rate` or its old name `lr`, not both.", call = call)
    learning_rate <- dots$lr
  }
  if (inherits(learning_rate, "rustgpu_learning_rate_schedule")) return(unclass(learning_rate))
  check_number(learning_rate, "learning_rate", min = 0, min_inclusive = FALSE, call = call)
  learning_rate
}

# What every optimizer takes: Keras 2's time-based decay and gradient clipping.
check_common <- function(decay, clipnorm, clipvalue, call = rlang::caller_env()) {
  check_number(decay, "decay", min = 0, call = call)
  if (!is.null(clipnorm)) check_number(clipnorm, "clipnorm", min = 0, min_inclusive = FALSE, call = call)
  if (!is.null(clipvalue)) check_number(clipvalue, "clipvalue", min = 0, min_inclusive = FALSE, call = call)
}

check_epsilon <- function(epsilon, call = rlang::caller_env()) {
  if (is.null(epsilon)) return(1e-07)
  check_number(epsilon, "epsilon", min = 0, min_inclusive = FALSE, call = call)
  epsilon
}

#' Optimizers
#'
#' Keras's optimizers with tf.keras 2.x's update rules, R keras 2.x's arguments and defaults.
#' `optimizer_sgd()`: `m <- momentum * m - learning_rate * g`, then `w <- w + m`
#' (or the Nesterov form). `optimizer_rmsprop()`: `v <- rho * v + (1 - rho) * g^2`,
#' `w <- w - learning_rate * g / sqrt(v + epsilon)`. `optimizer_adam()`: Adam with
#' bias correction. `optimizer_adagrad()`: `a <- a + g^2` (from
#' `initial_accumulator_value`), `w <- w - learning_rate * g / sqrt(a + epsilon)`.
#' `optimizer_adadelta()`: Adadelta. `optimizer_adamax()`: Adam with the infinity norm.
#' `optimizer_nadam()`: Adam with Nesterov momentum (tf.keras 2.x's momentum schedule).
#'
#' @param learning_rate Learning rate (> 0), or a schedule ([learning_rate_schedules]). R keras
#'   2.x's name for it, `lr`, is accepted too.
#' @param momentum Momentum (>= 0).
#' @param nesterov Whether to use Nesterov momentum.
#' @param rho Discounting factor for the squared-gradient average, in `[0, 1)`.
#' @param epsilon Small constant for numerical stability (> 0); `NULL` for Keras's `1e-07`.
#' @param centered Whether RMSprop normalises by the gradient's estimated variance.
#' @param beta_1,beta_2 Decay rates of the first and second moment estimates, in `[0, 1)`.
#' @param amsgrad Whether to use the AMSGrad variant of Adam.
#' @param initial_accumulator_value Adagrad's starting accumulator (>= 0).
#' @param schedule_decay Keras 2.2's Nadam momentum schedule; only its default, 0.004, is
#'   accepted (the schedule is tf.keras 2.x's).
#' @param decay Learning-rate decay over steps (>= 0): the learning rate of step `t` (from 0) is
#'   `learning_rate / (1 + decay * t)`, as in Keras 2.
#' @param clipnorm Each weight's gradient is rescaled to at most this norm (`NULL`: no clipping).
#' @param clipvalue Each gradient value is clipped to `[-clipvalue, clipvalue]` (`NULL`: no
#'   clipping; ignored when `clipnorm` is set, as in tf.keras).
#' @param ... `lr`, the old name of `learning_rate`.
#' @return An optimizer for [compile()].
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
#' compile(model, optimizer = optimizer_sgd(learning_rate = 0.1, momentum = 0.9), loss = "mse")
#' compile(model, optimizer = optimizer_rmsprop(lr = 1e-4, decay = 1e-6), loss = "mse")
#' @name optimizers
NULL

#' @rdname optimizers
#' @export
optimizer_sgd <- function(learning_rate = 0.01, momentum = 0, decay = 0, nesterov = FALSE,
                          clipnorm = NULL, clipvalue = NULL, ...) {
  learning_rate <- learning_rate_arg(learning_rate, list(...), !missing(learning_rate))
  check_number(momentum, "momentum", min = 0)
  check_bool(nesterov, "nesterov")
  check_common(decay, clipnorm, clipvalue)
  new_optimizer("sgd", learning_rate = learning_rate, momentum = momentum, nesterov = nesterov,
                decay = decay, clipnorm = clipnorm, clipvalue = clipvalue)
}

#' @rdname optimizers
#' @export
optimizer_rmsprop <- function(learning_rate = 0.001, rho = 0.9, epsilon = NULL, decay = 0,
                              clipnorm = NULL, clipvalue = NULL, momentum = 0, centered = FALSE, ...) {
  learning_rate <- learning_rate_arg(learning_rate, list(...), !missing(learning_rate))
  check_number(rho, "rho", min = 0, max = 1, max_inclusive = FALSE)
  check_number(momentum, "momentum", min = 0)
  epsilon <- check_epsilon(epsilon)
  check_bool(centered, "centered")
  check_common(decay, clipnorm, clipvalue)
  new_optimizer("rmsprop", learning_rate = learning_rate, rho = rho, momentum = momentum,
                epsilon = epsilon, centered = centered, decay = decay, clipnorm = clipnorm,
                clipvalue = clipvalue)
}

#' @rdname optimizers
#' @export
optimizer_adam <- function(learning_rate = 0.001, beta_1 = 0.9, beta_2 = 0.999, epsilon = NULL,
                           decay = 0, amsgrad = FALSE, clipnorm = NULL, clipvalue = NULL, ...) {
  learning_rate <- learning_rate_arg(learning_rate, list(...), !missing(learning_rate))
  check_number(beta_1, "beta_1", min = 0, max = 1, max_inclusive = FALSE)
  check_number(beta_2, "beta_2", min = 0, max = 1, max_inclusive = FALSE)
  epsilon <- check_epsilon(epsilon)
  check_bool(amsgrad, "amsgrad")
  check_common(decay, clipnorm, clipvalue)
  new_optimizer("adam", learning_rate = learning_rate, beta_1 = beta_1, beta_2 = beta_2,
                epsilon = epsilon, amsgrad = amsgrad, decay = decay, clipnorm = clipnorm,
                clipvalue = clipvalue)
}

#' @rdname optimizers
#' @export
optimizer_adagrad <- function(learning_rate = 0.01, epsilon = NULL, decay = 0, clipnorm = NULL,
                              clipvalue = NULL, initial_accumulator_value = 0.1, ...) {
  learning_rate <- learning_rate_arg(learning_rate, list(...), !missing(learning_rate))
  epsilon <- check_epsilon(epsilon)
  check_number(initial_accumulator_value, "initial_accumulator_value", min = 0)
  check_common(decay, clipnorm, clipvalue)
  new_optimizer("adagrad", learning_rate = learning_rate, epsilon = epsilon,
                initial_accumulator_value = initial_accumulator_value, decay = decay,
                clipnorm = clipnorm, clipvalue = clipvalue)
}

#' @rdname optimizers
#' @export
optimizer_adadelta <- function(learning_rate = 1, rho = 0.95, epsilon = NULL, decay = 0,
                               clipnorm = NULL, clipvalue = NULL, ...) {
  learning_rate <- learning_rate_arg(learning_rate, list(...), !missing(learning_rate))
  check_number(rho, "rho", min = 0, max = 1, max_inclusive = FALSE)
  epsilon <- check_epsilon(epsilon)
  check_common(decay, clipnorm, clipvalue)
  new_optimizer("adadelta", learning_rate = learning_rate, rho = rho, epsilon = epsilon,
                decay = decay, clipnorm = clipnorm, clipvalue = clipvalue)
}

#' @rdname optimizers
#' @export
optimizer_adamax <- function(learning_rate = 0.002, beta_1 = 0.9, beta_2 = 0.999, epsilon = NULL,
                             decay = 0, clipnorm = NULL, clipvalue = NULL, ...) {
  learning_rate <- learning_rate_arg(learning_rate, list(...), !missing(learning_rate))
  check_number(beta_1, "beta_1", min = 0, max = 1, max_inclusive = FALSE)
  check_number(beta_2, "beta_2", min = 0, max = 1, max_inclusive = FALSE)
  epsilon <- check_epsilon(epsilon)
  check_common(decay, clipnorm, clipvalue)
  new_optimizer("adamax", learning_rate = learning_rate, beta_1 = beta_1, beta_2 = beta_2,
                epsilon = epsilon, decay = decay, clipnorm = clipnorm, clipvalue = clipvalue)
}

#' @rdname optimizers
#' @export
optimizer_nadam <- function(learning_rate = 0.002, beta_1 = 0.9, beta_2 = 0.999, epsilon = NULL,
                            schedule_decay = 0.004, clipnorm = NULL, clipvalue = NULL, ...) {
  learning_rate <- learning_rate_arg(learning_rate, list(...), !missing(learning_rate))
  check_number(beta_1, "beta_1", min = 0, max = 1, max_inclusive = FALSE)
  check_number(beta_2, "beta_2", min = 0, max = 1, max_inclusive = FALSE)
  epsilon <- check_epsilon(epsilon)
  check_number(schedule_decay, "schedule_decay")
  if (schedule_decay != 0.004) {
    value_error("`schedule_decay` other than 0.004 is not supported: Nadam follows tf.keras 2.x's fixed momentum schedule.")
  }
  check_common(0, clipnorm, clipvalue)
  new_optimizer("nadam", learning_rate = learning_rate, beta_1 = beta_1, beta_2 = beta_2,
                epsilon = epsilon, clipnorm = clipnorm, clipvalue = clipvalue)
}

#' @export
print.rustgpu_optimizer <- function(x, ...) {
  args <- unclass(x)[names(x) != "name"]
  args <- lapply(args, function(a) if (is.list(a)) sprintf("<%s>", a$class_name) else a)
  cat(sprintf("<optimizer %s: %s>\n", x$name,
              paste(sprintf("%s = %s", names(args), vapply(args, format, "")), collapse = ", ")))
  invisible(x)
}

# A name ("adam", "Adam") is checked by the core at compile(), against its registry.
as_optimizer <- function(optimizer, call = rlang::caller_env()) {
  if (inherits(optimizer, "rustgpu_optimizer")) return(optimizer)
  if (is.character(optimizer) && length(optimizer) == 1 && !is.na(optimizer)) {
    return(new_optimizer(tolower(optimizer)))
  }
  value_error(sprintf(
    "`optimizer` must be an optimizer name such as \"adam\" or an optimizer such as optimizer_adam(), not %s.",
    describe(optimizer)), call = call)
}

new_schedule <- function(class_name, ...) {
  structure(list(class_name = class_name, config = list(...)), class = "rustgpu_learning_rate_schedule")
}

#' @export
print.rustgpu_learning_rate_schedule <- function(x, ...) {
  cfg <- x$config
  cat(sprintf("<learning-rate schedule %s: %s>\n", x$class_name,
              paste(sprintf("%s = %s", names(cfg), vapply(cfg, function(v) paste(format(v), collapse = ", "), "")), collapse = ", ")))
  invisible(x)
}

#' Learning-rate schedules
#'
#' tf.keras's schedules, for an optimizer's `learning_rate`: the rate of each optimizer step
#' `step` (from 0). `exponential_decay`: `initial_learning_rate * decay_rate^(step /
#' decay_steps)` (the exponent floored with `staircase`); `inverse_time_decay`:
#' `initial_learning_rate / (1 + decay_rate * step / decay_steps)`; `piecewise_constant_decay`:
#' `values[i]` while `step <= boundaries[i]`; `polynomial_decay`: from
#' `initial_learning_rate` to `end_learning_rate` over `decay_steps` steps; `cosine_decay`:
#' a half cosine from `initial_learning_rate` to `alpha` times it.
#'
#' @param initial_learning_rate The rate at step 0.
#' @param decay_steps,decay_rate,staircase,boundaries,values,end_learning_rate,power,cycle,alpha As above.
#' @param name Unused.
#' @return A schedule for `optimizer_*(learning_rate = )`.
#' @examples
#' schedule <- learning_rate_schedule_exponential_decay(0.1, decay_steps = 100, decay_rate = 0.9)
#' opt <- optimizer_sgd(learning_rate = schedule)
#' @name learning_rate_schedules
NULL

#' @rdname learning_rate_schedules
#' @export
learning_rate_schedule_exponential_decay <- function(initial_learning_rate, decay_steps, decay_rate, staircase = FALSE, name = NULL) {
  decay_schedule("ExponentialDecay", initial_learning_rate, decay_steps, decay_rate, staircase)
}

#' @rdname learning_rate_schedules
#' @export
learning_rate_schedule_inverse_time_decay <- function(initial_learning_rate, decay_steps, decay_rate, staircase = FALSE, name = NULL) {
  decay_schedule("InverseTimeDecay", initial_learning_rate, decay_steps, decay_rate, staircase)
}

# The schedules that decay by `decay_rate` every `decay_steps` steps.
decay_schedule <- function(class_name, initial_learning_rate, decay_steps, decay_rate, staircase, call = rlang::caller_env()) {
  check_number(initial_learning_rate, "initial_learning_rate", min = 0, min_inclusive = FALSE, call = call)
  check_number(decay_steps, "decay_steps", min = 0, min_inclusive = FALSE, call = call)
  check_number(decay_rate, "decay_rate", min = 0, min_inclusive = FALSE, call = call)
  check_bool(staircase, "staircase", call = call)
  new_schedule(class_name, initial_learning_rate = initial_learning_rate, decay_steps = decay_steps,
               decay_rate = decay_rate, staircase = staircase)
}

#' @rdname learning_rate_schedules
#' @export
learning_rate_schedule_piecewise_constant_decay <- function(boundaries, values, name = NULL) {
  if (!is.numeric(boundaries) || !is.numeric(values) || length(values) != length(boundaries) + 1 ||
      anyNA(c(boundaries, values)) || is.unsorted(boundaries) || any(values <= 0)) {
    value_error("`values` (positive) must have one entry more than `boundaries` (increasing).")
  }
  new_schedule("PiecewiseConstantDecay", boundaries = I(as.numeric(boundaries)), values = I(as.numeric(values)))
}

#' @rdname learning_rate_schedules
#' @export
learning_rate_schedule_polynomial_decay <- function(initial_learning_rate, decay_steps, end_learning_rate = 1e-4,
                                                    power = 1, cycle = FALSE, name = NULL) {
  check_number(initial_learning_rate, "initial_learning_rate", min = 0, min_inclusive = FALSE)
  check_number(decay_steps, "decay_steps", min = 0, min_inclusive = FALSE)
  check_number(end_learning_rate, "end_learning_rate", min = 0)
  check_number(power, "power")
  check_bool(cycle, "cycle")
  new_schedule("PolynomialDecay", initial_learning_rate = initial_learning_rate, decay_steps = decay_steps,
               end_learning_rate = end_learning_rate, power = power, cycle = cycle)
}

#' @rdname learning_rate_schedules
#' @export
learning_rate_schedule_cosine_decay <- function(initial_learning_rate, decay_steps, alpha = 0, name = NULL) {
  check_number(initial_learning_rate, "initial_learning_rate", min = 0, min_inclusive = FALSE)
  check_number(decay_steps, "decay_steps", min = 0, min_inclusive = FALSE)
  check_number(alpha, "alpha", min = 0)
  new_schedule("CosineDecay", initial_learning_rate = initial_learning_rate, decay_steps = decay_steps, alpha = alpha)
}

