# Layer wrappers written in R, as R keras 2.x writes them: an R6 class inheriting
# KerasWrapper whose build() adds weights (and losses on them) around a wrapped layer, made
# by create_wrapper(). The wrapped layer runs as it is; the wrapper's weights and losses
# join the model (the core's CustomWrapper).

#' Base class of layer wrappers written in R
#'
#' R keras's `KerasWrapper`: inherit from it in an R6 class and give `build(input_shape)`,
#' which calls `super$build(input_shape)` and may add weights with `self$add_weight()` and
#' losses on them with `self$add_loss()` (as [KerasLayer]'s); make layers of it with
#' [create_wrapper()]. The wrapped layer (`self$layer`) computes the output; a wrapper
#' whose `call()` does something else is not supported yet.
#'
#' @format An R6 class generator.
#' @examples
#' Penalized <- R6::R6Class("Penalized", inherit = KerasWrapper, public = list(
#'   build = function(input_shape) {
#'     super$build(input_shape)
#'     w <- self$add_weight(name = "scale", shape = list(1), initializer = "ones")
#'     self$add_loss(k_square(w - 1))
#'   }
#' ))
#' model <- keras_model_sequential() %>%
#'   create_wrapper(Penalized, ., list(layer = layer_dense(units = 2), input_shape = 3))
#' length(get_weights(model))
#' @export
KerasWrapper <- R6::R6Class("KerasWrapper",
  inherit = KerasLayer,
  public = list(
    #' @field layer The wrapped layer.
    layer = NULL,

    #' @description Builds the wrapped layer (the package does it when the model is built).
    #' @param input_shape The input's shape.
    build = function(input_shape) invisible(),

    #' @description The wrapped layer's output (the package runs the wrapped layer).
    #' @param inputs,mask The inputs.
    call = function(inputs, mask = NULL) inputs,

    #' @description The wrapped layer's output shape (the package computes it).
    #' @param input_shape The input's shape.
    compute_output_shape = function(input_shape) input_shape
  )
)

#' Make a layer from a wrapper class written in R
#'
#' R keras's `create_wrapper()`: makes a wrapper of `wrapper_class` (an R6 class inheriting
#' [KerasWrapper]) around `args$layer`, with the rest of `args` (those of its `initialize()`,
#' plus the layer arguments `input_shape`, `batch_input_shape`, `batch_size`, `dtype`,
#' `name`, `trainable` and `weights`), applied to `object` as the `layer_*()` functions do.
#' Its weights are its own, then the wrapped layer's.
#'
#' @param wrapper_class An R6 class generator inheriting [KerasWrapper].
#' @param object Model or tensor to apply the wrapper to, or missing.
#' @param args A named list of arguments, with `layer`: a layer made without a model.
#' @return A layer (or the model/tensor it was applied to).
#' @examples
#' Plain <- R6::R6Class("Plain", inherit = KerasWrapper)
#' model <- keras_model_sequential()
#' create_wrapper(Plain, model, list(layer = layer_dense(units = 2), input_shape = 3))
#' @export
create_wrapper <- function(wrapper_class, object, args = list()) {
  if (!missing(object)) force(object)
  if (!inherits(wrapper_class, "R6ClassGenerator") || !inherits_generator(wrapper_class, KerasWrapper)) {
    value_error(sprintf("`wrapper_class` must be an R6 class inheriting KerasWrapper, not %s.", describe(wrapper_class)))
  }
  if (overrides_call(wrapper_class)) {
    rustgpu_abort(sprintf(paste0("Wrapper class %s has its own call(): wrappers that compute something other than ",
                                 "the wrapped layer's output are not supported yet (write a layer class with create_layer())."),
                          wrapper_class$classname),
                  c("rustgpu_unsupported_error", "rustgpu_value_error"))
  }
  if (!is.list(args)) value_error("`args` must be a named list of the wrapper's arguments.")
  common <- c("layer", "input_shape", "batch_input_shape", "batch_size", "dtype", "name", "trainable", "weights")
  wrapper_args <- args[intersect(names(args), common)]
  if (is.null(wrapper_args$layer)) value_error("`args` must give the wrapped `layer`, e.g. list(layer = layer_dense(units = 4)).")
  inner <- wrapped_layer_config(wrapper_args$layer)
  r6 <- do.call(wrapper_class$new, args[setdiff(names(args), common)])
  r6$layer <- wrapper_args$layer
  fn <- new.env(parent = emptyenv())
  fn$trace <- function(shapes, call) {
    tracer <- r6_build(r6, wrapper_class$classname, shapes, call = call)
    r6$.set_tracer(NULL)
    list(weight_specs = tracer$weights, losses = tracer$loss_json)
  }
  class(fn) <- "rustgpu_traced_fn"
  config <- list(layer = inner, layer_class = wrapper_class$classname, `function` = fn, weight_specs = list())
  input_shape <- input_shape_of(wrapper_args$input_shape, wrapper_args$batch_input_shape)
  if (is.null(input_shape)) input_shape <- attr(wrapper_args$layer, "spec")$input_shape
  make_layer("CustomWrapper", if (missing(object)) NULL else object, config, input_shape = input_shape,
             name = wrapper_args$name, trainable = wrapper_args$trainable, weights = wrapper_args$weights)
}

inherits_generator <- function(generator, base) {
  while (!is.null(generator)) {
    if (identical(generator, base)) return(TRUE)
    generator <- generator$get_inherit()
  }
  FALSE
}

# Whether a class below KerasWrapper defines call().
overrides_call <- function(generator) {
  while (!is.null(generator) && !identical(generator, KerasWrapper)) {
    if (!is.null(generator$public_methods$call)) return(TRUE)
    generator <- generator$get_inherit()
  }
  FALSE
}
