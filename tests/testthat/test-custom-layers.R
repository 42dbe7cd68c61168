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
