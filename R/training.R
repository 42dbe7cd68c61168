# compile / fit / evaluate / predict and the *_on_batch functions.

#' @importFrom generics compile fit
#' @export
generics::compile

#' @export
generics::fit

#' Configure a model for training
#'
#' @param object A model (a template or a parallel model; each is compiled on its own).
#' @param optimizer An optimizer name ("sgd", "rmsprop", "adam", "adagrad", "adadelta",
#'   "adamax", "nadam") or object ([optimizers]).
#' @param loss The loss: a name ("categorical_crossentropy", "sparse_categorical_crossentropy",
#'   "binary_crossentropy", "mean_squared_error" or "mse", "mean_absolute_error" or "mae", and
#'   the others of [losses]) or a loss function such as [loss_binary_crossentropy]. For a
#'   model with several outputs, one for all, or one per output (a list, in order or named by
#'   output layer).
#' @param metrics Metrics to report: names ("accuracy" or "acc", "mae", any loss name, ...)
#'   or metric functions ([metrics]), in a vector or list; entries of a named list are
#'   reported under their names.
#' @param loss_weights For a model with several outputs, a weight per output (in order, or
#'   named by output layer): the loss minimized is the weighted sum of the outputs' losses.
#' @param ... Unused.
#' @return The model, invisibly.
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(3, activation = "softmax", input_shape = 4)
#' compile(model, optimizer = "adam", loss = "categorical_crossentropy", metrics = "accuracy")
#' @export
compile.keras.engine.training.Model <- function(object, optimizer = "rmsprop", loss = NULL, metrics = NULL,
                                                loss_weights = NULL, ...) {
  check_model(object)
  check_strategy_layers(object)
  # A loss written in R is saved under the name it was given by (compile(loss = vae_loss)).
  loss_label <- if (is.symbol(substitute(loss))) as.character(substitute(loss)) else "custom_loss"
  if (unbuilt_custom(object)) {
    # A custom model is compiled once it has its shape (its first data).
    object$pending_compile <- list(optimizer = optimizer, loss = loss, metrics = metrics, loss_weights = loss_weights)
    return(invisible(object))
  }
  if (is.null(loss)) {
    value_error("`loss` is required: e.g. compile(model, optimizer = \"adam\", loss = \"mse\").")
  }
  outputs <- model_info(object)$output_names
  if (is.function(loss)) loss <- list(loss)
  losses <- per_output(loss, outputs, "loss", function(l, arg) loss_name(l, arg, call = rlang::caller_env(3)))
  weights <- if (is.null(loss_weights)) rep(1, length(outputs)) else {
    per_output(loss_weights, outputs, "loss_weights", function(w, arg) {
      check_number(w, arg, min = 0, call = rlang::caller_env(3))
      w
    })
  }
  optimizer <- as_optimizer(optimizer)
  metrics <- metric_names(metrics)
  # Losses and metrics written in R are traced for the outputs' shapes.
  custom <- vapply(losses, inherits, logical(1), "rustgpu_r_function")
  if (any(custom) || anyNA(metrics$keras)) {
    shapes <- call_backend(rg_output_shapes(object$ptr))
    for (k in which(custom)) {
      label <- attr(losses[[k]]$f, "saved_name")
      if (is.null(label)) label <- if (length(outputs) > 1) paste0(outputs[k], "_loss") else loss_label
      losses[[k]] <- traced_loss_spec(losses[[k]]$f, label, shapes[[k]], model = object)
    }
    # A metric applies to every output: traced for each one's shape.
    for (i in which(is.na(metrics$keras))) {
      specs <- vapply(shapes, function(s) traced_loss_spec(metrics$custom[[i]], metrics$shown[i], s), character(1))
      metrics$keras[i] <- sprintf("{\"per_output\": [%s]}", paste(specs, collapse = ", "))
    }
  }
  object$stateful_metrics <- call_backend(rg_compile(object$ptr, unclass(optimizer), as.character(unlist(losses)),
                                                     as.numeric(unlist(weights)), metrics$keras))
  object$metric_names <- metrics$shown
  object$output_names <- outputs
  object$compiled <- TRUE
  apply_layer_trainable(object)
  object$trainable_changed <- FALSE
  object$loss <- loss
  object$optimizer <- optimizer
  invisible(object)
}

# One value per model output: a single value is used for every output; a list or vector
# gives one per output, in order or named by output layer.
per_output <- function(value, outputs, arg, check, call = rlang::caller_env()) {
  n <- length(outputs)
  if (length(value) == 1 && !is.list(value)) return(rep(list(check(value, arg)), n))
  value <- as.list(value)
  if (!is.null(names(value)) && all(nzchar(names(value)))) {
    missing <- setdiff(outputs, names(value))
    if (length(missing)) {
      value_error(sprintf("`%s` has no entry for output%s %s (outputs: %s).", arg, if (length(missing) > 1) "s" else "",
                          paste0("\"", missing, "\"", collapse = ", "), paste(outputs, collapse = ", ")), call = call)
    }
    value <- value[outputs]
  }
  if (length(value) != n) {
    value_error(sprintf("`%s` must have one entry per model output (%d), not %d.", arg, n, length(value)), call = call)
  }
  lapply(seq_len(n), function(i) check(value[[i]], sprintf("%s[[%d]]", arg, i)))
}

# Names of the figures a step reports, as Keras names them in logs and history.
stat_names <- function(object) {
  metrics <- object$metric_names
  outputs <- object$output_names
  if (length(outputs) <= 1) return(c("loss", metrics))
  c("loss", paste0(outputs, "_loss"), if (length(metrics)) paste0(rep(outputs, each = length(metrics)), "_", metrics))
}

# Checks x (and y) once per call, without copying: numeric, no NA/NaN/Inf, same rows.
check_data <- function(x, y = NULL, call = rlang::caller_env()) {
  if (is.null(x)) value_error("`x` is required.", call = call)
  if (is.list(x) && !is.data.frame(x)) {
    # Several inputs: one array each, with the same number of samples.
    if (length(x) == 0) value_error("`x` is an empty list: give one array per model input.", call = call)
    rows <- vapply(seq_along(x), function(i) call_backend(rg_check_data(x[[i]], sprintf("x[[%d]]", i)), call = call), numeric(1))
    if (any(rows != rows[1])) {
      value_error(sprintf("All inputs in `x` must have the same number of samples, not %s.", paste(rows, collapse = ", ")), call = call)
    }
    n <- rows[1]
  } else {
    n <- call_backend(rg_check_data(x, "x"), call = call)
  }
  if (n == 0) value_error("`x` has no rows (samples): nothing to do.", call = call)
  if (!is.null(y)) {
    ys <- if (is.list(y) && !is.data.frame(y)) y else list(y)
    for (i in seq_along(ys)) {
      what <- if (length(ys) > 1) sprintf("y[[%d]]", i) else "y"
      ny <- call_backend(rg_check_data(ys[[i]], what), call = call)
      if (ny != n) {
        value_error(sprintf("`x` and `%s` must have the same number of samples (rows): `x` has %d, `%s` has %d.",
                            what, as.integer(n), what, as.integer(ny)), call = call)
      }
    }
  }
  as.integer(n)
}

# The largest float32: models compute in float32, where larger values become infinite.
float32_max <- 3.4028234663852886e38

# One weight per sample from `sample_weight` and/or `class_weight` (NULL when neither).
sample_weights <- function(sample_weight, class_weight, y, n, object, call = rlang::caller_env()) {
  w <- NULL
  if (!is.null(sample_weight)) {
    if (!is.numeric(sample_weight) || length(sample_weight) != n || anyNA(sample_weight) ||
        any(!is.finite(sample_weight)) || any(sample_weight < 0) || any(sample_weight > float32_max)) {
      value_error(sprintf("`sample_weight` must be %d non-negative numbers within float32's range (one per sample), not %s.", n,
                          describe(sample_weight)), call = call)
    }
    w <- as.numeric(sample_weight)
  }
  if (!is.null(class_weight)) {
    if (is.list(y) && !is.data.frame(y)) value_error("`class_weight` works with one output only.", call = call)
    classes <- if (!is.null(dim(y)) && ncol(y) > 1) max.col(y, ties.method = "first") - 1L else as.integer(round(y))
    cw <- unlist(class_weight)
    if (!is.numeric(cw) || anyNA(cw) || any(cw < 0) || any(cw > float32_max)) {
      value_error("`class_weight` must hold non-negative numbers within float32's range, one per class.", call = call)
    }
    ids <- if (is.null(names(cw))) seq_along(cw) - 1L else suppressWarnings(as.integer(names(cw)))
    if (anyNA(ids)) value_error("`class_weight` must be named by class ids (\"0\", \"1\", ...).", call = call)
    missing <- setdiff(unique(classes), ids)
    if (length(missing)) {
      value_error(sprintf("`class_weight` has no weight for class %s.", paste(sort(missing), collapse = ", ")), call = call)
    }
    by_class <- cw[match(classes, ids)]
    w <- if (is.null(w)) as.numeric(by_class) else w * by_class
  }
  w
}

check_compiled <- function(object, what, call = rlang::caller_env()) {
  if (!isTRUE(object$compiled)) {
    state_error(sprintf(
      "The model must be compiled before `%s()`: call compile(model, optimizer = , loss = ) first.", what),
      call = call)
  }
}

default_batch_size <- function(batch_size, call = rlang::caller_env()) {
  if (is.null(batch_size)) return(32L)
  check_count(batch_size, "batch_size", min = 1, call = call)
  as.integer(batch_size)
}

# Which of those figures are stateful metrics (a value over the epoch, not a batch mean).
stat_stateful <- function(object) {
  flags <- object$stateful_metrics
  if (length(flags) != length(object$metric_names)) flags <- logical(length(object$metric_names))
  outputs <- object$output_names
  if (length(outputs) <= 1) return(c(FALSE, flags))
  c(FALSE, rep(FALSE, length(outputs)), rep(flags, times = length(outputs)))
}

named_stats <- function(values, object) {
  stats::setNames(values, stat_names(object))
}

# What R keras 2.x's evaluate() returns: the loss alone as a named number; with metrics, a
# named list (`score$loss`, `score$acc`).
keras_scores <- function(stats) {
  if (length(stats) == 1) stats else as.list(stats)
}

#' Train a model
#'
#' Runs `epochs` passes over `x`, `y` in batches of `batch_size`, one optimizer step per
#' batch. On a parallel model each batch is split between the replicas. The loss and
#' metrics reported for an epoch are Keras's: the sample-weighted mean over its batches,
#' each computed before that batch's update.
#'
#' @param object A compiled model.
#' @param x Numeric matrix or array of inputs, samples first.
#' @param y Numeric matrix or vector of targets (one-hot rows for categorical
#'   crossentropy, class ids from 0 for sparse categorical crossentropy).
#' @param batch_size Samples per step (default 32).
#' @param epochs Number of passes over the data.
#' @param verbose 0 (silent), 1 (a progress bar, updated in interactive sessions) or 2
#'   (one line per epoch).
#' @param callbacks A list of callbacks ([callback_lambda()], [callback_early_stopping()],
#'   [callback_terminate_on_naan()]), run on the main thread between batches.
#' @param class_weight A weight per class, to weigh the loss of each sample by its class:
#'   a list or vector named by class id (from 0, e.g. `list("0" = 1, "1" = 5)`), or unnamed
#'   in class order. For one output; not applied to validation data (as in Keras).
#' @param sample_weight A weight per sample (a vector with one element per row of `x`),
#'   multiplying that sample's loss.
#' @param validation_split Fraction in `[0, 1)` of the data, taken from the end before
#'   shuffling, to evaluate on after each epoch.
#' @param validation_data `list(x_val, y_val)` to evaluate on after each epoch (overrides
#'   `validation_split`).
#' @param shuffle Whether to shuffle the training rows before each epoch (uses R's RNG).
#' @param initial_epoch Epoch at which to start (for resuming training).
#' @param ... Unused.
#' @return A `keras_training_history` object, invisibly.
#' @examples
#' x <- matrix(runif(200), ncol = 2)
#' y <- x %*% c(1, -2) + 0.5
#' model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
#' compile(model, optimizer = optimizer_sgd(learning_rate = 0.1), loss = "mse")
#' history <- fit(model, x, y, epochs = 5, verbose = 0)
#' history
#' @export
fit.keras.engine.training.Model <- function(object, x = NULL, y = NULL, batch_size = NULL, epochs = 10,
                                            verbose = getOption("keras.fit_verbose", default = 1),
                                            callbacks = NULL, validation_split = 0, validation_data = NULL,
                                            shuffle = TRUE, class_weight = NULL, sample_weight = NULL,
                                            initial_epoch = 0, ...) {
  ensure_built(object, x)
  check_model(object)
  callbacks <- as_callback_list(callbacks)
  check_compiled(object, "fit")
  warn_if_trainable_changed(object)
  if (is.null(y)) value_error("`y` is required.")
  batch_size <- default_batch_size(batch_size)
  check_count(epochs, "epochs", min = 0)
  check_count(initial_epoch, "initial_epoch", min = 0)
  check_verbose(verbose)
  check_number(validation_split, "validation_split", min = 0, max = 1, max_inclusive = FALSE)
  check_bool(shuffle, "shuffle")
  n <- check_data(x, y)
  weights <- sample_weights(sample_weight, class_weight, y, n, object)
  # One row-major float copy per fit (half the size of R's doubles): shuffled batches are
  # then whole-row copies instead of a strided read per value.
  x <- call_backend(rg_stage(x, "x", object$ptr))
  y <- call_backend(rg_stage(y, "y", object$ptr))

  train_rows <- seq_len(n)
  val <- NULL
  if (!is.null(validation_data)) {
    if (!is.list(validation_data) || length(validation_data) < 2) {
      value_error("`validation_data` must be list(x_val, y_val).")
    }
    check_data(validation_data[[1]], validation_data[[2]])
    val <- list(x = validation_data[[1]], y = validation_data[[2]], rows = NULL)
  } else if (validation_split > 0) {
    # Keras takes the validation samples from the end, before any shuffling.
    split_at <- as.integer(floor(n * (1 - validation_split)))
    if (split_at < 1 || split_at >= n) {
      value_error(sprintf("`validation_split = %s` leaves no training or no validation samples out of %d.",
                          validation_split, n))
    }
    train_rows <- seq_len(split_at)
    val <- list(x = x, y = y, rows = seq.int(split_at + 1L, n))
  }

  steps <- ceiling(length(train_rows) / batch_size)
  # A worker's short last batch joins the one before (worker_batches()).
  if (joins_last_batch(object, steps, length(train_rows) - (steps - 1) * batch_size)) steps <- steps - 1
  worker <- worker_fit_setup(object, verbose, callbacks)
  verbose <- worker$verbose
  as_worker(object, train_loop(
    object, epochs, initial_epoch, steps, worker$callbacks, verbose,
    epoch_batches = function(epoch) {
      # A worker of a multi-worker job draws rank 0's seed each epoch, so that every rank
      # shuffles alike even if some R code drew from the RNG on one rank only.
      if (is_worker_model(object)) set.seed(call_backend(rg_workers_broadcast_seed(new_seed())))
      rows <- if (shuffle) train_rows[sample.int(length(train_rows))] else train_rows
      # Consecutive slices (split() would build a factor over all rows each epoch).
      starts <- seq.int(1L, length(rows), by = batch_size)
      batches <- lapply(starts, function(i) rows[i:min(i + batch_size - 1L, length(rows))])
      worker_batches(object, batches)
    },
    train_batch = function(idx, seed, first) {
      stats <- call_backend(rg_train_batch(object$ptr, x, y, weights, idx, seed, first))
      mark_weights_changed(object)
      list(stats = stats, n = length(idx))
    },
    validate = if (!is.null(val)) function() call_backend(rg_evaluate(object$ptr, val$x, val$y, NULL, val$rows, batch_size)),
    params = list(verbose = verbose, epochs = epochs, steps = steps, samples = length(train_rows), batch_size = batch_size,
                  validation_samples = if (is.null(val)) NULL else if (is.null(val$rows)) sample_count(val$x) else length(val$rows))
  ))
}

sample_count <- function(x) {
  if (is.list(x) && !is.data.frame(x)) x <- x[[1]]
  if (is.null(dim(x))) length(x) else dim(x)[1]
}

# The epoch/batch loop shared by fit() and fit_generator(). Callbacks run here, on the main
# thread, between batches; they may set `object$stop_training`, which ends training after the
# current batch (as in Keras). Each epoch's figures are Keras's: sample-weighted means over
# its batches, each computed before that batch's update.
train_loop <- function(object, epochs, initial_epoch, steps, callbacks, verbose, epoch_batches, train_batch,
                       validate, params) {
  metric_names <- stat_names(object)
  stateful <- stat_stateful(object)
  history_names <- c(metric_names, if (!is.null(validate)) paste0("val_", metric_names))
  history <- stats::setNames(lapply(history_names, function(i) numeric()), history_names)
  epochs_run <- seq_len(epochs)[seq_len(epochs) > initial_epoch]
  object$stop_training <- FALSE
  set_callback_context(callbacks, object, list(
    epochs = epochs, steps = steps, samples = params$samples, verbose = verbose,
    do_validation = !is.null(validate), metrics = history_names
  ))
  run_callbacks(callbacks, "on_train_begin", list())
  for (epoch in epochs_run) {
    batches <- epoch_batches(epoch)
    seed <- new_seed()
    totals <- numeric(length(metric_names))
    seen <- 0
    run_callbacks(callbacks, "on_epoch_begin", epoch - 1L, list())
    progress <- progress_start(epoch, epochs, steps, verbose)
    for (b in seq_along(batches)) {
      run_callbacks(callbacks, "on_batch_begin", b - 1L, list(batch = b - 1L))
      step <- train_batch(batches[[b]], seed, b == 1)
      totals <- totals + step$stats * step$n
      seen <- seen + step$n
      # Means over the epoch so far; stateful metrics (AUC, ...) come as their epoch value.
      running <- totals / seen
      running[stateful] <- step$stats[stateful]
      progress_update(progress, b, running, metric_names)
      run_callbacks(callbacks, "on_batch_end", b - 1L, as.list(stats::setNames(running, metric_names)))
      if (isTRUE(object$stop_training)) break
    }
    epoch_logs <- stats::setNames(running, metric_names)
    if (!is.null(validate)) epoch_logs <- c(epoch_logs, stats::setNames(validate(), paste0("val_", metric_names)))
    for (nm in names(epoch_logs)) history[[nm]] <- c(history[[nm]], epoch_logs[[nm]])
    progress_end(progress, epoch_logs)
    run_callbacks(callbacks, "on_epoch_end", epoch - 1L, as.list(epoch_logs))
    if (isTRUE(object$stop_training)) break
  }
  run_callbacks(callbacks, "on_train_end", list())
  invisible(structure(list(params = params, metrics = history), class = "keras_training_history"))
}

check_verbose <- function(verbose, call = rlang::caller_env()) {
  if (!is.numeric(verbose) && !is.logical(verbose) || length(verbose) != 1 || is.na(verbose) ||
      !as.numeric(verbose) %in% c(0, 1, 2)) {
    value_error(sprintf("`verbose` must be 0, 1 or 2, not %s.", describe(verbose)), call = call)
  }
}

#' Evaluate a model
#'
#' @param object A compiled model.
#' @param x,y Inputs and targets, as for [fit()].
#' @param batch_size Samples per batch (default 32).
#' @param verbose Whether to print the result line.
#' @param sample_weight A weight per sample for the loss, as in [fit()].
#' @param ... Unused.
#' @return The loss and each metric, averaged over all samples, as R keras 2.x returns them: a
#'   named number when there is only the loss, else a named list (`score$loss`, `score$acc`).
#' @examples
#' x <- matrix(runif(20), ncol = 2)
#' model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
#' compile(model, optimizer = "sgd", loss = "mse", metrics = "mae")
#' evaluate(model, x, rowSums(x), verbose = 0)
#' @export
evaluate <- function(object, ...) UseMethod("evaluate")

#' @export
evaluate.default <- function(object, ...) {
  value_error(sprintf("`object` must be a model made by rustgpu (e.g. keras_model_sequential()), not %s.",
                      describe(object)))
}

#' @rdname evaluate
#' @export
evaluate.keras.engine.training.Model <- function(object, x = NULL, y = NULL, batch_size = NULL, verbose = 1,
                                                 sample_weight = NULL, ...) {
  ensure_built(object, x)
  check_model(object)
  check_compiled(object, "evaluate")
  batch_size <- default_batch_size(batch_size)
  check_verbose(verbose)
  n <- check_data(x, y)
  weights <- sample_weights(sample_weight, NULL, y, n, object)
  result <- named_stats(call_backend(rg_evaluate(object$ptr, x, y, weights, NULL, batch_size)), object)
  # In a multi-worker job the chief prints.
  if (verbose > 0 && writes_files(object)) cat(format_logs(result), "\n", sep = "")
  keras_scores(result)
}

#' Generate predictions
#'
#' @param object A model.
#' @param x Numeric matrix or array of inputs, samples first.
#' @param batch_size Samples per batch (default 32).
#' @param verbose Unused (kept for Keras compatibility).
#' @param ... Unused.
#' @return A numeric array of outputs, one row per sample (a list of arrays for a model with
#'   several outputs).
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(3, activation = "softmax", input_shape = 2)
#' predict(model, matrix(runif(10), ncol = 2))
#' @importFrom stats predict
#' @export
predict.keras.engine.training.Model <- function(object, x, batch_size = NULL, verbose = 0, ...) {
  ensure_built(object, x)
  check_model(object)
  batch_size <- default_batch_size(batch_size)
  n <- check_data(x)
  # Several batches: one row-major float copy first (as fit() makes), whose batches are whole
  # rows, instead of a strided read per value of R's column-major array for each batch.
  if (n > batch_size) x <- call_backend(rg_stage(x, "x", object$ptr))
  call_backend(rg_predict(object$ptr, x, batch_size, inference_seed(object)))
}

#' Single-batch training, evaluation and prediction
#'
#' `train_on_batch()` runs one optimizer step on the whole of `x`, `y`;
#' `test_on_batch()` returns the loss and metrics on it; `predict_on_batch()` the outputs.
#'
#' @param object A model (compiled, for training and testing).
#' @param x,y Inputs and targets for one batch.
#' @param class_weight,sample_weight Weights of the samples' losses, as in [fit()].
#' @return `train_on_batch()`, `test_on_batch()`: named numeric vector of the loss and
#'   metrics (computed before the update). `predict_on_batch()`: the outputs.
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
#' compile(model, optimizer = "sgd", loss = "mse")
#' x <- matrix(runif(8), ncol = 2)
#' train_on_batch(model, x, rowSums(x))
#' test_on_batch(model, x, rowSums(x))
#' predict_on_batch(model, x)
#' @export
train_on_batch <- function(object, x, y, class_weight = NULL, sample_weight = NULL) {
  ensure_built(object, x)
  check_model(object)
  check_compiled(object, "train_on_batch")
  warn_if_trainable_changed(object)
  n <- check_data(x, y)
  weights <- sample_weights(sample_weight, class_weight, y, n, object)
  stats <- call_backend(rg_train_batch(object$ptr, x, y, weights, seq_len(n), new_seed(), TRUE))
  mark_weights_changed(object)
  named_stats(stats, object)
}

#' @rdname train_on_batch
#' @export
test_on_batch <- function(object, x, y, sample_weight = NULL) {
  ensure_built(object, x)
  check_model(object)
  check_compiled(object, "test_on_batch")
  n <- check_data(x, y)
  weights <- sample_weights(sample_weight, NULL, y, n, object)
  named_stats(call_backend(rg_evaluate(object$ptr, x, y, weights, NULL, n)), object)
}

#' @rdname train_on_batch
#' @export
predict_on_batch <- function(object, x) {
  ensure_built(object, x)
  check_model(object)
  n <- check_data(x)
  call_backend(rg_predict(object$ptr, x, n, inference_seed(object)))
}
