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

two_output_model <- function() {
  a <- layer_input(shape = 4, name = "left")
  b <- layer_input(shape = 4, name = "right")
  shared <- layer_dense(units = 6, activation = "relu")
  h <- layer_concatenate(list(shared(a), shared(b)))
  class_out <- h %>% layer_dense(3, activation = "softmax", name = "class_out")
  reg_out <- h %>% layer_dense(1, name = "reg_out")
  keras_model(list(a, b), list(class_out, reg_out))
}

test_that("a two-input two-output model trains with a loss per output and loss weights", {
  set.seed(21)
  x <- list(matrix(rnorm(120), 30, 4), matrix(rnorm(120), 30, 4))
  y <- list(to_categorical(rep(0:2, 10), 3), rowSums(x[[1]]) - rowSums(x[[2]]))
  model <- two_output_model()
  compile(model, optimizer = optimizer_adam(0.01), loss = list(reg_out = "mse", class_out = "categorical_crossentropy"),
          loss_weights = c(class_out = 1, reg_out = 0.5), metrics = "mae")
  h <- fit(model, x, y, epochs = 8, batch_size = 10, verbose = 0, validation_split = 0.2)
  expect_named(h$metrics, c("loss", "class_out_loss", "reg_out_loss", "class_out_mae", "reg_out_mae",
                            "val_loss", "val_class_out_loss", "val_reg_out_loss", "val_class_out_mae", "val_reg_out_mae"))
  # The loss is the weighted sum of the outputs' losses, and it goes down.
  ev <- evaluate(model, x, y, verbose = 0)
  expect_equal(ev[["loss"]], ev[["class_out_loss"]] + 0.5 * ev[["reg_out_loss"]], tolerance = 1e-6)
  expect_lt(tail(h$metrics$loss, 1), h$metrics$loss[1])
  p <- predict(model, x)
  expect_length(p, 2)
  expect_equal(dim(p[[1]]), c(30L, 3L))
  expect_equal(dim(p[[2]]), c(30L, 1L))
  expect_error(fit(model, x, y[[1]], verbose = 0), "2 outputs", class = "rustgpu_value_error")
  expect_error(compile(model, optimizer = "sgd", loss = c("mse", "mse", "mse")), "one entry per model output",
               class = "rustgpu_value_error")
  expect_error(compile(model, optimizer = "sgd", loss = list(class_out = "mse")), "reg_out", class = "rustgpu_value_error")
  # It round-trips with its training setup.
  path <- tempfile(fileext = ".h5")
  save_model_hdf5(model, path)
  restored <- load_model_hdf5(path)
  expect_identical(predict(restored, x), p)
  expect_equal(evaluate(restored, x, y, verbose = 0), ev, tolerance = 1e-6)
})

test_that("a two-output model trains identically through replicas", {
  use_virtual_gpus(2, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0))
  set.seed(22)
  a <- two_output_model()
  b <- two_output_model()
  set_weights(b, get_weights(a))
  p <- multi_gpu_model(b, gpus = 2)
  x <- list(matrix(rnorm(44), 11, 4), matrix(rnorm(44), 11, 4))
  y <- list(to_categorical(rep(0:2, length.out = 11), 3), rnorm(11))
  for (m in list(a, p)) compile(m, optimizer = "sgd", loss = c("categorical_crossentropy", "mse"), loss_weights = c(1, 2))
  ha <- fit(a, x, y, epochs = 2, batch_size = 4, shuffle = FALSE, verbose = 0)
  hb <- fit(p, x, y, epochs = 2, batch_size = 4, shuffle = FALSE, verbose = 0)
  expect_equal(hb$metrics, ha$metrics, tolerance = 1e-5)
  for (i in seq_along(get_weights(a))) expect_equal(get_weights(b)[[i]], get_weights(a)[[i]], tolerance = 1e-5)
})

test_that("a multiply merge with a shared layer applied in the other order matches Keras", {
  fx <- keras_fixtures()
  f <- fx$functional2
  a <- layer_input(shape = 5, name = "a")
  b <- layer_input(shape = 5, name = "b")
  shared <- layer_dense(units = 3, activation = "sigmoid")
  product <- layer_multiply(list(shared(b), shared(a)))
  model <- keras_model(list(a, b), layer_concatenate(list(product, b)) %>% layer_dense(2, activation = "softmax"))
  set_weights(model, as_weight_list(f$initial_weights))
  x <- list(fx$x, fx$functional$x_b)
  expect_equal(unname(predict(model, x)), unname(f$initial_predictions), tolerance = 1e-5)
  compile(model, optimizer = optimizer_adam(0.01), loss = "categorical_crossentropy")
  y <- to_categorical(as.integer(fx$y_sparse) %% 2, 2)
  h <- fit(model, x, y, epochs = 2, batch_size = 8, shuffle = FALSE, verbose = 0)
  expect_equal(h$metrics$loss, f$history$loss, tolerance = 1e-4)
  final <- as_weight_list(f$final_weights)
  for (i in seq_along(final)) expect_equal(as.numeric(get_weights(model)[[i]]), as.numeric(final[[i]]), tolerance = 1e-4)
})
