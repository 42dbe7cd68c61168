# Layer wrappers written in R (KerasWrapper, create_wrapper()): R keras's custom-wrapper
# vignette's wrapper, which adds a weight and a loss on it around a layer. The core's
# checks of the losses' share of each update are in src/rust/core/tests/weight_losses.rs.

ScaleLoss <- R6::R6Class("ScaleLoss", inherit = KerasWrapper, public = list(
  weight_shape = NULL, weight_init = NULL, custom_weight = NULL,
  initialize = function(weight_shape, weight_init) {
    self$weight_shape <- weight_shape
    self$weight_init <- weight_init
  },
  build = function(input_shape) {
    super$build(input_shape)
    self$custom_weight <- super$add_weight(name = "custom_weight", shape = self$weight_shape,
                                           initializer = self$weight_init, trainable = TRUE)
    super$add_loss(k_log(self$custom_weight))
  }
))
wrapper_scale_loss <- function(object, layer, weight_shape, weight_init, input_shape = NULL) {
  create_wrapper(ScaleLoss, object, list(layer = layer, weight_shape = weight_shape, weight_init = weight_init,
                                         input_shape = input_shape))
}

test_that("a wrapper runs its layer, adds its weight first, and its loss joins training", {
  set.seed(9)
  x <- matrix(rnorm(20), 10)
  y <- matrix(rnorm(10), 10)
  wrapped <- keras_model_sequential() %>%
    wrapper_scale_loss(layer = layer_dense(units = 3), weight_shape = shape(1), weight_init = initializer_constant(2),
                       input_shape = shape(2)) %>%
    layer_dense(units = 1)
  plain <- keras_model_sequential() %>% layer_dense(units = 3, input_shape = 2) %>% layer_dense(units = 1)
  expect_equal(lengths(get_weights(wrapped)), c(1, 6, 3, 3, 1))
  expect_equal(as.numeric(get_weights(wrapped)[[1]]), 2)
  set_weights(plain, get_weights(wrapped)[-1])
  expect_equal(predict(wrapped, x), predict(plain, x))
  expect_match(format(wrapped), "(ScaleLoss)", fixed = TRUE)
  for (m in list(wrapped, plain)) compile(m, optimizer = optimizer_sgd(0.1), loss = "mse")
  expect_equal(evaluate(wrapped, x, y, verbose = 0)[[1]], evaluate(plain, x, y, verbose = 0)[[1]] + log(2), tolerance = 1e-6)
  fit(wrapped, x, y, epochs = 1, batch_size = 10, verbose = 0)
  fit(plain, x, y, epochs = 1, batch_size = 10, verbose = 0)
  # One step: d log(w) / dw = 1 / w; the wrapped layers train as the plain ones.
  expect_equal(as.numeric(get_weights(wrapped)[[1]]), 2 - 0.1 / 2, tolerance = 1e-6)
  for (i in 1:4) expect_equal(get_weights(wrapped)[[i + 1]], get_weights(plain)[[i]], tolerance = 1e-6)
  path <- tempfile(fileext = ".h5")
  on.exit(unlink(path))
  save_model_hdf5(wrapped, path)
  loaded <- load_model_hdf5(path)
  expect_equal(evaluate(loaded, x, y, verbose = 0), evaluate(wrapped, x, y, verbose = 0), tolerance = 1e-6)
})

test_that("misused wrappers are classed errors that say what to do", {
  expect_error(create_wrapper(KerasLayer, NULL, list(layer = layer_dense(units = 2))), "inheriting KerasWrapper",
               class = "rustgpu_value_error")
  Plain <- R6::R6Class("Plain", inherit = KerasWrapper)
  expect_error(create_wrapper(Plain, NULL, list()), "wrapped `layer`", class = "rustgpu_value_error")
  model <- keras_model_sequential() %>% layer_dense(2, input_shape = 2)
  expect_error(create_wrapper(Plain, NULL, list(layer = model)), "cannot be wrapped here", class = "rustgpu_unsupported_error")
  OwnCall <- R6::R6Class("OwnCall", inherit = KerasWrapper, public = list(call = function(inputs, mask = NULL) inputs * 2))
  expect_error(create_wrapper(OwnCall, NULL, list(layer = layer_dense(units = 2))), "has its own call",
               class = "rustgpu_unsupported_error")
})
