# Callbacks: lists of hook functions the fit loop calls on the main thread.

new_callback <- function(hooks, class = NULL) {
  structure(hooks, class = c(class, "rustgpu_callback"))
}

# `callbacks = c(early_stopping, checkpoint)`, as R keras scripts write (R keras's callbacks
# are Python objects, which c() collects in a list): a list of the callbacks, not their hooks.
#' @export
c.rustgpu_callback <- function(...) list(...)

is_callback <- function(x) inherits(x, "rustgpu_callback") || inherits(x, "KerasCallback")

as_callback_list <- function(callbacks, call = rlang::caller_env()) {
  if (is.null(callbacks)) return(list())
  if (is_callback(callbacks)) return(list(callbacks))
  if (!is.list(callbacks) || !all(vapply(callbacks, is_callback, logical(1)))) {
    value_error("`callbacks` must be a list of callbacks such as callback_early_stopping(), or objects of R6 classes inheriting KerasCallback.",
                call = call)
  }
  callbacks
}

#' Base class of custom callbacks (R6)
#'
#' As R keras: a custom callback is an [R6][R6::R6Class] class that inherits `KerasCallback`
#' and overrides any of `on_train_begin(logs)`, `on_train_end(logs)`,
#' `on_epoch_begin(epoch, logs)`, `on_epoch_end(epoch, logs)`, `on_batch_begin(batch, logs)`
#' and `on_batch_end(batch, logs)` (epochs and batches from 0). Before training, `fit()` sets
#' `self$model` (the model being trained) and `self$params` (`epochs`, `steps`, `samples`,
#' `verbose`, `do_validation`, `metrics`). The methods run on the main R thread.
#'
#' @format An R6 class generator.
#' @examples
#' LossHistory <- R6::R6Class("LossHistory", inherit = KerasCallback, public = list(
#'   losses = NULL,
#'   on_batch_end = function(batch, logs = list()) self$losses <- c(self$losses, logs[["loss"]])
#' ))
#' history <- LossHistory$new()
#' x <- matrix(runif(20), ncol = 2)
#' model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
#' compile(model, optimizer = "sgd", loss = "mse")
#' fit(model, x, rowSums(x), epochs = 2, batch_size = 5, verbose = 0, callbacks = list(history))
#' history$losses
#' @importFrom R6 R6Class
#' @export
KerasCallback <- R6Class("KerasCallback",
  public = list(
    params = NULL,
    model = NULL,
    set_context = function(params = NULL, model = NULL) {
      self$params <- params
      self$model <- model
      invisible(self)
    },
    on_train_begin = function(logs = NULL) invisible(),
    on_train_end = function(logs = NULL) invisible(),
    on_epoch_begin = function(epoch, logs = NULL) invisible(),
    on_epoch_end = function(epoch, logs = NULL) invisible(),
    on_batch_begin = function(batch, logs = NULL) invisible(),
    on_batch_end = function(batch, logs = NULL) invisible()
  )
)

# Before training: each callback gets the model (and an R6 callback the run's parameters).
set_callback_context <- function(callbacks, model, params) {
  for (cb in callbacks) {
    if (inherits(cb, "KerasCallback")) cb$set_context(params = params, model = model)
    else if (is.function(cb[["set_model"]])) cb[["set_model"]](model)
  }
}

# Whether `current` (already multiplied by the monitor's sign) beats `best` by more than
# `delta`. NaN never does (Keras's np.less(nan, best) is False): a NaN epoch counts as no
# improvement, and callback_terminate_on_naan() is the way to stop on it.
is_improvement <- function(current, best, delta = 0) {
  isTRUE(current < best - delta)
}

# +1 when the monitored quantity should go down, -1 when up ("auto": accuracy-like names go up).
monitor_sign <- function(mode, monitor) {
  if (mode == "auto") mode <- if (grepl("acc|auc", monitor)) "max" else "min"
  if (mode == "min") 1 else -1
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
  sign <- monitor_sign(mode, monitor)
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
      if (is_improvement(sign * current, state$best, abs(min_delta))) {
        state$best <- sign * current
        state$wait <- 0
        if (restore_best_weights) state$best_weights <- get_weights(state$model)
      } else {
        state$wait <- state$wait + 1
        # As Keras: stop after `patience` epochs without improvement (never after the first).
        if (state$wait >= patience && epoch > 0) {
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

# Fills Keras-style placeholders in a path: "{epoch:02d}", "{val_loss:.2f}", "{loss}".
format_checkpoint_path <- function(filepath, epoch, logs) {
  values <- c(list(epoch = epoch + 1L), logs)
  matches <- regmatches(filepath, gregexpr("\\{[A-Za-z_]+(:[^}]*)?\\}", filepath))[[1]]
  for (m in matches) {
    inner <- substr(m, 2, nchar(m) - 1)
    parts <- strsplit(inner, ":", fixed = TRUE)[[1]]
    value <- values[[parts[1]]]
    if (is.null(value)) next
    fmt <- if (length(parts) > 1) paste0("%", parts[2]) else if (is.integer(value)) "%d" else "%s"
    filepath <- sub(m, sprintf(fmt, value), filepath, fixed = TRUE)
  }
  filepath
}

#' Save the model after every epoch
#'
#' As Keras's ModelCheckpoint. `filepath` may hold placeholders filled from the epoch
#' (counted from 1) and its logs, e.g. "weights.{epoch:02d}-{val_loss:.2f}.h5". On a parallel
#' model the template is saved (the model the reference says to save).
#'
#' @param filepath Where to save.
#' @param monitor The quantity for `save_best_only`.
#' @param verbose Whether to print a message when saving.
#' @param save_best_only Save only when `monitor` improves.
#' @param save_weights_only Save only the weights ([save_model_weights_hdf5()]) rather than the
#'   whole model ([save_model_hdf5()]).
#' @param mode "auto", "min" or "max" (for `save_best_only`).
#' @param period Epochs between checkpoints (Keras 2's `period`: every `period`-th epoch).
#' @return A callback for `fit(callbacks = )`.
#' @examples
#' x <- matrix(runif(20), ncol = 2)
#' model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
#' compile(model, optimizer = "sgd", loss = "mse")
#' path <- file.path(tempdir(), "model.{epoch:02d}.h5")
#' fit(model, x, rowSums(x), epochs = 2, verbose = 0, callbacks = list(callback_model_checkpoint(path)))
#' file.exists(file.path(tempdir(), "model.02.h5"))
#' @export
callback_model_checkpoint <- function(filepath, monitor = "val_loss", verbose = 0, save_best_only = FALSE,
                                      save_weights_only = FALSE, mode = c("auto", "min", "max"), period = 1) {
  check_string(filepath, "filepath")
  check_count(period, "period", min = 1)
  check_string(monitor, "monitor")
  check_bool(save_best_only, "save_best_only")
  check_bool(save_weights_only, "save_weights_only")
  mode <- match.arg(mode)
  sign <- monitor_sign(mode, monitor)
  state <- new.env(parent = emptyenv())
  state$best <- Inf
  state$since_last <- 0
  new_callback(list(
    set_model = function(model) state$model <- model,
    on_epoch_end = function(epoch, logs) {
      # As Keras 2: count epochs since the last save; only every `period`-th is considered.
      state$since_last <- state$since_last + 1
      if (state$since_last < period) return(invisible())
      state$since_last <- 0
      if (save_best_only) {
        current <- logs[[monitor]]
        if (is.null(current)) {
          warning(sprintf("Can save best model only with `%s` available, skipping.", monitor), call. = FALSE)
          return(invisible())
        }
        if (!is_improvement(sign * current, state$best)) return(invisible())
        state$best <- sign * current
      }
      path <- format_checkpoint_path(filepath, epoch, logs)
      if (verbose > 0) message(sprintf("Epoch %d: saving model to %s", epoch + 1, path))
      if (save_weights_only) save_model_weights_hdf5(state$model, path) else save_model_hdf5(state$model, path)
    }
  ), "rustgpu_callback_model_checkpoint")
}

#' Stream epoch results to a CSV file
#'
#' As Keras's CSVLogger: one row per epoch, with the epoch (from 0) and every log value.
#'
#' @param filename Path of the CSV file.
#' @param separator Field separator.
#' @param append Whether to append to an existing file.
#' @return A callback for `fit(callbacks = )`.
#' @examples
#' x <- matrix(runif(20), ncol = 2)
#' model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
#' compile(model, optimizer = "sgd", loss = "mse")
#' log <- tempfile(fileext = ".csv")
#' fit(model, x, rowSums(x), epochs = 2, verbose = 0, callbacks = list(callback_csv_logger(log)))
#' read.csv(log)
#' @export
callback_csv_logger <- function(filename, separator = ",", append = FALSE) {
  check_string(filename, "filename")
  check_string(separator, "separator")
  check_bool(append, "append")
  state <- new.env(parent = emptyenv())
  open_csv <- function(mode) {
    tryCatch(suppressWarnings(file(filename, mode)), error = function(e) {
      rustgpu_abort(sprintf("callback_csv_logger() cannot write \"%s\" (%s): check that its folder exists and is writable.",
                            filename, conditionMessage(e)), "rustgpu_io_error", call = NULL)
    })
  }
  new_callback(list(
    on_train_begin = function(logs) {
      state$header <- !(append && file.exists(filename))
      # As Keras: the file is opened when training begins, so a bad path stops fit() at once.
      close(open_csv(if (state$header && !append) "w" else "a"))
      append <<- TRUE
    },
    on_epoch_end = function(epoch, logs) {
      row <- c(epoch = epoch, unlist(logs))
      con <- open_csv("a")
      on.exit(close(con))
      if (state$header) writeLines(paste(names(row), collapse = separator), con)
      writeLines(paste(format(row, digits = 15, trim = TRUE), collapse = separator), con)
      state$header <- FALSE
      append <<- TRUE
    }
  ), "rustgpu_callback_csv_logger")
}

#' Reduce the learning rate when a metric has stopped improving
#'
#' As Keras's ReduceLROnPlateau: after `patience` epochs without an improvement of at least
#' `min_delta`, multiplies the learning rate by `factor` (not below `min_lr`), then waits
#' `cooldown` epochs.
#'
#' @param monitor Quantity to monitor.
#' @param factor Factor by which the learning rate is reduced, in (0, 1).
#' @param patience Epochs without improvement before reducing.
#' @param verbose Whether to print a message when reducing.
#' @param mode "auto", "min" or "max".
#' @param min_delta Minimum change that counts as an improvement.
#' @param cooldown Epochs to wait after a reduction.
#' @param min_lr Lower bound on the learning rate.
#' @return A callback for `fit(callbacks = )`.
#' @examples
#' callback_reduce_lr_on_plateau(monitor = "loss", factor = 0.5, patience = 2)
#' @export
callback_reduce_lr_on_plateau <- function(monitor = "val_loss", factor = 0.1, patience = 10, verbose = 0,
                                          mode = c("auto", "min", "max"), min_delta = 1e-4, cooldown = 0,
                                          min_lr = 0) {
  check_string(monitor, "monitor")
  check_number(factor, "factor", min = 0, max = 1, min_inclusive = FALSE, max_inclusive = FALSE)
  check_count(patience, "patience", min = 0)
  check_count(cooldown, "cooldown", min = 0)
  check_number(min_lr, "min_lr", min = 0)
  mode <- match.arg(mode)
  sign <- monitor_sign(mode, monitor)
  state <- new.env(parent = emptyenv())
  new_callback(list(
    set_model = function(model) state$model <- model,
    on_train_begin = function(logs) {
      state$best <- Inf
      state$wait <- 0
      state$cooldown <- 0
    },
    on_epoch_end = function(epoch, logs) {
      current <- logs[[monitor]]
      if (is.null(current)) {
        # As Keras: a warning each epoch, nothing changed.
        warning(sprintf("Learning rate reduction is conditioned on metric `%s` which is not available. Available metrics are: %s",
                        monitor, paste(names(logs), collapse = ",")), call. = FALSE)
        return(invisible())
      }
      if (state$cooldown > 0) state$cooldown <- state$cooldown - 1
      if (is_improvement(sign * current, state$best, abs(min_delta))) {
        state$best <- sign * current
        state$wait <- 0
      } else if (state$cooldown <= 0) {
        state$wait <- state$wait + 1
        if (state$wait >= patience) {
          old <- call_backend(rg_learning_rate(state$model$ptr, NULL))
          if (old > min_lr) {
            new <- max(old * factor, min_lr)
            call_backend(rg_learning_rate(state$model$ptr, new))
            if (verbose > 0) message(sprintf("Epoch %d: ReduceLROnPlateau reducing learning rate to %g.", epoch + 1, new))
            state$cooldown <- cooldown
            state$wait <- 0
          }
        }
      }
    }
  ), "rustgpu_callback_reduce_lr_on_plateau")
}

#' Learning-rate scheduler
#'
#' As Keras's LearningRateScheduler: at the start of each epoch, `schedule(epoch, lr)` (the
#' epoch numbered from 0, and the current learning rate) gives the learning rate for that
#' epoch. R keras 2.x's one-argument schedules, `schedule(epoch)`, work too.
#'
#' @param schedule A function of the epoch (and the current learning rate) returning a
#'   positive number.
#' @param verbose 1 to print each change.
#' @return A callback for `fit(callbacks = )`.
#' @examples
#' x <- matrix(runif(20), ncol = 2)
#' model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
#' compile(model, optimizer = optimizer_sgd(0.1), loss = "mse")
#' halve <- callback_learning_rate_scheduler(function(epoch, lr) if (epoch > 0) lr / 2 else lr)
#' fit(model, x, rowSums(x), epochs = 3, verbose = 0, callbacks = list(halve))
#' @export
callback_learning_rate_scheduler <- function(schedule, verbose = 0) {
  if (!is.function(schedule)) value_error(sprintf("`schedule` must be a function, not %s.", describe(schedule)))
  takes_lr <- length(formals(schedule)) >= 2 || "..." %in% names(formals(schedule))
  state <- new.env(parent = emptyenv())
  new_callback(list(
    set_model = function(model) state$model <- model,
    on_epoch_begin = function(epoch, logs) {
      old <- call_backend(rg_learning_rate(state$model$ptr, NULL))
      new <- if (takes_lr) schedule(epoch, old) else schedule(epoch)
      if (!is.numeric(new) || length(new) != 1 || !is.finite(new) || new <= 0) {
        value_error(sprintf("The learning-rate schedule returned %s for epoch %d: it must return one positive number.", describe(new), epoch))
      }
      call_backend(rg_learning_rate(state$model$ptr, as.numeric(new)))
      if (verbose > 0) message(sprintf("Epoch %d: LearningRateScheduler setting learning rate to %g.", epoch + 1, new))
    }
  ), "rustgpu_callback_learning_rate_scheduler")
}

#' TensorBoard logs
#'
#' As Keras's TensorBoard callback (tf.keras 2.x's layout): event files TensorBoard reads, in
#' `log_dir/train` and `log_dir/validation`, with each epoch's loss and metrics as scalars
#' named `epoch_loss`, `epoch_accuracy`, ... (step = the epoch, from 0). View them with
#' [tensorboard()] or `tensorboard --logdir <log_dir>`.
#'
#' With `histogram_freq = n`, every `n`-th epoch (from the first) writes a histogram of each
#' weight to the train run, tagged as tf.keras tags them (`dense/kernel_0`; 30 equal buckets
#' from the minimum to the maximum). With `embeddings_freq = n`, every `n`-th epoch writes the
#' embeddings that TensorBoard's projector shows, as R keras 2.2's Keras did: for each layer
#' of `embeddings_layer_names` (default: the model's embedding layers), its output for
#' `embeddings_data` (or, without data, an embedding layer's weight matrix), one row per
#' sample, in `log_dir/<layer>.tsv`, listed with `embeddings_metadata` in
#' `log_dir/projector_config.pbtxt`.
#'
#' @param log_dir Where to write (default `"logs"`).
#' @param histogram_freq Every how many epochs to write weight histograms (0: never).
#' @param batch_size Batch size for computing embeddings.
#' @param embeddings_freq Every how many epochs to write embeddings (0: never).
#' @param embeddings_layer_names Names of the layers whose embeddings are written.
#' @param embeddings_metadata A metadata file (a label per row) for all embeddings, or a named
#'   list of them by layer name.
#' @param embeddings_data Input data whose embeddings are written (an array, or a list of
#'   arrays for a model with several inputs).
#' @param write_grads,write_images,profile_batch Not supported yet: leave them at their
#'   defaults.
#' @param write_graph Unused.
#' @param update_freq Only `"epoch"`.
#' @return A callback for `fit(callbacks = )`.
#' @examples
#' x <- matrix(runif(20), ncol = 2)
#' model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
#' compile(model, optimizer = "sgd", loss = "mse")
#' fit(model, x, rowSums(x), epochs = 2, verbose = 0, callbacks = callback_tensorboard(tempfile(), histogram_freq = 1))
#' @export
callback_tensorboard <- function(log_dir = NULL, histogram_freq = 0, batch_size = 32, write_graph = TRUE,
                                 write_grads = FALSE, write_images = FALSE, embeddings_freq = 0,
                                 embeddings_layer_names = NULL, embeddings_metadata = NULL, embeddings_data = NULL,
                                 update_freq = "epoch", profile_batch = 0) {
  if (is.null(log_dir)) log_dir <- "logs"
  check_string(log_dir, "log_dir")
  check_count(histogram_freq, "histogram_freq", min = 0)
  check_count(embeddings_freq, "embeddings_freq", min = 0)
  check_count(batch_size, "batch_size")
  if (!isFALSE(write_grads) || !isFALSE(write_images) || profile_batch != 0) {
    value_error("Gradient histograms, images and profiling are not supported yet: leave `write_grads`, `write_images` and `profile_batch` at their defaults.")
  }
  if (!is.null(embeddings_layer_names) && !is.character(unlist(embeddings_layer_names))) {
    value_error("`embeddings_layer_names` must be layer names.")
  }
  if (!is.null(embeddings_metadata) && !(is.character(embeddings_metadata) && length(embeddings_metadata) == 1) &&
      !(is.list(embeddings_metadata) && !is.null(names(embeddings_metadata)))) {
    value_error("`embeddings_metadata` must be a file name, or a list of file names named by layer.")
  }
  if (!identical(update_freq, "epoch")) value_error("Only `update_freq = \"epoch\"` is supported yet.")
  state <- new.env(parent = emptyenv())
  writer <- function(which) {
    if (is.null(state[[which]])) state[[which]] <- call_backend(rg_tensorboard_create(file.path(log_dir, which)))
    state[[which]]
  }
  new_callback(list(
    set_model = function(model) state$model <- model,
    on_train_begin = function(logs) {
      state$train <- NULL
      state$validation <- NULL
    },
    on_epoch_end = function(epoch, logs) {
      values <- unlist(logs)
      val <- grepl("^val_", names(values))
      write <- function(which, v) {
        if (!length(v)) return()
        call_backend(rg_tensorboard_scalars(writer(which), as.numeric(epoch), paste0("epoch_", names(v)), as.numeric(v)))
      }
      write("train", values[!val])
      write("validation", stats::setNames(values[val], sub("^val_", "", names(values)[val])))
      if (histogram_freq > 0 && epoch %% histogram_freq == 0) {
        call_backend(rg_tensorboard_weight_histograms(writer("train"), persisted_model(state$model)$ptr, as.numeric(epoch)))
      }
      if (embeddings_freq > 0 && epoch %% embeddings_freq == 0) {
        write_embeddings(persisted_model(state$model), log_dir, embeddings_layer_names, embeddings_metadata, embeddings_data, batch_size)
      }
    }
  ), "rustgpu_callback_tensorboard")
}

# Embeddings for TensorBoard's projector: a TSV of vectors per layer and the projector's
# config (`embeddings { tensor_name tensor_path metadata_path }`), rewritten each time.
write_embeddings <- function(model, log_dir, layer_names, metadata, data, batch_size) {
  info <- model_info(model)
  if (is.null(layer_names)) layer_names <- info$layer_names[info$layer_classes == "Embedding"]
  layer_names <- unlist(layer_names)
  if (!length(layer_names)) value_error("`embeddings_freq` is set but the model has no embedding layer: give `embeddings_layer_names`.", call = NULL)
  missing <- setdiff(layer_names, info$layer_names)
  if (length(missing)) value_error(sprintf("`embeddings_layer_names` names no layer of the model: %s.", paste(missing, collapse = ", ")), call = NULL)
  dir.create(log_dir, recursive = TRUE, showWarnings = FALSE)
  entries <- character(0)
  for (name in layer_names) {
    layer <- get_layer(model, name)
    vectors <- if (!is.null(data)) {
      probe <- keras_model(model$inputs, layer$output)
      predict(probe, data, batch_size = batch_size)
    } else {
      if (!identical(layer$class_name, "Embedding")) {
        value_error(sprintf("Layer \"%s\" is not an embedding layer: give `embeddings_data` to embed its outputs.", name), call = NULL)
      }
      get_weights(layer)[[1]]
    }
    vectors <- matrix(vectors, nrow = dim(vectors)[[1]])
    file <- paste0(gsub("[^A-Za-z0-9_.-]", "_", name), ".tsv")
    utils::write.table(format(vectors, digits = 7, trim = TRUE), file.path(log_dir, file), sep = "\t", quote = FALSE,
                       row.names = FALSE, col.names = FALSE)
    meta <- if (is.list(metadata)) metadata[[name]] else metadata
    entries <- c(entries, paste0("embeddings {\n  tensor_name: ", pbtxt_string(name), "\n  tensor_path: ", pbtxt_string(file),
                                 if (!is.null(meta)) paste0("\n  metadata_path: ", pbtxt_string(normalizePath(meta, mustWork = FALSE))),
                                 "\n}\n"))
  }
  writeLines(paste(entries, collapse = ""), file.path(log_dir, "projector_config.pbtxt"), sep = "")
}

pbtxt_string <- function(x) paste0("\"", gsub("([\"\\\\])", "\\\\\\1", x), "\"")

#' Run TensorBoard
#'
#' Starts TensorBoard (the `tensorboard` program, from `pip install tensorboard`) on logs
#' such as [callback_tensorboard()] writes, as R keras's `tensorboard()` does, and opens it
#' in a browser; `action = "stop"` stops the TensorBoard this session started. Folders that
#' do not exist yet are created (the logs appear as training writes them). Where TensorBoard
#' is not installed, a warning (class `rustgpu_tensorboard_missing`) says so and training
#' goes on writing its logs.
#'
#' @param log_dir A folder of logs, or several (named runs: `c(a = "logs/a", b = "logs/b")`).
#' @param action "start" or "stop".
#' @param host,port Where TensorBoard serves; `port = "auto"` takes the first free port
#'   from 6006.
#' @param launch_browser Open the page in a browser.
#' @param reload_interval How often TensorBoard reads the logs again (seconds).
#' @param purge_orphaned_data TensorBoard's option of that name.
#' @return The URL, invisibly (`NULL` where TensorBoard is not installed or on "stop").
#' @examples
#' \dontrun{
#' tensorboard("logs/run_a")
#' tensorboard(action = "stop")
#' }
#' @export
tensorboard <- function(log_dir, action = c("start", "stop"), host = "127.0.0.1", port = "auto",
                        launch_browser = getOption("rustgpu.tensorboard.browser", interactive()),
                        reload_interval = 5, purge_orphaned_data = TRUE) {
  action <- match_choice(action, c("start", "stop"), "action")
  if (action == "stop") {
    if (!is.null(.tensorboard$pid)) tools::pskill(.tensorboard$pid)
    .tensorboard$pid <- NULL
    return(invisible(NULL))
  }
  if (!is.character(log_dir) || length(log_dir) == 0 || anyNA(log_dir)) {
    value_error(sprintf("`log_dir` must be one or more folder names, not %s.", describe(log_dir)))
  }
  check_string(host, "host")
  check_bool(launch_browser, "launch_browser")
  check_number(reload_interval, "reload_interval", min = 0)
  check_bool(purge_orphaned_data, "purge_orphaned_data")
  for (d in log_dir) dir.create(d, recursive = TRUE, showWarnings = FALSE)
  program <- getOption("rustgpu.tensorboard", unname(Sys.which("tensorboard")))
  if (!nzchar(program)) {
    rlang::warn(sprintf(paste0("TensorBoard is not installed (pip install tensorboard), so it was not started. ",
                               "The logs in %s are written; view them with `tensorboard --logdir %s` where it is installed."),
                        paste0("\"", log_dir, "\"", collapse = ", "), log_dir[[1]]), class = "rustgpu_tensorboard_missing")
    return(invisible(NULL))
  }
  if (identical(port, "auto")) port <- free_port(6006) else check_count(port, "port")
  runs <- if (length(log_dir) > 1) {
    labels <- if (is.null(names(log_dir))) basename(log_dir) else names(log_dir)
    c("--logdir_spec", shQuote(paste0(labels, ":", normalizePath(log_dir), collapse = ",")))
  } else c("--logdir", shQuote(normalizePath(log_dir)))
  if (!is.null(.tensorboard$pid)) tools::pskill(.tensorboard$pid)
  args <- c(runs, "--host", shQuote(host), "--port", as.integer(port), "--reload_interval", reload_interval,
            "--purge_orphaned_data", tolower(purge_orphaned_data))
  pid <- system(paste(shQuote(program), paste(args, collapse = " "), "> /dev/null 2>&1 & echo $!"), intern = TRUE)
  .tensorboard$pid <- as.integer(pid[[length(pid)]])
  url <- sprintf("http://%s:%d", host, as.integer(port))
  message(sprintf("Started TensorBoard at %s", url))
  if (launch_browser) utils::browseURL(url)
  invisible(url)
}

.tensorboard <- new.env(parent = emptyenv())

free_port <- function(from) {
  for (port in seq(from, from + 100)) {
    socket <- tryCatch(serverSocket(port), error = function(e) NULL)
    if (!is.null(socket)) {
      close(socket)
      return(port)
    }
  }
  state_error(sprintf("No free port from %d to %d for TensorBoard: give `port`.", from, from + 100))
}
