test_that("fit_generator, evaluate_generator and predict_generator work batch by batch", {
  set.seed(5)
  data <- matrix(rnorm(200), 100, 2)
  target <- data %*% c(1, -1)
  position <- 0
  batches <- function() {
    rows <- (position %% 10) * 10 + 1:10
    position <<- position + 1
    list(data[rows, , drop = FALSE], target[rows])
  }
  model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
  compile(model, optimizer = optimizer_sgd(0.1), loss = "mse", metrics = "mae")
  h <- fit_generator(model, batches, steps_per_epoch = 10, epochs = 3, verbose = 0,
                     validation_data = batches, validation_steps = 2)
  expect_named(h$metrics, c("loss", "mae", "val_loss", "val_mae"))
  expect_lt(tail(h$metrics$loss, 1), h$metrics$loss[1])
  # Evaluating all 10 batches equals evaluate() on all the data.
  position <- 0
  expect_equal(evaluate_generator(model, batches, steps = 10), evaluate(model, data, target, verbose = 0), tolerance = 1e-6)
  position <- 0
  p <- predict_generator(model, function() batches()[[1]], steps = 10)
  expect_equal(p, predict(model, data), tolerance = 1e-6)
  expect_error(fit_generator(model, "not a function", steps_per_epoch = 1), "`generator`", class = "rustgpu_value_error")
  expect_error(fit_generator(model, function() 1, steps_per_epoch = 1, verbose = 0), "list\\(x, y\\)",
               class = "rustgpu_value_error")
})

test_that("a generator's third element weights its samples, as Keras's", {
  set.seed(6)
  x <- matrix(rnorm(40), 20, 2)
  y <- x %*% c(1, 2)
  w <- rep(c(0, 3), 10)
  make <- function() {
    set.seed(3)
    m <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
    compile(m, optimizer = optimizer_sgd(0.05), loss = "mse")
    m
  }
  from_generator <- make()
  position <- 0
  weighted <- function() {
    rows <- (position %% 4) * 5 + 1:5
    position <<- position + 1
    list(x[rows, , drop = FALSE], y[rows], w[rows])
  }
  fit_generator(from_generator, weighted, steps_per_epoch = 4, epochs = 2, verbose = 0)
  from_arrays <- make()
  fit(from_arrays, x, y, sample_weight = w, batch_size = 5, epochs = 2, shuffle = FALSE, verbose = 0)
  expect_equal(get_weights(from_generator), get_weights(from_arrays), tolerance = 1e-6)
  position <- 0
  expect_equal(unname(evaluate_generator(from_generator, weighted, steps = 4)),
               unname(evaluate(from_generator, x, y, sample_weight = w, batch_size = 5, verbose = 0)), tolerance = 1e-6)
  bad <- function() list(x[1:5, ], y[1:5], rep(-1, 5))
  expect_error(fit_generator(make(), bad, steps_per_epoch = 1, verbose = 0), "sample_weight", class = "rustgpu_value_error")
})

test_that("predict_proba warns once and predicts", {
  model <- keras_model_sequential() %>% layer_dense(2, activation = "softmax", input_shape = 2)
  x <- matrix(runif(4), 2)
  state <- rustgpu:::.tensors
  state$warned_predict_proba <- NULL
  expect_warning(p <- predict_proba(model, x), "deprecated")
  expect_equal(p, predict(model, x))
  expect_no_warning(predict_proba(model, x))
})

test_that("frozen layers keep their weights and count as non-trainable", {
  model <- keras_model_sequential() %>%
    layer_dense(4, input_shape = 2, name = "base") %>%
    layer_dense(1, name = "head")
  freeze_weights(model, to = "base")
  compile(model, optimizer = optimizer_sgd(0.1), loss = "mse")
  expect_match(format(model), "Non-trainable params: 12", fixed = TRUE)
  before <- get_weights(model)
  x <- matrix(runif(20), 10)
  fit(model, x, rowSums(x), epochs = 2, verbose = 0)
  after <- get_weights(model)
  expect_identical(after[1:2], before[1:2])
  expect_false(identical(after[3:4], before[3:4]))
  # As Keras: after compile(), a change applies at the next compile() (with Keras's warning).
  unfreeze_weights(model)
  expect_warning(fit(model, x, rowSums(x), epochs = 1, verbose = 0), "Discrepancy between trainable weights")
  expect_identical(get_weights(model)[1:2], before[1:2])
  compile(model, optimizer = optimizer_sgd(0.1), loss = "mse")
  expect_match(format(model), "Non-trainable params: 0", fixed = TRUE)
  fit(model, x, rowSums(x), epochs = 1, verbose = 0)
  expect_false(identical(get_weights(model)[1:2], before[1:2]))
  expect_error(freeze_weights(model, from = "nope"), "`from`", class = "rustgpu_value_error")
})
