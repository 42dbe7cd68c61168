# Optimizers (R/optimizers.R): R keras 2.x's arguments and defaults; the update rules
# themselves are checked against tf-keras in test-keras-numerics.R.

regression_data <- function() {
  set.seed(3)
  x <- matrix(rnorm(80), 20, 4)
  list(x = x, y = x %*% c(1, -1, 2, 0))
}

fitted_weights <- function(optimizer, epochs = 2) {
  d <- regression_data()
  set.seed(11)
  model <- keras_model_sequential() %>% layer_dense(4, activation = "tanh", input_shape = 4) %>% layer_dense(1)
  compile(model, optimizer = optimizer, loss = "mse")
  fit(model, d$x, d$y, epochs = epochs, batch_size = 5, shuffle = FALSE, verbose = 0)
  get_weights(model)
}

test_that("`lr` is the learning rate, as in R keras 2.x, positionally first as before", {
  expect_identical(fitted_weights(optimizer_sgd(lr = 0.05, momentum = 0.9)),
                   fitted_weights(optimizer_sgd(learning_rate = 0.05, momentum = 0.9)))
  expect_identical(fitted_weights(optimizer_rmsprop(1e-3, decay = 0.01)),
                   fitted_weights(optimizer_rmsprop(lr = 1e-3, decay = 0.01)))
  expect_equal(optimizer_adam(lr = 0.5)$learning_rate, 0.5)
})

test_that("defaults are R keras 2.x's, and compile() takes every optimizer by name", {
  expect_equal(optimizer_adagrad()$learning_rate, 0.01)
  expect_equal(optimizer_adadelta()$learning_rate, 1)
  expect_equal(optimizer_adamax()$learning_rate, 0.002)
  expect_equal(optimizer_nadam()$learning_rate, 0.002)
  expect_equal(optimizer_rmsprop()$epsilon, 1e-7)
  for (name in c("sgd", "rmsprop", "adam", "adagrad", "adadelta", "adamax", "nadam", "Adam")) {
    w <- fitted_weights(name, epochs = 1)
    expect_true(all(is.finite(unlist(w))), label = name)
  }
  # By name, the defaults: the same as the object with no arguments.
  expect_identical(fitted_weights("adagrad"), fitted_weights(optimizer_adagrad()))
})

test_that("decay slows the steps down and clipping bounds them", {
  plain <- fitted_weights(optimizer_sgd(0.1))
  decayed <- fitted_weights(optimizer_sgd(0.1, decay = 0.5))
  start <- fitted_weights(optimizer_sgd(1e-30), epochs = 1)
  moved <- function(w) sum(abs(unlist(w) - unlist(start)))
  expect_lt(moved(decayed), moved(plain))
  # One step of plain SGD moves each weight by lr * its clipped gradient: at most lr * clipvalue.
  one_step <- function(opt) {
    d <- regression_data()
    set.seed(11)
    model <- keras_model_sequential() %>% layer_dense(4, activation = "tanh", input_shape = 4) %>% layer_dense(1)
    compile(model, optimizer = opt, loss = "mse")
    before <- unlist(get_weights(model))
    train_on_batch(model, d$x, d$y)
    unlist(get_weights(model)) - before
  }
  expect_lte(max(abs(one_step(optimizer_sgd(1, clipvalue = 0.01)))), 0.01 + 1e-7)
  expect_gt(max(abs(one_step(optimizer_sgd(1)))), 0.01)
})

test_that("optimizers print their arguments and survive a save with their state", {
  expect_output(print(optimizer_adagrad(lr = 0.1, clipnorm = 1)), "<optimizer adagrad: learning_rate = 0.1, epsilon = 1e-07, initial_accumulator_value = 0.1, decay = 0, clipnorm = 1>")
  d <- regression_data()
  for (opt in list(optimizer_adagrad(0.1, decay = 0.01), optimizer_adadelta(clipnorm = 0.5), optimizer_adamax(), optimizer_nadam(clipvalue = 1))) {
    model <- keras_model_sequential() %>% layer_dense(4, activation = "tanh", input_shape = 4) %>% layer_dense(1)
    compile(model, optimizer = opt, loss = "mse")
    fit(model, d$x, d$y, epochs = 2, batch_size = 5, shuffle = FALSE, verbose = 0)
    path <- tempfile(fileext = ".h5")
    save_model_hdf5(model, path)
    restored <- load_model_hdf5(path)
    fit(model, d$x, d$y, epochs = 1, batch_size = 5, shuffle = FALSE, verbose = 0)
    fit(restored, d$x, d$y, epochs = 1, batch_size = 5, shuffle = FALSE, verbose = 0)
    expect_identical(get_weights(restored), get_weights(model), label = opt$name)
  }
})

test_that("learning-rate schedules set each step's rate, as tf.keras's formulas, and survive a save", {
  d <- regression_data()
  schedule <- learning_rate_schedule_exponential_decay(0.1, decay_steps = 2, decay_rate = 0.5)
  model <- keras_model_sequential() %>% layer_dense(1, input_shape = 4)
  compile(model, optimizer = optimizer_sgd(learning_rate = schedule), loss = "mse")
  expect_equal(rustgpu:::rg_learning_rate(model$ptr, NULL), 0.1)
  for (i in 1:4) train_on_batch(model, d$x, d$y)
  expect_equal(rustgpu:::rg_learning_rate(model$ptr, NULL), 0.1 * 0.5^2, tolerance = 1e-6)
  # Plain SGD's step with a scheduled rate equals a step with that rate.
  a <- keras_model_sequential() %>% layer_dense(1, input_shape = 4)
  b <- keras_model_sequential() %>% layer_dense(1, input_shape = 4)
  set_weights(b, get_weights(a))
  compile(a, optimizer = optimizer_sgd(learning_rate = learning_rate_schedule_piecewise_constant_decay(0, c(0.1, 0.01))), loss = "mse")
  compile(b, optimizer = optimizer_sgd(0.1), loss = "mse")
  train_on_batch(a, d$x, d$y)
  train_on_batch(b, d$x, d$y)
  expect_equal(get_weights(a), get_weights(b), tolerance = 1e-6)
  path <- tempfile(fileext = ".h5")
  save_model_hdf5(model, path)
  restored <- load_model_hdf5(path)
  expect_equal(rustgpu:::rg_learning_rate(restored$ptr, NULL), 0.1 * 0.5^2, tolerance = 1e-6)
  expect_output(print(optimizer_adam(learning_rate = schedule)), "learning_rate = <ExponentialDecay>")
  expect_error(learning_rate_schedule_piecewise_constant_decay(c(2, 1), c(1, 1, 1)), "increasing", class = "rustgpu_value_error")
})
