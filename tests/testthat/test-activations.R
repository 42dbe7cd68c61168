test_that("activation functions compute Keras's activations on arrays", {
  x <- c(-2, -0.5, 0, 0.7, 3)
  expect_equal(as.numeric(activation_relu(x)), pmax(x, 0), tolerance = 1e-6)
  expect_equal(as.numeric(activation_relu(x, alpha = 0.1, max_value = 2)), pmin(ifelse(x > 0, x, 0.1 * x), 2), tolerance = 1e-6)
  expect_equal(as.numeric(activation_sigmoid(x)), 1 / (1 + exp(-x)), tolerance = 1e-6)
  expect_equal(as.numeric(activation_softsign(x)), x / (1 + abs(x)), tolerance = 1e-6)
  expect_equal(as.numeric(activation_exponential(x)), exp(x), tolerance = 1e-6)
  expect_equal(as.numeric(activation_elu(x)), ifelse(x > 0, x, exp(x) - 1), tolerance = 1e-6)
  selu <- 1.0507009873554804934 * ifelse(x > 0, x, 1.6732632423543772848 * (exp(x) - 1))
  expect_equal(as.numeric(activation_selu(x)), selu, tolerance = 1e-6)
  expect_equal(activation_linear(x), x)
  m <- matrix(c(1, 2, 3, 4), 2)
  expect_equal(activation_softmax(m), exp(m) / rowSums(exp(m)), tolerance = 1e-6)
})

test_that("an activation function given to a layer is its Keras name", {
  for (f in list(activation_relu, activation_softsign, activation_exponential, activation_hard_sigmoid)) {
    model <- keras_model_sequential() %>% layer_dense(3, activation = f, input_shape = 2)
    layers <- get_config(model)$config$layers
    expect_equal(layers[[length(layers)]]$config$activation, attr(f, "activation_name"))
  }
  x <- matrix(c(-1, 0.5, 2, -3), 2)
  model <- keras_model_sequential() %>% layer_activation(activation_softsign, input_shape = 2)
  expect_equal(predict(model, x), x / (1 + abs(x)), tolerance = 1e-6)
  expect_output(print(activation_tanh), "activation \"tanh\"")
})

test_that("an activation that is some other function is a classed error", {
  expect_error(layer_dense(units = 2, activation = function(x) x), class = "rustgpu_value_error",
               regexp = "activation_\\*\\(\\) functions")
})

test_that("layer_activation_selu() is Keras's Activation(\"selu\")", {
  model <- keras_model_sequential() %>% layer_activation_selu(input_shape = 2)
  x <- matrix(c(-1, 0.5, 2, -3), 2)
  expect_equal(predict(model, x), activation_selu(x), tolerance = 1e-6)
  expect_equal(get_config(model)$config$layers[[2]]$config$activation, "selu")
})
