# Initializer objects (R/initializers.R): what they draw, their seeds, and that a layer's
# config carries them.

kernel_of <- function(init, units = 6, inputs = 4) {
  model <- keras_model_sequential() %>% layer_dense(units, kernel_initializer = init, input_shape = inputs)
  get_weights(model)[[1]]
}

test_that("initializers draw what they say", {
  expect_true(all(kernel_of(initializer_constant(0.25)) == 0.25))
  expect_true(all(kernel_of(initializer_ones()) == 1))
  u <- kernel_of(initializer_random_uniform(2, 3), units = 200)
  expect_true(all(u >= 2 & u < 3))
  t <- kernel_of(initializer_truncated_normal(mean = 1, stddev = 0.1), units = 500)
  expect_true(all(abs(t - 1) <= 0.2 + 1e-6))
  expect_equal(mean(t), 1, tolerance = 0.01)
  q <- kernel_of(initializer_orthogonal(gain = 2), units = 4, inputs = 4)
  expect_equal(crossprod(q), diag(4, 4), tolerance = 1e-5)
  expect_equal(kernel_of(initializer_identity(), units = 3, inputs = 3), diag(3))
  v <- kernel_of(initializer_variance_scaling(scale = 2, mode = "fan_out", distribution = "uniform"), units = 300, inputs = 400)
  expect_equal(var(as.vector(v)), 2 / 300, tolerance = 0.05)
})

test_that("a seed repeats the draw; without one, set.seed() does", {
  a <- kernel_of(initializer_he_normal(seed = 7))
  b <- kernel_of(initializer_he_normal(seed = 7))
  expect_identical(a, b)
  expect_false(identical(a, kernel_of(initializer_he_normal(seed = 8))))
  set.seed(1); c1 <- kernel_of(initializer_glorot_normal())
  set.seed(1); c2 <- kernel_of(initializer_glorot_normal())
  expect_identical(c1, c2)
})

test_that("initializers travel in the layer's config and a saved model", {
  model <- keras_model_sequential() %>%
    layer_dense(3, kernel_initializer = initializer_random_normal(stddev = 0.5, seed = 3),
                bias_initializer = initializer_constant(0.5), input_shape = 2)
  config <- get_config(model)
  restored <- from_config(config)
  expect_identical(as.vector(get_weights(restored)[[2]]), rep(0.5, 3))
  expect_identical(get_weights(restored)[[1]], get_weights(model)[[1]])
  expect_output(print(initializer_random_normal(seed = 1)), "<initializer RandomNormal: mean = 0, stddev = 0.05, seed = 1>")
  expect_error(layer_dense(keras_model_sequential(), 2, kernel_initializer = 3), "`kernel_initializer`", class = "rustgpu_value_error")
  expect_error(initializer_random_uniform(1, 0), "`maxval`", class = "rustgpu_value_error")
  expect_error(initializer_variance_scaling(mode = "fan_sum"), class = "error")
})
