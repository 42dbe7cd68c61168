# The functional API: inputs, layers applied to tensors, shared layers, merges, several inputs.

two_input_model <- function(units = 4) {
  a <- layer_input(shape = 5, name = "a")
  b <- layer_input(shape = 5, name = "b")
  shared <- layer_dense(units = units, activation = "tanh")
  merged <- layer_add(list(shared(a), shared(b)))
  joined <- layer_concatenate(list(merged, a))
  keras_model(list(a, b), joined %>% layer_dense(3, activation = "softmax"))
}

test_that("a two-input model with a shared layer matches Keras's predictions and training", {
  fx <- keras_fixtures()
  f <- fx$functional
  model <- two_input_model()
  set_weights(model, as_weight_list(f$initial_weights))
  x <- list(fx$x, f$x_b)
  expect_equal(unname(predict(model, x)), unname(f$initial_predictions), tolerance = 1e-5)
  compile(model, optimizer = optimizer_sgd(0.05, momentum = 0.9), loss = "categorical_crossentropy", metrics = "accuracy")
  h <- fit(model, x, fx$y_cat, epochs = 2, batch_size = 8, shuffle = FALSE, verbose = 0)
  expect_equal(h$metrics$loss, f$history$loss, tolerance = 1e-4)
  expect_equal(h$metrics$accuracy, f$history$accuracy, tolerance = 1e-4)
  final <- as_weight_list(f$final_weights)
  for (i in seq_along(final)) expect_equal(as.numeric(get_weights(model)[[i]]), as.numeric(final[[i]]), tolerance = 1e-4)
})

test_that("shared layers hold one set of weights and summary lists inputs and merges", {
  model <- two_input_model()
  expect_length(get_weights(model), 4)
  text <- format(model)
  expect_match(text, "a (InputLayer)", fixed = TRUE)
  expect_match(text, "(Add)", fixed = TRUE)
  expect_match(text, "(None, 9)", fixed = TRUE)
  expect_match(text, "Total params: 54", fixed = TRUE)
})

test_that("a functional model trains identically through replicas", {
  use_virtual_gpus(3, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0))
  set.seed(3)
  a <- two_input_model()
  b <- two_input_model()
  set_weights(b, get_weights(a))
  p <- multi_gpu_model(b, gpus = 3)
  x <- list(matrix(rnorm(70), 14, 5), matrix(rnorm(70), 14, 5))
  y <- to_categorical(rep(0:2, length.out = 14), 3)
  expect_identical(predict(p, x), predict(a, x))
  compile(a, optimizer = "adam", loss = "categorical_crossentropy")
  compile(p, optimizer = "adam", loss = "categorical_crossentropy")
  ha <- fit(a, x, y, epochs = 2, batch_size = 5, shuffle = FALSE, verbose = 0)
  hb <- fit(p, x, y, epochs = 2, batch_size = 5, shuffle = FALSE, verbose = 0)
  expect_equal(hb$metrics$loss, ha$metrics$loss, tolerance = 1e-5)
  for (i in seq_along(get_weights(a))) expect_equal(get_weights(b)[[i]], get_weights(a)[[i]], tolerance = 1e-5)
})

test_that("functional models give clear errors", {
  a <- layer_input(shape = 3)
  other <- layer_input(shape = 3)
  out <- layer_add(list(a %>% layer_dense(2), other %>% layer_dense(2)))
  expect_error(keras_model(a, out), "is not in `inputs`", class = "rustgpu_value_error")
  expect_error(keras_model(a, list(out, out)), "several outputs", class = "rustgpu_value_error")
  expect_error(keras_model(matrix(1), out), "`inputs`", class = "rustgpu_value_error")
  expect_error(layer_add(list(a)), "at least 2", class = "rustgpu_value_error")
  expect_error(keras_model(list(a, other), layer_add(list(a %>% layer_dense(2), other %>% layer_dense(3)))),
               "one shape", class = "rustgpu_value_error")
  expect_error(layer_input(shape = 0), "`shape`", class = "rustgpu_value_error")
  model <- keras_model(list(a, other), out)
  expect_error(layer_dense(model, 2), "applied to tensors", class = "rustgpu_state_error")
  expect_error(predict(model, matrix(0, 2, 3)), "2 inputs but `x` holds 1 array", class = "rustgpu_value_error")
  expect_error(predict(model, list(matrix(0, 2, 3), matrix(0, 3, 3))), "same number of samples",
               class = "rustgpu_value_error")
  expect_error(predict(model, list(matrix(0, 2, 3), matrix(0, 2, 4))), "input 2 of `x`", class = "rustgpu_value_error")
  path <- tempfile(fileext = ".h5")
  save_model_weights_hdf5(model, path)
  load_model_weights_hdf5(model, path)
  expect_equal(dim(predict(model, list(matrix(0, 2, 3), matrix(0, 2, 3)))), c(2L, 2L))
})
