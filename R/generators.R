# Training, evaluation and prediction from generators: R functions that return one batch
# per call, list(x, y) or list(x, y, sample_weights) (or x alone for prediction), as in R keras.

next_batch <- function(generator, need_y = TRUE, call = rlang::caller_env()) {
  batch <- generator()
  if (need_y) {
    if (!is.list(batch) || length(batch) < 2) {
      value_error("The generator must return list(x, y) on each call.", call = call)
    }
    x <- batch[[1]]
    y <- batch[[2]]
    # A third element: the batch's sample weights, as Keras's generators give them.
    w <- if (length(batch) >= 3) batch[[3]] else NULL
  } else {
    # x alone, or list(x) (a list of several arrays is the inputs of a multi-input model).
    x <- if (is.list(batch) && !is.data.frame(batch) && length(batch) == 1) batch[[1]] else batch
    y <- NULL
  }
  n <- check_data(x, y, call = call)
  w <- if (need_y && !is.null(w)) sample_weights(w, NULL, y, n, NULL, call = call) else NULL
  list(x = x, y = y, w = w, n = n)
}

check_generator <- function(generator, call = rlang::caller_env()) {
  if (!is.function(generator)) {
    value_error(sprintf("`generator` must be a function returning a batch on each call, not %s.", describe(generator)),
                call = call)
  }
}

#' Train, evaluate and predict with a generator
#'
#' A generator is an R function that returns a batch on each call: `list(x, y)` for
#' training and evaluation, `x` (or `list(x)`) for prediction. `steps_per_epoch` (or
#' `steps`) calls make an epoch.
#'
#' @param object A model (compiled, for training and evaluation).
#' @param generator The generator function.
#' @param steps_per_epoch,steps Batches per epoch / in all.
#' @param epochs Number of epochs.
#' @param verbose 0, 1 or 2, as for [fit()].
#' @param callbacks Callbacks, as for [fit()].
#' @param validation_data A generator, or `list(x_val, y_val)`, to evaluate on after each epoch.
#' @param validation_steps Batches to draw from a validation generator.
#' @param initial_epoch Epoch at which to start.
#' @param ... Unused.
#' @return `fit_generator()`: a training history. `evaluate_generator()`: the named loss
#'   and metrics. `predict_generator()`: the outputs, one row per sample.
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
#' compile(model, optimizer = "sgd", loss = "mse")
#' batches <- function() {
#'   x <- matrix(runif(20), ncol = 2)
#'   list(x, rowSums(x))
#' }
#' fit_generator(model, batches, steps_per_epoch = 5, epochs = 2, verbose = 0)
#' evaluate_generator(model, batches, steps = 3)
#' dim(predict_generator(model, function() matrix(runif(8), ncol = 2), steps = 2))
#' @export
fit_generator <- function(object, generator, steps_per_epoch, epochs = 1,
                          verbose = getOption("keras.fit_verbose", default = 1), callbacks = NULL,
                          validation_data = NULL, validation_steps = NULL, initial_epoch = 0, ...) {
  check_model(object)
  check_compiled(object, "fit_generator")
  warn_if_trainable_changed(object)
  check_generator(generator)
  check_count(steps_per_epoch, "steps_per_epoch", min = 1)
  check_count(epochs, "epochs", min = 0)
  check_count(initial_epoch, "initial_epoch", min = 0)
  check_verbose(verbose)
  callbacks <- as_callback_list(callbacks)
  validate <- NULL
  if (is.function(validation_data)) {
    check_count(validation_steps, "validation_steps", min = 1)
    validate <- function() unlist(evaluate_generator(object, validation_data, steps = validation_steps))
  } else if (!is.null(validation_data)) {
    if (!is.list(validation_data) || length(validation_data) < 2) {
      value_error("`validation_data` must be a generator or list(x_val, y_val).")
    }
    check_data(validation_data[[1]], validation_data[[2]])
    validate <- function() call_backend(rg_evaluate(object$ptr, validation_data[[1]], validation_data[[2]], NULL, NULL, 32))
  }
  # A worker of a multi-worker job: the same seed on every rank (so generators drawing from
  # R's RNG give every rank the same global batches, each taking its share).
  worker <- worker_fit_setup(object, verbose, callbacks)
  verbose <- worker$verbose
  as_worker(object, train_loop(
    object, epochs, initial_epoch, steps_per_epoch, worker$callbacks, verbose,
    epoch_batches = function(epoch) seq_len(steps_per_epoch),
    train_batch = function(step, seed, first) {
      b <- next_batch(generator, call = NULL)
      stats <- call_backend(rg_train_batch(object$ptr, b$x, b$y, b$w, seq_len(b$n), seed, first))
      mark_weights_changed(object)
      list(stats = stats, n = b$n)
    },
    validate = validate,
    params = list(verbose = verbose, epochs = epochs, steps = steps_per_epoch, samples = NA_integer_, batch_size = NA_integer_)
  ))
}

#' @rdname fit_generator
#' @export
evaluate_generator <- function(object, generator, steps, ...) {
  check_model(object)
  check_compiled(object, "evaluate_generator")
  check_generator(generator)
  check_count(steps, "steps", min = 1)
  totals <- 0
  seen <- 0
  for (i in seq_len(steps)) {
    b <- next_batch(generator)
    totals <- totals + call_backend(rg_evaluate(object$ptr, b$x, b$y, b$w, NULL, b$n)) * b$n
    seen <- seen + b$n
  }
  keras_scores(named_stats(totals / seen, object))
}

#' @rdname fit_generator
#' @export
predict_generator <- function(object, generator, steps, verbose = 0, ...) {
  check_model(object)
  check_generator(generator)
  check_count(steps, "steps", min = 1)
  seed <- inference_seed(object)
  parts <- lapply(seq_len(steps), function(i) {
    b <- next_batch(generator, need_y = FALSE)
    call_backend(rg_predict(object$ptr, b$x, b$n, (seed + i * 7919) %% .Machine$integer.max))
  })
  bind_rows <- function(arrays) {
    d <- dim(arrays[[1]])
    n <- vapply(arrays, function(a) dim(a)[1], integer(1))
    flat <- lapply(arrays, function(a) matrix(a, nrow = dim(a)[1]))
    array(do.call(rbind, flat), c(sum(n), d[-1]))
  }
  if (is.list(parts[[1]])) lapply(seq_along(parts[[1]]), function(k) bind_rows(lapply(parts, `[[`, k)))
  else bind_rows(parts)
}

#' Generate class predictions and probabilities (Keras 2.2)
#'
#' `predict_classes()`: the class of each sample, from 0: the largest output's index, or, for
#' a model with one output unit, 1 where the output exceeds 0.5. `predict_proba()`: the
#' outputs, as [predict()] (deprecated in Keras, with a warning once per session).
#'
#' @inheritParams predict.keras.engine.training.Model
#' @param steps Unused (Keras 2.2's argument for data tensors).
#' @return `predict_classes()`: an integer vector. `predict_proba()`: as [predict()].
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(2, activation = "softmax", input_shape = 2)
#' predict_classes(model, matrix(runif(4), 2))
#' suppressWarnings(predict_proba(model, matrix(runif(4), 2)))
#' @export
predict_classes <- function(object, x, batch_size = NULL, verbose = 0, steps = NULL) {
  p <- predict(object, x, batch_size = batch_size, verbose = verbose)
  if (is.list(p)) value_error("`predict_classes()` works with models of one output.")
  # Keras 2's rule: the arg-max over the last axis for several outputs, else p > 0.5.
  if (!is.null(dim(p)) && utils::tail(dim(p), 1) > 1) {
    m <- matrix(p, ncol = utils::tail(dim(p), 1))
    classes <- max.col(m, ties.method = "first") - 1L
    lead <- dim(p)[-length(dim(p))]
    if (length(lead) > 1) array(classes, lead) else classes
  } else {
    as.integer(as.vector(p) > 0.5)
  }
}

#' @rdname predict_classes
#' @export
predict_proba <- function(object, x, batch_size = NULL, verbose = 0) {
  if (!isTRUE(.tensors$warned_predict_proba)) {
    .tensors$warned_predict_proba <- TRUE
    warning("`predict_proba()` is deprecated (as in Keras): use `predict()`.", call. = FALSE)
  }
  predict(object, x, batch_size = batch_size, verbose = verbose)
}
