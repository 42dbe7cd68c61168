# Distribution strategies: Keras's successor to multi_gpu_model(). Models made inside a
# strategy's scope train on the same replicas as a multi_gpu_model() (one engine, two front
# doors), but the model itself is the one that trains.

the_strategy <- new.env(parent = emptyenv())

#' Train on several devices: the mirrored distribution strategy
#'
#' Keras's `MirroredStrategy` (in R, `tf$distribute$MirroredStrategy()`): every model made
#' inside the strategy's scope, `with(strategy$scope(), { ... })`, trains data-parallel on
#' one replica per device. Each batch is split among the replicas and their gradients are
#' added up, so a step equals the step of one device on the whole batch, as with
#' [multi_gpu_model()], which runs the same engine. Unlike there, the model itself trains:
#' compile, fit, evaluate, predict and save it as any model.
#'
#' Models made in the scope are those of [keras_model_sequential()], [keras_model()],
#' [keras_model_custom()], the `application_*()` functions, [load_model_hdf5()] and
#' [model_from_json()]. Batch normalization layers keep per-replica statistics unless made
#' with `synchronized = TRUE` (see [layer_batch_normalization()]).
#'
#' @param devices `NULL` for every GPU of [gpu_devices()] (with none, one replica on the
#'   CPU, as TensorFlow), or the devices to use: GPU ids (0-based) or TensorFlow's device
#'   names ("/gpu:0", "GPU:1", "/device:GPU:0"; "/cpu:0" alone for the CPU).
#' @return A strategy: an environment with `scope()` (for [with()]),
#'   `num_replicas_in_sync` (the number of replicas) and `devices` (their names).
#' @seealso [multi_gpu_model()], [use_virtual_gpus()] for CPU-backed GPUs.
#' @examples
#' use_virtual_gpus(2)
#' strategy <- mirrored_strategy()
#' strategy$num_replicas_in_sync
#' with(strategy$scope(), {
#'   model <- keras_model_sequential() %>%
#'     layer_dense(8, activation = "relu", input_shape = 4) %>%
#'     layer_dense(1)
#'   model %>% compile(loss = "mse", optimizer = "sgd")
#' })
#' history <- model %>% fit(matrix(runif(400), ncol = 4), runif(100), epochs = 2, verbose = 0)
#' use_virtual_gpus(0)
#' @export
mirrored_strategy <- function(devices = NULL) {
  ids <- strategy_gpu_ids(devices)
  strategy <- new.env(parent = emptyenv())
  strategy$gpu_ids <- ids
  listed <- gpu_devices()
  strategy$devices <- if (length(ids)) {
    sprintf("/job:localhost/replica:0/task:0/device:GPU:%d", ids)
  } else {
    "/job:localhost/replica:0/task:0/device:CPU:0"
  }
  strategy$device_names <- if (length(ids)) listed$name[match(ids, listed$id)] else "CPU"
  strategy$num_replicas_in_sync <- max(length(ids), 1L)
  strategy$scope <- function() structure(list(strategy = strategy), class = "rustgpu_strategy_scope")
  class(strategy) <- c("rustgpu_mirrored_strategy", "rustgpu_strategy")
  strategy
}

# The GPU ids a strategy's `devices` name; integer(0) for the CPU.
strategy_gpu_ids <- function(devices, call = rlang::caller_env()) {
  available <- gpu_devices()$id
  if (is.null(devices)) return(as.integer(available))
  bad <- function(what) {
    value_error(sprintf(paste(
      "`devices` must be NULL, GPU ids (whole numbers >= 0) or device names such as \"/gpu:0\" or",
      "\"/cpu:0\"; %s."), what), call = call)
  }
  if (is.character(devices) && length(devices) && !anyNA(devices)) {
    parsed <- regmatches(tolower(devices), regexec("^(?:/job:[^/]+/replica:[0-9]+/task:[0-9]+)?/?(?:device:)?(gpu|cpu):([0-9]+)$", tolower(devices), perl = TRUE))
    if (any(lengths(parsed) == 0)) bad(sprintf("\"%s\" is neither", devices[lengths(parsed) == 0][1]))
    kinds <- vapply(parsed, `[`, "", 2)
    if (any(kinds == "cpu")) {
      if (length(devices) > 1) bad("the CPU is one device of its own: pass \"/cpu:0\" alone, or only GPUs")
      return(integer())
    }
    devices <- as.integer(vapply(parsed, `[`, "", 3))
  }
  if (!is.numeric(devices) || !length(devices) || anyNA(devices) || any(devices < 0) || any(devices != round(devices))) {
    bad(sprintf("got %s", describe(devices)))
  }
  devices <- as.integer(devices)
  if (anyDuplicated(devices)) bad(sprintf("GPU %d is listed more than once", devices[anyDuplicated(devices)]))
  missing <- setdiff(devices, available)
  if (length(missing)) {
    value_error(sprintf(paste(
      "There is no GPU %d: this machine has %s. List them with gpu_devices();",
      "use_virtual_gpus(n) provides CPU-backed ones."),
      missing[1], if (length(available)) sprintf("GPUs %s", paste(available, collapse = ", ")) else "no GPU"), call = call)
  }
  devices
}

#' Train on several processes: the multi-worker mirrored strategy
#'
#' Keras's `MultiWorkerMirroredStrategy` on MPI, as PyTorch's DDP and Horovod run: one R
#' process per device or node, all started by the cluster's launcher
#' (`mpirun -np 4 Rscript train.R`, SLURM's `srun Rscript train.R`), each running the same
#' script. Every process builds the same model in the strategy's scope (from the same seed:
#' the strategy sets R's seed to rank 0's, and the weights are sent from rank 0 at
#' `compile()` and `fit()` to be sure), takes its share of every global batch (`batch_size`
#' is the global batch; the shuffled order is the same on every rank, drawn from rank 0's
#' seed each epoch; a last batch with fewer rows than workers joins the one before), and the gradients are
#' added up over all processes with MPI's all-reduce, so every process applies the same
#' update: training equals one process training on the whole batches, and every rank's
#' `fit()` returns the same history.
#'
#' Only the chief (rank 0) writes files ([save_model_hdf5()], [save_model_weights_hdf5()],
#' checkpoint, CSV and TensorBoard callbacks) and progress output. A rank that fails or dies
#' (an error, Ctrl-C, or a script that ends while the others still train) makes the others
#' stop with an error of class `rustgpu_worker_error` naming it (launch with
#' `mpirun --enable-recovery` so that Open MPI leaves them running to report it; without it
#' Open MPI ends the whole job at once). Ctrl-C to the launcher stops every rank.
#'
#' Batch normalization with `synchronized = TRUE` normalizes with the statistics of the whole
#' global batch, across processes. Each process uses one device: its GPU by its local rank on
#' the node, else the CPU.
#'
#' rustgpu must be built with MPI: `configure` turns it on where it finds `mpicc` (Debian:
#' `apt-get install libopenmpi-dev openmpi-bin`); otherwise this function stops with an error
#' that says so. A process not started by a launcher is a job of one worker.
#'
#' @return A strategy: an environment with `scope()` (for [with()]), `num_replicas_in_sync`
#'   (the number of workers), `rank`, `is_chief` and `cluster_resolver` (`task_type`:
#'   "chief" or "worker", `task_id`: the rank), as TensorFlow's.
#' @seealso [mirrored_strategy()] for the devices of one machine.
#' @examples
#' if (rustgpu_build_info()$mpi) {
#'   strategy <- multi_worker_mirrored_strategy()
#'   with(strategy$scope(), {
#'     model <- keras_model_sequential() %>% layer_dense(1, input_shape = 4)
#'     model %>% compile(loss = "mse", optimizer = "sgd")
#'   })
#'   x <- matrix(runif(400), ncol = 4)
#'   model %>% fit(x, rowSums(x), epochs = 1, batch_size = 20, verbose = 0)
#' }
#' @export
multi_worker_mirrored_strategy <- function() {
  job <- call_backend(rg_workers_join())
  # Every rank draws what rank 0 draws from here on (models' seeds, shuffling).
  set.seed(call_backend(rg_workers_broadcast_seed(new_seed())))
  if (is.null(the_strategy$leaves)) {
    # Leave the job cleanly when R ends (its end is then no failure to the others).
    the_strategy$leaves <- TRUE
    reg.finalizer(the_strategy, function(e) try(rg_workers_leave(), silent = TRUE), onexit = TRUE)
  }
  strategy <- new.env(parent = emptyenv())
  strategy$rank <- job$rank
  strategy$num_replicas_in_sync <- job$size
  strategy$is_chief <- job$rank == 0
  strategy$cluster_resolver <- list(task_type = if (job$rank == 0) "chief" else "worker", task_id = job$rank)
  strategy$scope <- function() structure(list(strategy = strategy), class = "rustgpu_strategy_scope")
  class(strategy) <- c("rustgpu_multi_worker_strategy", "rustgpu_strategy")
  strategy
}

#' @export
print.rustgpu_strategy <- function(x, ...) {
  if (inherits(x, "rustgpu_multi_worker_strategy")) {
    cat(sprintf("<MultiWorkerMirroredStrategy: rank %d of %d workers%s>\n", x$rank, x$num_replicas_in_sync,
                if (x$is_chief) " (the chief)" else ""))
    return(invisible(x))
  }
  cat(sprintf("<MirroredStrategy: %d replica%s in sync on %s>\n", x$num_replicas_in_sync,
              if (x$num_replicas_in_sync == 1) "" else "s", paste(x$device_names, collapse = ", ")))
  invisible(x)
}

#' @export
print.rustgpu_strategy_scope <- function(x, ...) {
  cat("<scope of a distribution strategy: use it as with(strategy$scope(), { ... })>\n")
  invisible(x)
}

#' Run code in a distribution strategy's scope
#'
#' `with(strategy$scope(), { ... })`: models made by the code train on the strategy's
#' replicas (see [mirrored_strategy()]). The code runs in the calling environment, so the
#' models it assigns stay there after the scope ends.
#'
#' @param data A strategy's scope, `strategy$scope()`.
#' @param expr The code to run.
#' @param ... Unused.
#' @return The value of `expr`.
#' @examples
#' strategy <- mirrored_strategy()
#' with(strategy$scope(), model <- keras_model_sequential())
#' @export
with.rustgpu_strategy_scope <- function(data, expr, ...) {
  previous <- the_strategy$current
  the_strategy$current <- data$strategy
  on.exit(the_strategy$current <- previous)
  eval.parent(substitute(expr))
}

# Called for every model made: one made in a strategy's scope trains on its replicas.
join_current_strategy <- function(model) {
  strategy <- the_strategy$current
  if (is.null(strategy)) return(invisible(model))
  environment(model)$strategy <- strategy
  if (inherits(strategy, "rustgpu_multi_worker_strategy")) {
    call_backend(rg_join_workers(model_field(model, "ptr")))
  } else if (length(strategy$gpu_ids)) {
    call_backend(rg_replicate_in_place(model_field(model, "ptr"), strategy$gpu_ids))
  }
  invisible(model)
}

is_worker_model <- function(model) {
  inherits(model, "rustgpu_model") && inherits(model_field(model, "strategy"), "rustgpu_multi_worker_strategy")
}

# Whether this process writes the model's files and progress: not a worker other than the chief.
writes_files <- function(model) !is_worker_model(model) || model_field(model, "strategy")$is_chief

# A worker model's fit(): every rank draws the same seed and starts from rank 0's weights;
# only the chief prints and runs the callbacks that write files. Returns `verbose` and the
# callbacks to use here.
worker_fit_setup <- function(model, verbose, callbacks) {
  if (!is_worker_model(model)) return(list(verbose = verbose, callbacks = callbacks))
  set.seed(call_backend(rg_workers_broadcast_seed(new_seed())))
  call_backend(rg_workers_broadcast_weights(model_field(model, "ptr")))
  if (writes_files(model)) return(list(verbose = verbose, callbacks = callbacks))
  writers <- c("rustgpu_callback_model_checkpoint", "rustgpu_callback_csv_logger", "rustgpu_callback_tensorboard")
  list(verbose = 0, callbacks = Filter(function(cb) !inherits(cb, writers), callbacks))
}

# A multi-worker step shares each batch among the workers, at least a row each: a last
# batch with fewer rows than workers joins the one before (so no rows are left out).
worker_batches <- function(model, batches) {
  n <- length(batches)
  if (joins_last_batch(model, n, length(batches[[n]]))) {
    batches[[n - 1]] <- c(batches[[n - 1]], batches[[n]])
    batches[[n]] <- NULL
  }
  batches
}

# Whether a worker model's last batch of `last_rows` rows (of `batches`) joins the one before.
joins_last_batch <- function(model, batches, last_rows) {
  is_worker_model(model) && batches > 1 && last_rows < model_field(model, "strategy")$num_replicas_in_sync
}

# Runs `code` (a worker's training); an R error in it (a callback's, say) or Ctrl-C is told to
# the other workers, which wait for this one's sums, unless it is another worker's failure heard of.
as_worker <- function(model, code) {
  if (!is_worker_model(model)) return(code)
  withCallingHandlers(code, error = function(e) {
    if (!inherits(e, "rustgpu_worker_error")) try(rg_workers_report_failure(conditionMessage(e)), silent = TRUE)
  }, interrupt = function(e) try(rg_workers_report_failure("interrupted by the user (Ctrl-C)"), silent = TRUE))
}

# A model made in a strategy's scope splits batches across replicas: stateful layers, whose
# rows' states go from one batch to the next, cannot train so.
check_strategy_layers <- function(model, call = rlang::caller_env()) {
  strategy <- model_field(model, "strategy")
  if (is.null(strategy) || strategy$num_replicas_in_sync < 2) return(invisible())
  if (is_worker_model(model)) call_backend(rg_workers_broadcast_weights(model_field(model, "ptr")), call = call)
  refuse_stateful_layers(model, "The model was made in a distribution strategy's scope but has",
                         "Make it outside the scope", call = call)
}
