# Keras's HDF5 formats: round trips, interop with files tf-keras wrote
# (tests/fixtures/make_h5_fixtures.py), and failures that must lose nothing.

every_layer_model <- function(dropout = 0.2) {
  keras_model_sequential() %>%
    layer_conv_2d(3, 3, padding = "same", input_shape = c(6, 6, 2)) %>%
    layer_batch_normalization() %>%
    layer_activation("relu") %>%
    layer_max_pooling_2d() %>%
    layer_conv_2d(2, 2, activation = "tanh") %>%
    layer_flatten() %>%
    layer_dropout(dropout) %>%
    layer_dense(5, activation = "elu") %>%
    layer_activation("linear") %>%
    layer_dense(3, activation = "softmax")
}

image_data <- function(n = 12) {
  set.seed(8)
  list(x = array(rnorm(n * 72), c(n, 6, 6, 2)), y = to_categorical(seq_len(n) %% 3, 3))
}

h5_fixture <- function(name) test_path("..", "fixtures", "h5", name)

test_that("a model round-trips with every layer type, its predictions and its training setup", {
  d <- image_data()
  model <- every_layer_model()
  compile(model, optimizer = optimizer_adam(0.01), loss = "categorical_crossentropy", metrics = "accuracy")
  fit(model, d$x, d$y, epochs = 1, verbose = 0)
  path <- tempfile(fileext = ".h5")
  save_model_hdf5(model, path)
  restored <- load_model_hdf5(path)
  expect_identical(predict(restored, d$x), predict(model, d$x))
  expect_equal(format(restored), format(model))
  expect_true(restored$compiled)
  expect_equal(restored$metric_names, "accuracy")
  # The optimizer state comes back: one more epoch on each gives the same weights (without
  # dropout, whose random masks are not part of a saved model, in Keras either).
  model <- every_layer_model(dropout = 0)
  compile(model, optimizer = optimizer_adam(0.01), loss = "categorical_crossentropy", metrics = "accuracy")
  fit(model, d$x, d$y, epochs = 2, batch_size = 4, verbose = 0)
  save_model_hdf5(model, path)
  restored <- load_model_hdf5(path)
  fit(model, d$x, d$y, epochs = 1, batch_size = 4, shuffle = FALSE, verbose = 0)
  fit(restored, d$x, d$y, epochs = 1, batch_size = 4, shuffle = FALSE, verbose = 0)
  expect_identical(get_weights(restored), get_weights(model))
  uncompiled <- load_model_hdf5(path, compile = FALSE)
  expect_false(uncompiled$compiled)
})

test_that("optimizer state round-trips for SGD with momentum and RMSprop too", {
  x <- matrix(rnorm(80), 20, 4)
  y <- x %*% c(1, -1, 2, 0)
  for (opt in list(optimizer_sgd(0.05, momentum = 0.9), optimizer_rmsprop(0.01), optimizer_rmsprop(0.01, momentum = 0.5, centered = TRUE))) {
    model <- keras_model_sequential() %>% layer_dense(4, activation = "tanh", input_shape = 4) %>% layer_dense(1)
    compile(model, optimizer = opt, loss = "mse")
    fit(model, x, y, epochs = 2, batch_size = 5, shuffle = FALSE, verbose = 0)
    restored <- unserialize_model(serialize_model(model))
    fit(model, x, y, epochs = 1, batch_size = 5, shuffle = FALSE, verbose = 0)
    fit(restored, x, y, epochs = 1, batch_size = 5, shuffle = FALSE, verbose = 0)
    expect_identical(get_weights(restored), get_weights(model))
  }
})

test_that("weights round-trip, by order and by name", {
  d <- image_data()
  a <- every_layer_model()
  b <- every_layer_model()
  path <- tempfile(fileext = ".h5")
  save_model_weights_hdf5(a, path)
  load_model_weights_hdf5(b, path)
  expect_identical(get_weights(b), get_weights(a))
  # By name: only layers whose names match are loaded.
  named <- keras_model_sequential() %>% layer_dense(3, input_shape = 2, name = "shared")
  other <- keras_model_sequential() %>% layer_dense(3, input_shape = 2, name = "shared") %>% layer_dense(1, name = "extra")
  save_model_weights_hdf5(named, path)
  before_extra <- get_weights(get_layer(other, "extra"))
  load_model_weights_hdf5(other, path, by_name = TRUE)
  expect_identical(get_weights(get_layer(other, "shared")), get_weights(named))
  expect_identical(get_weights(get_layer(other, "extra")), before_extra)
})

test_that("models and weights written by Keras load here with Keras's predictions", {
  expected <- jsonlite::fromJSON(h5_fixture("expected.json"), simplifyDataFrame = FALSE)
  dense <- load_model_hdf5(h5_fixture("keras_dense_model.h5"))
  expect_equal(predict(dense, expected$dense$x), expected$dense$predictions, tolerance = 1e-5)
  expect_true(dense$compiled)
  # Keras's chunked attributes (`layer_names0`, `layer_names1`: long lists).
  chunked <- load_model_hdf5(h5_fixture("keras_dense_model_chunked.h5"))
  expect_equal(predict(chunked, expected$dense$x), expected$dense$predictions, tolerance = 1e-5)
  cnn <- load_model_hdf5(h5_fixture("keras_cnn_model.h5"))
  expect_equal(predict(cnn, expected$cnn$x), expected$cnn$predictions, tolerance = 1e-5)
  # Weights-only files: Keras 2's legacy layout and tf-keras's newer .weights.h5 layout.
  for (file in c("keras_dense.weights.legacy.h5", "keras_dense.weights.h5")) {
    fresh <- load_model_hdf5(h5_fixture("keras_dense_model.h5"), compile = FALSE)
    set_weights(fresh, lapply(get_weights(fresh), function(w) w * 0))
    load_model_weights_hdf5(fresh, h5_fixture(file))
    expect_equal(predict(fresh, expected$dense$x), expected$dense$predictions, tolerance = 1e-5, label = file)
  }
})

test_that("the parallel model saves its template, and loading weights updates the replicas", {
  use_virtual_gpus(2, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0))
  d <- image_data()
  template <- every_layer_model()
  parallel <- multi_gpu_model(template, gpus = 2)
  compile(parallel, optimizer = "adam", loss = "categorical_crossentropy")
  fit(parallel, d$x, d$y, epochs = 1, verbose = 0)
  path <- tempfile(fileext = ".h5")
  save_model_hdf5(parallel, path)
  restored <- load_model_hdf5(path)
  expect_identical(predict(restored, d$x), predict(template, d$x))
  other <- every_layer_model()
  weights_path <- tempfile(fileext = ".h5")
  save_model_weights_hdf5(other, weights_path)
  load_model_weights_hdf5(template, weights_path)
  expect_equal(predict(parallel, d$x), predict(other, d$x), tolerance = 1e-6)
})

test_that("bad files give clear io/value errors, never a crash", {
  model <- every_layer_model()
  not_h5 <- tempfile(fileext = ".h5")
  writeLines("not an hdf5 file", not_h5)
  expect_error(load_model_hdf5(not_h5), "not a readable HDF5 file", class = "rustgpu_io_error")
  expect_error(load_model_weights_hdf5(model, not_h5), "not a readable HDF5 file", class = "rustgpu_io_error")
  expect_error(load_model_hdf5(tempfile()), "does not exist", class = "rustgpu_io_error")
  good <- tempfile(fileext = ".h5")
  save_model_hdf5(model, good)
  truncated <- tempfile(fileext = ".h5")
  writeBin(readBin(good, "raw", file.size(good))[seq_len(file.size(good) %/% 3)], truncated)
  expect_error(load_model_hdf5(truncated), class = "rustgpu_io_error")
  weights_only <- tempfile(fileext = ".h5")
  save_model_weights_hdf5(model, weights_only)
  expect_error(load_model_hdf5(weights_only), "weights only", class = "rustgpu_io_error")
  expect_error(load_model_weights_hdf5(keras_model_sequential() %>% layer_dense(8, input_shape = 5), h5_fixture("broken_missing_group.h5")),
               "lists layer \"ghost\" but has no group", class = "rustgpu_io_error")
  small <- keras_model_sequential() %>% layer_dense(3, input_shape = 2)
  expect_error(load_model_weights_hdf5(small, weights_only), "layer count mismatch", class = "rustgpu_value_error")
  wide <- keras_model_sequential() %>% layer_dense(3, input_shape = 4, name = "probe")
  narrow <- keras_model_sequential() %>% layer_dense(3, input_shape = 2, name = "probe")
  save_model_weights_hdf5(narrow, weights_only)
  err <- expect_error(load_model_weights_hdf5(wide, weights_only), class = "rustgpu_value_error")
  expect_match(conditionMessage(err), "layer \"probe\".*\\(4, 3\\).*\\(2, 3\\)")
  expect_warning(load_model_weights_hdf5(wide, weights_only, by_name = TRUE, skip_mismatch = TRUE), "Skipped loading weights")
  expect_error(save_model_hdf5(model, good, overwrite = FALSE), "already exists", class = "rustgpu_io_error")
  expect_error(save_model_hdf5(model, file.path(tempfile(), "nested", "m.h5")), "does not exist", class = "rustgpu_io_error")
  expect_error(unserialize_model("bytes"), "raw vector", class = "rustgpu_value_error")
  expect_equal(dim(predict(model, image_data(2)$x)), c(2L, 3L))
})

test_that("a failed save leaves the previous file as it was and no partial file", {
  dir <- tempfile("saves")
  dir.create(dir)
  path <- file.path(dir, "model.h5")
  first <- every_layer_model()
  save_model_hdf5(first, path)
  before <- readBin(path, "raw", file.size(path))
  second <- every_layer_model()
  rustgpu:::rg_inject_write_failure()
  expect_error(save_model_hdf5(second, path), "injected write failure", class = "rustgpu_io_error")
  expect_identical(readBin(path, "raw", file.size(path)), before)
  expect_identical(list.files(dir, all.files = TRUE, no.. = TRUE), "model.h5")
  rustgpu:::rg_inject_write_failure()
  expect_error(save_model_weights_hdf5(second, path), class = "rustgpu_io_error")
  expect_identical(readBin(path, "raw", file.size(path)), before)
  # A read-only folder: chmod for ordinary users; root writes through that, so make the
  # folder immutable (chattr +i) instead where the file system allows it.
  if (Sys.info()[["user"]] == "root") {
    skip_if(!nzchar(Sys.which("chattr")), "chattr is needed to make a folder read-only for root")
    locked <- system2("chattr", c("+i", dir), stdout = FALSE, stderr = FALSE) == 0
    skip_if(!locked, "this file system cannot make a folder immutable (chattr +i)")
    on.exit(system2("chattr", c("-i", dir)), add = TRUE)
  } else {
    Sys.chmod(dir, "0555")
    on.exit(Sys.chmod(dir, "0755"), add = TRUE)
  }
  expect_error(save_model_hdf5(second, path), class = "rustgpu_io_error")
  expect_identical(readBin(path, "raw", file.size(path)), before)
})

test_that("separable, depthwise, pooling, padding and reshape layers round-trip too", {
  model <- keras_model_sequential() %>%
    layer_zero_padding_2d(list(c(1, 0), c(2, 1)), input_shape = c(5, 5, 2)) %>%
    layer_separable_conv_2d(4, 3, padding = "same", depth_multiplier = 2, activation = "relu") %>%
    layer_depthwise_conv_2d(1) %>%
    layer_conv_2d(4, 3, activation = "relu") %>%
    layer_average_pooling_2d(padding = "same") %>%
    layer_reshape(c(-1, 4)) %>%
    layer_reshape(c(2, 3, 4)) %>%
    layer_global_max_pooling_2d() %>%
    layer_dense(2)
  x <- array(rnorm(3 * 50), c(3, 5, 5, 2))
  path <- tempfile(fileext = ".h5")
  save_model_hdf5(model, path)
  restored <- load_model_hdf5(path)
  expect_identical(predict(restored, x), predict(model, x))
  expect_equal(format(restored), format(model))
  gap <- keras_model_sequential() %>% layer_global_average_pooling_2d(input_shape = c(2, 2, 3))
  save_model_hdf5(gap, path)
  expect_identical(predict(load_model_hdf5(path), x[, 1:2, 1:2, 1:2, drop = FALSE][, , , c(1, 2, 1), drop = FALSE]),
                   predict(gap, x[, 1:2, 1:2, 1:2, drop = FALSE][, , , c(1, 2, 1), drop = FALSE]))
})

test_that("functional models round-trip, and Keras's functional models load", {
  a <- layer_input(shape = 3, name = "first")
  b <- layer_input(shape = 3, name = "second")
  shared <- layer_dense(units = 3, activation = "relu")
  merged <- layer_add(list(shared(a), shared(b), a)) %>% layer_batch_normalization()
  out <- layer_concatenate(list(merged, b)) %>% layer_dense(2, activation = "softmax")
  model <- keras_model(list(a, b), out)
  compile(model, optimizer = "adam", loss = "categorical_crossentropy")
  x <- list(matrix(rnorm(30), 10), matrix(rnorm(30), 10))
  fit(model, x, to_categorical(rep(0:1, 5)), epochs = 1, verbose = 0)
  path <- tempfile(fileext = ".h5")
  save_model_hdf5(model, path)
  restored <- load_model_hdf5(path)
  expect_identical(predict(restored, x), predict(model, x))
  expect_equal(format(restored), format(model))
  expected <- jsonlite::fromJSON(h5_fixture("expected.json"), simplifyDataFrame = FALSE)$functional
  keras_made <- load_model_hdf5(h5_fixture("keras_functional_model.h5"))
  expect_equal(predict(keras_made, list(expected$xa, expected$xb)), expected$predictions, tolerance = 1e-5)
})

test_that("sequence layers round-trip too", {
  model <- keras_model_sequential() %>%
    layer_embedding(input_dim = 12, output_dim = 3, input_length = 8) %>%
    layer_conv_1d(4, 3, padding = "same", activation = "relu") %>%
    layer_max_pooling_1d(2) %>%
    layer_flatten() %>%
    layer_dense(2)
  x <- matrix(sample(0:11, 24, replace = TRUE), 3, 8)
  path <- tempfile(fileext = ".h5")
  save_model_hdf5(model, path)
  restored <- load_model_hdf5(path)
  expect_identical(predict(restored, x), predict(model, x))
  expect_equal(format(restored), format(model))
})

test_that("Keras's recurrent models load, predict as in Keras, train on, and round-trip", {
  expected <- jsonlite::fromJSON(h5_fixture("expected.json"), simplifyDataFrame = FALSE)$recurrent
  model <- load_model_hdf5(h5_fixture("keras_recurrent_model.h5"))
  expect_equal(predict(model, expected$x), expected$predictions, tolerance = 1e-5)
  classes <- vapply(model$layers, function(l) l$class_name, character(1))
  expect_equal(classes, c("Embedding", "Bidirectional", "GRU", "RepeatVector", "TimeDistributed", "SimpleRNN", "Dense"))
  fit(model, expected$x, to_categorical(0:4 %% 2), epochs = 1, verbose = 0)
  path <- tempfile(fileext = ".h5")
  save_model_hdf5(model, path)
  restored <- load_model_hdf5(path)
  expect_identical(predict(restored, expected$x), predict(model, expected$x))
  expect_equal(format(restored), format(model))
})

test_that("corrupt files that crashed R or stalled the loader are prompt io errors", {
  # Single bytes changed in a Keras file, found by src/rust/core/examples/h5_fuzz.rs.
  corrupt <- function(at, value) {
    bytes <- readBin(h5_fixture("keras_dense_model.h5"), "raw", file.size(h5_fixture("keras_dense_model.h5")))
    bytes[at] <- as.raw(value)
    path <- tempfile(fileext = ".h5")
    writeBin(bytes, path)
    path
  }
  # A byte of the model config that is not UTF-8: taken unchecked, it crashed R when formatted.
  expect_error(load_model_hdf5(corrupt(3612, 0xff)), "`model_config` is not valid UTF-8 text: the file is corrupt",
               class = "rustgpu_io_error")
  # A weight whose type declares 12.8 GB: libhdf5 1.10 zeroed all of it before failing (a
  # minute of 100% CPU); our check of declared against stored sizes caught it before reading.
  # The HDF5 2.2 built in refuses to open the dataset at all.
  elapsed <- system.time(
    expect_error(load_model_hdf5(corrupt(17856, 0xff)), "\"dense_2/bias:0\" (declares 3 values .* but stores 12 bytes|cannot be read .*): the file is corrupt",
                 class = "rustgpu_io_error")
  )[["elapsed"]]
  expect_lt(elapsed, 5)
  model <- keras_model_sequential() %>% layer_dense(8, input_shape = 4) %>% layer_dense(3)
  before <- get_weights(model)
  expect_error(load_model_weights_hdf5(model, corrupt(17856, 0xff)), "the file is corrupt", class = "rustgpu_io_error")
  expect_identical(get_weights(model), before)
})

test_that("a save never replaces a file another process has locked, as libhdf5 locks files open for writing", {
  skip_if(!nzchar(Sys.which("flock")), "needs util-linux's flock(1) to hold a lock from another process")
  model <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
  path <- tempfile(fileext = ".h5")
  save_model_hdf5(model, path)
  before <- readBin(path, "raw", file.size(path))
  done <- tempfile()
  # Another process holds the lock (as h5py does with a file open for writing) for 5 s.
  system2("flock", c(path, "sh", "-c", shQuote(sprintf("touch %s; sleep 5", done))), wait = FALSE)
  for (i in 1:100) if (file.exists(done)) break else Sys.sleep(0.05)
  expect_true(file.exists(done))
  other <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
  expect_error(save_model_hdf5(other, path), "is open in another program that has locked it", class = "rustgpu_io_error")
  expect_error(save_model_weights_hdf5(other, path), "locked", class = "rustgpu_io_error")
  expect_identical(readBin(path, "raw", file.size(path)), before)
  # Once it lets go, saving works.
  for (i in 1:150) if (system2("flock", c("-n", path, "true")) == 0) break else Sys.sleep(0.05)
  save_model_hdf5(other, path)
  expect_equal(get_weights(load_model_hdf5(path)), get_weights(other))
})

test_that("saves follow symlinks, keep the file's mode, refuse FIFOs and folders; loads refuse FIFOs", {
  skip_on_os("windows")  # symlinks, modes and FIFOs as on Unix
  model <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
  other <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
  dir <- tempfile("saves")
  dir.create(file.path(dir, "runs"), recursive = TRUE)
  real <- file.path(dir, "runs", "run42.h5")
  link <- file.path(dir, "current.h5")
  save_model_hdf5(model, real)
  file.symlink(file.path("runs", "run42.h5"), link)
  Sys.chmod(real, "600")
  save_model_hdf5(other, link)
  # The link is still a link, to the file that now holds the new model, with its mode.
  expect_equal(Sys.readlink(link), file.path("runs", "run42.h5"))
  expect_equal(get_weights(load_model_hdf5(real)), get_weights(other))
  expect_equal(format(file.mode(real)), "600")
  expect_equal(list.files(dir, recursive = TRUE, all.files = TRUE), c("current.h5", "runs/run42.h5"))
  # Not a regular file: refused, left as it is; a load never blocks on a FIFO.
  expect_error(save_model_hdf5(model, file.path(dir, "runs")), "not a regular file", class = "rustgpu_io_error")
  if (nzchar(Sys.which("mkfifo"))) {
    fifo <- file.path(dir, "pipe.h5")
    system2("mkfifo", fifo)
    expect_error(save_model_hdf5(model, fifo), "not a regular file", class = "rustgpu_io_error")
    expect_error(load_model_hdf5(fifo), "not a regular file", class = "rustgpu_io_error")
    expect_error(load_model_weights_hdf5(model, fifo), "not a regular file", class = "rustgpu_io_error")
    expect_equal(system2("test", c("-p", fifo)), 0L)  # still the FIFO
  }
  expect_error(save_model_hdf5(model, real, overwrite = FALSE), "already exists", class = "rustgpu_io_error")
})

test_that("a legal 250-byte file name saves and loads", {
  model <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
  path <- file.path(tempdir(), paste0(strrep("m", 247), ".h5"))
  on.exit(unlink(path))
  save_model_hdf5(model, path)
  expect_equal(get_weights(load_model_hdf5(path)), get_weights(model))
})

test_that("every optimizer-state layout tf-keras writes (its legacy optimizers' too) loads, and training resumes exactly", {
  expected <- jsonlite::fromJSON(h5_fixture("expected.json"), simplifyVector = FALSE)$optimizer_layouts
  rows <- function(m) do.call(rbind, lapply(m, unlist))
  x <- rows(expected$x)
  y <- rows(expected$y)
  layouts <- c("sgd", "sgd_momentum", "rmsprop", "rmsprop_centered_momentum", "adam_amsgrad",
               "legacy_sgd", "legacy_sgd_momentum", "legacy_rmsprop_centered_momentum", "legacy_adam_amsgrad",
               "legacy_adagrad", "legacy_adadelta", "legacy_adamax", "legacy_nadam")
  expect_setequal(setdiff(names(expected), c("x", "y")), layouts)
  for (layout in layouts) {
    model <- load_model_hdf5(h5_fixture(paste0("keras_opt_", layout, ".h5")))
    train_on_batch(model, x, y)
    want <- expected[[layout]]
    got <- get_weights(model)
    expect_equal(got[[1]], rows(want[[1]]), tolerance = 1e-5, label = paste(layout, "kernel"))
    expect_equal(as.numeric(got[[2]]), unlist(want[[2]]), tolerance = 1e-5, label = paste(layout, "bias"))
  }
})

test_that("load_model_hdf5() reads weights and optimizer state from one version of the file", {
  x <- matrix(runif(30), 10, 3)
  a <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
  compile(a, optimizer = optimizer_adam(0.1), loss = "mse")
  fit(a, x, x[, 1:2], epochs = 2, verbose = 0)
  path <- tempfile(fileext = ".h5")
  save_model_hdf5(a, path)
  # The model is read, then another save replaces the file before the optimizer state is
  # restored: the state still comes from the version the model came from.
  loaded <- rustgpu:::call_backend(rustgpu:::rg_load_model(path, TRUE))
  b <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
  compile(b, optimizer = optimizer_sgd(0.1), loss = "mse")
  save_model_hdf5(b, path)
  model <- rustgpu:::new_model(loaded$ptr, loaded$name)
  compile(model, optimizer = optimizer_adam(0.1), loss = "mse")
  expect_true(rustgpu:::call_backend(rustgpu:::rg_load_optimizer_state(model$ptr, path)))
  # Resumes exactly as the original would.
  train_on_batch(a, x, x[, 1:2])
  train_on_batch(model, x, x[, 1:2])
  expect_equal(get_weights(model), get_weights(a), tolerance = 1e-6)
})

test_that("weights with NaN or infinite values in a file load with a classed warning naming them", {
  expect_warning(model <- load_model_hdf5(h5_fixture("keras_dense_model_nan.h5")), "NaN or infinite.*dense/kernel:0 \\(first at value 2\\)",
                 class = "rustgpu_nonfinite_weights_warning")
  kernel <- get_weights(model)[[1]]
  expect_true(is.nan(kernel[1, 2]) && is.infinite(kernel[2, 1]))
  template <- load_model_hdf5(h5_fixture("keras_dense_model.h5"), compile = FALSE)
  expect_warning(load_model_weights_hdf5(template, h5_fixture("keras_dense_model_nan.h5")), class = "rustgpu_nonfinite_weights_warning")
  expect_no_warning(load_model_hdf5(h5_fixture("keras_dense_model.h5")))
})

test_that("losses and loss weights saved by output name go to those outputs, whatever their order", {
  expected <- jsonlite::fromJSON(h5_fixture("expected.json"), simplifyVector = FALSE)$named_outputs
  rows <- function(m) do.call(rbind, lapply(m, unlist))
  model <- load_model_hdf5(h5_fixture("keras_named_outputs.h5"))
  expect_equal(model$output_names, c("zeta", "alpha"))
  train_on_batch(model, rows(expected$x), list(rows(expected$zeta), rows(expected$alpha)))
  got <- get_weights(model)
  for (i in seq_along(got)) {
    want <- expected$weights[[i]]
    want <- if (is.list(want[[1]])) rows(want) else unlist(want)
    expect_equal(as.numeric(got[[i]]), as.numeric(want), tolerance = 1e-5, label = paste("weight", i))
  }
})

test_that("a file's training state holding what Keras never writes is a classed error naming it", {
  err <- expect_error(load_model_hdf5(h5_fixture("damaged_string_iteration.h5")), class = "rustgpu_value_error")
  expect_match(conditionMessage(err), "iteration:0 must hold one integer")
  err <- expect_error(load_model_hdf5(h5_fixture("damaged_string_loss_weights.h5")), class = "rustgpu_value_error")
  expect_match(conditionMessage(err), "`loss_weights` must be numbers >= 0, got \"1\"")
  for (damaged in c("nan", "huge")) {
    err <- expect_error(load_model_hdf5(h5_fixture(sprintf("damaged_%s_optimizer_state.h5", damaged))), class = "rustgpu_value_error")
    expect_match(conditionMessage(err), "optimizer weight \"Adam/.*\" holds NaN or infinite values .*compile = FALSE")
    # The weights themselves are fine: without the optimizer state the model loads.
    expect_s3_class(load_model_hdf5(h5_fixture(sprintf("damaged_%s_optimizer_state.h5", damaged)), compile = FALSE), "keras.engine.training.Model")
  }
})

test_that("TensorFlow's SavedModel and checkpoint functions say what to use instead", {
  model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
  path <- file.path(withr::local_tempdir(), "model")
  expect_error(save_model_weights_tf(model, path), class = "rustgpu_unsupported_error", regexp = "save_model_weights_hdf5\\(\\)")
  expect_error(load_model_weights_tf(model, path), class = "rustgpu_unsupported_error", regexp = "load_model_weights_hdf5\\(\\)")
  expect_error(save_model_tf(model, path), class = "rustgpu_unsupported_error", regexp = "save_model_hdf5\\(\\)")
  expect_error(load_model_tf(path), class = "rustgpu_unsupported_error", regexp = "load_model_hdf5\\(\\)")
  expect_error(model_to_saved_model(model, path), class = "rustgpu_unsupported_error")
  expect_error(model_from_saved_model(path), class = "rustgpu_unsupported_error")
  expect_error(export_savedmodel(model, path), class = "rustgpu_unsupported_error")
  expect_false(file.exists(path))
})
