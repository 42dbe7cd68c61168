# Losses and metrics as functions, as R keras 2.x has them: `loss = loss_binary_crossentropy`
# in compile() is the loss named "binary_crossentropy", and the function itself, called on
# targets and predictions, gives each sample's loss (computed by the core).

keras_loss <- function(name) {
  force(name)
  f <- function(y_true, y_pred) {
    # On tensors (in a loss or lambda being traced, or on layer outputs): Keras's formula
    # in backend functions.
    if (is_traced(y_true) || is_traced(y_pred) || is_tensor(y_true) || is_tensor(y_pred)) {
      formula <- tensor_losses[[name]]
      if (is.null(formula)) value_error(sprintf("loss_%s() is not available on tensors yet: write it with k_*() functions.", name))
      return(formula(y_true, y_pred))
    }
    call_backend(rg_loss_values(name, y_true, y_pred))
  }
  structure(f, class = c("rustgpu_loss", "function"), keras_name = name)
}

# tf.keras's losses written with backend functions, for loss functions called on tensors.
tensor_losses <- list(
  binary_crossentropy = function(y_true, y_pred) k_mean(k_binary_crossentropy(y_true, y_pred), axis = -1),
  categorical_crossentropy = function(y_true, y_pred) k_categorical_crossentropy(y_true, y_pred),
  sparse_categorical_crossentropy = function(y_true, y_pred) k_sparse_categorical_crossentropy(y_true, y_pred),
  mean_squared_error = function(y_true, y_pred) k_mean(k_square(y_pred - y_true), axis = -1),
  mean_absolute_error = function(y_true, y_pred) k_mean(k_abs(y_pred - y_true), axis = -1),
  mean_absolute_percentage_error = function(y_true, y_pred) {
    100 * k_mean(k_abs((y_true - y_pred) / k_clip(k_abs(y_true), k_epsilon(), NULL)), axis = -1)
  },
  mean_squared_logarithmic_error = function(y_true, y_pred) {
    k_mean(k_square(k_log(k_clip(y_pred, k_epsilon(), NULL) + 1) - k_log(k_clip(y_true, k_epsilon(), NULL) + 1)), axis = -1)
  },
  poisson = function(y_true, y_pred) k_mean(y_pred - y_true * k_log(y_pred + k_epsilon()), axis = -1),
  logcosh = function(y_true, y_pred) {
    x <- y_pred - y_true
    k_mean(x + k_softplus(-2 * x) - log(2), axis = -1)
  },
  kullback_leibler_divergence = function(y_true, y_pred) {
    y_true <- k_clip(y_true, k_epsilon(), 1)
    y_pred <- k_clip(y_pred, k_epsilon(), 1)
    k_sum(y_true * k_log(y_true / y_pred), axis = -1)
  },
  cosine_similarity = function(y_true, y_pred) -k_sum(k_l2_normalize(y_true, axis = -1) * k_l2_normalize(y_pred, axis = -1), axis = -1)
)

keras_metric <- function(name) {
  force(name)
  f <- function(y_true, y_pred) call_backend(rg_metric_values(name, y_true, y_pred))
  structure(f, class = c("rustgpu_metric", "function"), keras_name = name)
}

#' @export
print.rustgpu_loss <- function(x, ...) {
  cat(sprintf("<loss %s>\n", attr(x, "keras_name")))
  invisible(x)
}

#' @export
print.rustgpu_metric <- function(x, ...) {
  cat(sprintf("<metric %s>\n", attr(x, "keras_name")))
  invisible(x)
}

# The name compile() passes to the core for a loss given as a name or a loss function.
loss_name <- function(loss, arg, call = rlang::caller_env()) {
  if (is.function(loss)) {
    name <- attr(loss, "keras_name")
    # A loss written in R: traced by compile() for its output's shape.
    if (is.null(name)) return(structure(list(f = loss, name = "loss"), class = "rustgpu_r_function"))
    return(name)
  }
  check_string(loss, arg, call = call)
  loss
}

# compile()'s metrics: names or metric (and loss) functions, in a vector or list; a named
# entry reports under its name, as R keras does.
metric_names <- function(metrics, call = rlang::caller_env()) {
  if (is.null(metrics)) return(list(keras = character(), shown = character()))
  if (is.function(metrics) || is.character(metrics) && length(metrics) == 1) metrics <- list(metrics)
  if (!is.list(metrics) && !is.character(metrics)) {
    value_error(sprintf("`metrics` must be metric names or metric functions (e.g. metric_binary_accuracy), not %s.", describe(metrics)), call = call)
  }
  metrics <- as.list(metrics)
  labels <- names(metrics)
  keras <- character(length(metrics))
  shown <- character(length(metrics))
  custom <- vector("list", length(metrics))
  for (i in seq_along(metrics)) {
    m <- metrics[[i]]
    if (is.function(m) && is.null(attr(m, "keras_name"))) {
      # A metric written in R (custom_metric() names it): traced by compile().
      shown[i] <- if (is.null(attr(m, "metric_name"))) "custom_metric" else attr(m, "metric_name")
      keras[i] <- NA_character_
      custom[[i]] <- m
    } else if (is.function(m)) {
      keras[i] <- attr(m, "keras_name")
      shown[i] <- keras[i]
    } else if (is.character(m) && length(m) == 1 && !is.na(m)) {
      keras[i] <- m
      # tf.keras names the history entries of "AUC", "Precision", "Recall" in lower case.
      shown[i] <- if (m %in% c("AUC", "Precision", "Recall")) tolower(m) else m
    } else {
      value_error(sprintf("`metrics[[%d]]` must be a metric name or function, not %s.", i, describe(m)), call = call)
    }
    if (!is.null(labels) && nzchar(labels[i])) shown[i] <- labels[i]
  }
  list(keras = keras, shown = shown, custom = custom)
}

#' Losses
#'
#' Keras's losses as functions: give one to [compile()] (`loss = loss_binary_crossentropy`,
#' the same as `loss = "binary_crossentropy"`), or call it on targets and predictions for
#' each sample's loss. tf.keras 2.x's definitions: crossentropies clip probabilities to
#' `[1e-7, 1 - 1e-7]` (and are computed from the logits when the model ends in softmax or
#' sigmoid); hinge losses read 0/1 labels as -1/1; `loss_huber()` has `delta = 1`;
#' `loss_cosine_proximity()` is minus the cosine similarity.
#'
#' @param y_true Targets, samples first (class ids from 0 for the sparse loss).
#' @param y_pred Predictions, samples first.
#' @return Each sample's loss (a numeric vector).
#' @examples
#' loss_mean_squared_error(matrix(c(1, 2, 3, 4), 2), matrix(c(1, 2, 3, 5), 2))
#' loss_categorical_crossentropy(rbind(c(0, 1)), rbind(c(0.2, 0.8)))
#' @name losses
NULL

#' @rdname losses
#' @usage loss_binary_crossentropy(y_true, y_pred)
#' @export
loss_binary_crossentropy <- keras_loss("binary_crossentropy")
#' @rdname losses
#' @usage loss_categorical_crossentropy(y_true, y_pred)
#' @export
loss_categorical_crossentropy <- keras_loss("categorical_crossentropy")
#' @rdname losses
#' @usage loss_sparse_categorical_crossentropy(y_true, y_pred)
#' @export
loss_sparse_categorical_crossentropy <- keras_loss("sparse_categorical_crossentropy")
#' @rdname losses
#' @usage loss_mean_squared_error(y_true, y_pred)
#' @export
loss_mean_squared_error <- keras_loss("mean_squared_error")
#' @rdname losses
#' @usage loss_mean_absolute_error(y_true, y_pred)
#' @export
loss_mean_absolute_error <- keras_loss("mean_absolute_error")
#' @rdname losses
#' @usage loss_mean_absolute_percentage_error(y_true, y_pred)
#' @export
loss_mean_absolute_percentage_error <- keras_loss("mean_absolute_percentage_error")
#' @rdname losses
#' @usage loss_mean_squared_logarithmic_error(y_true, y_pred)
#' @export
loss_mean_squared_logarithmic_error <- keras_loss("mean_squared_logarithmic_error")
#' @rdname losses
#' @usage loss_huber(y_true, y_pred)
#' @export
loss_huber <- keras_loss("huber_loss")
#' @rdname losses
#' @usage loss_logcosh(y_true, y_pred)
#' @export
loss_logcosh <- keras_loss("logcosh")
#' @rdname losses
#' @usage loss_poisson(y_true, y_pred)
#' @export
loss_poisson <- keras_loss("poisson")
#' @rdname losses
#' @usage loss_hinge(y_true, y_pred)
#' @export
loss_hinge <- keras_loss("hinge")
#' @rdname losses
#' @usage loss_squared_hinge(y_true, y_pred)
#' @export
loss_squared_hinge <- keras_loss("squared_hinge")
#' @rdname losses
#' @usage loss_categorical_hinge(y_true, y_pred)
#' @export
loss_categorical_hinge <- keras_loss("categorical_hinge")
#' @rdname losses
#' @usage loss_kullback_leibler_divergence(y_true, y_pred)
#' @export
loss_kullback_leibler_divergence <- keras_loss("kullback_leibler_divergence")
#' @rdname losses
#' @usage loss_cosine_proximity(y_true, y_pred)
#' @export
loss_cosine_proximity <- keras_loss("cosine_similarity")
#' @rdname losses
#' @usage loss_cosine_similarity(y_true, y_pred)
#' @export
loss_cosine_similarity <- keras_loss("cosine_similarity")

#' Metrics
#'
#' Keras's metrics as functions: give them to [compile()] (`metrics = metric_binary_accuracy`
#' or `metrics = list("mae", metric_mean_squared_error)`; the history names each by Keras's
#' name, or by its name in a named list), or call one on targets and predictions for each
#' sample's value. Every loss is a metric too. `metric_top_k_categorical_accuracy()`: whether
#' the target is among the 5 highest predictions.
#'
#' `metric_auc()` (area under the ROC curve, from 200 thresholds), `metric_precision()` and
#' `metric_recall()` (threshold 0.5) are tf.keras's stateful metrics: during `fit()` they are
#' computed over the epoch so far, in `evaluate()` over all the samples (every value of the
#' output counts; a target is positive when it is not 0). Called directly, they give one
#' value for all the samples given. Also by name: "auc"/"AUC", "precision", "recall".
#'
#' @inheritParams losses
#' @return Each sample's metric (a numeric vector).
#' @examples
#' metric_binary_accuracy(c(1, 0, 1), c(0.9, 0.2, 0.3))
#' @name metrics
NULL

#' @rdname metrics
#' @usage metric_auc(y_true, y_pred)
#' @export
metric_auc <- keras_metric("auc")
#' @rdname metrics
#' @usage metric_precision(y_true, y_pred)
#' @export
metric_precision <- keras_metric("precision")
#' @rdname metrics
#' @usage metric_recall(y_true, y_pred)
#' @export
metric_recall <- keras_metric("recall")
#' @rdname metrics
#' @usage metric_binary_accuracy(y_true, y_pred)
#' @export
metric_binary_accuracy <- keras_metric("binary_accuracy")
#' @rdname metrics
#' @usage metric_categorical_accuracy(y_true, y_pred)
#' @export
metric_categorical_accuracy <- keras_metric("categorical_accuracy")
#' @rdname metrics
#' @usage metric_sparse_categorical_accuracy(y_true, y_pred)
#' @export
metric_sparse_categorical_accuracy <- keras_metric("sparse_categorical_accuracy")
#' @rdname metrics
#' @usage metric_top_k_categorical_accuracy(y_true, y_pred)
#' @export
metric_top_k_categorical_accuracy <- keras_metric("top_k_categorical_accuracy")
#' @rdname metrics
#' @usage metric_sparse_top_k_categorical_accuracy(y_true, y_pred)
#' @export
metric_sparse_top_k_categorical_accuracy <- keras_metric("sparse_top_k_categorical_accuracy")
#' @rdname metrics
#' @usage metric_binary_crossentropy(y_true, y_pred)
#' @export
metric_binary_crossentropy <- keras_metric("binary_crossentropy")
#' @rdname metrics
#' @usage metric_categorical_crossentropy(y_true, y_pred)
#' @export
metric_categorical_crossentropy <- keras_metric("categorical_crossentropy")
#' @rdname metrics
#' @usage metric_sparse_categorical_crossentropy(y_true, y_pred)
#' @export
metric_sparse_categorical_crossentropy <- keras_metric("sparse_categorical_crossentropy")
#' @rdname metrics
#' @usage metric_mean_squared_error(y_true, y_pred)
#' @export
metric_mean_squared_error <- keras_metric("mean_squared_error")
#' @rdname metrics
#' @usage metric_mean_absolute_error(y_true, y_pred)
#' @export
metric_mean_absolute_error <- keras_metric("mean_absolute_error")
#' @rdname metrics
#' @usage metric_mean_absolute_percentage_error(y_true, y_pred)
#' @export
metric_mean_absolute_percentage_error <- keras_metric("mean_absolute_percentage_error")
#' @rdname metrics
#' @usage metric_mean_squared_logarithmic_error(y_true, y_pred)
#' @export
metric_mean_squared_logarithmic_error <- keras_metric("mean_squared_logarithmic_error")
#' @rdname metrics
#' @usage metric_hinge(y_true, y_pred)
#' @export
metric_hinge <- keras_metric("hinge")
#' @rdname metrics
#' @usage metric_squared_hinge(y_true, y_pred)
#' @export
metric_squared_hinge <- keras_metric("squared_hinge")
#' @rdname metrics
#' @usage metric_poisson(y_true, y_pred)
#' @export
metric_poisson <- keras_metric("poisson")
#' @rdname metrics
#' @usage metric_kullback_leibler_divergence(y_true, y_pred)
#' @export
metric_kullback_leibler_divergence <- keras_metric("kullback_leibler_divergence")
#' @rdname metrics
#' @usage metric_cosine_proximity(y_true, y_pred)
#' @export
metric_cosine_proximity <- keras_metric("cosine_similarity")

#' A metric written in R
#'
#' R keras's `custom_metric()`: names an R function of `(y_true, y_pred)` as a metric for
#' [compile()]. The function is written with the backend functions (`k_*()`) and traced once
#' (see [layer_lambda()]); its value is averaged over the samples (and over every axis but
#' the batch's), as Keras averages a metric function's.
#'
#' @param name The metric's name in logs and history.
#' @param metric_fn A function of `(y_true, y_pred)`.
#' @return The function, named.
#' @examples
#' mean_pred <- custom_metric("mean_pred", function(y_true, y_pred) k_mean(y_pred))
#' @export
custom_metric <- function(name, metric_fn) {
  check_string(name, "name")
  if (!is.function(metric_fn)) value_error(sprintf("`metric_fn` must be a function of (y_true, y_pred), not %s.", describe(metric_fn)))
  structure(metric_fn, metric_name = name)
}
