# Backend functions (k_*()) and R-written model code (lambda layers, custom losses and
# metrics) against tf.keras (tests/fixtures/make_backend_fixtures.py).

backend_fixtures <- function() {
  jsonlite::fromJSON(test_path("..", "fixtures", "keras_backend.json"), simplifyVector = TRUE, simplifyMatrix = TRUE,
                     simplifyDataFrame = FALSE)
}

# Python's axis (from 0; -1 the last) as R keras's (from 1).
r_axis <- function(a) ifelse(a >= 0, a + 1, a)

test_that("backend functions on arrays match tf.keras's", {
  fx <- backend_fixtures()$functions
  arr <- function(name) fx[[name]]
  for (case in fx$cases) {
    a <- case$args
    x <- if (!is.null(a$x)) arr(a$x)
    axis <- if (!is.null(a$axis)) r_axis(a$axis)
    keepdims <- isTRUE(a$keepdims)
    got <- switch(case$name,
      sum = , mean = , max = , min = , prod = , std = , var = , logsumexp =
        get(paste0("k_", case$name))(x, axis = axis, keepdims = keepdims),
      argmax = k_argmax(x, axis = axis),
      any = k_any(k_greater(x, a$greater), axis = axis),
      all = k_all(k_greater(x, a$greater), axis = axis),
      sqrt_abs = k_sqrt(k_abs(x)),
      abs = , exp = , softplus = , softsign = , sigmoid = , hard_sigmoid = , tanh = , square =
        get(paste0("k_", case$name))(x),
      elu = k_elu(x, alpha = a$alpha),
      relu = k_relu(x, alpha = a$alpha, max_value = a$max_value),
      clip = k_clip(x, a$min_value, a$max_value),
      pow = k_pow(k_abs(x), a$a),
      l2_normalize = k_l2_normalize(x, axis = axis),
      softmax = k_softmax(x),
      categorical_crossentropy = k_categorical_crossentropy(arr(a$target), arr(a$output), from_logits = isTRUE(a$from_logits)),
      sparse_categorical_crossentropy = k_sparse_categorical_crossentropy(arr(a$target), arr(a$output)),
      binary_crossentropy = k_binary_crossentropy(arr(a$target), arr(a$output), from_logits = isTRUE(a$from_logits)),
      dot = k_dot(x, arr(a$y)),
      batch_dot = k_batch_dot(x, arr(a$y), axes = r_axis(a$axes)),
      transpose = k_transpose(x),
      permute_dimensions = k_permute_dimensions(x, r_axis(a$pattern)),
      concatenate = k_concatenate(list(x, x * 2), axis = axis),
      stack = k_stack(list(x, x * 2), axis = axis),
      expand_dims = k_expand_dims(x, axis = axis),
      squeeze = k_squeeze(k_expand_dims(x, -1), -1),
      repeat_elements = k_repeat_elements(x, a$rep, axis = axis),
      tile = k_tile(x, a$n),
      reshape = k_reshape(x, a$shape),
      batch_flatten = k_batch_flatten(x),
      one_hot = k_one_hot(arr(a$indices), a$num_classes),
      gather = k_gather(x, r_axis(a$indices)),
      switch = k_switch(k_greater(x, 0), x, x * 0.1),
      maximum = k_maximum(x, a$y),
      stop("no R call for ", case$name)
    )
    expected <- case$value
    expect_equal(as.numeric(got), as.numeric(expected), tolerance = 1e-5, label = paste(case$name, deparse(a)))
    expect_equal(length(dim(got)) > 1, length(dim(expected)) > 1, label = paste(case$name, "rank"))
  }
  K <- backend()
  expect_identical(K$mean, k_mean)
  expect_equal(K$epsilon(), 1e-7)
})

# R keras's mnist_antirectifier.R layer, as a lambda.
antirectifier <- function(x) {
  x <- x - k_mean(x, axis = 2, keepdims = TRUE)
  x <- k_l2_normalize(x, axis = 2)
  pos <- k_relu(x)
  neg <- k_relu(-x)
  k_concatenate(c(pos, neg), axis = 2)
}

expect_keras_training <- function(model, record, x, y, label) {
  expect_equal(unname(predict(model, x)), unname(record$initial_predictions), tolerance = 1e-5, label = paste(label, "predictions"))
  h <- fit(model, x, y, epochs = 2, batch_size = 8, shuffle = FALSE, verbose = 0)
  for (metric in names(record$history)) {
    expect_equal(h$metrics[[metric]], record$history[[metric]], tolerance = 1e-4, label = paste(label, metric))
  }
  final <- as_weight_list(record$final_weights)
  got <- get_weights(model)
  for (i in seq_along(final)) expect_equal(as.numeric(got[[i]]), as.numeric(final[[i]]), tolerance = 1e-4, label = paste(label, "weight", i))
}

test_that("a lambda layer, a custom loss and a custom metric train as in tf.keras over two epochs", {
  fx <- backend_fixtures()
  rec <- fx$models$antirectifier
  model <- keras_model_sequential() %>%
    layer_dense(6, input_shape = 4) %>%
    layer_lambda(antirectifier) %>%
    layer_dense(3, activation = "softmax")
  set_weights(model, as_weight_list(rec$initial_weights))
  compile(model, optimizer = optimizer_rmsprop(0.01), loss = "categorical_crossentropy", metrics = "accuracy")
  expect_keras_training(model, rec, fx$x, fx$y, "antirectifier")

  rec <- fx$models$custom_loss_metric
  model <- keras_model_sequential() %>%
    layer_dense(5, activation = "relu", input_shape = 4) %>%
    layer_dense(2)
  set_weights(model, as_weight_list(rec$initial_weights))
  custom_loss <- function(y_true, y_pred) k_mean(k_square(y_pred - y_true), axis = -1) + 0.1 * k_mean(k_abs(y_pred), axis = -1)
  compile(model, optimizer = optimizer_adam(0.01), loss = custom_loss,
          metrics = list(custom_metric("mean_pred", function(y_true, y_pred) k_mean(y_pred))))
  expect_keras_training(model, rec, fx$x, fx$y_reg, "custom loss")

  rec <- fx$models$gated_two_inputs
  a <- layer_input(shape = 4, name = "a")
  b <- layer_input(shape = 4, name = "b")
  gated <- layer_lambda(list(layer_dense(a, 3), layer_dense(b, 3)), function(t) t[[1]] * k_sigmoid(t[[2]]) + k_sum(t[[1]], axis = -1, keepdims = TRUE))
  model <- keras_model(list(a, b), layer_dense(gated, 3, activation = "softmax"))
  set_weights(model, as_weight_list(rec$initial_weights))
  compile(model, optimizer = optimizer_sgd(0.1, momentum = 0.5), loss = "categorical_crossentropy")
  expect_keras_training(model, rec, list(fx$x, fx$x_b), fx$y, "two inputs")
})

test_that("a loss reading the model's tensors (R keras's VAE loss) trains as in tf.keras", {
  fx <- backend_fixtures()
  rec <- fx$models$vae_deterministic
  x <- layer_input(shape = 4)
  h <- layer_dense(x, 6, activation = "relu")
  z_mean <- layer_dense(h, 2)
  z_log_var <- layer_dense(h, 2)
  z <- layer_lambda(list(z_mean, z_log_var), function(t) t[[1]] + 0.5 * k_exp(t[[2]] / 2))
  decoded <- z %>% layer_dense(6, activation = "relu") %>% layer_dense(4, activation = "sigmoid")
  vae <- keras_model(x, decoded)
  vae_loss <- function(x, x_decoded_mean) {
    xent_loss <- 4 * loss_binary_crossentropy(x, x_decoded_mean)
    kl_loss <- -0.5 * k_mean(1 + z_log_var - k_square(z_mean) - k_exp(z_log_var), axis = -1L)
    xent_loss + kl_loss
  }
  set_weights(vae, as_weight_list(rec$initial_weights))
  compile(vae, optimizer = optimizer_rmsprop(0.01), loss = vae_loss)
  expect_keras_training(vae, rec, fx$x, fx$x01, "vae")
  # A tensor of another model is not the loss's to read.
  other <- layer_dense(layer_input(shape = 4), 2)
  m <- keras_model(x, decoded)
  expect_error(compile(m, optimizer = "sgd", loss = function(y_true, y_pred) y_pred + k_mean(other)),
               "not a layer output of the model", class = "rustgpu_trace_error")
})

test_that("a sampling lambda (R keras's VAE) draws from the batch's shape, reproducibly from the seed", {
  x <- layer_input(shape = 4)
  z <- layer_lambda(x, function(arg) {
    z_mean <- arg[, 1:2]
    z_log_var <- arg[, 3:4]
    epsilon <- k_random_normal(shape = c(k_shape(z_mean)[[1]]), mean = 0, stddev = 1)
    z_mean + k_exp(z_log_var / 2) * epsilon
  })
  model <- keras_model(x, z)
  expect_equal(model$output_shape, list(NULL, 2L))
  # k_shape(z_mean)[[1]] is the second size (Python's index), 2: one draw per feature.
  draws <- t(replicate(200, as.numeric(predict(model, matrix(c(0, 0, 0, 0), 1)))))
  expect_equal(mean(draws), 0, tolerance = 0.15)
  expect_equal(sd(as.numeric(draws)), 1, tolerance = 0.15)
  # The same seed, the same draws.
  set.seed(1)
  a <- predict(model, matrix(0, 3, 4))
  set.seed(1)
  expect_equal(predict(model, matrix(0, 3, 4)), a)
})

test_that("functions that cannot be traced are classed errors that say why", {
  model <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
  branchy <- function(x) if (x > 0) x else -x
  expect_error(model %>% layer_lambda(branchy), "use k_switch", class = "rustgpu_trace_error")
  expect_error(layer_lambda(f = 3), "R function", class = "rustgpu_value_error")
  expect_error(keras_model_sequential() %>% layer_dense(2, input_shape = 3) %>% layer_lambda(function(x) k_dot(x, matrix(1, 3, 3))),
               "cannot multiply", class = "rustgpu_value_error")
  expect_error(k_mean(matrix(1:4, 2), axis = 3), "outside a tensor of rank 2", class = "rustgpu_value_error")
  m <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
  expect_error(compile(m, optimizer = "sgd", loss = function(y_true, y_pred) stop("boom")), "could not be traced: boom",
               class = "rustgpu_trace_error")
})

test_that("models with lambda layers save and load without the R function, and replicas equal the template", {
  make <- function() {
    set.seed(8)
    keras_model_sequential() %>%
      layer_dense(6, input_shape = 4) %>%
      layer_lambda(antirectifier) %>%
      layer_dense(2, activation = "softmax")
  }
  x <- matrix(rnorm(40), 10)
  y <- to_categorical(rep(0:1, 5))
  model <- make()
  path <- tempfile(fileext = ".h5")
  on.exit(unlink(path))
  save_model_hdf5(model, path)
  expect_equal(predict(load_model_hdf5(path), x), predict(model, x), tolerance = 1e-6)
  custom <- function(y_true, y_pred) k_mean(k_square(y_pred - y_true), axis = -1)
  compile(model, optimizer = optimizer_sgd(0.1), loss = custom)
  template <- make()
  use_virtual_gpus(2, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0), add = TRUE)
  parallel <- multi_gpu_model(template, gpus = 2)
  compile(parallel, optimizer = optimizer_sgd(0.1), loss = custom)
  h1 <- fit(model, x, y, epochs = 2, batch_size = 10, shuffle = FALSE, verbose = 0)
  h2 <- fit(parallel, x, y, epochs = 2, batch_size = 10, shuffle = FALSE, verbose = 0)
  expect_equal(h2$metrics$loss, h1$metrics$loss, tolerance = 1e-6)
  for (i in seq_along(get_weights(model))) expect_equal(get_weights(template)[[i]], get_weights(model)[[i]], tolerance = 1e-5)
})

test_that("a model compiled with R-written losses and metrics loads with custom_objects, as R keras's", {
  set.seed(4)
  model <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
  my_loss <- function(y_true, y_pred) k_mean(k_square(y_pred - y_true), axis = -1)
  mean_pred <- function(y_true, y_pred) k_mean(y_pred)
  compile(model, optimizer = "sgd", loss = my_loss, metrics = list(custom_metric("mean_pred", mean_pred)))
  x <- matrix(runif(30), 10)
  y <- matrix(runif(20), 10)
  fit(model, x, y, epochs = 1, verbose = 0)
  path <- tempfile(fileext = ".h5")
  on.exit(unlink(path))
  save_model_hdf5(model, path)
  expect_error(load_model_hdf5(path), "custom_objects = list\\(my_loss = ", class = "rustgpu_value_error")
  loaded <- load_model_hdf5(path, custom_objects = list(my_loss = my_loss, mean_pred = mean_pred))
  expect_equal(evaluate(loaded, x, y, verbose = 0), evaluate(model, x, y, verbose = 0), tolerance = 1e-6)
  expect_equal(predict(load_model_hdf5(path, compile = FALSE), x), predict(model, x), tolerance = 1e-6)
  expect_error(load_model_hdf5(path, custom_objects = list(my_loss)), "named list", class = "rustgpu_value_error")
})

test_that("a step whose traced values would not fit in memory is a resource error, not an abort", {
  model <- keras_model_sequential() %>%
    layer_lambda(function(x) k_sum(k_tile(x, c(1, 1e5)), axis = 2, keepdims = TRUE), input_shape = 10)
  expect_equal(model$output_shape, list(NULL, 1L))
  # 20,000 rows of a (10 x 100,000) intermediate: 80 GB.
  expect_error(predict(model, matrix(0, 20000, 10), batch_size = 20000), class = "rustgpu_resource_error")
  expect_equal(dim(predict(model, matrix(1, 2, 10))), c(2, 1))
})

test_that("R-written losses and metrics apply per output, each traced for its output's shape", {
  set.seed(9)
  input <- layer_input(shape = 3)
  hidden <- layer_dense(input, 4)
  model <- keras_model(input, list(layer_dense(hidden, 2, name = "wide"), layer_dense(hidden, 1, name = "narrow")))
  own_mse <- function(y_true, y_pred) k_mean(k_square(y_pred - y_true), axis = -1)
  compile(model, optimizer = "sgd", loss = list(own_mse, "mse"),
          metrics = list(custom_metric("mean_pred", function(y_true, y_pred) k_mean(y_pred, axis = -1))))
  x <- matrix(runif(30), 10)
  y <- list(matrix(runif(20), 10), runif(10))
  h <- fit(model, x, y, epochs = 1, batch_size = 10, verbose = 0)
  expect_named(h$metrics, c("loss", "wide_loss", "narrow_loss", "wide_mean_pred", "narrow_mean_pred"))
  before <- predict(model, x)
  score <- evaluate(model, x, y, batch_size = 10, verbose = 0)
  expect_equal(score$wide_mean_pred, mean(before[[1]]), tolerance = 1e-6)
  expect_equal(score$narrow_mean_pred, mean(before[[2]]), tolerance = 1e-6)
  expect_equal(score$wide_loss, mean((before[[1]] - y[[1]])^2), tolerance = 1e-6)
})

test_that("backend settings accept what rustgpu computes in and refuse the rest", {
  expect_equal(k_image_data_format(), "channels_last")
  expect_invisible(k_set_image_data_format("channels_last"))
  expect_error(k_set_image_data_format("NCHW"), "\"channels_last\" or \"channels_first\"", class = "rustgpu_value_error")
  expect_invisible(k_set_floatx("float32"))
  expect_error(k_set_floatx("float16"), "float32", class = "rustgpu_value_error")
  expect_equal(use_implementation("tensorflow"), "tensorflow")
  expect_equal(use_backend(), "tensorflow")
  expect_error(use_backend("mxnet"), "`backend` must be one of", class = "rustgpu_value_error")
})

test_that("k_sin() and k_cos() compute on arrays and in a lambda layer", {
  x <- matrix(c(-2, -0.3, 0, 0.9, 2.5, 4), 2)
  expect_equal(k_sin(x), sin(x), tolerance = 1e-6)
  expect_equal(k_cos(x), cos(x), tolerance = 1e-6)
  input <- layer_input(shape = 3)
  model <- keras_model(input, layer_lambda(input, function(t) k_sin(t) * k_cos(t) + sin(t)))
  expect_equal(predict(model, x), sin(x) * cos(x) + sin(x), tolerance = 1e-6)
})

test_that("constant arrays, placeholders and tensor tests", {
  expect_equal(k_zeros(c(2, 3)), array(0, c(2, 3)))
  expect_equal(k_ones(list(2, 2, 1)), array(1, c(2, 2, 1)))
  expect_equal(k_eye(3), diag(3))
  expect_equal(k_eye(c(2, 3)), diag(1, 2, 3))
  expect_error(k_zeros(c(2, -1)), class = "rustgpu_value_error")
  expect_error(k_ones(c(1e6, 1e6)), class = "rustgpu_value_error", regexp = "more than an R array holds")
  p <- k_placeholder(shape = list(NULL, 4, 5), name = "features")
  expect_true(k_is_placeholder(p))
  expect_true(k_is_keras_tensor(p))
  expect_equal(k_int_shape(p), list(NULL, 4L, 5L))
  model <- keras_model(p, layer_dense(p, 2))
  expect_equal(dim(predict(model, array(1, c(3, 4, 5)))), c(3L, 4L, 2L))
  expect_false(k_is_tensor(k_ones(2)))
  expect_false(k_is_placeholder(layer_dense(p, 2)))
  expect_identical(k_identity(3), 3)
  expect_equal(k_placeholder(ndim = 3)$shape, c(0L, 0L))
  expect_equal(k_placeholder(shape = list(NULL, NULL, 5))$shape, c(0L, 5L))
  expect_error(k_placeholder(), class = "rustgpu_value_error", regexp = "Give `shape`")
})

test_that("the learning phase is recorded; k_clear_session() restarts layer names; use_session_with_seed() reproduces", {
  withr::local_options(rustgpu.learning_phase = NULL)
  expect_equal(k_learning_phase(), 0L)
  k_set_learning_phase(1)
  expect_equal(k_learning_phase(), 1L)
  expect_error(k_set_learning_phase(2), class = "rustgpu_value_error")
  k_clear_session()
  expect_equal(layer_dense(units = 1)$name, "dense")
  expect_equal(layer_dense(units = 1)$name, "dense_1")
  make <- function() {
    use_session_with_seed(7, quiet = TRUE)
    model <- keras_model_sequential() %>% layer_dense(3, input_shape = 2) %>% layer_dropout(0.5) %>% layer_dense(1)
    compile(model, optimizer = "sgd", loss = "mse")
    fit(model, matrix(runif(40), 20), runif(20), epochs = 2, verbose = 0)
    get_weights(model)
  }
  expect_equal(make(), make())
  expect_message(use_session_with_seed(42), "Set session seed to 42")
})

test_that("k_arange(), k_repeat(), k_reverse() (also traced), k_cumsum() and k_cumprod()", {
  expect_equal(as.vector(k_arange(5)), 0:4)
  expect_equal(as.vector(k_arange(2, 8, 3)), c(2L, 5L))
  expect_equal(as.vector(k_arange(1, 0, -0.25, dtype = "float32")), c(1, 0.75, 0.5, 0.25))
  x <- matrix(1:6, 2)
  r <- k_repeat(x, 3)
  expect_equal(dim(r), c(2L, 3L, 3L))
  expect_equal(r[2, 3, ], c(2, 4, 6))
  expect_equal(k_reverse(x, 2), x[, 3:1])
  expect_equal(k_reverse(x, c(1, 2)), x[2:1, 3:1])
  input <- layer_input(shape = c(3, 2))
  model <- keras_model(input, layer_lambda(input, function(t) k_reverse(t, 2)))
  a <- array(runif(12), c(2, 3, 2))
  expect_equal(predict(model, a), a[, 3:1, , drop = FALSE], tolerance = 1e-6)
  expect_error(keras_model(input, layer_lambda(input, function(t) k_reverse(t, 1))), regexp = "batch axis")
  expect_equal(k_cumsum(x, axis = 2), t(apply(x, 1, cumsum)))
  expect_equal(k_cumprod(x), apply(x, 2, cumprod))
  expect_equal(k_cumsum(1:4), c(1L, 3L, 6L, 10L))
  expect_error(keras_model(input, layer_lambda(input, function(t) k_cumsum(t))), class = "rustgpu_trace_error")
})

test_that("k_gradients() and k_function() give a model's gradients as finite differences do, in inference", {
  set.seed(3)
  input <- layer_input(shape = c(4, 4, 2))
  conv <- input %>% layer_conv_2d(3, 3, padding = "same", activation = "tanh", name = "conv")
  normed <- conv %>% layer_batch_normalization(name = "bn") %>% layer_dropout(0.5)
  out <- normed %>% layer_global_average_pooling_2d() %>% layer_dense(2)
  model <- keras_model(input, out)
  bn <- get_weights(get_layer(model, "bn"))
  set_weights(get_layer(model, "bn"), list(bn[[1]] + 0.5, bn[[2]] - 0.2, bn[[3]] + 0.3, bn[[4]] * 2))
  loss <- k_sum(k_square(normed)) / k_prod(k_cast(k_shape(normed), "float32")) + 2 * k_mean(model$output)
  grads <- k_gradients(loss, model$input)[[1]]
  scaled <- grads / k_maximum(k_mean(k_abs(grads)), 1e-7)
  at_conv <- k_gradients(loss, get_layer(model, "conv")$output)[[1]]
  f <- k_function(list(model$input), list(loss, grads, scaled, at_conv))
  x <- array(rnorm(2 * 4 * 4 * 2), c(2, 4, 4, 2))
  res <- f(list(x))
  inner <- keras_model(input, list(normed, out))
  value <- function(x) {
    p <- predict(inner, x)
    sum(p[[1]]^2) / length(p[[1]]) + 2 * mean(p[[2]])
  }
  expect_equal(as.numeric(res[[1]]), value(x), tolerance = 1e-5)
  numeric <- x
  for (i in seq_along(x)) {
    up <- x; up[i] <- up[i] + 1e-2
    down <- x; down[i] <- down[i] - 1e-2
    numeric[i] <- (value(up) - value(down)) / 2e-2
  }
  expect_equal(dim(res[[2]]), dim(x))
  expect_equal(res[[2]], numeric, tolerance = 1e-2)
  expect_equal(res[[3]], res[[2]] / max(mean(abs(res[[2]])), 1e-7), tolerance = 1e-5)
  expect_equal(dim(res[[4]]), c(2L, 4L, 4L, 3L))
  expect_error(k_gradients(k_sum(k_ones(3)), input), class = "rustgpu_value_error")
  expect_error(f(list(x, x)), "list of 1 array", class = "rustgpu_value_error")
  expect_error(f(list(array(0, c(2, 4, 5, 2)))), "expects \\(n, 4, 4, 2\\)", class = "rustgpu_value_error")
  x[3] <- NA
  expect_error(f(list(x)), "inputs\\[\\[1\\]\\]", class = "rustgpu_value_error")
})

test_that("a model input stacked onto constants, and samples of layer outputs, as style transfer uses them", {
  set.seed(5)
  base <- k_variable(array(runif(32 * 32 * 3), c(1, 32, 32, 3)))
  combination <- k_placeholder(c(1, 32, 32, 3))
  stacked <- k_concatenate(list(base, combination), axis = 1)
  model <- application_vgg16(input_tensor = stacked, weights = NULL, include_top = FALSE)
  expect_identical(model$input$id, combination$id)
  features <- get_layer(model, "block1_conv2")$output
  content <- k_mean(k_square(features[2, , , ] - features[1, , , ]))
  smooth <- k_mean(k_square(combination[, 1:31, , ] - combination[, 2:32, , ]))
  loss <- content + 0.5 * smooth
  f <- k_function(list(combination), list(loss, k_gradients(loss, combination)[[1]]))
  x <- array(runif(32 * 32 * 3), c(1, 32, 32, 3))
  res <- f(list(x))
  conv <- keras_model(model$input, features)
  value <- function(x) {
    feats <- predict(conv, x)  # two rows: the constant image, then x
    mean((feats[2, , , ] - feats[1, , , ])^2) + 0.5 * mean((x[1, 1:31, , ] - x[1, 2:32, , ])^2)
  }
  expect_equal(as.numeric(res[[1]]), value(x), tolerance = 1e-5)
  for (i in c(1, 517, 3000)) {
    up <- x; up[i] <- up[i] + 0.05
    down <- x; down[i] <- down[i] - 0.05
    expect_equal(res[[2]][i], (value(up) - value(down)) / 0.1, tolerance = 1e-2)
  }
  expect_error(f(list(x, x)), class = "rustgpu_value_error")
})
