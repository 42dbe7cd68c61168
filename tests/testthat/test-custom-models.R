# Models written in R (keras_model_custom()), and backend functions applied to the
# functional API's tensors.

test_that("a custom model builds on its first data and trains as the same functional model", {
  mlp <- function(use_dp) {
    keras_model_custom(name = "mlp", function(self) {
      self$dense1 <- layer_dense(units = 8, activation = "relu")
      self$dense2 <- layer_dense(units = 3, activation = "softmax")
      if (use_dp) self$dp <- layer_dropout(rate = 0.5)
      function(inputs, mask = NULL) {
        x <- self$dense1(inputs)
        if (use_dp) x <- self$dp(x)
        self$dense2(x)
      }
    })
  }
  set.seed(1)
  x <- matrix(rnorm(120), 30)
  y <- to_categorical(rep(0:2, 10))
  model <- mlp(use_dp = FALSE)
  expect_s3_class(model, "keras.engine.training.Model")
  compile(model, optimizer = optimizer_sgd(0.1), loss = "categorical_crossentropy", metrics = "accuracy")
  h <- fit(model, x, y, epochs = 2, batch_size = 10, shuffle = FALSE, verbose = 0)
  expect_named(h$metrics, c("loss", "accuracy"))
  expect_equal(model$output_shape, list(NULL, 3L))
  expect_equal(lengths(get_weights(model)), c(32, 8, 24, 3))
  # The same layers in a functional model, from the custom model's initial weights.
  set.seed(1)
  fresh <- mlp(use_dp = FALSE)
  expect_equal(dim(predict(fresh, x)), c(30, 3))
  input <- layer_input(shape = 4)
  reference <- keras_model(input, input %>% layer_dense(8, activation = "relu") %>% layer_dense(3, activation = "softmax"))
  set_weights(reference, get_weights(fresh))
  compile(fresh, optimizer = optimizer_sgd(0.1), loss = "categorical_crossentropy", metrics = "accuracy")
  compile(reference, optimizer = optimizer_sgd(0.1), loss = "categorical_crossentropy", metrics = "accuracy")
  h1 <- fit(fresh, x, y, epochs = 2, batch_size = 10, shuffle = FALSE, verbose = 0)
  h2 <- fit(reference, x, y, epochs = 2, batch_size = 10, shuffle = FALSE, verbose = 0)
  expect_equal(h1$metrics, h2$metrics, tolerance = 1e-6)
  expect_equal(predict(fresh, x), predict(reference, x), tolerance = 1e-6)
  expect_error(keras_model_custom(function(self) 3), "return the model's call", class = "rustgpu_value_error")
})

test_that("backend functions and arithmetic on layer outputs become lambda layers", {
  set.seed(2)
  input <- layer_input(shape = 3)
  hidden <- layer_dense(input, 4)
  output <- k_concatenate(list(hidden * 2, k_exp(-hidden)))
  model <- keras_model(input, output)
  expect_equal(model$output_shape, list(NULL, 8L))
  # Reading the tensors' shapes along the way made no other user of the layers.
  dense <- get_layer(model, index = 1)
  expect_equal(unname(rustgpu:::.shared$users[rustgpu:::layer_ids(model)[[dense$name]]]), 1L)
  x <- matrix(rnorm(6), 2)
  h <- predict(keras_model(input, hidden), x)
  expect_equal(predict(model, x), cbind(h * 2, exp(-h)), tolerance = 1e-6)
})
