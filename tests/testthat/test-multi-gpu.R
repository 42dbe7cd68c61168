# multi_gpu_model on virtual GPUs: the same replica/split/merge/reduce path as on real GPUs.

with_virtual_gpus <- function(n, code) {
  use_virtual_gpus(n, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0))
  code
}

test_that("devices are listed like mlverse/torch's, and a CPU build reports no CUDA", {
  expect_false(cuda_is_available())
  expect_identical(cuda_device_count(), 0L)
  expect_equal(nrow(gpu_devices()), 0)
  info <- rustgpu_build_info()
  expect_identical(info$features, "cpu")
  expect_identical(info$cuda_devices, 0L)
  expect_true(is.na(info$cuda_driver) && is.na(info$cublas))
  with_virtual_gpus(3, {
    d <- gpu_devices()
    expect_equal(d$id, 0:2)
    expect_equal(unique(d$kind), "virtual")
    expect_true(all(is.na(d$memory)))
  })
})

test_that("predict through replicas equals the template exactly, for any batch size", {
  with_virtual_gpus(4, {
    set.seed(5)
    template <- small_classifier(inputs = 6)
    parallel <- multi_gpu_model(template, gpus = 4)
    for (rows in c(1, 3, 5, 64, 257)) {
      x <- matrix(rnorm(rows * 6), rows, 6)
      expect_identical(predict(parallel, x), predict(template, x), label = paste(rows, "rows"))
      expect_identical(predict(parallel, x, batch_size = rows), predict(template, x, batch_size = rows))
    }
    parallel_first_gpu <- multi_gpu_model(template, gpus = 4, cpu_merge = FALSE)
    x <- matrix(rnorm(70 * 6), 70, 6)
    expect_identical(predict(parallel_first_gpu, x), predict(template, x))
  })
})

train_both <- function(optimizer, gpus = 4, ...) {
  d <- toy_data(n = 90)
  set.seed(9)
  direct <- small_classifier()
  via_parallel <- small_classifier()
  set_weights(via_parallel, get_weights(direct))
  parallel <- multi_gpu_model(via_parallel, gpus = gpus, ...)
  compile(direct, optimizer = optimizer, loss = "categorical_crossentropy", metrics = "accuracy")
  compile(parallel, optimizer = optimizer, loss = "categorical_crossentropy", metrics = "accuracy")
  h1 <- fit(direct, d$x, d$y, epochs = 2, batch_size = 25, shuffle = FALSE, verbose = 0)
  h2 <- fit(parallel, d$x, d$y, epochs = 2, batch_size = 25, shuffle = FALSE, verbose = 0)
  list(h1 = h1, h2 = h2, w1 = get_weights(direct), w2 = get_weights(via_parallel))
}

expect_same_training <- function(r, tolerance = 1e-5) {
  expect_equal(r$h2$metrics$loss, r$h1$metrics$loss, tolerance = tolerance)
  expect_equal(r$h2$metrics$accuracy, r$h1$metrics$accuracy)
  for (i in seq_along(r$w1)) expect_equal(r$w2[[i]], r$w1[[i]], tolerance = tolerance)
}

test_that("training through 4 replicas equals training the template (SGD and Adam)", {
  with_virtual_gpus(4, {
    expect_same_training(train_both(optimizer_sgd(0.1, momentum = 0.9)))
    expect_same_training(train_both(optimizer_adam(0.01)))
  })
})

test_that("cpu_merge = FALSE and cpu_relocation = TRUE train identically too", {
  with_virtual_gpus(4, {
    expect_same_training(train_both(optimizer_sgd(0.1), cpu_merge = FALSE))
    expect_same_training(train_both(optimizer_adam(0.01), cpu_merge = FALSE))
    expect_same_training(train_both(optimizer_sgd(0.1), cpu_relocation = TRUE))
    expect_same_training(train_both(optimizer_adam(0.01), gpus = c(3, 1), cpu_relocation = TRUE))
  })
})

test_that("the parallel model shares the template's weights both ways", {
  with_virtual_gpus(2, {
    d <- toy_data(n = 40)
    template <- small_classifier()
    parallel <- multi_gpu_model(template)
    before <- get_weights(template)
    compile(parallel, optimizer = "adam", loss = "categorical_crossentropy")
    fit(parallel, d$x, d$y, epochs = 1, verbose = 0)
    trained <- get_weights(template)
    expect_false(isTRUE(all.equal(before, trained)))
    expect_equal(get_weights(parallel), trained)
    zeroed <- lapply(trained, function(w) w * 0)
    set_weights(template, zeroed)
    expect_equal(predict(parallel, d$x), matrix(1 / 3, 40, 3), tolerance = 1e-6)
    set_weights(parallel, trained)
    expect_equal(get_weights(template), trained)
  })
})

test_that("the parallel model is a model: evaluate, *_on_batch and summary", {
  with_virtual_gpus(3, {
    d <- toy_data(n = 30)
    template <- small_classifier()
    compile(template, optimizer = "sgd", loss = "categorical_crossentropy", metrics = "accuracy")
    parallel <- multi_gpu_model(template, gpus = 3)
    compile(parallel, optimizer = "sgd", loss = "categorical_crossentropy", metrics = "accuracy")
    expect_equal(evaluate(parallel, d$x, d$y, verbose = 0), evaluate(template, d$x, d$y, verbose = 0), tolerance = 1e-6)
    expect_equal(test_on_batch(parallel, d$x, d$y), test_on_batch(template, d$x, d$y), tolerance = 1e-6)
    expect_equal(predict_on_batch(parallel, d$x), predict_on_batch(template, d$x))
    stats <- train_on_batch(parallel, d$x[1:2, ], d$y[1:2, ])  # fewer rows than replicas
    expect_named(stats, c("loss", "accuracy"))
    expect_match(format(parallel), "Replicated on 3 devices \\(/gpu:0 \\(virtual GPU 0")
    expect_match(format(parallel), "Total params: 163")
    first <- get_layer(parallel, index = 1)
    expect_equal(first$name, get_layer(template, index = 1)$name)
    expect_equal(get_weights(first), get_weights(get_layer(template, index = 1)))
  })
})

test_that("replicas run concurrently", {
  with_virtual_gpus(2, {
    set.seed(2)
    template <- keras_model_sequential() %>%
      layer_dense(512, activation = "relu", input_shape = 256) %>%
      layer_dense(512, activation = "relu") %>%
      layer_dense(10, activation = "softmax")
    parallel <- multi_gpu_model(template, gpus = 2)
    compile(parallel, optimizer = "sgd", loss = "categorical_crossentropy")
    x <- matrix(rnorm(512 * 256), 512, 256)
    y <- to_categorical(rep(0:9, length.out = 512), 10)
    fit(parallel, x, y, epochs = 1, batch_size = 256, verbose = 0)
    tl <- as.data.frame(rustgpu:::rg_replica_timeline(parallel$ptr))
    # In some step, replica 1 started before replica 0 finished (and vice versa).
    a <- tl[tl$replica == 0, ]
    b <- tl[tl$replica == 1, ]
    overlaps <- vapply(seq_len(nrow(a)), function(i) any(b$start < a$end[i] & b$end > a$start[i]), logical(1))
    expect_true(any(overlaps))
  })
})

test_that("gpus and the flags are checked with Keras's messages", {
  with_virtual_gpus(2, {
    model <- small_classifier()
    err <- expect_error(multi_gpu_model(model, gpus = 1), class = "rustgpu_value_error")
    expect_equal(conditionMessage(err),
                 "For multi-gpu usage to be effective, call `multi_gpu_model` with `gpus >= 2`. Received: `gpus=1`")
    err <- expect_error(multi_gpu_model(model, gpus = 4), class = "rustgpu_device_error")
    expect_match(conditionMessage(err), paste0(
      "To call `multi_gpu_model` with `gpus=4`, we expect the following devices to be available: ",
      "['/cpu:0', '/gpu:0', '/gpu:1', '/gpu:2', '/gpu:3']. However this machine only has: ",
      "['/cpu:0', '/gpu:0', '/gpu:1']. Try reducing `gpus`."), fixed = TRUE)
    expect_error(multi_gpu_model(model, gpus = c(0, 5)), "gpus=c(0, 5)", fixed = TRUE, class = "rustgpu_device_error")
    expect_error(multi_gpu_model(model, gpus = 2.5), "whole number", class = "rustgpu_value_error")
    expect_error(multi_gpu_model(model, gpus = -2), "whole number", class = "rustgpu_value_error")
    expect_error(multi_gpu_model(model, gpus = NA), "`gpus`", class = "rustgpu_value_error")
    expect_error(multi_gpu_model(model, gpus = c(1, 1)), "more than once", class = "rustgpu_value_error")
    expect_error(multi_gpu_model(model, gpus = "2"), "`gpus`", class = "rustgpu_value_error")
    expect_error(multi_gpu_model(model, cpu_merge = NA), "`cpu_merge`", class = "rustgpu_value_error")
    expect_error(multi_gpu_model(model, cpu_merge = c(TRUE, FALSE)), "`cpu_merge`", class = "rustgpu_value_error")
    expect_error(multi_gpu_model(model, cpu_relocation = "yes"), "`cpu_relocation`", class = "rustgpu_value_error")
    expect_error(multi_gpu_model("model"), "`model`", class = "rustgpu_value_error")
    parallel <- multi_gpu_model(model)
    expect_error(multi_gpu_model(parallel), "already a parallel model", class = "rustgpu_value_error")
    expect_error(layer_dense(parallel, 2), "template", class = "rustgpu_state_error")
  })
  expect_error(multi_gpu_model(small_classifier()), "gpus=0", class = "rustgpu_value_error")
})

test_that("batch normalization trains through replicas, moving statistics from every replica", {
  with_virtual_gpus(2, {
    set.seed(12)
    template <- keras_model_sequential() %>%
      layer_dense(6, input_shape = 4) %>%
      layer_batch_normalization(momentum = 0.5) %>%
      layer_dense(1)
    parallel <- multi_gpu_model(template, gpus = 2)
    compile(parallel, optimizer = "sgd", loss = "mse")
    x <- matrix(rnorm(40, mean = 3), 10, 4)
    y <- rowSums(x)
    w <- get_weights(template)
    train_on_batch(parallel, x, y)
    moved <- get_weights(template)
    # The moving mean moves halfway (momentum 0.5) toward the row-weighted mean of the two
    # replicas' batch means, i.e. the whole batch's mean of the dense layer's outputs.
    h <- x %*% w[[1]] + matrix(w[[2]], 10, 6, byrow = TRUE)
    expect_equal(as.numeric(moved[[5]]), 0.5 * as.numeric(w[[5]]) + 0.5 * colMeans(h), tolerance = 1e-5)
    # Inference uses the moving statistics, identically through the replicas.
    expect_identical(predict(parallel, x), predict(template, x))
  })
})

test_that("split = \"measured\" gives a slower replica fewer rows and trains as the template", {
  with_virtual_gpus(2, {
    d <- toy_data(n = 64)
    set.seed(4)
    direct <- small_classifier()
    via_parallel <- small_classifier()
    set_weights(via_parallel, get_weights(direct))
    parallel <- multi_gpu_model(via_parallel, gpus = 2, split = "measured")
    # Replica 1 takes 1 ms more per row: far slower than replica 0.
    rustgpu:::slow_replica(parallel, 1, 0.001)
    expect_identical(rustgpu:::rg_replica_split(parallel$ptr, 64L)$rows, c(32L, 32L))
    compile(direct, optimizer = "sgd", loss = "categorical_crossentropy")
    compile(parallel, optimizer = "sgd", loss = "categorical_crossentropy")
    h1 <- fit(direct, d$x, d$y, epochs = 6, batch_size = 32, shuffle = FALSE, verbose = 0)
    h2 <- fit(parallel, d$x, d$y, epochs = 6, batch_size = 32, shuffle = FALSE, verbose = 0)
    split <- rustgpu:::rg_replica_split(parallel$ptr, 64L)
    expect_gt(split$rows[1], 4 * split$rows[2])
    expect_gt(split$speed[1], split$speed[2])
    expect_equal(h2$metrics$loss, h1$metrics$loss, tolerance = 1e-5)
    for (i in seq_along(get_weights(direct))) expect_equal(get_weights(via_parallel)[[i]], get_weights(direct)[[i]], tolerance = 1e-5)
    # Predictions come back in row order whatever the split.
    expect_equal(predict(parallel, d$x), predict(via_parallel, d$x), tolerance = 1e-6)
    expect_error(multi_gpu_model(direct, gpus = 2, split = "fast"), class = "rustgpu_value_error", regexp = "\"even\", \"measured\"")
  })
})

test_that("virtual GPUs take a thread count per GPU", {
  use_virtual_gpus(2, threads_per_gpu = c(2, 1))
  on.exit(use_virtual_gpus(0))
  expect_identical(gpu_devices()$threads, c(2L, 1L))
  expect_error(use_virtual_gpus(2, threads_per_gpu = c(1, 1, 1)), class = "rustgpu_value_error", regexp = "one for each of the 2 GPUs")
  expect_error(use_virtual_gpus(2, threads_per_gpu = 0), class = "rustgpu_value_error")
})
