# Bad input becomes a classed condition (inheriting from rustgpu_error) that says what was
# wrong; the model keeps working afterwards.

compiled_model <- function() {
  model <- small_classifier(inputs = 4, hidden = 8, classes = 3)
  compile(model, optimizer = "adam", loss = "categorical_crossentropy", metrics = "accuracy")
  model
}

x_ok <- matrix(runif(40), 10, 4)
y_ok <- to_categorical(rep(0:2, length.out = 10), 3)

expect_rustgpu_error <- function(expr, class, pattern) {
  err <- expect_error(expr, class = class)
  expect_s3_class(err, "rustgpu_error")
  expect_match(conditionMessage(err), pattern)
}

test_that("bad data gives value errors naming the argument", {
  model <- compiled_model()
  bad_x <- x_ok; bad_x[3, 2] <- NA
  expect_rustgpu_error(fit(model, bad_x, y_ok, verbose = 0), "rustgpu_value_error", "`x` contains NA")
  nan_y <- y_ok; nan_y[1, 1] <- NaN
  expect_rustgpu_error(fit(model, x_ok, nan_y, verbose = 0), "rustgpu_value_error", "`y` contains NA")
  inf_x <- x_ok; inf_x[1, 1] <- Inf
  expect_rustgpu_error(predict(model, inf_x), "rustgpu_value_error", "infinite")
  expect_rustgpu_error(fit(model, x_ok[1:5, ], y_ok, verbose = 0), "rustgpu_value_error", "same number of samples")
  expect_rustgpu_error(fit(model, matrix(runif(30), 10, 3), y_ok, verbose = 0), "rustgpu_value_error",
                       "expects input shape \\(n, 4\\)")
  expect_rustgpu_error(fit(model, x_ok, y_ok[, 1:2], verbose = 0), "rustgpu_value_error", "`y` has 2 values per sample")
  expect_rustgpu_error(predict(model, matrix("a", 2, 4)), "rustgpu_value_error", "character")
  expect_rustgpu_error(predict(model, as.data.frame(x_ok)), "rustgpu_value_error", "as.matrix")
  expect_rustgpu_error(predict(model, matrix(TRUE, 2, 4)), "rustgpu_value_error", "logical")
  expect_rustgpu_error(predict(model, factor(1:3)), "rustgpu_value_error", "factor")
  expect_rustgpu_error(predict(model, x_ok[0, , drop = FALSE]), "rustgpu_value_error", "no rows")
  expect_equal(dim(predict(model, x_ok)), c(10L, 3L))
})

test_that("bad arguments give value errors", {
  model <- compiled_model()
  expect_rustgpu_error(fit(model, x_ok, y_ok, batch_size = 0, verbose = 0), "rustgpu_value_error", "`batch_size`")
  expect_rustgpu_error(fit(model, x_ok, y_ok, batch_size = NA, verbose = 0), "rustgpu_value_error", "`batch_size`")
  expect_rustgpu_error(fit(model, x_ok, y_ok, epochs = -1, verbose = 0), "rustgpu_value_error", "`epochs`")
  expect_rustgpu_error(fit(model, x_ok, y_ok, validation_split = 1, verbose = 0), "rustgpu_value_error", "`validation_split`")
  expect_rustgpu_error(fit(model, x_ok, y_ok, verbose = 7), "rustgpu_value_error", "`verbose`")
  expect_rustgpu_error(layer_dense(keras_model_sequential(), 0), "rustgpu_value_error", "`units`")
  expect_rustgpu_error(layer_dense(keras_model_sequential(), 3, activation = "relux"), "rustgpu_value_error",
                       "unknown activation \"relux\"")
  expect_rustgpu_error(layer_dense(keras_model_sequential(), 3, kernel_initializer = "nope"), "rustgpu_value_error",
                       "unknown initializer")
  expect_rustgpu_error(layer_dropout(keras_model_sequential(), -0.1), "rustgpu_value_error", "`rate`")
  expect_rustgpu_error(layer_dense(keras_model_sequential(), 2, input_shape = c(0, 3)), "rustgpu_value_error",
                       "`input_shape`")
  expect_rustgpu_error(compile(model, optimizer = "adamw", loss = "mse"), "rustgpu_value_error", "`optimizer`")
  expect_rustgpu_error(compile(model, optimizer = "adam", loss = "hinge_typo"), "rustgpu_value_error", "unknown loss")
  expect_rustgpu_error(compile(model, optimizer = "adam", loss = "mse", metrics = "auroc"), "rustgpu_value_error",
                       "unknown metric")
  expect_rustgpu_error(compile(model, optimizer = "adam"), "rustgpu_value_error", "`loss` is required")
  expect_rustgpu_error(optimizer_adam(learning_rate = -1), "rustgpu_value_error", "`learning_rate`")
  expect_rustgpu_error(optimizer_rmsprop(rho = 1), "rustgpu_value_error", "`rho`")
  expect_rustgpu_error(to_categorical(c(0, 5), num_classes = 3), "rustgpu_value_error", "class id 5")
  # The model still trains after all of that.
  expect_s3_class(fit(model, x_ok, y_ok, epochs = 1, verbose = 0), "keras_training_history")
})

test_that("using a model out of order gives state errors", {
  model <- small_classifier(inputs = 4)
  expect_rustgpu_error(fit(model, x_ok, y_ok, verbose = 0), "rustgpu_state_error", "must be compiled")
  expect_rustgpu_error(evaluate(model, x_ok, y_ok), "rustgpu_state_error", "must be compiled")
  expect_rustgpu_error(train_on_batch(model, x_ok, y_ok), "rustgpu_state_error", "must be compiled")
  empty <- keras_model_sequential()
  expect_rustgpu_error(predict(empty, x_ok), "rustgpu_state_error", "no layers")
})

test_that("set_weights checks count and shapes and changes nothing on error", {
  model <- compiled_model()
  w <- get_weights(model)
  expect_rustgpu_error(set_weights(model, w[1:3]), "rustgpu_value_error", "list of 4 arrays")
  bad <- w; bad[[1]] <- matrix(0, 3, 8)
  expect_rustgpu_error(set_weights(model, bad), "rustgpu_value_error", "shape \\(4, 8\\).*\\(3, 8\\)")
  expect_rustgpu_error(set_weights(model, "w"), "rustgpu_value_error", "list of arrays")
  expect_equal(get_weights(model), w)
})

test_that("wrong objects and dead models give clear errors, never a crash", {
  expect_rustgpu_error(evaluate(list(), x_ok, y_ok), "rustgpu_value_error", "made by rustgpu")
  expect_rustgpu_error(train_on_batch(list(), x_ok, y_ok), "rustgpu_value_error", "made by rustgpu")
  expect_rustgpu_error(get_weights(42), "rustgpu_value_error", "made by rustgpu")
  model <- compiled_model()
  path <- tempfile(fileext = ".rds")
  saveRDS(model, path)
  restored <- readRDS(path)
  expect_rustgpu_error(predict(restored, x_ok), "rustgpu_state_error", "readRDS")
  expect_rustgpu_error(fit(restored, x_ok, y_ok), "rustgpu_state_error", "readRDS")
  unlink(path)
  expect_equal(dim(predict(model, x_ok)), c(10L, 3L))
})
