# Callbacks: lists of hook functions the fit loop calls on the main thread.

new_callback <- function(hooks, class = NULL) {
  structure(hooks, class = c(class, "rustgpu_callback"))
}

as_callback_list <- function(callbacks, call = rlang::caller_env()) {
  if (is.null(callbacks)) return(list())
  if (inherits(callbacks, "rustgpu_callback")) return(list(callbacks))
  if (!is.list(callbacks) || !all(vapply(callbacks, inherits, logical(1), "rustgpu_callback"))) {
    value_error("`callbacks` must be a list of callbacks such as callback_early_stopping().", call = call)
  }
  callbacks
}

run_callbacks <- function(callbacks, hook, ...) {
  for (cb in callbacks) {
    f <- cb[[hook]]
    if (is.function(f)) f(...)
  }
}

#' Create a custom callback
#'
#' Functions called during [fit()], on the main R thread, as in Keras: `on_epoch_begin(epoch,
#' logs)`, `on_epoch_end(epoch, logs)`, `on_batch_begin(batch, logs)`,
#' `on_batch_end(batch, logs)`, `on_train_begin(logs)`, `on_train_end(logs)`. Epochs and
#' batches are numbered from 0; `logs` is a named list of the running loss and metrics.
#'
#' @param on_epoch_begin,on_epoch_end,on_batch_begin,on_batch_end,on_train_begin,on_train_end
#'   Functions, or `NULL`.
#' @return A callback for `fit(callbacks = )`.
#' @examples
#' x <- matrix(runif(20), ncol = 2)
#' model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
#' compile(model, optimizer = "sgd", loss = "mse")
#' show_loss <- callback_lambda(on_epoch_end = function(epoch, logs) cat(epoch, logs$loss, "\n"))
#' fit(model, x, rowSums(x), epochs = 2, verbose = 0, callbacks = list(show_loss))
#' @export
callback_lambda <- function(on_epoch_begin = NULL, on_epoch_end = NULL, on_batch_begin = NULL,
                            on_batch_end = NULL, on_train_begin = NULL, on_train_end = NULL) {
  hooks <- list(on_epoch_begin = on_epoch_begin, on_epoch_end = on_epoch_end,
                on_batch_begin = on_batch_begin, on_batch_end = on_batch_end,
                on_train_begin = on_train_begin, on_train_end = on_train_end)
  for (nm in names(hooks)) {
    if (!is.null(hooks[[nm]]) && !is.function(hooks[[nm]])) {
      value_error(sprintf("`%s` must be a function or NULL, not %s.", nm, describe(hooks[[nm]])))
    }
  }
  new_callback(hooks, "rustgpu_callback_lambda")
}

#' Stop training when the loss becomes NaN or infinite
#'
#' As Keras's TerminateOnNaN: after a batch whose running loss is not finite, prints
#' "Batch n: Invalid loss, terminating training" and stops after that batch. Without this
#' callback, training goes on (as in Keras).
#'
#' @return A callback for `fit(callbacks = )`.
#' @examples
#' callback_terminate_on_naan()
#' @export
callback_terminate_on_naan <- function() {
  state <- new.env(parent = emptyenv())
  new_callback(list(
    set_model = function(model) state$model <- model,
    on_batch_end = function(batch, logs) {
      if (!is.finite(logs$loss)) {
        message(sprintf("Batch %d: Invalid loss, terminating training", batch))
        state$model$stop_training <- TRUE
      }
    }
  ), "rustgpu_callback_terminate_on_naan")
}

#' Stop training when a monitored quantity has stopped improving
#'
#' As Keras's EarlyStopping.
#'
#' @param monitor Quantity to monitor, e.g. "val_loss" or "loss".
#' @param min_delta Minimum change that counts as an improvement.
#' @param patience Epochs without improvement after which training stops.
#' @param verbose Whether to print a message when stopping.
#' @param mode "auto", "min" or "max": whether the quantity should go down or up
#'   ("auto" guesses from the name: accuracy-like names go up).
#' @param baseline Value the quantity must beat, or `NULL`.
#' @param restore_best_weights Whether to restore the weights of the best epoch.
#' @return A callback for `fit(callbacks = )`.
#' @examples
#' callback_early_stopping(monitor = "loss", patience = 2)
#' @export
callback_early_stopping <- function(monitor = "val_loss", min_delta = 0, patience = 0, verbose = 0,
                                    mode = c("auto", "min", "max"), baseline = NULL,
                                    restore_best_weights = FALSE) {
  check_string(monitor, "monitor")
  check_number(min_delta, "min_delta")
  check_count(patience, "patience", min = 0)
  mode <- match.arg(mode)
  check_bool(restore_best_weights, "restore_best_weights")
  if (mode == "auto") mode <- if (grepl("acc|auc", monitor)) "max" else "min"
  sign <- if (mode == "min") 1 else -1
  state <- new.env(parent = emptyenv())
  new_callback(list(
    set_model = function(model) state$model <- model,
    on_train_begin = function(logs) {
      state$wait <- 0
      state$best <- if (is.null(baseline)) Inf else sign * baseline
      state$best_weights <- NULL
      state$stopped_epoch <- NA
    },
    on_epoch_end = function(epoch, logs) {
      current <- logs[[monitor]]
      if (is.null(current)) {
        warning(sprintf("Early stopping conditioned on `%s`, which is not available. Available: %s",
                        monitor, paste(names(logs), collapse = ", ")), call. = FALSE)
        return(invisible())
      }
      if (sign * current < state$best - abs(min_delta)) {
        state$best <- sign * current
        state$wait <- 0
        if (restore_best_weights) state$best_weights <- get_weights(state$model)
      } else {
        state$wait <- state$wait + 1
        if (state$wait > patience) {
          state$stopped_epoch <- epoch
          state$model$stop_training <- TRUE
          if (restore_best_weights && !is.null(state$best_weights)) set_weights(state$model, state$best_weights)
          if (verbose > 0) message(sprintf("Epoch %d: early stopping", epoch + 1))
        }
      }
    }
  ), "rustgpu_callback_early_stopping")
}

#' @export
print.rustgpu_callback <- function(x, ...) {
  cat(sprintf("<callback %s>\n", sub("^rustgpu_callback_", "", class(x)[[1]])))
  invisible(x)
}
