test_that("sequential models build, name layers in order and count parameters like Keras", {
  model <- keras_model_sequential(name = "net") %>%
    layer_dense(16, activation = "relu", input_shape = 4) %>%
    layer_dropout(0.2) %>%
    layer_dense(3, activation = "softmax")
  expect_output(text <- summary(model), "Total params")
  expect_match(text, "Model: \"net\"")
  expect_match(text, "Total params: 131")
  expect_match(text, "Trainable params: 131")
  lines <- strsplit(text, "\n")[[1]]
  dense_lines <- grep("(Dense)", lines, fixed = TRUE, value = TRUE)
  expect_length(dense_lines, 2)
  # The first layer added gets the first name.
  first <- sub(" .*", "", trimws(dense_lines[[1]]))
  second <- sub(" .*", "", trimws(dense_lines[[2]]))
  expect_true(first == "dense" || as.integer(sub("dense_", "", first)) < as.integer(sub("dense_", "", second)))
  expect_match(dense_lines[[1]], "(None, 16)", fixed = TRUE)
  expect_output(print(model), "Non-trainable params: 0")
})

test_that("layers can be listed up front and models build lazily from data", {
  model <- keras_model_sequential(layers = list(layer_dense(units = 5, activation = "tanh"), layer_dense(units = 2)))
  expect_match(format(model), "(unbuilt)", fixed = TRUE)
  out <- predict(model, matrix(runif(12), 4, 3))
  expect_equal(dim(out), c(4L, 2L))
  expect_equal(vapply(get_weights(model), function(w) length(w), numeric(1)), c(15, 5, 10, 2))
})

test_that("get_weights/set_weights use Keras's layouts and round-trip", {
  model <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
  w <- get_weights(model)
  expect_equal(dim(w[[1]]), c(3L, 2L))
  expect_equal(length(w[[2]]), 2)
  w[[1]][] <- matrix(1:6, 3, 2)
  w[[2]][] <- c(10, 20)
  set_weights(model, w)
  expect_equal(get_weights(model), w)
  # x %*% kernel + bias, with the kernel as (inputs, units).
  x <- matrix(c(1, 0, 2, 1, 1, 1), 2, 3, byrow = TRUE)
  expect_equal(predict(model, x), x %*% w[[1]] + matrix(c(10, 20), 2, 2, byrow = TRUE))
})

test_that("glorot_uniform initial weights stay within Keras's limit and set.seed() reproduces them", {
  set.seed(7)
  a <- keras_model_sequential() %>% layer_dense(64, input_shape = 100)
  set.seed(7)
  b <- keras_model_sequential() %>% layer_dense(64, input_shape = 100)
  limit <- sqrt(6 / (100 + 64))
  kernel <- get_weights(a)[[1]]
  expect_true(all(abs(kernel) <= limit))
  expect_gt(max(abs(kernel)), 0.95 * limit)
  expect_equal(get_weights(a), get_weights(b))
  expect_true(all(get_weights(a)[[2]] == 0))
})

test_that("pop_layer removes the last layer and its weights", {
  model <- keras_model_sequential() %>%
    layer_dense(4, input_shape = 2) %>%
    layer_dense(1)
  pop_layer(model)
  expect_length(get_weights(model), 2)
  expect_equal(dim(predict(model, matrix(0, 1, 2))), c(1L, 4L))
})

test_that("to_categorical makes one-hot rows", {
  expect_equal(to_categorical(c(0, 2, 1)), rbind(c(1, 0, 0), c(0, 0, 1), c(0, 1, 0)))
  expect_equal(dim(to_categorical(c(1, 1), num_classes = 4)), c(2L, 4L))
})

test_that("both pipes work", {
  m1 <- keras_model_sequential() |> layer_dense(2, input_shape = 2)
  m2 <- keras_model_sequential() %>% layer_dense(2, input_shape = 2)
  expect_length(get_weights(m1), 2)
  expect_length(get_weights(m2), 2)
})

test_that("get_layer finds layers by name or index and reads and writes their weights", {
  model <- keras_model_sequential() %>%
    layer_dense(4, input_shape = 2, name = "hidden") %>%
    layer_dropout(0.1) %>%
    layer_dense(1, name = "out")
  hidden <- get_layer(model, "hidden")
  expect_equal(hidden$class_name, "Dense")
  expect_equal(hidden$count_params, 12)
  expect_equal(get_layer(model, index = 3)$name, "out")
  expect_equal(get_layer(model, index = -1)$name, "out")
  expect_length(get_weights(get_layer(model, index = 2)), 0)
  w <- get_weights(hidden)
  expect_equal(dim(w[[1]]), c(2L, 4L))
  w[[2]][] <- 5
  set_weights(hidden, w)
  expect_equal(as.numeric(get_weights(model)[[2]]), rep(5, 4))
  expect_output(print(hidden), "<Dense layer \"hidden\">: output \\(None, 4\\), 12 params")
  expect_error(get_layer(model, "nope"), "hidden, dropout", class = "rustgpu_value_error")
  expect_error(get_layer(model, index = 4), "`index`", class = "rustgpu_value_error")
  expect_error(get_layer(model), "exactly one", class = "rustgpu_value_error")
  expect_error(set_weights(hidden, w[1]), "list of 2 arrays", class = "rustgpu_value_error")
})

test_that("get_config describes the model as Keras does and from_config rebuilds it", {
  model <- keras_model_sequential(name = "cfg") %>%
    layer_conv_2d(4, c(3, 3), padding = "same", activation = "relu", input_shape = c(6, 6, 1)) %>%
    layer_flatten() %>%
    layer_dense(2, activation = "softmax")
  config <- get_config(model)
  expect_equal(config$class_name, "Sequential")
  expect_equal(config$config$name, "cfg")
  layers <- config$config$layers
  expect_equal(vapply(layers, `[[`, "", "class_name"), c("InputLayer", "Conv2D", "Flatten", "Dense"))
  expect_equal(layers[[2]]$config$padding, "same")
  expect_equal(unlist(layers[[2]]$config$kernel_size), c(3, 3))
  twin <- from_config(config)
  expect_equal(format(twin), format(model))
  # Edited configs work too, with vectors where Keras has lists.
  config$config$layers[[4]]$config$units <- 5
  config$config$layers[[2]]$config$kernel_size <- c(2, 2)
  wider <- from_config(config)
  expect_equal(dim(predict(wider, array(0, c(1, 6, 6, 1)))), c(1L, 5L))
  a <- layer_input(shape = 2)
  functional <- keras_model(a, layer_add(list(a %>% layer_dense(2), a)))
  expect_equal(get_config(functional)$class_name, "Functional")
  expect_equal(format(from_config(get_config(functional))), format(functional))
  expect_error(from_config("nope"), "`config`", class = "rustgpu_value_error")
})

test_that("model_to_json() and model_from_json() round-trip the architecture; predict_classes() as Keras 2.2", {
  model <- keras_model_sequential() %>% layer_dense(4, activation = "relu", input_shape = 3) %>% layer_dense(3, activation = "softmax")
  json <- model_to_json(model)
  expect_true(is.character(json) && grepl("\"class_name\": ?\"Sequential\"", json))
  twin <- model_from_json(json)
  expect_equal(format(twin), format(model))
  set_weights(twin, get_weights(model))
  x <- matrix(runif(12), 4)
  expect_equal(predict(twin, x), predict(model, x))
  classes <- predict_classes(model, x)
  expect_identical(classes, max.col(predict(model, x), ties.method = "first") - 1L)
  binary <- keras_model_sequential() %>% layer_dense(1, activation = "sigmoid", input_shape = 3)
  expect_identical(predict_classes(binary, x), as.integer(predict(binary, x) > 0.5))
  expect_error(model_from_json("{"), class = "rustgpu_error")
})

test_that("regularizers add their penalty to the reported loss and travel in configs", {
  set.seed(4)
  x <- matrix(rnorm(30), 10, 3)
  y <- rowSums(x)
  model <- keras_model_sequential() %>%
    layer_dense(4, kernel_regularizer = regularizer_l2(0.1), bias_regularizer = regularizer_l1(0.05),
                bias_initializer = initializer_constant(0.5), input_shape = 3) %>%
    layer_dense(1)
  compile(model, optimizer = "sgd", loss = "mse")
  w <- get_weights(model)
  penalty <- 0.1 * sum(w[[1]]^2) + 0.05 * sum(abs(w[[2]]))
  plain <- mean((predict(model, x) - y)^2)
  expect_equal(evaluate(model, x, y, verbose = 0)[["loss"]], plain + penalty, tolerance = 1e-5)
  restored <- from_config(get_config(model))
  compile(restored, optimizer = "sgd", loss = "mse")
  set_weights(restored, w)
  expect_equal(evaluate(restored, x, y, verbose = 0), evaluate(model, x, y, verbose = 0))
  expect_output(print(regularizer_l1_l2()), "l1 = 0.01, l2 = 0.01")
  expect_error(layer_dense(keras_model_sequential(), 2, kernel_regularizer = "l2"), "`kernel_regularizer`", class = "rustgpu_value_error")
  # An activity penalty: on the layer's output, divided by the rows, in the reported loss.
  active <- keras_model_sequential() %>% layer_dense(2, input_shape = 3, activity_regularizer = regularizer_l2(0.1)) %>%
    layer_activity_regularization(l1 = 0.05) %>% layer_dense(1)
  compile(active, optimizer = "sgd", loss = "mse")
  wa <- get_weights(active)
  hidden <- sweep(x %*% wa[[1]], 2, wa[[2]], "+")
  plain <- mean((predict(active, x) - y)^2)
  expect_equal(evaluate(active, x, y, verbose = 0)[["loss"]], plain + (0.1 * sum(hidden^2) + 0.05 * sum(abs(hidden))) / nrow(x),
               tolerance = 1e-5)
  use_virtual_gpus(2, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0))
  parallel <- multi_gpu_model(active, gpus = 2)
  compile(parallel, optimizer = "sgd", loss = "mse")
  expect_equal(evaluate(parallel, x, y, verbose = 0), evaluate(active, x, y, verbose = 0), tolerance = 1e-6)
  expect_error(layer_activity_regularization(l1 = -1), "`l1`", class = "rustgpu_value_error")
})

test_that("constraints project the weights after every update, on one device and on replicas, and travel in files", {
  set.seed(6)
  x <- matrix(rnorm(120), 40, 3)
  y <- to_categorical(rep(0:2, length.out = 40), 3)
  net <- function() {
    keras_model_sequential() %>%
      layer_dense(6, activation = "relu", input_shape = 3, kernel_constraint = constraint_maxnorm(0.3),
                  bias_constraint = constraint_nonneg(), bias_initializer = initializer_constant(-0.1)) %>%
      layer_dense(3, activation = "softmax", kernel_constraint = constraint_unitnorm(axis = 1))
  }
  one <- net()
  compile(one, optimizer = optimizer_sgd(0.5), loss = "categorical_crossentropy")
  fit(one, x, y, epochs = 2, batch_size = 8, verbose = 0, shuffle = FALSE)
  w <- get_weights(one)
  expect_true(all(sqrt(colSums(w[[1]]^2)) <= 0.3 + 1e-6))
  expect_true(all(w[[2]] >= 0))
  expect_equal(sqrt(rowSums(w[[3]]^2)), rep(1, nrow(w[[3]])), tolerance = 1e-5)
  # Replicas: the same updates and projections as the template alone.
  use_virtual_gpus(2, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0))
  set.seed(6)
  a <- net(); b <- net()
  set_weights(b, get_weights(a))
  compile(a, optimizer = optimizer_sgd(0.5), loss = "categorical_crossentropy")
  fit(a, x, y, epochs = 2, batch_size = 8, verbose = 0, shuffle = FALSE)
  parallel <- multi_gpu_model(b, gpus = 2)
  compile(parallel, optimizer = optimizer_sgd(0.5), loss = "categorical_crossentropy")
  fit(parallel, x, y, epochs = 2, batch_size = 8, verbose = 0, shuffle = FALSE)
  expect_equal(get_weights(b), get_weights(a), tolerance = 1e-5)
  # Configs and files keep them.
  path <- tempfile(fileext = ".h5")
  save_model_hdf5(one, path)
  config <- get_config(load_model_hdf5(path))$config$layers  # [[1]] is the InputLayer
  expect_equal(config[[2]]$config$kernel_constraint$class_name, "MaxNorm")
  expect_equal(config[[2]]$config$kernel_constraint$config$max_value, 0.3)
  expect_equal(config[[2]]$config$bias_constraint$class_name, "NonNeg")
  expect_equal(config[[3]]$config$kernel_constraint$config$axis, 1)
  embedding <- keras_model_sequential() %>% layer_embedding(5, 2, input_length = 3, embeddings_constraint = constraint_nonneg())
  expect_equal(get_config(from_config(get_config(embedding)))$config$layers[[2]]$config$embeddings_constraint$class_name, "NonNeg")
  expect_output(print(constraint_minmaxnorm(0.5, 1, rate = 0.5, axis = c(0, 1))), "MinMaxNorm\\(min_value = 0.5; max_value = 1; rate = 0.5; axis = 0, 1\\)")
  expect_error(layer_dense(keras_model_sequential(), 2, kernel_constraint = "maxnorm"), "`kernel_constraint`", class = "rustgpu_value_error")
  expect_error(constraint_maxnorm(-1), "`max_value`", class = "rustgpu_value_error")
  expect_error(constraint_minmaxnorm(2, 1), "`max_value`", class = "rustgpu_value_error")
  expect_error(constraint_unitnorm(axis = 0.5), "`axis`", class = "rustgpu_value_error")
  expect_error(keras_model_sequential() %>% layer_dense(2, input_shape = 3, kernel_constraint = constraint_unitnorm(axis = 3)),
               "out of range", class = "rustgpu_value_error")
})

test_that("model$layers, $input_shape, $output_shape, $input and $output as in R keras", {
  model <- keras_model_sequential() %>% layer_dense(4, input_shape = 3, name = "a") %>% layer_dense(2, name = "b")
  expect_equal(vapply(model$layers, function(l) l$name, ""), c("a", "b"))
  expect_equal(model$input_shape, list(NULL, 3L))
  expect_equal(model$output_shape, list(NULL, 2L))
  # A sequential model's input and output tensors: an intermediate model shares its layers.
  expect_equal(model$input$shape, 3L)
  inner <- keras_model(model$input, get_layer(model, "a")$output)
  x3 <- matrix(runif(12), 4, 3)
  w <- get_weights(model)
  expect_equal(predict(inner, x3), sweep(x3 %*% w[[1]], 2, w[[2]], "+"), tolerance = 1e-6)
  expect_identical(get_layer(model, "b")$input, get_layer(model, "a")$output)
  expect_identical(model$output, get_layer(model, "b")$output)
  set_weights(model, lapply(w, function(a) a * 2))
  expect_equal(get_weights(inner), lapply(w[1:2], function(a) a * 2))
  expect_error(keras_model_sequential()$input, "no input shape", class = "rustgpu_state_error")
  x <- layer_input(shape = 3)
  y <- x %>% layer_dense(2)
  f <- keras_model(x, y)
  expect_identical(f$input, x)
  expect_identical(f$output, y)
  expect_identical(f$inputs, list(x))
  expect_null(model$no_such_attribute)
  # Several tensors combine with c() into a list, as R keras's do; inputs take a dtype.
  ids <- layer_input(shape = 5, dtype = "int32", name = "ids")
  aux <- layer_input(batch_shape = list(NULL, 2), name = "aux")
  expect_equal(aux$shape, 2L)
  both <- c(ids, aux)
  expect_length(both, 2)
  merged <- layer_concatenate(c(ids %>% layer_embedding(10, 3) %>% layer_flatten(), aux))
  m2 <- keras_model(inputs = c(ids, aux), outputs = merged)
  expect_equal(dim(predict(m2, list(matrix(1:5, 1), matrix(0, 1, 2)))), c(1L, 17L))
  expect_error(layer_input(shape = 2, dtype = "float"), "`dtype`", class = "rustgpu_value_error")
})

test_that("layer$trainable reads and sets a layer's frozen state, as on a Keras layer", {
  set.seed(3)
  base <- keras_model_sequential() %>% layer_dense(4, input_shape = 3, name = "a") %>% layer_dense(2, name = "b")
  expect_true(get_layer(base, "a")$trainable)
  for (layer in base$layers) layer$trainable <- FALSE
  expect_false(get_layer(base, "a")$trainable)
  expect_false(get_layer(base, "b")$trainable)
  compile(base, optimizer = "sgd", loss = "mse")
  before <- get_weights(base)
  fit(base, matrix(runif(12), 4, 3), matrix(runif(8), 4, 2), epochs = 1, verbose = 0)
  expect_equal(get_weights(base), before)  # every layer frozen: nothing trains
  b <- get_layer(base, "b")
  b$trainable <- TRUE
  compile(base, optimizer = "sgd", loss = "mse")
  fit(base, matrix(runif(12), 4, 3), matrix(runif(8), 4, 2), epochs = 1, verbose = 0)
  after <- get_weights(base)
  expect_equal(after[1:2], before[1:2])
  expect_false(isTRUE(all.equal(after[3:4], before[3:4])))
  # On a layer made without a model: the state travels into the models made with it.
  d <- layer_dense(units = 2)
  d$trainable <- FALSE
  expect_false(d$trainable)
  a <- get_layer(base, "a")
  expect_error(a$name <- "z", "only `trainable`", class = "rustgpu_value_error")
})

test_that("model_to_yaml() and model_from_yaml() round-trip the architecture, one-element lists included", {
  model <- keras_model_sequential() %>%
    layer_conv_1d(filters = 2, kernel_size = 3, input_shape = c(10, 1)) %>%
    layer_global_average_pooling_1d() %>%
    layer_dense(1, activation = "sigmoid")
  yaml_string <- model_to_yaml(model)
  expect_match(yaml_string, "class_name: Conv1D")
  expect_match(yaml_string, "use_bias: true")
  twin <- model_from_yaml(yaml_string)
  expect_equal(model_to_json(twin), model_to_json(model))
  expect_error(model_from_yaml("a: [1, 2"), class = "rustgpu_value_error", regexp = "not valid YAML")
  expect_error(model_from_yaml(3), class = "rustgpu_value_error")
})

test_that("clone_model() makes the architecture anew, with its own weights", {
  model <- keras_model_sequential() %>% layer_dense(4, activation = "relu", input_shape = 3) %>% layer_dense(1)
  twin <- clone_model(model)
  expect_equal(model_to_json(twin), model_to_json(model))
  expect_false(isTRUE(all.equal(get_weights(twin), get_weights(model))))
  set_weights(twin, get_weights(model))
  x <- matrix(runif(6), 2)
  expect_equal(predict(twin, x), predict(model, x))
  before <- get_weights(model)
  compile(twin, optimizer = "sgd", loss = "mse")
  fit(twin, x, c(1, 2), epochs = 1, verbose = 0)
  expect_equal(get_weights(model), before)  # training the clone leaves the original alone
  expect_false(isTRUE(all.equal(get_weights(twin), before)))
  expect_error(clone_model(model, input_tensors = list()), class = "rustgpu_value_error")
  expect_true(is_keras_available())
  expect_true(is_keras_available("2.2.4"))
  expect_false(is_keras_available("3.0"))
})

test_that("summary() keeps its columns aligned for long layer names, widening them", {
  model <- keras_model_sequential() %>%
    layer_dense(3, input_shape = 2, name = "a_dense_layer_with_a_name_longer_than_its_column") %>%
    layer_dense(1, name = "short")
  lines <- strsplit(format(model), "\n")[[1]]
  rows <- grep("\\(Dense\\)", lines, value = TRUE)
  expect_length(rows, 2)
  expect_match(rows[1], "a_dense_layer_with_a_name_longer_than_its_column (Dense) (None, 3)", fixed = TRUE)
  # The shapes and the parameter counts start in the same columns on every row and the header.
  header <- grep("Layer \\(type\\)", lines, value = TRUE)
  at <- regexpr("Param #", header)
  expect_identical(substr(rows, at, at + 1), c("9 ", "4 "))
  expect_identical(regexpr("\\(None", rows)[[2]], regexpr("Output Shape", header)[[1]])
  # Rules one wider than the header, as for short names.
  expect_identical(unique(nchar(grep("^[_=]+$", lines, value = TRUE))), nchar(header) + 1L)
})
