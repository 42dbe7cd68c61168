#' rustgpu: Keras-style deep learning with multi-GPU data parallelism, in Rust
#'
#' Build models with [keras_model_sequential()] and `layer_*()` functions,
#' [compile()] and [fit()] them, and spread training over several devices with
#' [multi_gpu_model()]. Without a GPU, [use_virtual_gpus()] makes CPU-backed
#' stand-ins that run the same data-parallel path.
#' @keywords internal
#' @importFrom rlang .data
"_PACKAGE"

.onLoad <- function(libname, pkgname) {
  rg_init()
  n <- Sys.getenv("RUSTGPU_VIRTUAL_GPUS", "")
  if (nzchar(n)) {
    use_virtual_gpus(as.integer(n))
  }
}
