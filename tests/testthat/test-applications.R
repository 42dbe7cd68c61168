test_that("application_xception has Keras's architecture and parameter count", {
  model <- application_xception(weights = NULL, input_shape = c(299, 299, 3), classes = 1000)
  text <- format(model)
  # Keras: 22,910,480 parameters, 54,528 of them non-trainable (batch norm statistics).
  expect_match(text, "Total params: 22,910,480", fixed = TRUE)
  expect_match(text, "Non-trainable params: 54,528", fixed = TRUE)
  expect_match(text, "block14_sepconv2 (SeparableConv2D)", fixed = TRUE)
  expect_match(text, "predictions (Dense)", fixed = TRUE)
  no_top <- application_xception(weights = NULL, include_top = FALSE, pooling = "avg", input_shape = c(71, 71, 3))
  expect_match(format(no_top), "Total params: 20,861,480", fixed = TRUE)
  expect_error(application_xception(weights = "imagenet", input_shape = c(71, 71, 3)), "not bundled", class = "rustgpu_value_error")
  expect_error(application_xception(weights = NULL, input_shape = c(32, 32, 3)), "at least 71", class = "rustgpu_value_error")
  expect_error(application_xception(weights = NULL, input_shape = c(71, 71, 3), pooling = "mean"), "`pooling`",
               class = "rustgpu_value_error")
})

test_that("the reference page's example runs as written, at a small size, on 2 virtual GPUs", {
  use_virtual_gpus(2)
  on.exit(use_virtual_gpus(0))
  num_samples <- 32
  height <- 71
  width <- 71
  num_classes <- 5
  model <- application_xception(weights = NULL, input_shape = c(height, width, 3), classes = num_classes)
  parallel_model <- multi_gpu_model(model, gpus = 2)
  parallel_model %>% compile(loss = "categorical_crossentropy", optimizer = "rmsprop")
  x <- array(runif(num_samples * height * width * 3), dim = c(num_samples, height, width, 3))
  y <- array(runif(num_samples * num_classes), dim = c(num_samples, num_classes))
  before <- get_weights(model)[[1]]
  history <- parallel_model %>% fit(x, y, epochs = 1, batch_size = 256, verbose = 0)
  expect_true(is.finite(history$metrics$loss))
  expect_false(identical(get_weights(model)[[1]], before))  # the template holds the trained weights
  path <- tempfile(fileext = ".h5")
  model %>% save_model_hdf5(path)
  restored <- load_model_hdf5(path, compile = FALSE)
  expect_equal(predict(restored, x[1:2, , , , drop = FALSE]), predict(model, x[1:2, , , , drop = FALSE]), tolerance = 1e-6)
})
