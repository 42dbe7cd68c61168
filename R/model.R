# Model objects: an environment holding the Rust handle plus R-side bookkeeping.
# Classes follow R keras so methods carry the reference page's names
# (compile.keras.engine.training.Model, fit.keras.engine.training.Model, ...).

new_model <- function(ptr, name, kind = "sequential", template = NULL, gpus = NULL) {
  # A model is a function, as R keras's are (reticulate makes callable Python objects R
  # functions): model(x) applies it to tensors (the functional API), to a sequential model
  # (adding its layers) or to an array (predict()). Its fields live in the function's
  # environment, which `$` and `$<-` read and write.
  fields <- new.env(parent = asNamespace("rustgpu"))
  fields$ptr <- ptr
  fields$name <- name
  fields$metric_names <- character()
  fields$compiled <- FALSE
  fields$template <- template
  fields$gpus <- gpus
  model <- function(object, ...) call_model(sys.function(), object, ...)
  environment(model) <- fields
  cls <- c(
    if (kind == "sequential") "keras.engine.sequential.Sequential",
    if (kind == "functional") "keras.engine.functional.Functional",
    if (!is.null(template)) "rustgpu_parallel_model",
    "keras.engine.training.Model", "rustgpu_model"
  )
  class(model) <- cls
  if (is.null(template)) join_current_strategy(model)
  model
}

# A field of the model object itself (NULL when absent), without `$`'s computed attributes.
model_field <- function(model, name) get0(name, envir = environment(model), inherits = FALSE)

is_parallel_model <- function(model) inherits(model, "rustgpu_parallel_model")

check_model <- function(object, arg = "object", call = rlang::caller_env()) {
  if (!inherits(object, "rustgpu_model")) {
    value_error(sprintf("`%s` must be a model made by rustgpu (e.g. keras_model_sequential()), not %s.",
                        arg, describe(object)), call = call)
  }
  if (!rg_is_live(object$ptr)) {
    state_error(paste0(
      "This model's compiled data is gone: models made in another R session or restored with ",
      "readRDS() cannot be used. To keep a model, use save_model_hdf5()/load_model_hdf5() or ",
      "serialize_model()/unserialize_model()."
    ), call = call)
  }
  sync_shared_weights(object)
  invisible(object)
}

# model(x): on tensors, the model's layers applied to them (the functional API; the layers,
# and so their weights, are shared); on a sequential model, its layers added to it; on an
# array, predict().
call_model <- function(model, object, ...) {
  if (missing(object)) {
    value_error("Call a model on tensors (the functional API), on a sequential model (to add its layers) or on an array (to predict).")
  }
  if (is_tensor(object) || (is.list(object) && length(object) > 0 && all(vapply(object, is_tensor, logical(1))))) {
    return(apply_model_to_tensors(model, object))
  }
  if (inherits(object, "rustgpu_model")) return(add_model_layers(object, model))
  predict(model, object, ...)
}

model_info <- function(object) call_backend(rg_model_info(object$ptr))

#' Create a sequential model
#'
#' A linear stack of layers, added with the `layer_*()` functions (which modify the
#' model in place and return it, so they chain with `%>%` or `|>`).
#'
#' @param layers A list of layers made by `layer_*()` called without a model.
#' @param name Name of the model (default: a unique "sequential", "sequential_1", ...).
#' @return A model object.
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(units = 8, activation = "relu", input_shape = 4) %>%
#'   layer_dense(units = 3, activation = "softmax")
#' model
#' @export
keras_model_sequential <- function(layers = NULL, name = NULL) {
  check_string(name, "name", allow_null = TRUE)
  if (is.null(name)) name <- rg_unique_name("sequential")
  model <- new_model(call_backend(rg_model_new(name)), name)
  if (!is.null(layers)) {
    if (inherits(layers, "rustgpu_layer")) layers <- list(layers)
    if (!is.list(layers) || !all(vapply(layers, inherits, logical(1), "rustgpu_layer"))) {
      value_error("`layers` must be a list of layers made by layer_*() without a model.")
    }
    for (layer in layers) add_layer(model, layer)
  }
  model
}

#' @export
format.keras.engine.training.Model <- function(x, ...) {
  info <- model_info(x)
  if (isTRUE(info$functional)) {
    info$layer_names <- c(info$input_names, info$layer_names)
    info$layer_classes <- c(rep("InputLayer", length(info$input_names)), info$layer_classes)
    info$output_shapes <- c(info$input_shapes, info$output_shapes)
    info$layer_params <- c(rep(0, length(info$input_names)), info$layer_params)
  }
  names <- sprintf("%s (%s)", info$layer_names, info$layer_classes)
  # Keras's column widths, widened to the longest entry so that the columns stay aligned
  # and no name or shape is cut.
  widths <- c(max(32, nchar(names)), max(25, nchar(info$output_shapes)))
  row_format <- sprintf(" %%-%ds %%-%ds %%-9s", widths[1], widths[2])
  line_length <- max(70, sum(widths) + 13)
  rule <- strrep("_", line_length)
  header <- sprintf(row_format, "Layer (type)", "Output Shape", "Param #")
  rows <- if (length(info$layer_names)) {
    sprintf(row_format, names, info$output_shapes,
            ifelse(is.na(info$layer_params), "(unbuilt)", format_count(info$layer_params)))
  } else {
    " (no layers)"
  }
  total <- info$trainable_params + info$non_trainable_params
  lines <- c(
    sprintf("Model: \"%s\"", info$name), rule, header, strrep("=", line_length), rows, strrep("=", line_length),
    sprintf("Total params: %s", format_count(total)),
    sprintf("Trainable params: %s", format_count(info$trainable_params)),
    sprintf("Non-trainable params: %s", format_count(info$non_trainable_params)),
    rule
  )
  if (isTRUE(info$parallel)) {
    lines <- c(lines, sprintf(
      "Replicated on %d devices (%s); outputs and gradients merged on the %s; master weights on the CPU%s.",
      info$replicas, paste(info$devices, collapse = ", "), info$merge,
      if (isTRUE(info$cpu_relocation)) " (cpu_relocation = TRUE)" else ""
    ))
  }
  paste(lines, collapse = "\n")
}

format_count <- function(n) formatC(n, format = "d", big.mark = ",")

#' @export
print.keras.engine.training.Model <- function(x, ...) {
  cat(format(x), "\n", sep = "")
  invisible(x)
}

#' Print a summary of a model
#'
#' Keras's table: each layer's name and type, output shape and parameter count, then
#' total, trainable and non-trainable parameters. A parallel model adds a line saying
#' how it is replicated.
#'
#' @param object A model.
#' @param ... Unused.
#' @return The summary text, invisibly.
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
#' summary(model)
#' @export
summary.keras.engine.training.Model <- function(object, ...) {
  check_model(object)
  text <- format(object)
  cat(text, "\n", sep = "")
  invisible(text)
}

#' Get or set a model's weights
#'
#' Weights come as a list of arrays in Keras's layouts (a dense kernel is
#' `(inputs, units)`, then its bias; a conv kernel `(kh, kw, in, out)`). A parallel
#' model's weights are its template's. On a layer from [get_layer()], the layer's own
#' weights.
#'
#' @param object A model, or a layer from [get_layer()].
#' @param weights A list of arrays, one per weight, with the shapes `get_weights()` returns.
#' @return `get_weights()`: a list of arrays. `set_weights()`: `object`, invisibly.
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
#' w <- get_weights(model)
#' w[[2]][] <- 1
#' set_weights(model, w)
#' get_weights(model)[[2]]
#' @export
get_weights <- function(object) UseMethod("get_weights")

#' @export
get_weights.default <- function(object) {
  value_error(sprintf("`object` must be a model made by rustgpu (e.g. keras_model_sequential()) or one of its layers, not %s.",
                      describe(object)))
}

#' @export
get_weights.keras.engine.training.Model <- function(object) {
  check_model(object)
  lapply(call_backend(rg_get_weights(object$ptr)), function(w) {
    if (length(dim(w)) == 1) as.array(as.vector(w)) else w
  })
}

#' @rdname get_weights
#' @export
set_weights <- function(object, weights) UseMethod("set_weights")

#' @export
set_weights.default <- function(object, weights) get_weights.default(object)

#' @export
set_weights.keras.engine.training.Model <- function(object, weights) {
  check_model(object)
  if (!is.list(weights)) {
    value_error(sprintf("`weights` must be a list of arrays (as get_weights() returns), not %s.", describe(weights)))
  }
  call_backend(rg_set_weights(object$ptr, weights))
  mark_weights_changed(object)
  invisible(object)
}

#' Retrieve a layer of a model
#'
#' @param object A model (for a parallel model, its template's layers).
#' @param name Name of the layer.
#' @param index Position of the layer, from 1; negative values count from the end.
#' @return The layer: use it with [get_weights()] and [set_weights()]; `$name`,
#'   `$class_name`, `$output_shape` and `$count_params` describe it.
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(4, input_shape = 2, name = "hidden") %>%
#'   layer_dense(1)
#' hidden <- get_layer(model, "hidden")
#' hidden
#' get_weights(get_layer(model, index = -1))
#' @export
get_layer <- function(object, name = NULL, index = NULL) {
  check_model(object)
  info <- model_info(object)
  n <- length(info$layer_names)
  if (is.null(name) == is.null(index)) {
    value_error("Give exactly one of `name` or `index`.")
  }
  if (!is.null(name)) {
    check_string(name, "name")
    i <- match(name, info$layer_names)
    if (is.na(i)) {
      value_error(sprintf("No layer named \"%s\" in the model; its layers are: %s.", name,
                          paste(info$layer_names, collapse = ", ")))
    }
  } else {
    if (!is.numeric(index) || length(index) != 1 || is.na(index) || index != round(index) || index == 0 ||
        abs(index) > n) {
      value_error(sprintf("`index` must be a whole number from 1 to %d (or -%d to -1 from the end), not %s.",
                          n, n, describe(index)))
    }
    i <- if (index > 0) index else n + 1 + index
  }
  structure(list(
    model = object, index = as.integer(i), name = info$layer_names[[i]], class_name = info$layer_classes[[i]],
    output_shape = layer_ref_shape(info$output_dims[[i]]), shown_shape = info$output_shapes[[i]],
    count_params = info$layer_params[[i]]
  ), class = "rustgpu_layer_ref")
}

# Keras's `layer$output_shape` from a layer's output dims: one shape, or a list of them for a
# layer with several outputs (a recurrent layer's states); NULL before the model is built.
layer_ref_shape <- function(dims) {
  if (length(dims) == 0) return(NULL)
  if (length(dims) == 1) keras_shape(dims[[1]]) else lapply(dims, keras_shape)
}

layer_weight_positions <- function(layer) {
  names <- model_info(layer$model)$weight_names
  which(startsWith(names, paste0(layer$name, "/")))
}

#' @export
get_weights.rustgpu_layer_ref <- function(object) {
  get_weights(object$model)[layer_weight_positions(object)]
}

#' @export
set_weights.rustgpu_layer_ref <- function(object, weights) {
  positions <- layer_weight_positions(object)
  if (!is.list(weights) || length(weights) != length(positions)) {
    value_error(sprintf("`weights` must be a list of %d arrays for layer \"%s\", not %s.", length(positions),
                        object$name, describe(weights)))
  }
  all <- get_weights(object$model)
  all[positions] <- weights
  set_weights(object$model, all)
  invisible(object)
}

#' @export
`$.rustgpu_layer_ref` <- function(x, name) {
  if (name %in% c("input", "output")) return(layer_ref_tensor(x, name))
  if (identical(name, "trainable")) return(!isTRUE(.shared$frozen[layer_ids(.subset2(x, "model"))[[.subset2(x, "name")]]]))
  .subset2(x, name)
}

# `layer$trainable <- FALSE` on a model's layer (`for (layer in model$layers) layer$trainable
# <- FALSE`, as R keras scripts freeze a base model): freeze_weights() of that layer.
#' @export
`$<-.rustgpu_layer_ref` <- function(x, name, value) {
  if (!identical(name, "trainable")) value_error(sprintf("A layer's `%s` cannot be set: only `trainable` can.", name))
  check_bool(value, "trainable")
  layer <- .subset2(x, "name")
  set_trainable(.subset2(x, "model"), layer, layer, value)
  x
}

#' @export
print.rustgpu_layer_ref <- function(x, ...) {
  cat(sprintf("<%s layer \"%s\">: output %s, %s params\n", x$class_name, x$name, x$shown_shape,
              format_count(x$count_params)))
  invisible(x)
}

#' Count a model's parameters
#'
#' @param object A model (built: its input shape known).
#' @return The number of weights, trainable and not, as `summary()` reports them.
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(4, input_shape = 2)
#' count_params(model)
#' @export
count_params <- function(object) {
  check_model(object)
  info <- model_info(object)
  if (anyNA(info$layer_params)) {
    state_error("The model is not built yet: give its first layer an `input_shape`, or fit or predict once.")
  }
  info$trainable_params + info$non_trainable_params
}

#' Remove the last layer of a sequential model
#'
#' @param object A sequential model.
#' @return The model, invisibly.
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(4, input_shape = 2) %>%
#'   layer_dense(1)
#' pop_layer(model)
#' length(get_weights(model))
#' @export
pop_layer <- function(object) {
  check_model(object)
  if (is_parallel_model(object)) {
    state_error("Remove layers from the template model, not from the parallel model made by multi_gpu_model().")
  }
  call_backend(rg_pop_layer(object$ptr))
  if (length(object$layer_specs)) object$layer_specs <- object$layer_specs[-length(object$layer_specs)]
  object$layer_ids_complete <- FALSE
  invisible(object)
}

#' Freeze and unfreeze weights
#'
#' Frozen layers keep their weights during training (the optimizer skips them); `summary()`
#' counts their parameters as non-trainable. As in Keras, a model takes its layers' state
#' when it is compiled: freeze (or unfreeze) before `compile()`, or compile again; a model
#' compiled before keeps training what it trained (a GAN's discriminator, frozen inside the
#' combined model, still trains on its own). Models made later with these layers (e.g. by
#' calling this model on tensors) take them frozen.
#'
#' @param object A model.
#' @param from,to The first and last layer to (un)freeze, by name or position (from 1);
#'   `NULL` means the first / last layer.
#' @return `object`, invisibly.
#' @examples
#' model <- keras_model_sequential() %>%
#'   layer_dense(4, input_shape = 2, name = "base") %>%
#'   layer_dense(1, name = "head")
#' freeze_weights(model, to = "base")
#' summary(model)
#' unfreeze_weights(model)
#' @export
freeze_weights <- function(object, from = NULL, to = NULL) {
  set_trainable(object, from, to, FALSE)
}

#' @rdname freeze_weights
#' @export
unfreeze_weights <- function(object, from = NULL, to = NULL) {
  set_trainable(object, from, to, TRUE)
}

set_trainable <- function(object, from, to, trainable, call = rlang::caller_env()) {
  check_model(object, call = call)
  names <- model_info(object)$layer_names
  position <- function(v, default, arg) {
    if (is.null(v)) return(default)
    i <- if (is.character(v)) match(v, names) else v
    if (length(i) != 1 || is.na(i) || !is.numeric(i) || i < 1 || i > length(names) || i != round(i)) {
      value_error(sprintf("`%s` must be a layer name or a position from 1 to %d, not %s.", arg, length(names), describe(v)),
                  call = call)
    }
    i
  }
  first <- position(from, 1, "from")
  last <- position(to, length(names), "to")
  if (first > last) value_error("`from` comes after `to`.", call = call)
  record_frozen(object, names[first:last], !trainable)
  if (isTRUE(object$compiled)) {
    # As Keras: a compiled model trains what was trainable when it was compiled (a GAN's
    # discriminator, frozen for the combined model, still trains on its own).
    object$trainable_changed <- TRUE
  } else {
    call_backend(rg_set_trainable(object$ptr, names[first:last], trainable))
  }
  invisible(object)
}

#' A model's configuration
#'
#' `get_config()` returns the architecture as Keras describes it (its `model_config`: class
#' name, layers with their settings and, for a functional model, their connections) as an R
#' list; `from_config()` builds a new model, with fresh weights, from such a list.
#'
#' @param object A model, or one of its layers ([get_layer()]; then the layer's settings).
#' @param config A list from `get_config()` (or the parsed `model_config` of a Keras model).
#' @param custom_objects Not supported; must be `NULL`.
#' @return `get_config()`: a list. `from_config()`: a model.
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(3, activation = "relu", input_shape = 2)
#' config <- get_config(model)
#' config$config$layers[[2]]$config$units
#' twin <- from_config(config)
#' summary(twin)
#' @export
get_config <- function(object) {
  if (inherits(object, "rustgpu_layer_ref")) {
    # A model's layer: its entry in the model's config, as Keras's layer$get_config().
    layers <- get_config(.subset2(object, "model"))$config$layers
    entry <- Filter(function(l) identical(l$config$name, .subset2(object, "name")), layers)
    return(entry[[1]]$config)
  }
  check_model(object)
  call_backend(rg_get_config(object$ptr))
}

#' @rdname get_config
#' @export
from_config <- function(config, custom_objects = NULL) {
  if (!is.list(config)) value_error(sprintf("`config` must be a list from get_config(), not %s.", describe(config)))
  if (!is.null(custom_objects)) value_error("`custom_objects` is not supported yet: leave it NULL.")
  made <- call_backend(rg_from_config(config))
  new_model(made$ptr, made$name, kind = if (identical(config$class_name, "Sequential")) "sequential" else "functional")
}

#' A model's configuration as JSON
#'
#' `model_to_json()` gives the architecture as Keras's JSON (the `model_config` Keras writes in
#' saved models and `model.to_json()` returns); `model_from_json()` builds a new model, with
#' fresh weights, from such JSON (also from JSON written by Python Keras).
#'
#' @param object A model.
#' @param json JSON text from `model_to_json()`.
#' @param custom_objects Not supported; must be `NULL`.
#' @return `model_to_json()`: a string. `model_from_json()`: a model.
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(3, activation = "relu", input_shape = 2)
#' json <- model_to_json(model)
#' twin <- model_from_json(json)
#' @export
model_to_json <- function(object) {
  check_model(object)
  call_backend(rg_model_to_json(object$ptr))
}

#' @rdname model_to_json
#' @export
model_from_json <- function(json, custom_objects = NULL) {
  if (!is.character(json) || length(json) != 1 || is.na(json)) {
    value_error(sprintf("`json` must be one string of JSON from model_to_json(), not %s.", describe(json)))
  }
  if (!is.null(custom_objects)) value_error("`custom_objects` is not supported yet: leave it NULL.")
  made <- call_backend(rg_model_from_json(json))
  new_model(made$ptr, made$name, kind = if (isTRUE(made$functional)) "functional" else "sequential")
}

#' Clone a model
#'
#' Keras's `clone_model()`: a new model of the same architecture (layers and their
#' configuration) with freshly initialized weights; the clone shares nothing with `model`
#' (copy the weights with `set_weights(clone, get_weights(model))`). Not compiled.
#'
#' @param model A model.
#' @param input_tensors Not supported; must be `NULL`.
#' @return The new model.
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(3, input_shape = 2)
#' twin <- clone_model(model)
#' set_weights(twin, get_weights(model))
#' @export
clone_model <- function(model, input_tensors = NULL) {
  check_model(model)
  if (!is.null(input_tensors)) value_error("`input_tensors` is not supported yet: leave it NULL (the clone gets inputs of the same shapes).")
  from_config(get_config(model))
}

#' Whether Keras is available
#'
#' R keras's check before running Keras code: rustgpu needs nothing besides itself, so
#' `TRUE` (for any `version` up to the Keras 2 API it follows, "2.2.5").
#'
#' @param version A Keras version, or `NULL`.
#' @return `TRUE` or `FALSE`.
#' @examples
#' is_keras_available()
#' @export
is_keras_available <- function(version = NULL) {
  is.null(version) || utils::compareVersion(as.character(version), "2.2.5") <= 0
}

#' A model's configuration as YAML
#'
#' Keras 2's `to_yaml()`: the architecture of [model_to_json()] as YAML, and back (a new
#' model with fresh weights). Needs the yaml and jsonlite packages.
#'
#' @param object A model.
#' @param yaml YAML text from `model_to_yaml()`.
#' @param custom_objects Not supported; must be `NULL`.
#' @return `model_to_yaml()`: a string. `model_from_yaml()`: a model.
#' @examples
#' model <- keras_model_sequential() %>% layer_dense(3, activation = "relu", input_shape = 2)
#' yaml_string <- model_to_yaml(model)
#' twin <- model_from_yaml(yaml_string)
#' @export
model_to_yaml <- function(object) {
  need_packages(c("yaml", "jsonlite"), "Writing a model as YAML")
  config <- jsonlite::fromJSON(model_to_json(object), simplifyVector = FALSE)
  # Keras writes booleans as true/false (R's yaml would write yes/no).
  yaml::as.yaml(config, handlers = list(logical = function(x) structure(ifelse(x, "true", "false"), class = "verbatim")))
}

#' @rdname model_to_yaml
#' @export
model_from_yaml <- function(yaml, custom_objects = NULL) {
  need_packages(c("yaml", "jsonlite"), "Reading a model from YAML")
  if (!is.character(yaml) || length(yaml) != 1 || is.na(yaml)) {
    value_error(sprintf("`yaml` must be one string of YAML from model_to_yaml(), not %s.", describe(yaml)))
  }
  # YAML sequences stay lists (R's yaml would make `[3]` the number 3, which Keras's config
  # reads differently) and empty mappings stay objects.
  handlers <- list(seq = function(x) as.list(x),
                   map = function(x) if (length(x) == 0) structure(list(), names = character(0)) else x)
  config <- tryCatch(yaml::yaml.load(yaml, handlers = handlers),
                     error = function(e) value_error(sprintf("`yaml` is not valid YAML: %s", conditionMessage(e)), call = NULL))
  if (!is.list(config)) value_error("`yaml` must describe a model (a mapping with `class_name` and `config`).")
  model_from_json(as.character(jsonlite::toJSON(config, auto_unbox = TRUE, null = "null", digits = NA)), custom_objects)
}

# Keras's model attributes that are computed: R keras users read `model$layers`,
# `model$input_shape`, `model$output_shape`, `model$input` and `model$output`.
#' @export
`$.rustgpu_model` <- function(x, name) {
  fields <- environment(x)
  if (exists(name, envir = fields, inherits = FALSE)) return(get(name, envir = fields, inherits = FALSE))
  switch(name,
    layers = {
      n <- length(model_info(x)$layer_names)
      lapply(seq_len(n), function(i) get_layer(x, index = i))
    },
    input_shape = {
      # One shape, or a list of them for a model with several inputs (as Keras's).
      dims <- model_info(x)$input_dims
      if (!length(dims)) NULL else if (length(dims) == 1) keras_shape(dims[[1]]) else lapply(dims, keras_shape)
    },
    output_shape = {
      # None before the model has its input shape; a list of shapes for several outputs.
      shapes <- tryCatch(call_backend(rg_output_shapes(x$ptr)), rustgpu_error = function(e) NULL)
      if (is.null(shapes)) return(NULL)
      with_batch <- lapply(shapes, keras_shape)
      if (length(with_batch) == 1) with_batch[[1]] else with_batch
    },
    input = ,
    output = {
      tensors <- model_tensors(x)[[paste0(name, "s")]]
      if (length(tensors) == 1) tensors[[1]] else tensors
    },
    inputs = ,
    outputs = model_tensors(x)[[name]],
    NULL
  )
}

#' @export
`$<-.rustgpu_model` <- function(x, name, value) {
  assign(name, value, envir = environment(x))
  x
}

#' @export
`[[.rustgpu_model` <- function(x, i) `$.rustgpu_model`(x, i)

#' @export
`[[<-.rustgpu_model` <- function(x, i, value) `$<-.rustgpu_model`(x, i, value)
