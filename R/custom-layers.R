# Layer classes written in R, as R keras 2.x writes them: an R6 class inheriting KerasLayer
# with build() (adding weights with self$add_weight()) and call(), wrapped by create_layer().
# When the layer is applied, build() runs on the input shape and call() is traced on
# symbolic tensors (R/backend.R); the core runs the trace with the layer's weights.

#' Base class of layers written in R
#'
#' R keras's `KerasLayer`: inherit from it in an R6 class and give `build(input_shape)`
#' (adding the layer's weights with `self$add_weight()`), `call(x, mask = NULL)` (the
#' computation, with the backend functions `k_*()`), and optionally
#' `compute_output_shape(input_shape)`; wrap it with [create_layer()]. `call()` is traced
#' once (see [layer_lambda()]): the layer then runs on every device and replica without R.
#' The output shape comes from the trace.
#'
#' @format An R6 class generator.
#' @examples
#' Scale <- R6::R6Class("Scale", inherit = KerasLayer, public = list(
#'   w = NULL,
#'   build = function(input_shape) {
#'     self$w <- self$add_weight(name = "w", shape = list(input_shape[[2]]), initializer = "ones")
#'   },
#'   call = function(x, mask = NULL) x * self$w
#' ))
#' layer_scale <- function(object) create_layer(Scale, object)
#' model <- keras_model_sequential() %>% layer_dense(3, input_shape = 2) %>% layer_scale()
#' get_weights(model)[[3]]
#' @export
KerasLayer <- R6::R6Class("KerasLayer",
  public = list(
    #' @description Creates the layer's weights for inputs of `input_shape` (a list whose
    #'   first entry, the batch size, is `NULL`).
    #' @param input_shape The input's shape.
    build = function(input_shape) {},

    #' @description The layer's computation on `inputs` (symbolic tensors).
    #' @param inputs The input tensor (or list of them).
    #' @param mask Not used.
    call = function(inputs, mask = NULL) {
      value_error("A layer written in R must implement call(inputs, mask = NULL).")
    },

    #' @description The output shape (not needed: the trace knows it).
    #' @param input_shape The input's shape.
    compute_output_shape = function(input_shape) input_shape,

    #' @description Adds a weight to the layer (from `build()`): a tensor for `call()`.
    #' @param name,shape,initializer,trainable The weight's name, shape (a list or vector of
    #'   sizes), initializer (a name or an `initializer_*()` object; by default
    #'   "glorot_uniform") and whether training updates it.
    #' @param regularizer A regularizer (`regularizer_l2(0.01)`), or an R function of the
    #'   weight giving a penalty (traced as [layer_lambda()]'s function is), added to the loss.
    #' @param constraint A constraint (`constraint_nonneg()`), applied after each update.
    #' @param dtype Not supported (float32 weights).
    add_weight = function(name, shape, dtype = NULL, initializer = NULL, regularizer = NULL, trainable = TRUE,
                          constraint = NULL) {
      tracer <- private$tracer
      if (is.null(tracer) || !identical(tracer$phase, "build")) {
        state_error("add_weight() is called from build(), which runs when the layer is applied.")
      }
      check_string(name, "name")
      check_bool(trainable, "trainable")
      shape <- unlist(lapply(as.list(shape), function(d) if (is.null(d)) NA else d))
      if (!length(shape) || anyNA(shape) || any(shape < 1) || any(shape != round(shape))) {
        value_error(sprintf("add_weight(): `shape` must be whole sizes >= 1, not %s.", describe(shape)))
      }
      k <- length(tracer$weights)
      spec <- list(name = name, shape = I(as.numeric(shape)),
                   initializer = initializer_config(if (is.null(initializer)) "glorot_uniform" else initializer, "initializer"),
                   trainable = trainable)
      if (!is.function(regularizer)) spec$regularizer <- regularizer_config(regularizer, "regularizer")
      spec$constraint <- constraint_config(constraint, "constraint")
      tracer$weights[[k + 1]] <- spec
      node <- call_backend(rg_trace_add_weight(tracer$build$ptr, as.numeric(shape)))
      tracer$build$weight_nodes[k + 1] <- node
      w <- traced_tensor(tracer$build, node, as.numeric(shape))
      w$weight_index <- k + 1
      if (is.function(regularizer)) self$add_loss(regularizer(w))
      w
    },

    #' @description Adds a loss computed from the layer's weights (from `build()`), as
    #'   Keras's `add_loss()`: its sum joins the loss that training minimizes and reports.
    #' @param losses A tensor computed from the weights `add_weight()` gave, or a list of them.
    #' @param inputs Not supported (losses on the layer's inputs).
    add_loss = function(losses, inputs = NULL) {
      tracer <- private$tracer
      if (is.null(tracer) || !identical(tracer$phase, "build") || !is.null(inputs)) {
        rustgpu_abort(paste0("add_loss() takes losses computed from the layer's weights, in build(); ",
                             "a loss on a layer's inputs or outputs is not supported yet (use an activity regularizer)."),
                      c("rustgpu_unsupported_error", "rustgpu_value_error"))
      }
      for (loss in if (is_traced(losses)) list(losses) else as.list(losses)) {
        if (!is_traced(loss) || !identical(loss$tracer, tracer$build)) {
          value_error(sprintf("add_loss() takes tensors computed from the layer's weights, not %s.", describe(loss)))
        }
        total <- if (length(loss$shape)) k_sum(loss) else loss
        tracer$losses[[length(tracer$losses) + 1]] <- total
      }
      invisible(self)
    },

    #' @description Used by the package while the layer is traced.
    #' @param tracer The trace under construction.
    .set_tracer = function(tracer) {
      private$tracer <- tracer
      invisible(self)
    }
  ),
  private = list(tracer = NULL)
)

#' Make a layer from a layer class written in R
#'
#' R keras's `create_layer()`: makes a layer of `layer_class` (an R6 class inheriting
#' [KerasLayer]) with `args` (those of its `initialize()`, plus the layer arguments
#' `input_shape`, `batch_input_shape`, `batch_size`, `dtype`, `name`, `trainable` and
#' `weights`), applied to `object` as the `layer_*()` functions do.
#'
#' @param layer_class An R6 class generator inheriting [KerasLayer].
#' @param object Model or tensor(s) to apply the layer to, or missing.
#' @param args A named list of arguments.
#' @return A layer (or the model/tensor it was applied to).
#' @examples
#' Double <- R6::R6Class("Double", inherit = KerasLayer, public = list(call = function(x, mask = NULL) 2 * x))
#' model <- keras_model_sequential() %>% layer_dense(2, input_shape = 2)
#' create_layer(Double, model)
#' @export
create_layer <- function(layer_class, object, args = list()) {
  if (!missing(object)) force(object)
  if (!inherits(layer_class, "R6ClassGenerator") || !inherits_keras_layer(layer_class)) {
    value_error(sprintf("`layer_class` must be an R6 class inheriting KerasLayer, not %s.", describe(layer_class)))
  }
  if (!is.list(args)) value_error("`args` must be a named list of the layer's arguments.")
  common <- c("input_shape", "batch_input_shape", "batch_size", "dtype", "name", "trainable", "weights")
  layer_args <- args[intersect(names(args), common)]
  own <- args[setdiff(names(args), common)]
  r6 <- do.call(layer_class$new, own)
  fn <- new.env(parent = emptyenv())
  fn$trace <- function(shapes, call) r6_trace(r6, layer_class$classname, shapes, call = call)
  class(fn) <- "rustgpu_traced_fn"
  config <- list(layer_class = layer_class$classname, `function` = fn, weight_specs = list())
  make_layer("CustomLayer", if (missing(object)) NULL else object, config,
             input_shape = input_shape_of(layer_args$input_shape, layer_args$batch_input_shape), name = layer_args$name,
             trainable = layer_args$trainable, weights = layer_args$weights)
}

inherits_keras_layer <- function(generator) {
  while (!is.null(generator)) {
    if (identical(generator$classname, "KerasLayer") && is.null(generator$get_inherit())) return(TRUE)
    generator <- generator$get_inherit()
  }
  FALSE
}

# The layer's build() on the input shape, then its call() traced: the config fields of the
# core's CustomLayer (the trace, the weights build() added, and the losses on them).
r6_trace <- function(r6, class_name, shapes, call = rlang::caller_env()) {
  tracer <- r6_build(r6, class_name, shapes, call = call)
  on.exit(r6$.set_tracer(NULL))
  input_shapes <- lapply(shapes, function(s) c(NA, shape_with_na(s)))
  calls <- new_tracer(input_shapes, lapply(tracer$weights, function(w) as.numeric(w$shape)))
  # In call(), the weights' tensors stand for the call trace's weight nodes (after its inputs).
  calls$weight_nodes <- length(shapes) + seq_along(tracer$weights) - 1
  tracer$phase <- "call"
  tracer$group$active <- calls
  json <- traced_call(calls, input_shapes, function(xs) r6$call(if (length(xs) == 1) xs[[1]] else xs),
                      sprintf("Layer class %s", class_name), call = call)
  list(`function` = json, weight_specs = tracer$weights, losses = tracer$loss_json)
}

# The layer's (or wrapper's) build() on the input shape, with add_weight() and add_loss()
# recording into a trace of the weights alone: the weights' specs and the losses' traces.
r6_build <- function(r6, class_name, shapes, call = rlang::caller_env()) {
  tracer <- new.env(parent = emptyenv())
  tracer$weights <- list()
  tracer$losses <- list()
  tracer$phase <- "build"
  tracer$group <- new.env(parent = emptyenv())
  tracer$build <- new_tracer()
  tracer$build$weight_nodes <- numeric(0)
  tracer$build$group <- tracer$group
  tracer$group$active <- tracer$build
  keras_shapes <- lapply(shapes, keras_shape)
  r6$.set_tracer(tracer)
  what <- sprintf("Layer class %s", class_name)
  tryCatch(r6$build(if (length(keras_shapes) == 1) keras_shapes[[1]] else keras_shapes), error = function(e) {
    if (inherits(e, "rustgpu_error")) stop(e)
    trace_error(sprintf("%s: build() failed: %s", what, conditionMessage(e)), call = call)
  })
  tracer$loss_json <- lapply(tracer$losses, function(l) call_backend(rg_trace_json(tracer$build$ptr, l$node), call = call))
  tracer
}
