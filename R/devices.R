#' Virtual GPUs: CPU-backed stand-ins for GPUs
#'
#' Makes `n` virtual GPUs, each with its own worker thread and thread budget, that
#' [multi_gpu_model()] uses exactly like real GPUs (same replicas, split, merge and
#' reduction; only the memory under the tensors differs). While virtual GPUs are set they
#' are the GPUs [gpu_devices()] lists. `n = 0` removes them. Setting the environment
#' variable `RUSTGPU_VIRTUAL_GPUS=n` before loading the package does the same.
#' Models already replicated keep the devices they were made with.
#'
#' @param n Number of virtual GPUs (0 to 64).
#' @param threads_per_gpu Threads each one uses for its kernels: one count for all, or
#'   one per GPU (devices of unequal speed, e.g. for `multi_gpu_model(split = "measured")`);
#'   `NULL` divides the machine's cores between them (at least one each).
#' @return The GPU table ([gpu_devices()]), invisibly.
#' @examples
#' use_virtual_gpus(2)
#' gpu_devices()
#' use_virtual_gpus(2, threads_per_gpu = c(2, 1))
#' gpu_devices()$threads
#' use_virtual_gpus(0)
#' @export
use_virtual_gpus <- function(n, threads_per_gpu = NULL) {
  check_count(n, "n", min = 0)
  if (!is.null(threads_per_gpu) && (!is.numeric(threads_per_gpu) || !length(threads_per_gpu) %in% c(1, n) ||
      anyNA(threads_per_gpu) || any(threads_per_gpu < 1) || any(threads_per_gpu != round(threads_per_gpu)))) {
    value_error(sprintf("`threads_per_gpu` must be NULL, one whole number >= 1, or one for each of the %d GPUs, not %s.",
                        n, describe(threads_per_gpu)))
  }
  threads <- if (is.null(threads_per_gpu)) 0L else as.integer(threads_per_gpu)
  call_backend(rg_use_virtual_gpus(as.integer(n), threads))
  invisible(gpu_devices())
}

#' GPUs available to rustgpu
#'
#' `gpu_devices()` lists the GPUs replicas can use: the virtual GPUs when some are set
#' with [use_virtual_gpus()], else the CUDA devices. `cuda_is_available()` and
#' `cuda_device_count()` report CUDA devices only; a CPU build answers `FALSE` / `0`.
#'
#' @return `gpu_devices()`: a data frame with columns `id` (0-based), `name`, `kind`
#'   ("cuda" or "virtual"), `memory` (bytes, `NA` where unknown) and `threads`.
#' @examples
#' cuda_is_available()
#' cuda_device_count()
#' gpu_devices()
#' @export
gpu_devices <- function() {
  d <- call_backend(rg_gpu_devices())
  memory <- d$memory
  memory[is.nan(memory)] <- NA_real_
  data.frame(id = d$id, name = d$name, kind = d$kind, memory = memory, threads = d$threads,
             stringsAsFactors = FALSE)
}

#' @rdname gpu_devices
#' @export
cuda_is_available <- function() cuda_device_count() > 0

#' @rdname gpu_devices
#' @export
cuda_device_count <- function() rg_cuda_device_count()

#' What this build of rustgpu contains
#'
#' A CUDA build links the CUDA libraries dynamically: it needs the NVIDIA driver at load time.
#'
#' @return A list: `features` compiled in ("cpu", "cuda"), the number of CUDA devices, the
#'   versions of the CUDA driver and of cuBLAS found at run time (`NA` in a CPU build), and
#'   `mpi`: whether the build has MPI ([multi_worker_mirrored_strategy()]).
#' @examples
#' rustgpu_build_info()
#' @export
rustgpu_build_info <- function() {
  versions <- rg_cuda_versions()
  list(features = rg_build_features(), cuda_devices = cuda_device_count(),
       cuda_driver = versions$driver, cublas = versions$cublas, mpi = rg_workers_available())
}
