# Layer classes written in R (R6 classes inheriting KerasLayer, made by create_layer()).

# R keras's mnist_antirectifier.R layer, as R keras writes it (its class is named "KerasLayer").
AntirectifierLayer <- R6::R6Class("KerasLayer",
  inherit = KerasLayer,
  public = list(
    call = function(x, mask = NULL) {
      x <- x - k_mean(x, axis = 2, keepdims = TRUE)
      x <- k_l2_normalize(x, axis = 2)
      pos <- k_relu(x)
      neg <- k_relu(-x)
      k_concatenate(c(pos, neg), axis = 2)
    },
    compute_output_shape = function(input_shape) {
      input_shape[[2]] <- input_shape[[2]] * 2L
      input_shape
    }
  )
)
layer_antirectifier <- function(object) create_layer(AntirectifierLayer, object)

# The custom-layers vignette's layer: a kernel without bias.
ProjectionLayer <- R6::R6Class("ProjectionLayer",
  inherit = KerasLayer,
  public = list(
    output_dim = NULL,
    kernel = NULL,
    initialize = function(output_dim) self$output_dim <- output_dim,
    build = function(input_shape) {
      self$kernel <- self$add_weight(name = "kernel", shape = list(input_shape[[2]], self$output_dim),
                                     initializer = initializer_random_normal(), trainable = TRUE)
    },
    call = function(x, mask = NULL) k_dot(x, self$kernel)
  )
)
layer_projection <- function(object, output_dim, name = NULL, trainable = TRUE, input_shape = NULL) {
  create_layer(ProjectionLayer, object, list(output_dim = as.integer(output_dim), name = name, trainable = trainable,
                                             input_shape = input_shape))
}

test_that("an R6 antirectifier layer trains as tf.keras's Lambda of the same function", {
  fx <- jsonlite::fromJSON(test_path("..", "fixtures", "keras_backend.json"), simplifyVector = TRUE, simplifyDataFrame = FALSE)
  rec <- fx$models$antirectifier
  model <- keras_model_sequential() %>%
    layer_dense(6, input_shape = 4) %>%
    layer_antirectifier() %>%
    layer_dense(3, activation = "softmax")
  expect_match(paste(capture.output(summary(model)), collapse = "\n"), "custom_layer \\(KerasLayer\\) +\\(None, 12\\)")
  set_weights(model, as_weight_list(rec$initial_weights))
  compile(model, optimizer = optimizer_rmsprop(0.01), loss = "categorical_crossentropy", metrics = "accuracy")
  h <- fit(model, fx$x, fx$y, epochs = 2, batch_size = 8, shuffle = FALSE, verbose = 0)
  expect_equal(h$metrics$loss, rec$history$loss, tolerance = 1e-4)
  final <- as_weight_list(rec$final_weights)
  for (i in seq_along(final)) expect_equal(as.numeric(get_weights(model)[[i]]), as.numeric(final[[i]]), tolerance = 1e-4)
})

test_that("weights added in build() train as a built-in layer's", {
  set.seed(3)
  x <- matrix(rnorm(60), 20)
  y <- to_categorical(rep(0:1, 10))
  custom <- keras_model_sequential() %>% layer_projection(output_dim = 4, input_shape = 3) %>% layer_dense(2, activation = "softmax")
  builtin <- keras_model_sequential() %>% layer_dense(4, use_bias = FALSE, input_shape = 3) %>% layer_dense(2, activation = "softmax")
  expect_equal(lengths(get_weights(custom)), c(12, 8, 2))
  set_weights(builtin, get_weights(custom))
  for (m in list(custom, builtin)) compile(m, optimizer = optimizer_sgd(0.1), loss = "categorical_crossentropy")
  h1 <- fit(custom, x, y, epochs = 2, batch_size = 5, shuffle = FALSE, verbose = 0)
  h2 <- fit(builtin, x, y, epochs = 2, batch_size = 5, shuffle = FALSE, verbose = 0)
  expect_equal(h1$metrics$loss, h2$metrics$loss, tolerance = 1e-6)
  for (i in 1:3) expect_equal(get_weights(custom)[[i]], get_weights(builtin)[[i]], tolerance = 1e-6)
  # Frozen: its weight does not move.
  frozen <- keras_model_sequential() %>% layer_projection(output_dim = 2, trainable = FALSE, input_shape = 3)
  before <- get_weights(frozen)[[1]]
  compile(frozen, optimizer = optimizer_sgd(0.1), loss = "mse")
  fit(frozen, x, y, epochs = 1, verbose = 0)
  expect_equal(get_weights(frozen)[[1]], before)
})

test_that("a model with R layers saves, loads and shows its class names; replicas equal the template", {
  make <- function() {
    set.seed(12)
    input <- layer_input(shape = 5)
    output <- input %>% layer_projection(output_dim = 4) %>% layer_antirectifier() %>% layer_dense(2, activation = "softmax")
    keras_model(input, output)
  }
  model <- make()
  x <- matrix(rnorm(50), 10)
  y <- to_categorical(rep(0:1, 5))
  path <- tempfile(fileext = ".h5")
  on.exit(unlink(path))
  save_model_hdf5(model, path)
  loaded <- load_model_hdf5(path)
  expect_equal(predict(loaded, x), predict(model, x), tolerance = 1e-6)
  expect_equal(vapply(get_config(loaded)$config$layers, function(l) l$class_name, ""), c("InputLayer", "ProjectionLayer", "KerasLayer", "Dense"))
  template <- make()
  use_virtual_gpus(2, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0), add = TRUE)
  parallel <- multi_gpu_model(template, gpus = 2)
  compile(parallel, optimizer = optimizer_sgd(0.1), loss = "categorical_crossentropy")
  compile(model, optimizer = optimizer_sgd(0.1), loss = "categorical_crossentropy")
  fit(model, x, y, epochs = 2, batch_size = 10, shuffle = FALSE, verbose = 0)
  fit(parallel, x, y, epochs = 2, batch_size = 10, shuffle = FALSE, verbose = 0)
  for (i in seq_along(get_weights(model))) expect_equal(get_weights(template)[[i]], get_weights(model)[[i]], tolerance = 1e-5)
})

test_that("misused layer classes are classed errors that say what to do", {
  expect_error(create_layer(list(), NULL), "inheriting KerasLayer", class = "rustgpu_value_error")
  plain <- R6::R6Class("Plain", public = list(call = function(x) x))
  expect_error(create_layer(plain, NULL), "inheriting KerasLayer", class = "rustgpu_value_error")
  layer <- ProjectionLayer$new(2)
  expect_error(layer$add_weight("w", list(2)), "from build()", class = "rustgpu_state_error")
  Bad <- R6::R6Class("Bad", inherit = KerasLayer, public = list(build = function(input_shape) self$add_weight("w", list(NULL, 2))))
  expect_error(keras_model_sequential() %>% layer_dense(2, input_shape = 2) %>% create_layer(Bad, .), "whole sizes",
               class = "rustgpu_value_error")
  NoCall <- R6::R6Class("NoCall", inherit = KerasLayer)
  expect_error(keras_model_sequential() %>% layer_dense(2, input_shape = 2) %>% create_layer(NoCall, .), "implement call",
               class = "rustgpu_value_error")
})

# A dense layer without bias written in R, whose kernel takes a regularizer and a
# constraint, and which may add a loss on its kernel.
PenalizedDense <- R6::R6Class("PenalizedDense", inherit = KerasLayer, public = list(
  units = NULL, regularizer = NULL, constraint = NULL, loss = NULL, kernel = NULL,
  initialize = function(units, regularizer = NULL, constraint = NULL, loss = NULL) {
    self$units <- units
    self$regularizer <- regularizer
    self$constraint <- constraint
    self$loss <- loss
  },
  build = function(input_shape) {
    self$kernel <- self$add_weight("kernel", list(input_shape[[2]], self$units), regularizer = self$regularizer,
                                   constraint = self$constraint)
    if (!is.null(self$loss)) self$add_loss(self$loss(self$kernel))
  },
  call = function(x, mask = NULL) k_dot(x, self$kernel)
))
layer_penalized_dense <- function(object, units, ...) create_layer(PenalizedDense, object, list(units = units, ...))

test_that("add_weight()'s regularizers and constraints and add_loss() work as on built-in layers", {
  set.seed(5)
  x <- matrix(rnorm(40), 10)
  y <- matrix(rnorm(20), 10)
  fit_both <- function(custom, builtin) {
    set_weights(builtin, get_weights(custom))
    for (m in list(custom, builtin)) compile(m, optimizer = optimizer_sgd(0.05), loss = "mse")
    h1 <- fit(custom, x, y, epochs = 2, batch_size = 5, shuffle = FALSE, verbose = 0)
    h2 <- fit(builtin, x, y, epochs = 2, batch_size = 5, shuffle = FALSE, verbose = 0)
    expect_equal(h1$metrics$loss, h2$metrics$loss, tolerance = 1e-5)
    expect_equal(get_weights(custom)[[1]], get_weights(builtin)[[1]], tolerance = 1e-5)
  }
  # Keras's regularizer object, an R function giving the same penalty, and add_loss() of it.
  l2 <- function(w) 0.1 * k_sum(k_square(w))
  builtin <- function() {
    keras_model_sequential() %>% layer_dense(2, use_bias = FALSE, kernel_regularizer = regularizer_l2(0.1),
                                             kernel_constraint = constraint_maxnorm(1), input_shape = 4)
  }
  for (args in list(list(regularizer = regularizer_l2(0.1)), list(regularizer = l2), list(loss = l2))) {
    custom <- do.call(layer_penalized_dense, c(list(keras_model_sequential(), units = 2, constraint = constraint_maxnorm(1),
                                                    input_shape = 4), args))
    fit_both(custom, builtin())
  }
  # The loss is part of the saved layer: a loaded model evaluates the same.
  custom <- keras_model_sequential() %>% layer_penalized_dense(2, loss = l2, input_shape = 4)
  compile(custom, optimizer = "sgd", loss = "mse")
  path <- tempfile(fileext = ".h5")
  on.exit(unlink(path))
  save_model_hdf5(custom, path)
  loaded <- load_model_hdf5(path)
  expect_equal(evaluate(loaded, x, y, verbose = 0), evaluate(custom, x, y, verbose = 0), tolerance = 1e-6)
  expect_gt(evaluate(custom, x, y, verbose = 0)[[1]], mean((x %*% get_weights(custom)[[1]] - y)^2))
})

test_that("losses on a layer's inputs, and losses added from call(), are classed errors", {
  InCall <- R6::R6Class("InCall", inherit = KerasLayer, public = list(call = function(x, mask = NULL) {
    self$add_loss(k_sum(x))
    x
  }))
  expect_error(keras_model_sequential() %>% layer_dense(2, input_shape = 2) %>% create_layer(InCall, .),
               "not supported yet", class = "rustgpu_unsupported_error")
  NotWeights <- R6::R6Class("NotWeights", inherit = KerasLayer, public = list(
    build = function(input_shape) self$add_loss(3),
    call = function(x, mask = NULL) x
  ))
  expect_error(keras_model_sequential() %>% layer_dense(2, input_shape = 2) %>% create_layer(NotWeights, .),
               "computed from the layer's weights", class = "rustgpu_value_error")
})
