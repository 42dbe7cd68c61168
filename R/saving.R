# Saving and loading in Keras's HDF5 formats. On a parallel model every function works on
# its template (whose weights the parallel model shares).

persisted_model <- function(object, arg = "object", call = rlang::caller_env()) {
  check_model(object, arg, call = call)
  if (is_parallel_model(object)) object$template else object
}

check_path <- function(filepath, call = rlang::caller_env()) {
  if (!is.character(filepath) || length(filepath) != 1 || is.na(filepath) || !nzchar(filepath)) {
    value_error(sprintf("`filepath` must be a single file path, not %s.", describe(filepath)), call = call)
  }
  path.expand(filepath)
}

#' Save and load models in Keras's HDF5 format
#'
#' `save_model_hdf5()` writes the architecture (Keras's `model_config`), the weights and,
#' when the model is compiled, the training setup and (with `include_optimizer`) the
#' optimizer state, in Keras 2's legacy layout: files that Python or R keras can load.
#' `load_model_hdf5()` reads such files, also those written by Keras, and compiles the model
#' as it was saved, with its optimizer state, so training continues where it stopped.
#'
#' Writes are atomic: on any failure the previous file is untouched. Called on a parallel
#' model from [multi_gpu_model()], the functions save its template, as the reference says.
#'
#' @param object A model.
#' @param filepath Path of the `.h5` file.
#' @param overwrite Whether to replace an existing file (otherwise that is an error).
#' @param include_optimizer Whether to save the optimizer state.
#' @param custom_objects A named list of the losses and metrics written in R that the model
#'   was compiled with, under the names it was saved with (layers written in R and lambda
#'   layers are saved with their traces and need none).
#' @param compile Whether to compile the loaded model as it was saved.
#' @return `save_model_hdf5()`: `object`, invisibly. `load_model_hdf5()`: the model.
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(8, activation = "relu", input_shape = 4) %>%
#'   layer_dense(3, activation = "softmax")
#' compile(model, optimizer = "adam", loss = "categorical_crossentropy")
#' path <- tempfile(fileext = ".h5")
#' save_model_hdf5(model, path)
#' restored <- load_model_hdf5(path)
#' x <- matrix(runif(8), 2, 4)
#' all.equal(predict(restored, x), predict(model, x))
#' @export
save_model_hdf5 <- function(object, filepath, overwrite = TRUE, include_optimizer = TRUE) {
  # A multi-worker job saves once, on the chief.
  if (!writes_files(object)) return(invisible(object))
  model <- persisted_model(object)
  filepath <- check_path(filepath)
  check_bool(overwrite, "overwrite")
  check_bool(include_optimizer, "include_optimizer")
  call_backend(rg_save_model(model$ptr, filepath, overwrite, include_optimizer))
  invisible(object)
}

#' @rdname save_model_hdf5
#' @export
load_model_hdf5 <- function(filepath, custom_objects = NULL, compile = TRUE) {
  filepath <- check_path(filepath)
  if (!is.null(custom_objects) && (!is.list(custom_objects) || is.null(names(custom_objects)) || !all(nzchar(names(custom_objects))))) {
    value_error("`custom_objects` must be a named list (names as the model was saved with, e.g. list(my_loss = my_loss)).")
  }
  check_bool(compile, "compile")
  loaded <- call_backend(rg_load_model(filepath, compile))
  model <- new_model(loaded$ptr, loaded$name)
  warn_nonfinite_weights(model, filepath)
  training <- loaded$training
  if (compile && !is.null(training)) {
    optimizer <- do.call(new_optimizer, training$optimizer)
    # Losses and metrics written in R were saved by name: custom_objects gives them back.
    known <- rg_loss_names()
    restore <- function(name, kind, known_names) {
      if (name %in% known_names) return(name)
      f <- custom_objects[[name]]
      if (is.function(f)) return(if (kind == "metric" && is.null(attr(f, "keras_name"))) custom_metric(name, f) else structure(f, saved_name = name))
      rustgpu_abort(sprintf(paste0("The model was compiled with the custom %s \"%s\", which the file holds by name only: ",
                                   "pass `custom_objects = list(%s = <the function>)`, or load it with `compile = FALSE`."),
                            kind, name, name), "rustgpu_value_error")
    }
    # By output name when the file gives them so (a named list keeps its names).
    losses <- lapply(training$loss, function(l) restore(as.character(l), kind = "loss", known_names = known$losses))
    metrics <- lapply(as.character(training$metrics), restore, kind = "metric", known_names = known$metrics)
    compile(model, optimizer = optimizer, loss = losses, metrics = metrics, loss_weights = training$loss_weights)
    call_backend(rg_load_optimizer_state(model$ptr, filepath))
  }
  model
}

#' Save and load model weights in Keras's HDF5 format
#'
#' The weights only, in Keras 2's layout (`layer_names`, a group per layer,
#' `<layer>/<layer>/kernel:0`, ...). `load_model_weights_hdf5()` also reads the weights of
#' full-model files and tf-keras/Keras 3 `.weights.h5` files. Loading into a template that
#' is replicated updates every replica (they share its weights).
#'
#' @inheritParams save_model_hdf5
#' @param by_name Whether to match layers by name (else by order among the layers that
#'   have weights, as Keras does).
#' @param skip_mismatch With `by_name`, whether to skip layers whose weight count or shapes
#'   differ (with a warning) rather than stop.
#' @return `object`, invisibly.
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
#' path <- tempfile(fileext = ".h5")
#' save_model_weights_hdf5(model, path)
#' other <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
#' load_model_weights_hdf5(other, path)
#' all.equal(get_weights(other), get_weights(model))
#' @export
save_model_weights_hdf5 <- function(object, filepath, overwrite = TRUE) {
  if (!writes_files(object)) return(invisible(object))
  model <- persisted_model(object)
  filepath <- check_path(filepath)
  check_bool(overwrite, "overwrite")
  call_backend(rg_save_weights(model$ptr, filepath, overwrite))
  invisible(object)
}

#' @rdname save_model_weights_hdf5
#' @export
load_model_weights_hdf5 <- function(object, filepath, by_name = FALSE, skip_mismatch = FALSE) {
  model <- persisted_model(object)
  filepath <- check_path(filepath)
  check_bool(by_name, "by_name")
  check_bool(skip_mismatch, "skip_mismatch")
  if (skip_mismatch && !by_name) value_error("`skip_mismatch = TRUE` needs `by_name = TRUE` (as in Keras).")
  skipped <- call_backend(rg_load_weights(model$ptr, filepath, by_name, skip_mismatch))
  mark_weights_changed(model)
  warn_nonfinite_weights(model, filepath)
  for (msg in skipped) warning(paste("Skipped loading weights:", msg), call. = FALSE)
  invisible(object)
}

#' Serialize a model to a raw vector
#'
#' The bytes of the HDF5 file [save_model_hdf5()] writes, e.g. to store a model in an R
#' object; `unserialize_model()` rebuilds it.
#'
#' @inheritParams save_model_hdf5
#' @param model A model (`serialize_model()`) or a raw vector (`unserialize_model()`).
#' @return `serialize_model()`: a raw vector. `unserialize_model()`: the model.
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
#' bytes <- serialize_model(model)
#' restored <- unserialize_model(bytes)
#' all.equal(get_weights(restored), get_weights(model))
#' @export
serialize_model <- function(model, include_optimizer = TRUE) {
  path <- tempfile(fileext = ".h5")
  on.exit(unlink(path))
  save_model_hdf5(model, path, include_optimizer = include_optimizer)
  readBin(path, "raw", file.size(path))
}

#' @rdname serialize_model
#' @export
unserialize_model <- function(model, custom_objects = NULL, compile = TRUE) {
  if (!is.raw(model)) value_error(sprintf("`model` must be a raw vector from serialize_model(), not %s.", describe(model)))
  path <- tempfile(fileext = ".h5")
  on.exit(unlink(path))
  writeBin(model, path)
  load_model_hdf5(path, custom_objects = custom_objects, compile = compile)
}

# Keras loads weights holding NaN or infinite values (or float64 values beyond float32's
# range, which become infinite) without a word; a classed warning names them.
warn_nonfinite_weights <- function(model, filepath) {
  found <- call_backend(rg_nonfinite_weights(model$ptr))
  if (length(found)) {
    rlang::warn(sprintf("\"%s\" holds weights with NaN or infinite values (or values beyond float32's range): %s. Predictions will be NaN; retrain or load another file.",
                        filepath, paste(found, collapse = ", ")), class = "rustgpu_nonfinite_weights_warning")
  }
  invisible()
}

#' TensorFlow's SavedModel and checkpoint formats (not supported)
#'
#' R keras's functions for TensorFlow's own formats: the SavedModel directory
#' (`save_model_tf()`, `model_to_saved_model()`, `export_savedmodel()`) and TensorFlow
#' checkpoints of weights (`save_model_weights_tf()`). Their files are TensorFlow graphs and
#' protocol buffers that only TensorFlow runs; rustgpu has no TensorFlow underneath and
#' writes Keras's HDF5 format, which Keras, tf-keras and R keras read. Each of these
#' functions therefore stops with an error of class `rustgpu_unsupported_error` that names
#' the HDF5 function to use instead.
#'
#' @param object,model A model.
#' @param filepath,saved_model_path,export_dir_base Where the files would go.
#' @param ... R keras's other arguments (ignored).
#' @return Nothing: an error.
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
#' try(save_model_weights_tf(model, tempfile()))
#' @name tensorflow_formats
NULL

unsupported_format <- function(instead, call = rlang::caller_env()) {
  rustgpu_abort(sprintf(paste0("TensorFlow's SavedModel and checkpoint formats are not supported: rustgpu has no TensorFlow ",
                               "underneath. Use %s (Keras's HDF5 format, which Keras, tf-keras and R keras also read)."), instead),
                c("rustgpu_unsupported_error", "rustgpu_value_error"), call = call)
}

#' @rdname tensorflow_formats
#' @export
save_model_tf <- function(object, filepath, ...) unsupported_format("save_model_hdf5()")

#' @rdname tensorflow_formats
#' @export
load_model_tf <- function(filepath, ...) unsupported_format("load_model_hdf5()")

#' @rdname tensorflow_formats
#' @export
save_model_weights_tf <- function(object, filepath, ...) unsupported_format("save_model_weights_hdf5()")

#' @rdname tensorflow_formats
#' @export
load_model_weights_tf <- function(object, filepath, ...) unsupported_format("load_model_weights_hdf5()")

#' @rdname tensorflow_formats
#' @export
model_to_saved_model <- function(model, saved_model_path, ...) unsupported_format("save_model_hdf5()")

#' @rdname tensorflow_formats
#' @export
model_from_saved_model <- function(saved_model_path, ...) unsupported_format("load_model_hdf5()")

#' @rdname tensorflow_formats
#' @export
export_savedmodel <- function(object, export_dir_base, ...) unsupported_format("save_model_hdf5()")
