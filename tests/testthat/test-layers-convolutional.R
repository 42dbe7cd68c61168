test_that("conv, pooling and flatten layers give Keras's shapes and parameter counts", {
  model <- keras_model_sequential() %>%
    layer_conv_2d(32, c(3, 3), activation = "relu", input_shape = c(28, 28, 1)) %>%
    layer_max_pooling_2d(c(2, 2)) %>%
    layer_conv_2d(64, 3, activation = "relu") %>%
    layer_max_pooling_2d() %>%
    layer_flatten() %>%
    layer_dense(128, activation = "relu") %>%
    layer_dense(10, activation = "softmax")
  text <- format(model)
  expect_match(text, "(None, 26, 26, 32)", fixed = TRUE)
  expect_match(text, "(None, 13, 13, 32)", fixed = TRUE)
  expect_match(text, "(None, 11, 11, 64)", fixed = TRUE)
  expect_match(text, "(None, 1600)", fixed = TRUE)
  # Keras: 320 + 18,496 + 204,928 + 1,290
  expect_match(text, "Total params: 225,034", fixed = TRUE)
  w <- get_weights(model)
  expect_equal(dim(w[[1]]), c(3L, 3L, 1L, 32L))
  expect_equal(dim(w[[3]]), c(3L, 3L, 32L, 64L))
  out <- predict(model, array(runif(2 * 28 * 28), c(2, 28, 28, 1)))
  expect_equal(dim(out), c(2L, 10L))
  expect_equal(rowSums(out), c(1, 1), tolerance = 1e-5)
})

test_that("same padding, strides and dilation follow TensorFlow's output sizes", {
  shape_of <- function(...) {
    m <- keras_model_sequential() %>% layer_conv_2d(2, ..., input_shape = c(7, 8, 3))
    dim(predict(m, array(0, c(1, 7, 8, 3))))[-1]
  }
  expect_equal(shape_of(3, padding = "same"), c(7L, 8L, 2L))
  expect_equal(shape_of(3, strides = 2, padding = "same"), c(4L, 4L, 2L))
  expect_equal(shape_of(3, strides = 2), c(3L, 3L, 2L))
  expect_equal(shape_of(c(2, 3), dilation_rate = 2), c(5L, 4L, 2L))
})

test_that("max pooling takes window maxima and flatten keeps Keras's order", {
  model <- keras_model_sequential() %>% layer_max_pooling_2d(input_shape = c(4, 4, 1))
  x <- array(c(1, 3, 0, 9, 5, 4, 0, 0, 2, 8, 1, 1, 0, 1, 2, 0), c(1, 4, 4, 1))
  expected <- matrix(c(max(x[1, 1:2, 1:2, 1]), max(x[1, 3:4, 1:2, 1]), max(x[1, 1:2, 3:4, 1]), max(x[1, 3:4, 3:4, 1])), 2, 2)
  expect_equal(predict(model, x)[1, , , 1], expected)
  flat <- keras_model_sequential() %>% layer_flatten(input_shape = c(2, 3))
  x <- array(1:12, c(2, 2, 3))
  # Row-major within each sample: x[1, 1, ], x[1, 2, ]
  expect_equal(predict(flat, x)[1, ], c(x[1, 1, ], x[1, 2, ]))
})

test_that("conv layer arguments are checked", {
  m <- keras_model_sequential()
  expect_error(layer_conv_2d(m, 0, 3), "`filters`", class = "rustgpu_value_error")
  expect_error(layer_conv_2d(m, 2, c(3, 3, 3)), "`kernel_size`", class = "rustgpu_value_error")
  expect_error(layer_conv_2d(m, 2, 3, padding = "full"), "`padding`", class = "rustgpu_value_error")
  expect_error(layer_conv_2d(m, 2, 3, strides = 2, dilation_rate = 2), "cannot be combined", class = "rustgpu_value_error")
  expect_error(layer_conv_2d(m, 2, 3, data_format = "NCHW"), "`data_format` must be \"channels_last\" or \"channels_first\"", class = "rustgpu_value_error")
  expect_error(layer_max_pooling_2d(m, pool_size = 0), "`pool_size`", class = "rustgpu_value_error")
  expect_error(layer_conv_2d(keras_model_sequential(), 2, 5, input_shape = c(3, 3, 1)), "larger than", class = "rustgpu_value_error")
  expect_error(layer_conv_2d(keras_model_sequential(), 2, 3, input_shape = 10), "height, width, channels",
               class = "rustgpu_value_error")
})

test_that("a conv net trains identically through 2 replicas", {
  use_virtual_gpus(2, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0))
  set.seed(4)
  net <- function() {
    keras_model_sequential() %>%
      layer_conv_2d(4, 3, activation = "relu", input_shape = c(8, 8, 2)) %>%
      layer_max_pooling_2d() %>%
      layer_flatten() %>%
      layer_dense(3, activation = "softmax")
  }
  a <- net()
  b <- net()
  set_weights(b, get_weights(a))
  p <- multi_gpu_model(b, gpus = 2)
  x <- array(rnorm(30 * 8 * 8 * 2), c(30, 8, 8, 2))
  y <- to_categorical(rep(0:2, 10), 3)
  compile(a, optimizer = optimizer_sgd(0.05), loss = "categorical_crossentropy")
  compile(p, optimizer = optimizer_sgd(0.05), loss = "categorical_crossentropy")
  ha <- fit(a, x, y, epochs = 2, batch_size = 7, shuffle = FALSE, verbose = 0)
  hb <- fit(p, x, y, epochs = 2, batch_size = 7, shuffle = FALSE, verbose = 0)
  expect_equal(hb$metrics$loss, ha$metrics$loss, tolerance = 1e-5)
  for (i in seq_along(get_weights(a))) expect_equal(get_weights(b)[[i]], get_weights(a)[[i]], tolerance = 1e-5)
  # gemm picks its blocking from the matrix sizes, and a conv's matmul has batch * pixels
  # rows, so sub-batches can round differently in the last bit (dense nets are bit-identical).
  expect_equal(predict(p, x), predict(a, x), tolerance = 1e-6)
})

test_that("pooling, padding and reshape layers check their arguments and shapes", {
  m <- keras_model_sequential()
  expect_error(layer_zero_padding_2d(m, -1), "`padding`", class = "rustgpu_value_error")
  expect_error(layer_reshape(m, c(-1, -1)), "`target_shape`", class = "rustgpu_value_error")
  expect_error(layer_reshape(keras_model_sequential(), c(4, 4), input_shape = 10), "cannot reshape", class = "rustgpu_value_error")
  expect_error(layer_global_average_pooling_2d(m, keepdims = TRUE), "keepdims", class = "rustgpu_value_error")
  expect_error(layer_global_max_pooling_2d(keras_model_sequential(), input_shape = 10), "height, width, channels",
               class = "rustgpu_value_error")
  model <- keras_model_sequential() %>% layer_global_average_pooling_2d(input_shape = c(2, 2, 3))
  x <- array(1:12, c(1, 2, 2, 3))
  expect_equal(as.numeric(predict(model, x)), apply(x[1, , , ], 3, mean))
})

test_that("channels-first layers are their channels-last twins between transpositions, and say so in configs and files", {
  set.seed(2)
  x <- array(rnorm(2 * 3 * 6 * 5), c(2, 3, 6, 5))  # (batch, channels, height, width)
  cf <- keras_model_sequential() %>%
    layer_conv_2d(4, c(3, 3), padding = "same", activation = "relu", data_format = "channels_first", input_shape = c(3, 6, 5)) %>%
    layer_max_pooling_2d(data_format = "channels_first") %>%
    layer_global_average_pooling_2d(data_format = "channels_first")
  cl <- keras_model_sequential() %>%
    layer_conv_2d(4, c(3, 3), padding = "same", activation = "relu", input_shape = c(6, 5, 3)) %>%
    layer_max_pooling_2d() %>%
    layer_global_average_pooling_2d()
  set_weights(cl, get_weights(cf))  # the same kernel layout either way
  expect_equal(cf$output_shape, list(NULL, 4L))
  expect_equal(predict(cf, x), predict(cl, aperm(x, c(1, 3, 4, 2))), tolerance = 1e-6)
  expect_equal(get_config(cf)$config$layers[[2]]$config$data_format, "channels_first")
  # Files keep the format; k_set_image_data_format() sets the default of layers made after it.
  path <- tempfile(fileext = ".h5")
  save_model_hdf5(cf, path)
  expect_equal(predict(load_model_hdf5(path), x), predict(cf, x), tolerance = 1e-6)
  old <- k_image_data_format()
  k_set_image_data_format("channels_first")
  on.exit(k_set_image_data_format(old))
  expect_equal(k_image_data_format(), "channels_first")
  up <- keras_model_sequential() %>% layer_upsampling_2d(size = c(2, 2), input_shape = c(3, 6, 5)) %>% layer_flatten()
  expect_equal(up$output_shape, list(NULL, 3L * 12L * 10L))
  k_set_image_data_format("channels_last")
  down <- keras_model_sequential() %>% layer_max_pooling_2d(input_shape = c(6, 4, 3))
  expect_equal(down$output_shape, list(NULL, 3L, 2L, 3L))
  expect_error(k_set_image_data_format("channels_middle"), "channels_last", class = "rustgpu_value_error")
  expect_error(layer_conv_2d(keras_model_sequential(), 2, 3, data_format = "nchw"), "`data_format`", class = "rustgpu_value_error")
})

test_that("layer_conv_3d() takes volumes and checks its arguments as Keras", {
  model <- keras_model_sequential() %>%
    layer_conv_3d(4, c(2, 3, 3), strides = c(1, 2, 2), padding = "same", activation = "relu", input_shape = c(5, 8, 8, 1)) %>%
    layer_conv_3d(2, 2)
  expect_equal(model$output_shape, list(NULL, 4L, 3L, 3L, 2L))
  expect_equal(dim(get_weights(model)[[1]]), c(2L, 3L, 3L, 1L, 4L))
  expect_equal(dim(predict(model, array(0, c(2, 5, 8, 8, 1)))), c(2L, 4L, 3L, 3L, 2L))
  frames <- layer_input(shape = list(NULL, 6, 6, 1))
  expect_equal(keras_model(frames, layer_conv_3d(frames, 2, 3, padding = "same"))$output_shape, list(NULL, NULL, 6L, 6L, 2L))
  expect_error(layer_conv_3d(filters = 2, kernel_size = c(2, 2)), "three whole numbers", class = "rustgpu_value_error")
  expect_error(layer_conv_3d(filters = 2, kernel_size = 2, strides = 2, dilation_rate = 2), "dilation", class = "rustgpu_value_error")
  expect_error(keras_model_sequential() %>% layer_conv_3d(2, 2, input_shape = c(4, 4)), "depth, height, width, channels",
               class = "rustgpu_value_error")
})
