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
  if (is.matrix(y)) y else as.numeric(y)
}

# The fixture's layers, as rustgpu layers, on inputs shaped like the fixture's data.
build_fixture_model <- function(case, input_shape) {
  model <- keras_model_sequential()
  for (i in seq_along(case$layers)) {
    l <- case$layers[[i]]
    shape <- if (i == 1) input_shape else NULL
    switch(l$type,
      dense = layer_dense(model, units = l$units, activation = l$activation, input_shape = shape),
      conv_2d = layer_conv_2d(model, l$filters, l$kernel_size, strides = l$strides, padding = l$padding,
                              dilation_rate = l$dilation_rate, activation = l$activation, input_shape = shape),
      max_pooling_2d = layer_max_pooling_2d(model, l$pool_size, strides = l$strides, padding = l$padding,
                                            input_shape = shape),
      flatten = layer_flatten(model, input_shape = shape),
      average_pooling_2d = layer_average_pooling_2d(model, l$pool_size, strides = l$strides, padding = l$padding,
                                                    input_shape = shape),
      global_average_pooling_2d = layer_global_average_pooling_2d(model, input_shape = shape),
      global_max_pooling_2d = layer_global_max_pooling_2d(model, input_shape = shape),
      zero_padding_2d = layer_zero_padding_2d(model, list(l$padding[1, ], l$padding[2, ]), input_shape = shape),
      reshape = layer_reshape(model, l$target_shape, input_shape = shape),
      batch_normalization = layer_batch_normalization(model, input_shape = shape),
      conv_1d = layer_conv_1d(model, l$filters, l$kernel_size, strides = l$strides, padding = l$padding,
                              dilation_rate = l$dilation_rate, activation = l$activation, input_shape = shape),
      max_pooling_1d = layer_max_pooling_1d(model, l$pool_size, strides = l$strides, padding = l$padding, input_shape = shape),
      embedding = layer_embedding(model, l$input_dim, l$output_dim, input_shape = shape),
      separable_conv_2d = layer_separable_conv_2d(model, l$filters, l$kernel_size, strides = l$strides, padding = l$padding,
                                                  depth_multiplier = l$depth_multiplier, activation = l$activation,
                                                  input_shape = shape),
      depthwise_conv_2d = layer_depthwise_conv_2d(model, l$kernel_size, strides = l$strides, padding = l$padding,
                                                  depth_multiplier = l$depth_multiplier, activation = l$activation,
                                                  input_shape = shape),
      activation = layer_activation(model, l$activation, input_shape = shape)
    )
  }
  model
}

fixture_input <- function(fx, case) fx[[case$input]]

sample_shape <- function(x) if (is.null(dim(x))) 1L else dim(x)[-1]

fixture_optimizer <- function(spec) {
  switch(spec$name,
    sgd = optimizer_sgd(learning_rate = spec$learning_rate, momentum = spec$momentum, nesterov = spec$nesterov),
    rmsprop = optimizer_rmsprop(learning_rate = spec$learning_rate),
    adam = optimizer_adam(learning_rate = spec$learning_rate)
  )
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
