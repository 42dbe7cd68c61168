# Shared helpers: Keras fixtures and small models.

keras_fixtures <- function() {
  path <- test_path("..", "fixtures", "keras_training.json")
  jsonlite::fromJSON(path, simplifyVector = TRUE, simplifyMatrix = TRUE, simplifyDataFrame = FALSE)
}

# Keras's weights come as nested lists; make them the arrays get_weights() returns.
as_weight_list <- function(ws) {
  lapply(ws, function(w) if (!is.null(dim(w))) w else as.array(as.numeric(w)))
}

fixture_target <- function(fx, case) {
  y <- fx[[case$target]]
  if (!is.null(dim(y))) y else as.numeric(y)
}

# The fixture's layers, as rustgpu layers, on inputs shaped like the fixture's data. A spec
# names its R function ("conv_2d" is layer_conv_2d()) and holds its arguments (Keras's names,
# as make_keras_fixtures.py passes them to Keras); nested lists that JSON turned into a
# matrix are given back as a list of rows.
build_fixture_model <- function(case, input_shape) {
  model <- keras_model_sequential()
  for (i in seq_along(case$layers)) {
    args <- list(model)
    if (i == 1) args$input_shape <- input_shape
    fixture_layer(case$layers[[i]], args)
  }
  model
}

# A spec's R function: layer_<type>(), or the wrappers bidirectional() and time_distributed(),
# whose `layer` is itself a spec.
fixture_layer <- function(spec, args = list()) {
  own <- lapply(spec[names(spec) != "type"], function(a) if (is.matrix(a)) lapply(seq_len(nrow(a)), function(r) a[r, ]) else a)
  if (is.list(own$layer)) own$layer <- fixture_layer(own$layer)
  fn <- if (spec$type %in% c("bidirectional", "time_distributed")) spec$type else paste0("layer_", spec$type)
  do.call(get(fn, envir = asNamespace("rustgpu")), c(args, own))
}

fixture_input <- function(fx, case) fx[[case$input]]

sample_shape <- function(x) if (is.null(dim(x))) 1L else dim(x)[-1]

# The fixture's optimizer spec (see make_keras_fixtures.py): optimizer_<name>(<arguments>).
fixture_optimizer <- function(spec) {
  do.call(paste0("optimizer_", spec$name), spec[names(spec) != "name"])
}

small_classifier <- function(inputs = 6, hidden = 16, classes = 3) {
  keras_model_sequential() %>%
    layer_dense(hidden, activation = "relu", input_shape = inputs) %>%
    layer_dense(classes, activation = "softmax")
}

toy_data <- function(n = 64, d = 6, classes = 3, seed = 42) {
  withr_seed(seed, {
    x <- matrix(rnorm(n * d), n, d)
    y <- to_categorical((seq_len(n) * 7) %% classes, classes)
  })
  list(x = x, y = y)
}

# Evaluates `code` with a fixed R seed and restores the caller's RNG state.
withr_seed <- function(seed, code) {
  old <- if (exists(".Random.seed", envir = globalenv())) get(".Random.seed", envir = globalenv()) else NULL
  on.exit(if (is.null(old)) rm(".Random.seed", envir = globalenv()) else assign(".Random.seed", old, envir = globalenv()))
  set.seed(seed)
  code
}
