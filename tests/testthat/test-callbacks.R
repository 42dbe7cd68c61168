test_that("callback_lambda hooks run with Keras's arguments, in order", {
  x <- matrix(runif(40), 20, 2)
  model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
  compile(model, optimizer = "sgd", loss = "mse", metrics = "mae")
  calls <- character()
  cb <- callback_lambda(
    on_train_begin = function(logs) calls <<- c(calls, "train_begin"),
    on_epoch_begin = function(epoch, logs) calls <<- c(calls, paste0("epoch_begin:", epoch)),
    on_batch_end = function(batch, logs) calls <<- c(calls, sprintf("batch_end:%d:%s", batch, paste(names(logs), collapse = ","))),
    on_epoch_end = function(epoch, logs) calls <<- c(calls, sprintf("epoch_end:%d:%s", epoch, paste(names(logs), collapse = ","))),
    on_train_end = function(logs) calls <<- c(calls, "train_end")
  )
  fit(model, x, rowSums(x), epochs = 2, batch_size = 10, verbose = 0, validation_split = 0.5, callbacks = list(cb))
  expect_equal(calls, c("train_begin", "epoch_begin:0", "batch_end:0:loss,mae", "epoch_end:0:loss,mae,val_loss,val_mae",
                        "epoch_begin:1", "batch_end:0:loss,mae", "epoch_end:1:loss,mae,val_loss,val_mae", "train_end"))
  expect_error(callback_lambda(on_epoch_end = 3), "`on_epoch_end`", class = "rustgpu_value_error")
  expect_error(fit(model, x, rowSums(x), callbacks = list(1)), "`callbacks`", class = "rustgpu_value_error")
})

test_that("callback_early_stopping stops when the monitored loss stops improving", {
  x <- matrix(runif(40), 20, 2)
  model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
  # A zero learning rate never improves: patience 1 stops after epoch 2.
  compile(model, optimizer = optimizer_sgd(learning_rate = 1e-12), loss = "mse")
  h <- fit(model, x, rowSums(x), epochs = 10, verbose = 0,
           callbacks = list(callback_early_stopping(monitor = "loss", patience = 1, min_delta = 1e-3)))
  expect_length(h$metrics$loss, 2)  # tf-keras: 2 as well
})

test_that("callback_model_checkpoint saves the (template) model each epoch or when best", {
  use_virtual_gpus(2, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0))
  dir <- tempfile("ckpt")
  dir.create(dir)
  x <- matrix(runif(40), 20, 2)
  template <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
  parallel <- multi_gpu_model(template, gpus = 2)
  compile(parallel, optimizer = "sgd", loss = "mse")
  cb <- callback_model_checkpoint(file.path(dir, "m.{epoch:02d}-{loss:.3f}.h5"))
  h <- fit(parallel, x, rowSums(x), epochs = 2, verbose = 0, callbacks = list(cb))
  files <- sort(list.files(dir))
  expect_length(files, 2)
  expect_match(files[2], sprintf("^m\\.02-%.3f\\.h5$", h$metrics$loss[2]))
  expect_equal(get_weights(load_model_hdf5(file.path(dir, files[2]), compile = FALSE)), get_weights(template))
  best <- callback_model_checkpoint(file.path(dir, "best.h5"), monitor = "loss", save_best_only = TRUE,
                                    save_weights_only = TRUE)
  fit(parallel, x, rowSums(x), epochs = 2, verbose = 0, callbacks = list(best))
  expect_true(file.exists(file.path(dir, "best.h5")))
  # Keras 2's `period`: every third epoch.
  every3 <- callback_model_checkpoint(file.path(dir, "p.{epoch:02d}.h5"), period = 3)
  fit(parallel, x, rowSums(x), epochs = 7, verbose = 0, callbacks = list(every3))
  expect_equal(sort(list.files(dir, "^p\\.")), c("p.03.h5", "p.06.h5"))
  expect_error(callback_model_checkpoint("m.h5", period = 0), "`period`", class = "rustgpu_value_error")
})

test_that("callback_csv_logger writes a row per epoch", {
  x <- matrix(runif(40), 20, 2)
  model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
  compile(model, optimizer = "sgd", loss = "mse", metrics = "mae")
  log <- tempfile(fileext = ".csv")
  h <- fit(model, x, rowSums(x), epochs = 3, verbose = 0, callbacks = list(callback_csv_logger(log)))
  csv <- read.csv(log)
  expect_equal(names(csv), c("epoch", "loss", "mae"))
  expect_equal(csv$epoch, 0:2)
  expect_equal(csv$loss, h$metrics$loss, tolerance = 1e-10)
})

test_that("callback_reduce_lr_on_plateau lowers the learning rate when the loss stalls", {
  x <- matrix(runif(40), 20, 2)
  model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
  compile(model, optimizer = optimizer_sgd(learning_rate = 1e-9), loss = "mse")
  cb <- callback_reduce_lr_on_plateau(monitor = "loss", factor = 0.5, patience = 1, min_delta = 1)
  fit(model, x, rowSums(x), epochs = 3, verbose = 0, callbacks = list(cb))
  expect_equal(rustgpu:::rg_learning_rate(model$ptr, NULL), 1e-9 * 0.5^3, tolerance = 1e-6)
})

test_that("callback_learning_rate_scheduler() sets each epoch's learning rate", {
  x <- matrix(runif(40), ncol = 2)
  model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
  compile(model, optimizer = optimizer_sgd(0.1), loss = "mse")
  seen <- c()
  schedule <- function(epoch, lr) {
    seen <<- c(seen, lr)
    0.1 / (epoch + 1)
  }
  fit(model, x, rowSums(x), epochs = 3, verbose = 0, callbacks = list(callback_learning_rate_scheduler(schedule)))
  expect_equal(seen, c(0.1, 0.1, 0.05))
  expect_equal(rustgpu:::rg_learning_rate(model$ptr, NULL), 0.1 / 3)
  # One-argument schedules (R keras 2.x examples) work too; a bad value stops with an error.
  fit(model, x, rowSums(x), epochs = 1, verbose = 0, callbacks = list(callback_learning_rate_scheduler(function(epoch) 0.02)))
  expect_equal(rustgpu:::rg_learning_rate(model$ptr, NULL), 0.02)
  expect_error(fit(model, x, rowSums(x), epochs = 1, verbose = 0,
                   callbacks = list(callback_learning_rate_scheduler(function(epoch, lr) -1))), "positive", class = "rustgpu_value_error")
})

# The records of an event file (TFRecord framing).
event_records <- function(path) {
  bytes <- readBin(path, "raw", file.size(path))
  pos <- 1
  records <- list()
  while (pos < length(bytes)) {
    len <- sum(as.numeric(bytes[pos:(pos + 7)]) * 256^(0:7))
    records[[length(records) + 1]] <- bytes[(pos + 12):(pos + 11 + len)]
    pos <- pos + 16 + len
  }
  records
}

test_that("callback_tensorboard() writes event files: TFRecord framing with valid CRC-32C, the epoch scalars", {
  x <- matrix(runif(40), ncol = 2)
  model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
  compile(model, optimizer = "sgd", loss = "mse", metrics = "mae")
  dir <- tempfile("logs")
  h <- fit(model, x, rowSums(x), epochs = 3, verbose = 0, validation_split = 0.25, callbacks = list(callback_tensorboard(dir)))
  files <- list.files(dir, recursive = TRUE, pattern = "^events\\.out\\.tfevents")
  expect_setequal(dirname(files), c("train", "validation"))
  # Read the train file's records back: the framing accounts for every byte.
  path <- file.path(dir, files[dirname(files) == "train"])
  records <- event_records(path)
  expect_equal(sum(lengths(records) + 16), file.size(path))
  expect_length(records, 1 + 3 * 2) # the version event, then loss and mae for 3 epochs
  expect_true(grepl("brain.Event:2", rawToChar(records[[1]][records[[1]] != 0])))
  # The last scalar is epoch 2's mae: its float is the history's value.
  last <- records[[length(records)]]
  tag_at <- grepRaw("epoch_mae", last)
  value <- readBin(last[(tag_at + 10):(tag_at + 13)], "numeric", size = 4, endian = "little")
  expect_equal(value, h$metrics$mae[3], tolerance = 1e-6)
  expect_error(callback_tensorboard(write_images = TRUE), "not supported yet", class = "rustgpu_value_error")
})

test_that("callback_tensorboard(histogram_freq = ) writes a histogram of each weight every n-th epoch", {
  x <- matrix(runif(40), ncol = 2)
  model <- keras_model_sequential() %>% layer_dense(3, input_shape = 2, name = "hidden") %>% layer_dense(1, name = "out")
  compile(model, optimizer = "sgd", loss = "mse")
  dir <- tempfile("logs")
  fit(model, x, rowSums(x), epochs = 3, verbose = 0, callbacks = list(callback_tensorboard(dir, histogram_freq = 2)))
  train <- list.files(file.path(dir, "train"), full.names = TRUE)
  records <- event_records(train)
  tags <- c("hidden/kernel_0", "hidden/bias_0", "out/kernel_0", "out/bias_0")
  has <- function(tag) vapply(records, function(r) length(grepRaw(tag, r, fixed = TRUE)) > 0, logical(1))
  # Epochs 0 and 2 (of 0-2): each weight twice; the loss once per epoch.
  for (tag in tags) expect_equal(sum(has(tag)), 2, label = tag)
  expect_equal(sum(has("epoch_loss")), 3)
  # The last histogram is out/bias_0 after training: one value, min = max = the bias.
  last <- records[[length(records)]]
  at <- grepRaw("out/bias_0", last, fixed = TRUE) + nchar("out/bias_0") + 2
  min_value <- readBin(last[(at + 1):(at + 8)], "numeric", size = 8, endian = "little")
  expect_equal(min_value, as.numeric(get_weights(model)[[4]]), tolerance = 1e-6)
})

test_that("callback_tensorboard(embeddings_freq = ) writes embeddings and the projector's config", {
  x <- matrix(runif(60), ncol = 3)
  model <- keras_model_sequential() %>% layer_dense(4, input_shape = 3, name = "features") %>% layer_dense(1)
  compile(model, optimizer = "sgd", loss = "mse")
  dir <- tempfile("logs")
  metadata <- tempfile(fileext = ".tsv")
  writeLines(as.character(1:5), metadata)
  fit(model, x, rowSums(x), epochs = 2, verbose = 0,
      callbacks = list(callback_tensorboard(dir, embeddings_freq = 1, embeddings_layer_names = list("features"),
                                            embeddings_metadata = metadata, embeddings_data = x[1:5, ])))
  vectors <- as.matrix(utils::read.table(file.path(dir, "features.tsv"), sep = "\t"))
  probe <- keras_model(model$inputs, get_layer(model, "features")$output)
  expect_equal(unname(vectors), predict(probe, x[1:5, ]), tolerance = 1e-5)
  config <- readLines(file.path(dir, "projector_config.pbtxt"))
  expect_equal(config, c("embeddings {", "  tensor_name: \"features\"", "  tensor_path: \"features.tsv\"",
                         paste0("  metadata_path: \"", normalizePath(metadata), "\""), "}"))
  # Without data: an embedding layer's weights.
  emb <- keras_model_sequential() %>% layer_embedding(10, 3, input_length = 2) %>% layer_flatten() %>% layer_dense(1)
  compile(emb, optimizer = "sgd", loss = "mse")
  dir2 <- tempfile("logs")
  fit(emb, matrix(sample(0:9, 20, TRUE), 10), runif(10), epochs = 1, verbose = 0,
      callbacks = list(callback_tensorboard(dir2, embeddings_freq = 1)))
  name <- emb$layers[[1]]$name
  expect_equal(unname(as.matrix(utils::read.table(file.path(dir2, paste0(name, ".tsv")), sep = "\t"))),
               get_weights(emb)[[1]], tolerance = 1e-5)
  expect_error(fit(model, x, rowSums(x), epochs = 1, verbose = 0, callbacks = list(callback_tensorboard(dir, embeddings_freq = 1))),
               class = "rustgpu_value_error", regexp = "no embedding layer")
})

test_that("callbacks monitoring a metric that is not in the logs warn, as Keras does", {
  x <- matrix(runif(40), ncol = 2)
  model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
  compile(model, optimizer = "sgd", loss = "mse")
  expect_warning(fit(model, x, rowSums(x), epochs = 1, verbose = 0, callbacks = list(callback_reduce_lr_on_plateau())),
                 "conditioned on metric `val_loss` which is not available. Available metrics are: loss")
  expect_warning(fit(model, x, rowSums(x), epochs = 1, verbose = 0, callbacks = list(callback_early_stopping())),
                 "`val_loss`, which is not available")
})

test_that("a NaN loss counts as no improvement, as in Keras: monitoring callbacks go on", {
  x <- matrix(rnorm(200), 100, 2)
  y <- x %*% c(1e3, -1e3)
  nan_model <- function() {
    set.seed(3)
    m <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
    compile(m, optimizer = optimizer_sgd(learning_rate = 1e-3), loss = "mse")
    m
  }
  # The first epoch learns; from the second a learning rate of 1e6 takes the loss to NaN.
  blow_up <- callback_learning_rate_scheduler(function(epoch, lr) if (epoch == 0) 1e-3 else 1e6)
  path <- tempfile(fileext = ".h5")
  m <- nan_model()
  h <- fit(m, x, y, epochs = 4, batch_size = 10, verbose = 0, callbacks = list(blow_up,
    callback_model_checkpoint(path, monitor = "loss", save_best_only = TRUE),
    callback_reduce_lr_on_plateau(monitor = "loss", patience = 1, factor = 0.5)))
  expect_length(h$metrics$loss, 4)
  expect_true(is.nan(tail(h$metrics$loss, 1)))
  # Only the first (finite) epoch was ever the best: the file holds its model, and later
  # non-improving epochs lowered the learning rate.
  expect_true(file.exists(path))
  expect_true(all(is.finite(unlist(get_weights(load_model_hdf5(path))))))
  expect_lt(rustgpu:::rg_learning_rate(m$ptr, NULL), 1e6)
  m <- nan_model()
  h <- fit(m, x, y, epochs = 10, batch_size = 10, verbose = 0,
           callbacks = list(blow_up, callback_early_stopping(monitor = "loss", patience = 2)))
  expect_length(h$metrics$loss, 3)
})

test_that("custom callbacks as R6 classes inheriting KerasCallback, as in R keras", {
  LossHistory <- R6::R6Class("LossHistory", inherit = KerasCallback, public = list(
    losses = NULL,
    epochs_seen = NULL,
    on_batch_end = function(batch, logs = list()) self$losses <- c(self$losses, logs[["loss"]]),
    on_epoch_end = function(epoch, logs = list()) self$epochs_seen <- c(self$epochs_seen, epoch)
  ))
  x <- matrix(runif(40), 20, 2)
  model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
  compile(model, optimizer = "sgd", loss = "mse")
  history <- LossHistory$new()
  h <- fit(model, x, rowSums(x), epochs = 2, batch_size = 5, verbose = 0, validation_split = 0.2, callbacks = list(history))
  expect_length(history$losses, 2 * 4)  # 16 training rows in batches of 5: 4 per epoch
  expect_equal(history$epochs_seen, 0:1)
  expect_identical(history$model, model)
  expect_equal(history$params$epochs, 2)
  expect_true(history$params$do_validation)
  expect_equal(history$params$metrics, c("loss", "val_loss"))
  # The running mean at the last batch is the epoch's loss.
  expect_equal(history$losses[8], h$metrics$loss[2], tolerance = 1e-6)
  expect_error(fit(model, x, rowSums(x), callbacks = list(list(on_epoch_end = function(epoch, logs) NULL))),
               "KerasCallback", class = "rustgpu_value_error")
})

test_that("c() of callbacks is a list of them, as R keras scripts write", {
  stopping <- callback_early_stopping(monitor = "loss", patience = 1)
  logger <- callback_csv_logger(withr::local_tempfile(fileext = ".csv"))
  both <- c(stopping, logger)
  expect_length(both, 2)
  expect_s3_class(both[[1]], "rustgpu_callback_early_stopping")
  x <- matrix(runif(20), ncol = 2)
  model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
  compile(model, optimizer = "sgd", loss = "mse")
  history <- fit(model, x, rowSums(x), epochs = 2, verbose = 0, callbacks = c(stopping))
  expect_length(history$metrics$loss, 2)
})

test_that("tensorboard() starts the tensorboard program on the logs, and stops it", {
  skip_if_not(file.exists("/proc/self/stat"), "a shell-script stand-in for TensorBoard, and process states read from /proc (Linux)")
  dir <- withr::local_tempdir()
  record <- file.path(dir, "args.txt")
  program <- file.path(dir, "tensorboard")
  writeLines(c("#!/bin/sh", sprintf("echo \"$@\" > '%s'", record), "sleep 30"), program)
  Sys.chmod(program, "755")
  withr::local_options(rustgpu.tensorboard = program)
  expect_message(url <- tensorboard(file.path(dir, "logs"), launch_browser = FALSE, port = 6123), "Started TensorBoard at http://127.0.0.1:6123")
  expect_equal(url, "http://127.0.0.1:6123")
  expect_true(dir.exists(file.path(dir, "logs")))
  for (i in 1:50) if (!file.exists(record)) Sys.sleep(0.1)
  args <- readLines(record)
  expect_match(args, paste0("--logdir ", normalizePath(file.path(dir, "logs"))), fixed = TRUE)
  expect_match(args, "--port 6123", fixed = TRUE)
  pid <- rustgpu:::.tensorboard$pid
  tensorboard(action = "stop")
  # Gone, or a zombie where nothing reaps orphans (PID 1 in some containers).
  state <- function() tryCatch(strsplit(readLines(sprintf("/proc/%d/stat", pid)), " ")[[1]][[3]], error = function(e) "gone", warning = function(w) "gone")
  for (i in 1:30) if (!state() %in% c("gone", "Z")) Sys.sleep(0.1)
  expect_true(state() %in% c("gone", "Z"))
  tensorboard(c(a = file.path(dir, "a"), b = file.path(dir, "b")), launch_browser = FALSE, port = 6124) |> expect_message()
  for (i in 1:50) if (!grepl("logdir_spec", paste(readLines(record), collapse = ""))) Sys.sleep(0.1)
  expect_match(readLines(record), "--logdir_spec a:.*/a,b:.*/b")
  tensorboard(action = "stop")
})

test_that("tensorboard() without TensorBoard installed warns and goes on", {
  withr::local_options(rustgpu.tensorboard = "")
  dir <- file.path(withr::local_tempdir(), "logs")
  expect_warning(out <- tensorboard(dir), class = "rustgpu_tensorboard_missing")
  expect_null(out)
  expect_true(dir.exists(dir))
})
