#' Replicate a model on several GPUs
#'
#' Single-machine data parallelism, as in Keras's `multi_gpu_model()`: each batch is
#' split along its first axis into contiguous sub-batches (sizes differing by at most
#' one; with fewer rows than GPUs, some replicas sit the batch out), a replica on each
#' device processes one sub-batch, all concurrently on persistent worker threads, and
#' the outputs are concatenated in order. In training, each replica computes the loss
#' and gradients of its rows; the gradients are summed so that a step equals the
#' template's step on the whole batch, and one optimizer step updates the master weights.
#'
#' The returned model is used like the template (compile, fit, evaluate, predict,
#' summary, `get_weights()` ...) and shares its weights: train the parallel model, then
#' save or inspect the template.
#'
#' On a machine without a GPU, [use_virtual_gpus()] provides CPU-backed devices that run
#' this same code path.
#'
#' @param model A model (the "template").
#' @param gpus `NULL` to use all available GPUs; a single integer >= 2 for GPUs
#'   `0..gpus-1`; or a vector of GPU ids (0-based, as listed by [gpu_devices()]).
#' @param cpu_merge Whether outputs are concatenated, and gradients reduced, on the CPU
#'   (`TRUE`) or on the first listed GPU (`FALSE`).
#' @param cpu_relocation Whether to place the master weights on the CPU before
#'   replication. rustgpu always keeps the master weights in host memory, so the
#'   template shares them either way (unlike Keras, keras#11313).
#' @param split How each batch is shared among the replicas: `"even"` (Keras's: parts
#'   differing by at most one row) or `"measured"`, in proportion to each replica's rows per
#'   second in recent training steps (a device twice as fast gets about twice the rows; each
#'   replica keeps at least one row). Any split gives the same step: each replica's loss is
#'   its rows' share of the whole batch's. Use `"measured"` for GPUs of unequal speed. (With
#'   synchronized batch normalization or masks the replicas wait for each other inside the
#'   step, which the measurement counts too: the split then stays about even.)
#' @return A model that distributes its work over the devices.
#' @examples
#' use_virtual_gpus(2)
#' model <- keras_model_sequential() %>%
#'   layer_dense(8, activation = "relu", input_shape = 4) %>%
#'   layer_dense(3, activation = "softmax")
#' parallel_model <- multi_gpu_model(model, gpus = 2)
#' compile(parallel_model, loss = "categorical_crossentropy", optimizer = "rmsprop")
#' x <- matrix(runif(400), ncol = 4)
#' y <- to_categorical(sample(0:2, 100, replace = TRUE), 3)
#' fit(parallel_model, x, y, epochs = 2, batch_size = 32, verbose = 0)
#' # The template holds the trained weights.
#' get_weights(model)[[2]]
#' use_virtual_gpus(0)
#' @export
multi_gpu_model <- function(model, gpus = NULL, cpu_merge = TRUE, cpu_relocation = FALSE, split = c("even", "measured")) {
  check_model(model, "model")
  if (is_parallel_model(model)) {
    value_error("`model` is already a parallel model: pass its template to multi_gpu_model().")
  }
  check_bool(cpu_merge, "cpu_merge")
  check_bool(cpu_relocation, "cpu_relocation")
  split <- match_choice(split, c("even", "measured"), "split")
  refuse_stateful_layers(model, "`model` has", "Train it without multi_gpu_model()")
  ids <- resolve_gpu_ids(gpus)
  ptr <- call_backend(rg_multi_gpu(model$ptr, as.numeric(ids), cpu_merge, cpu_relocation, split))
  new_model(ptr, model$name, kind = if (inherits(model, "keras.engine.sequential.Sequential")) "sequential" else "model",
            template = model, gpus = ids)
}

# Replicas split each batch: stateful layers, whose rows' states go from one batch to the
# next, cannot train so. `has`: how the message names the model; `instead`: what to do.
refuse_stateful_layers <- function(model, has, instead, call = rlang::caller_env()) {
  stateful <- call_backend(rg_stateful_layers(model_field(model, "ptr")), call = call)
  if (length(stateful)) {
    value_error(sprintf(paste(
      "%s stateful layers (%s): each keeps its rows' states from one batch to the next, which",
      "splitting batches across replicas would mix up. %s, or use `stateful = FALSE`."
    ), has, paste0("\"", stateful, "\"", collapse = ", "), instead), call = call)
  }
  invisible()
}

# Keras's rules and messages for `gpus`.
resolve_gpu_ids <- function(gpus, call = rlang::caller_env()) {
  if (is.null(gpus)) {
    n <- nrow(gpu_devices())
    if (n < 2) {
      value_error(sprintf(paste0(
        "For multi-gpu usage to be effective, call `multi_gpu_model` with `gpus >= 2`. Received: `gpus=%d` ",
        "(the GPUs available). On a machine without GPUs, use_virtual_gpus(n) provides CPU-backed ones."), n),
        call = call)
    }
    return(seq_len(n) - 1L)
  }
  if (!is.numeric(gpus) || length(gpus) == 0 || anyNA(gpus) || any(!is.finite(gpus)) ||
      any(gpus != round(gpus)) || any(gpus < 0)) {
    value_error(sprintf("`gpus` must be NULL, a whole number >= 2, or a vector of GPU ids (whole numbers >= 0), not %s.",
                        describe(gpus)), call = call)
  }
  if (length(gpus) == 1) {
    if (gpus < 2) {
      value_error(sprintf(
        "For multi-gpu usage to be effective, call `multi_gpu_model` with `gpus >= 2`. Received: `gpus=%s`",
        format(gpus)), call = call)
    }
    return(seq_len(gpus) - 1L)
  }
  if (anyDuplicated(gpus)) {
    value_error(sprintf("`gpus` lists GPU %s more than once: each id must be distinct.",
                        format(gpus[anyDuplicated(gpus)])), call = call)
  }
  as.integer(gpus)
}
