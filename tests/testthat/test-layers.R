# Every layer type in the core's registry, through its R function: each exported layer_*()
# makes a registered Keras class and every registered class has its layer_*(); each builds
# from its registry example, prints in summary(), and keeps its config and predictions through
# get_config()/from_config() and save_model_hdf5()/load_model_hdf5(). A new layer gets this
# test by being registered and exported.

types <- rustgpu:::rg_layer_types()

# Keras class -> R function: "Conv2D" -> layer_conv_2d, "GlobalAveragePooling1D" ->
# layer_global_average_pooling_1d (R keras's names; the few it names otherwise listed).
r_keras_names <- c(ReLU = "layer_activation_relu", LeakyReLU = "layer_activation_leaky_relu", PReLU = "layer_activation_parametric_relu",
                   Conv2DTranspose = "layer_conv_2d_transpose", ELU = "layer_activation_elu",
                   ThresholdedReLU = "layer_activation_thresholded_relu", Softmax = "layer_activation_softmax",
                   UpSampling1D = "layer_upsampling_1d", UpSampling2D = "layer_upsampling_2d",
                   Bidirectional = "bidirectional", TimeDistributed = "time_distributed",
                   CustomLayer = "create_layer", CustomWrapper = "create_wrapper", ConvLSTM2D = "layer_conv_lstm_2d")
r_function_name <- function(class_name) {
  if (class_name %in% names(r_keras_names)) return(r_keras_names[[class_name]])
  snake <- gsub("([a-z])([A-Z0-9])", "\\1_\\2", class_name)
  snake <- gsub("([0-9])D$", "\\1d", snake)
  paste0("layer_", tolower(snake))
}

# layer_cudnn_lstm() and layer_cudnn_gru() make LSTM and GRU layers (R keras 2.2's names for
# the cuDNN kernels), layer_activation_selu() an Activation layer (as R keras's); the wrappers
# have no "layer_" prefix in R keras.
exported_layer_functions <- c(setdiff(grep("^layer_", getNamespaceExports("rustgpu"), value = TRUE),
                                      c("layer_input", "layer_cudnn_lstm", "layer_cudnn_gru", "layer_activation_selu")),
                              "bidirectional", "time_distributed", "create_layer", "create_wrapper")

test_that("every exported layer function makes a registered layer type, and every type has one", {
  expected <- vapply(types$class_name, r_function_name, character(1))
  expect_setequal(exported_layer_functions, unname(expected))
})

example_data <- function(shape, index_bound, rows = 3) {
  n <- rows * prod(shape)
  values <- if (index_bound > 0) (seq_len(n) * 7) %% index_bound else sin(seq_len(n) * 0.7)
  array(values, c(rows, shape))
}

# JSON arrays come back as lists: numbers as vectors again, as a user would type them.
simplify <- function(a) {
  if (!is.list(a)) return(a)
  a <- lapply(a, simplify)
  if (is.null(names(a)) && length(a) > 0 && all(vapply(a, function(v) is.atomic(v) && length(v) == 1, logical(1)))) unlist(a) else a
}

build_example <- function(i) {
  class_name <- types$class_name[[i]]
  fun <- get(r_function_name(class_name), envir = asNamespace("rustgpu"))
  args <- lapply(types$example_config[[i]], simplify)
  # A lambda's example is a trace: the R function it was traced from; a layer class written
  # in R, the R6 class it was traced from (x %*% kernel + bias, weights as in the example).
  if (class_name == "Lambda") args <- list(f = function(x) x * k_tanh(x) + k_sum(x, axis = 2, keepdims = TRUE))
  if (class_name == "CustomLayer") {
    affine <- R6::R6Class("AffineLayer", inherit = KerasLayer, public = list(
      kernel = NULL, bias = NULL,
      build = function(input_shape) {
        self$kernel <- self$add_weight("kernel", list(input_shape[[2]], 2), initializer = initializer_random_normal())
        self$bias <- self$add_weight("bias", list(2), initializer = "zeros")
      },
      call = function(x, mask = NULL) k_dot(x, self$kernel) + self$bias
    ))
    fun <- function(object, input_shape = NULL, name = NULL) create_layer(affine, object, list(input_shape = input_shape, name = name))
    args <- list()
  }
  if (class_name == "CustomWrapper") {
    # The core's example: a wrapper adding a weight and log(weight) as a loss.
    logged <- R6::R6Class("LoggedWrapper", inherit = KerasWrapper, public = list(
      build = function(input_shape) {
        super$build(input_shape)
        w <- self$add_weight("custom_weight", list(1), initializer = "ones")
        self$add_loss(k_log(w))
      }
    ))
    fun <- function(object, layer, input_shape = NULL, name = NULL) {
      create_wrapper(logged, object, list(layer = layer, input_shape = input_shape, name = name))
    }
    args <- args["layer"]
  }
  # A wrapper's layer: made by its own R function from its config.
  if (is.list(args$layer)) {
    inner <- args$layer
    args$layer <- do.call(get(r_function_name(inner$class_name), envir = asNamespace("rustgpu")), inner$config)
  }
  shapes <- lapply(types$example_inputs[[i]], as.integer)
  if (length(shapes) == 1) {
    model <- keras_model_sequential()
    do.call(fun, c(list(model), args, list(input_shape = shapes[[1]], name = "probe")))
  } else {
    inputs <- lapply(seq_along(shapes), function(k) layer_input(shape = shapes[[k]]))
    output <- do.call(fun, c(list(inputs), args, list(name = "probe")))
    model <- keras_model(inputs, output)
  }
  x <- lapply(shapes, example_data, index_bound = types$example_index_bound[[i]])
  shown <- switch(class_name, CustomLayer = "AffineLayer", CustomWrapper = "LoggedWrapper", class_name)
  list(model = model, x = if (length(x) == 1) x[[1]] else x, class_name = shown)
}

for (i in seq_along(types$class_name)) {
  test_that(sprintf("%s builds, prints, and survives its config and an HDF5 file", types$class_name[[i]]), {
    set.seed(i)
    ex <- build_example(i)
    expect_match(paste(capture.output(summary(ex$model)), collapse = "\n"), sprintf("probe \\(%s\\)", ex$class_name))
    expected <- predict(ex$model, ex$x)
    config <- get_config(ex$model)
    rebuilt <- from_config(config)
    expect_equal(get_config(rebuilt), config)
    set_weights(rebuilt, get_weights(ex$model))
    expect_equal(predict(rebuilt, ex$x), expected)
    path <- tempfile(fileext = ".h5")
    on.exit(unlink(path))
    save_model_hdf5(ex$model, path)
    loaded <- load_model_hdf5(path)
    expect_equal(get_config(loaded), config)
    expect_equal(predict(loaded, ex$x), expected, tolerance = 1e-6)
  })
}

test_that("every layer function takes Keras's `weights` and `trainable`, and they work beyond dense layers", {
  no_weights_args <- c("layer_add", "layer_subtract", "layer_multiply", "layer_average", "layer_maximum",
                       "layer_minimum", "layer_concatenate", "layer_dot", "layer_activity_regularization",
                       # R keras's create_layer() and create_wrapper() take them in `args`.
                       "create_layer", "create_wrapper")
  for (fn in setdiff(exported_layer_functions, no_weights_args)) {
    args <- names(formals(get(fn, envir = asNamespace("rustgpu"))))
    expect_true(all(c("weights", "trainable") %in% args), label = fn)
  }
  kernel <- array(seq(-1, 1, length.out = 3 * 3 * 2 * 4), c(3, 3, 2, 4))
  model <- keras_model_sequential() %>%
    layer_conv_2d(4, 3, input_shape = c(5, 5, 2), weights = list(kernel, c(0.1, 0.2, 0.3, 0.4)), trainable = FALSE) %>%
    layer_flatten() %>%
    layer_dense(1)
  expect_equal(as.numeric(get_weights(model)[[1]]), as.numeric(kernel), tolerance = 1e-6)
  compile(model, optimizer = "sgd", loss = "mse")
  fit(model, array(runif(4 * 50), c(4, 5, 5, 2)), matrix(1:4), epochs = 1, verbose = 0)
  expect_equal(as.numeric(get_weights(model)[[1]]), as.numeric(kernel), tolerance = 1e-6)
  expect_equal(as.numeric(get_weights(model)[[2]]), c(0.1, 0.2, 0.3, 0.4), tolerance = 1e-6)
})

test_that("alpha dropout keeps SELU statistics in training and passes inputs through in prediction", {
  set.seed(4)
  x <- matrix(rnorm(20000), 200)
  model <- keras_model_sequential() %>% layer_alpha_dropout(rate = 0.2, input_shape = 100)
  expect_equal(predict(model, x), x, tolerance = 1e-6)
  # A SELU network with it trains (its statistics in training: the core's unit test).
  net <- keras_model_sequential() %>%
    layer_dense(16, activation = "selu", kernel_initializer = "lecun_normal", input_shape = 100) %>%
    layer_alpha_dropout(0.1) %>%
    layer_dense(1)
  compile(net, optimizer = "sgd", loss = "mse")
  h <- fit(net, x, matrix(rowSums(x[, 1:3]), 200), epochs = 3, batch_size = 20, verbose = 0)
  expect_true(all(is.finite(h$metrics$loss)))
  expect_lt(h$metrics$loss[3], h$metrics$loss[1])
  expect_error(layer_alpha_dropout(rate = 0.2, noise_shape = c(1, 100)), "not supported", class = "rustgpu_unsupported_error")
  expect_error(layer_alpha_dropout(rate = 1), "rate", class = "rustgpu_value_error")
})
