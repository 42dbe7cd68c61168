# Layers shared by several models (an encoder inside an autoencoder, a model called like a
# layer, a discriminator inside a GAN) have one set of weights, as in Keras, where layers own
# their weights. Here each model holds its values in the core, so the R side keeps Keras's
# semantics by version: a change to a model's weights (a training step, set_weights(),
# loading weights) makes that model the owner of the newest values of its shared layers, and
# a model takes the newest values of its shared layers before it is used (check_model()).
# The values are shared storage, not copies (rg_take_layer_weights()). Layers used by one
# model only cost nothing.

.shared <- new.env(parent = emptyenv())
.shared$clock <- 0
.shared$next_id <- 0L
.shared$users <- integer()                         # layer id -> models made with it
.shared$any <- FALSE                               # whether any layer has several users
.shared$owners <- new.env(parent = emptyenv())     # layer id -> list(ref = weak ref, version)
.shared$frozen <- logical()                        # layer id -> frozen by freeze_weights()
.shared$weights_set <- logical()                   # layer id -> its `weights =` were set

next_layer_id <- function() {
  .shared$next_id <- .shared$next_id + 1L
  paste0("L", .shared$next_id)
}

tick <- function() {
  .shared$clock <- .shared$clock + 1
  .shared$clock
}

# The environment that stands for a model's weights: a parallel model's are its template's.
model_home <- function(model) {
  template <- get0("template", envir = environment(model), inherits = FALSE)
  environment(if (is.null(template)) model else template)
}

# Layer name -> layer id for the model's layers. Layers of models that were not built from R
# layer objects (loaded, from a config) get ids of their own on first use.
layer_ids <- function(model) {
  home <- model_home(model)
  ids <- home$layer_ids
  # Layers added in R register their ids as they come; the model is asked for its layer names
  # only when ids may be missing (a model read from a file or a config) or stale (pop_layer()),
  # not on every training step.
  if (isTRUE(home$layer_ids_complete)) return(ids)
  names_now <- model_info(model)$layer_names
  home$layer_ids_complete <- TRUE
  if (!identical(names(ids), names_now)) {
    fresh <- setdiff(names_now, names(ids))
    new_ids <- stats::setNames(vapply(fresh, function(n) next_layer_id(), character(1)), fresh)
    .shared$users[new_ids] <- 1L
    ids <- c(ids, new_ids)[names_now]
    home$layer_ids <- ids
  }
  ids
}

# Records that `model` holds `layer` (an R layer object), taking the layer's frozen state.
register_layer <- function(model, layer) {
  home <- model_home(model)
  id <- attr(layer, "spec")$id
  home$layer_ids[layer$name] <- id
  users <- if (is.na(.shared$users[id])) 1L else .shared$users[[id]] + 1L
  .shared$users[id] <- users
  if (users > 1) .shared$any <- TRUE
  if (is.null(live_owner(id))) {
    v <- tick()
    .shared$owners[[id]] <- list(ref = rlang::new_weakref(home), version = v)
    home$versions[id] <- v
  }
  if (isTRUE(.shared$frozen[id])) call_backend(rg_set_trainable(home$ptr, layer$name, FALSE))
  # Initial weights given to the layer (`weights =`): set once, where the layer is first built.
  initial <- attr(layer, "spec")$weights
  if (!is.null(initial) && is.null(live_owner_with_weights_set(id))) {
    if (!isTRUE(model_info(model)$built)) {
      state_error(sprintf("Layer \"%s\" has initial `weights` but the model is not built: give the first layer an `input_shape`.", layer$name))
    }
    set_weights(get_layer(model, name = layer$name), initial)
    .shared$weights_set[id] <- TRUE
  }
  invisible()
}

live_owner_with_weights_set <- function(id) if (isTRUE(.shared$weights_set[id])) TRUE else NULL

# The version of layer `id`'s weights that the model behind `home` holds (0: its own first).
version_held <- function(home, id) {
  v <- home$versions
  if (is.null(v) || is.na(v[id])) 0 else v[[id]]
}

live_owner <- function(id) {
  owner <- .shared$owners[[id]]
  if (is.null(owner)) return(NULL)
  env <- rlang::wref_key(owner$ref)
  if (is.null(env)) NULL else list(env = env, version = owner$version)
}

shared_ids <- function(model) {
  if (!.shared$any) return(character())
  ids <- layer_ids(model)
  ids[!is.na(.shared$users[ids]) & .shared$users[ids] > 1]
}

# After `model`'s weights changed: it holds the newest values of its shared layers.
mark_weights_changed <- function(model) {
  ids <- shared_ids(model)
  if (!length(ids)) return(invisible())
  home <- model_home(model)
  v <- tick()
  ref <- rlang::new_weakref(home)
  for (id in ids) {
    .shared$owners[[id]] <- list(ref = ref, version = v)
    home$versions[id] <- v
  }
  invisible()
}

# Before `model` is used: the newest values of its shared layers, from the models that hold them.
sync_shared_weights <- function(model) {
  ids <- shared_ids(model)
  if (!length(ids)) return(invisible())
  home <- model_home(model)
  stale <- list()
  for (name in names(ids)) {
    id <- ids[[name]]
    owner <- live_owner(id)
    if (is.null(owner) || identical(owner$env, home) || version_held(home, id) >= owner$version) next
    key <- format(owner$env)
    if (is.null(stale[[key]])) stale[[key]] <- list(env = owner$env, ids = character(), to = character(), version = numeric())
    stale[[key]]$ids <- c(stale[[key]]$ids, id)
    stale[[key]]$to <- c(stale[[key]]$to, name)
    stale[[key]]$version <- c(stale[[key]]$version, owner$version)
  }
  if (!length(stale) || !isTRUE(model_info(model)$built)) return(invisible())
  for (key in names(stale)) {
    s <- stale[[key]]
    # An owner that was never built (a sequential model without an input shape, used only as a
    # function on tensors) holds no values: the layer's first values are this model's, as a
    # Keras layer builds on its first call with a known shape.
    if (!isTRUE(model_info(s$env)$built)) {
      v <- tick()
      for (id in s$ids) .shared$owners[[id]] <- list(ref = rlang::new_weakref(home), version = v)
      home$versions[s$ids] <- v
      stale[[key]] <- NULL
    }
  }
  for (s in stale) {
    from <- names(s$env$layer_ids)[match(s$ids, s$env$layer_ids)]
    call_backend(rg_take_layer_weights(home$ptr, s$env$ptr, from, s$to))
    home$versions[s$ids] <- s$version
  }
  invisible()
}

# freeze_weights()/unfreeze_weights(): the layers' state for models made with them later (as a
# Keras layer's `trainable`, which a model takes when it is compiled).
record_frozen <- function(model, layer_names, frozen) {
  ids <- layer_ids(model)
  .shared$frozen[ids[layer_names]] <- frozen
  invisible()
}

# compile(): the model trains the layers that are trainable now, as Keras collects a model's
# trainable weights when it compiles.
apply_layer_trainable <- function(model) {
  ids <- layer_ids(model)
  state <- .shared$frozen[ids]
  frozen <- names(ids)[which(state)]
  thawed <- names(ids)[which(!state)]
  if (length(frozen)) call_backend(rg_set_trainable(model$ptr, frozen, FALSE))
  if (length(thawed)) call_backend(rg_set_trainable(model$ptr, thawed, TRUE))
  invisible()
}

# Once per model until it is compiled again (Python shows Keras's warning once).
warn_if_trainable_changed <- function(model) {
  if (isTRUE(model$trainable_changed)) {
    model$trainable_changed <- FALSE
    warning("Discrepancy between trainable weights and collected trainable weights: freeze_weights() or unfreeze_weights() ",
            "was called after compile(); as in Keras, the change applies when the model is compiled again.", call. = FALSE)
  }
}
