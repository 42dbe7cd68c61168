test_that("fit learns a linearly separable problem and returns a Keras-like history", {
  d <- toy_data(n = 96)
  set.seed(3)
  model <- small_classifier()
  compile(model, optimizer = "adam", loss = "categorical_crossentropy", metrics = "accuracy")
  h <- fit(model, d$x, d$y, epochs = 3, batch_size = 16, validation_split = 0.25, verbose = 0)
  expect_s3_class(h, "keras_training_history")
  expect_named(h$metrics, c("loss", "accuracy", "val_loss", "val_accuracy"))
  expect_length(h$metrics$loss, 3)
  expect_equal(h$params$samples, 72)
  df <- as.data.frame(h)
  expect_equal(nrow(df), 12)
  expect_setequal(levels(df$data), c("training", "validation"))
  expect_output(print(h), "Trained on 72 samples, validated on 24 samples \\(batch_size=16, epochs=3\\)\nFinal epoch \\(plot to see history\\):\n        loss: [0-9.]+\n    accuracy: ")
  expect_output(print(h), "val_accuracy: ")
  # Validation figures equal evaluate() on the last 25% (Keras takes them from the end).
  ev <- evaluate(model, d$x[73:96, ], d$y[73:96, ], verbose = 0)
  expect_equal(ev$loss, tail(h$metrics$val_loss, 1), tolerance = 1e-6)
  expect_equal(names(ev), c("loss", "accuracy"))
})

test_that("training reduces the loss with each optimizer and loss", {
  set.seed(11)
  x <- matrix(rnorm(400), 100, 4)
  y_reg <- cbind(x %*% c(1, -1, 0.5, 0), x[, 1] * 0.3)
  y_bin <- as.numeric(x[, 1] + x[, 2] > 0)
  for (opt in list("sgd", "rmsprop", "adam", optimizer_sgd(0.05, momentum = 0.9, nesterov = TRUE))) {
    model <- keras_model_sequential() %>%
      layer_dense(8, activation = "tanh", input_shape = 4) %>%
      layer_dense(2)
    compile(model, optimizer = opt, loss = "mse", metrics = c("mae", "mse"))
    h <- fit(model, x, y_reg, epochs = 8, batch_size = 10, verbose = 0)
    expect_lt(tail(h$metrics$loss, 1), h$metrics$loss[1])
    expect_equal(h$metrics$mse, h$metrics$loss, tolerance = 1e-6)
  }
  model <- keras_model_sequential() %>% layer_dense(1, activation = "sigmoid", input_shape = 4)
  compile(model, optimizer = optimizer_adam(0.05), loss = "binary_crossentropy", metrics = "accuracy")
  h <- fit(model, x, y_bin, epochs = 10, verbose = 0)
  expect_gt(tail(h$metrics$accuracy, 1), 0.85)
  model <- keras_model_sequential() %>% layer_dense(2, activation = "softmax", input_shape = 4)
  compile(model, optimizer = optimizer_adam(0.05), loss = "sparse_categorical_crossentropy", metrics = "accuracy")
  h <- fit(model, x, y_bin, epochs = 10, verbose = 0)
  expect_gt(tail(h$metrics$accuracy, 1), 0.85)
})

test_that("train_on_batch, test_on_batch and predict_on_batch agree with each other", {
  d <- toy_data(n = 20)
  model <- small_classifier()
  compile(model, optimizer = optimizer_sgd(0.1), loss = "categorical_crossentropy", metrics = "accuracy")
  before <- test_on_batch(model, d$x, d$y)
  trained <- train_on_batch(model, d$x, d$y)
  # train_on_batch reports the loss before its update.
  expect_equal(trained, before, tolerance = 1e-6)
  after <- test_on_batch(model, d$x, d$y)
  expect_lt(after[["loss"]], before[["loss"]])
  p <- predict_on_batch(model, d$x)
  expect_equal(p, predict(model, d$x, batch_size = 7), tolerance = 1e-6)
  expect_equal(rowSums(p), rep(1, 20), tolerance = 1e-6)
})

test_that("dropout is active in training only", {
  model <- keras_model_sequential() %>%
    layer_dense(32, input_shape = 4, kernel_initializer = "ones") %>%
    layer_dropout(0.5)
  x <- matrix(1, 3, 4)
  expect_equal(predict(model, x), matrix(4, 3, 32))
})

test_that("fit reads integer matrices and vectors as Keras does", {
  x <- matrix(1:20, 10, 2)
  storage.mode(x) <- "integer"
  model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
  compile(model, optimizer = "sgd", loss = "mse")
  expect_silent(fit(model, x / 20, as.numeric(1:10) / 10, epochs = 1, verbose = 0))
  expect_equal(dim(predict(model, x)), c(10L, 1L))
})

test_that("verbose output prints Keras-style epoch lines", {
  d <- toy_data(n = 32)
  model <- small_classifier()
  compile(model, optimizer = "adam", loss = "categorical_crossentropy", metrics = "accuracy")
  expect_output(fit(model, d$x, d$y, epochs = 2, verbose = 2), "Epoch 2/2\n1/1 - .*loss: [0-9.]+ - accuracy: [0-9.]+")
  expect_output(fit(model, d$x, d$y, epochs = 1, verbose = 1), "1/1 \\[=+\\]")
})

test_that("sample_weight and class_weight weigh each sample's loss as Keras does", {
  set.seed(30)
  x <- matrix(rnorm(60), 20, 3)
  y <- to_categorical(rep(0:1, 10), 2)
  model <- keras_model_sequential() %>% layer_dense(2, activation = "softmax", input_shape = 3)
  compile(model, optimizer = optimizer_sgd(0.1), loss = "categorical_crossentropy")
  w <- rep(c(1, 3), 10)
  # Keras: the weighted per-sample losses, summed, over the number of samples.
  per_sample <- -rowSums(y * log(predict(model, x)))
  expect_equal(test_on_batch(model, x, y, sample_weight = w)[["loss"]], sum(w * per_sample) / 20, tolerance = 1e-6)
  expect_equal(evaluate(model, x, y, sample_weight = w, verbose = 0)[["loss"]], sum(w * per_sample) / 20, tolerance = 1e-6)
  # class_weight = the same weights by class (class 1 has weight 3).
  a <- keras_model_sequential() %>% layer_dense(2, activation = "softmax", input_shape = 3)
  b <- keras_model_sequential() %>% layer_dense(2, activation = "softmax", input_shape = 3)
  set_weights(b, get_weights(a))
  compile(a, optimizer = optimizer_sgd(0.1), loss = "categorical_crossentropy")
  compile(b, optimizer = optimizer_sgd(0.1), loss = "categorical_crossentropy")
  ha <- fit(a, x, y, epochs = 2, batch_size = 5, shuffle = FALSE, verbose = 0, sample_weight = w)
  hb <- fit(b, x, y, epochs = 2, batch_size = 5, shuffle = FALSE, verbose = 0, class_weight = list("0" = 1, "1" = 3))
  expect_equal(get_weights(a), get_weights(b))
  expect_equal(ha$metrics$loss, hb$metrics$loss)
  expect_error(fit(a, x, y, sample_weight = 1:3, verbose = 0), "one per sample", class = "rustgpu_value_error")
  expect_error(fit(a, x, y, class_weight = list("0" = 1), verbose = 0), "no weight for class 1", class = "rustgpu_value_error")
})

test_that("plot() draws the history with ggplot2, or with base graphics", {
  x <- matrix(runif(40), 20, 2)
  model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
  compile(model, optimizer = "sgd", loss = "mse", metrics = "mae")
  h <- fit(model, x, rowSums(x), epochs = 3, verbose = 0, validation_split = 0.25)
  path <- tempfile(fileext = ".pdf")
  grDevices::pdf(path)
  on.exit(grDevices::dev.off())
  expect_identical(plot(h, method = "base"), h)
  skip_if_not_installed("ggplot2")
  p <- plot(h)
  expect_s3_class(p, "ggplot")
  expect_setequal(unique(as.character(p$data$metric)), c("loss", "mae"))
  expect_equal(nrow(plot(h, metrics = "loss")$data), 6)
})
