#' Inject a failure into one replica of a parallel model (internal: a test hook)
#'
#' Makes `replica` fail in the training step after `after_steps` more steps, by returning
#' an error or by panicking, so that tests and users can see what a failing device does:
#' `fit()` stops with an R error naming the replica and device, the master weights keep
#' their values from before the failed step, and the model keeps working.
#'
#' @param model A parallel model from [multi_gpu_model()].
#' @param replica Index of the replica (0-based, in the order of `gpus`).
#' @param after_steps Training steps to let pass first.
#' @param kind "error" or "panic".
#' @return `model`, invisibly.
#' @keywords internal
#' @examples
#' use_virtual_gpus(2)
#' model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
#' parallel <- multi_gpu_model(model, gpus = 2)
#' compile(parallel, optimizer = "sgd", loss = "mse")
#' rustgpu:::inject_replica_failure(parallel, replica = 1, kind = "panic")
#' x <- matrix(runif(20), ncol = 2)
#' try(fit(parallel, x, rowSums(x), epochs = 1, verbose = 0))
#' use_virtual_gpus(0)
inject_replica_failure <- function(model, replica = 0, after_steps = 0, kind = c("error", "panic")) {
  check_model(model, "model")
  kind <- match.arg(kind)
  check_count(replica, "replica", min = 0)
  check_count(after_steps, "after_steps", min = 0)
  call_backend(rg_inject_fault(model$ptr, as.integer(replica), as.integer(after_steps), kind))
  invisible(model)
}

#' Slow down one replica of a parallel model (internal: a test hook)
#'
#' Makes `replica`'s part of every training step take `seconds_per_row` longer per row, a
#' device slower than the others, to see `multi_gpu_model(split = "measured")` follow speed.
#'
#' @param model A parallel model from [multi_gpu_model()].
#' @param replica Index of the replica (0-based).
#' @param seconds_per_row The delay per row (0 to 1 second).
#' @return `model`, invisibly.
#' @keywords internal
#' @noRd
slow_replica <- function(model, replica, seconds_per_row) {
  check_model(model, "model")
  call_backend(rg_slow_replica(model$ptr, as.integer(replica), as.numeric(seconds_per_row)))
  invisible(model)
}
