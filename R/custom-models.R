# Models written in R, as R keras 2.x writes them: keras_model_custom(function(self) {
# <layers assigned to self>; function(inputs, mask = NULL) <their use> }). The model takes
# its shape from the first data it sees: its function is then applied to input tensors of
# that shape (the functional API) and the result becomes the model, as Keras builds a
# subclassed model on its first call.

#' Create a model from an R function
#'
#' R keras's `keras_model_custom()`: `model_fn(self)` creates the model's layers (assigning
#' them to `self`, e.g. `self$dense1 <- layer_dense(units = 32)`) and returns the model's
#' call, `function(inputs, mask = NULL)`, which applies them. The model is built when it first
#' sees data (`fit()`, `predict()`, `evaluate()`, ...): its call runs once on input tensors
#' of the data's shape; `compile()` before that is applied then. The call may use any layer
#' and backend function; R control flow on arguments (not on tensor values) is fine.
#'
#' @param model_fn A function of `self` returning the call.
#' @param name The model's name.
#' @return A model.
#' @examples
#' model <- keras_model_custom(function(self) {
#'   self$hidden <- layer_dense(units = 8, activation = "relu")
#'   self$out <- layer_dense(units = 2, activation = "softmax")
#'   function(inputs, mask = NULL) self$out(self$hidden(inputs))
#' })
#' compile(model, optimizer = "adam", loss = "categorical_crossentropy")
#' dim(predict(model, matrix(runif(12), 4)))
#' @export
keras_model_custom <- function(model_fn, name = NULL) {
  if (!is.function(model_fn)) value_error(sprintf("`model_fn` must be a function of `self`, not %s.", describe(model_fn)))
  check_string(name, "name", allow_null = TRUE)
  if (is.null(name)) name <- rg_unique_name("model")
  model <- new_model(call_backend(rg_model_new(name)), name, kind = "custom")
  call_fn <- model_fn(model)
  if (!is.function(call_fn)) value_error("`model_fn` must return the model's call, a function(inputs, mask = NULL).")
  model$custom_call <- call_fn
  model
}

# Whether `object` is a custom model not yet built.
unbuilt_custom <- function(object) {
  !is.null(model_field(object, "custom_call")) && !isTRUE(model_field(object, "custom_built"))
}

# Builds a custom model for data like `x` (an array or a list of arrays), once.
ensure_built <- function(object, x, call = rlang::caller_env()) {
  if (!inherits(object, "rustgpu_model") || !unbuilt_custom(object)) return(invisible(object))
  arrays <- if (is.list(x) && !is.data.frame(x)) x else list(x)
  if (!length(arrays)) value_error("The custom model needs data to take its input shape from.", call = call)
  inputs <- lapply(arrays, function(a) layer_input(shape = if (is.null(dim(a))) 1L else dim(a)[-1]))
  outputs <- object$custom_call(if (length(inputs) == 1) inputs[[1]] else inputs, mask = NULL)
  # Built in the strategy's scope the model was made in, if any (its replicas, or a worker).
  previous <- the_strategy$current
  the_strategy$current <- model_field(object, "strategy")
  on.exit(the_strategy$current <- previous, add = TRUE)
  built <- keras_model(inputs, outputs, name = object$name)
  fields <- environment(built)
  for (f in setdiff(ls(fields, all.names = TRUE), c("name", "compiled", "metric_names"))) {
    assign(f, get(f, envir = fields), envir = environment(object))
  }
  object$custom_built <- TRUE
  pending <- model_field(object, "pending_compile")
  if (!is.null(pending)) do.call(compile, c(list(object), pending))
  invisible(object)
}
