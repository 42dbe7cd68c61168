# mirrored_strategy() on virtual GPUs: models made in its scope train on multi_gpu_model()'s
# replicas; synchronized batch normalization makes replicas equal one device on the batch.

with_virtual_gpus <- function(n, code) {
  use_virtual_gpus(n, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0))
  code
}

bn_classifier <- function(synchronized = FALSE) {
  keras_model_sequential() %>%
    layer_dense(8, input_shape = 6) %>%
    layer_batch_normalization(momentum = 0.5, synchronized = synchronized) %>%
    layer_activation("relu") %>%
    layer_dense(3, activation = "softmax")
}

replicas_used <- function(model) sort(unique(rustgpu:::rg_replica_timeline(model$ptr)$replica))

test_that("a strategy counts its replicas, and prints them", {
  with_virtual_gpus(3, {
    s <- mirrored_strategy()
    expect_identical(s$num_replicas_in_sync, 3L)
    expect_length(s$devices, 3)
    expect_match(s$devices[2], "device:GPU:1$")
    expect_output(print(s), "<MirroredStrategy: 3 replicas in sync on virtual GPU 0, virtual GPU 1, virtual GPU 2>", fixed = TRUE)
    expect_identical(mirrored_strategy(c("/gpu:0", "GPU:2"))$num_replicas_in_sync, 2L)
    expect_identical(mirrored_strategy(c(0, 1))$num_replicas_in_sync, 2L)
    cpu <- mirrored_strategy("/cpu:0")
    expect_identical(cpu$num_replicas_in_sync, 1L)
    expect_match(cpu$devices, "device:CPU:0$")
  })
  # No GPU: one replica on the CPU, as TensorFlow.
  if (nrow(gpu_devices()) == 0) expect_identical(mirrored_strategy()$num_replicas_in_sync, 1L)
})

test_that("devices are checked with messages that say what to pass", {
  with_virtual_gpus(2, {
    expect_error(mirrored_strategy(5), class = "rustgpu_value_error", regexp = "There is no GPU 5: this machine has GPUs 0, 1")
    expect_error(mirrored_strategy("/tpu:0"), class = "rustgpu_value_error", regexp = "\"/tpu:0\" is neither")
    expect_error(mirrored_strategy(c(1, 1)), class = "rustgpu_value_error", regexp = "listed more than once")
    expect_error(mirrored_strategy(c("/cpu:0", "/gpu:0")), class = "rustgpu_value_error", regexp = "pass \"/cpu:0\" alone")
    expect_error(mirrored_strategy(-1), class = "rustgpu_value_error", regexp = "whole numbers >= 0")
  })
})

test_that("a model made in the scope trains on the replicas, as multi_gpu_model() and the template do", {
  with_virtual_gpus(2, {
    d <- toy_data(n = 90)
    strategy <- mirrored_strategy()
    set.seed(3)
    with(strategy$scope(), {
      model <- small_classifier()
      model %>% compile(optimizer = "sgd", loss = "categorical_crossentropy", metrics = "accuracy")
    })
    # with() ran in this environment: the model is here, and the scope is over.
    expect_s3_class(model, "keras.engine.training.Model")
    outside <- small_classifier()
    template <- small_classifier()
    set_weights(outside, get_weights(model))
    set_weights(template, get_weights(model))
    parallel <- multi_gpu_model(template, gpus = 2)
    compile(outside, optimizer = "sgd", loss = "categorical_crossentropy", metrics = "accuracy")
    compile(parallel, optimizer = "sgd", loss = "categorical_crossentropy", metrics = "accuracy")
    h_scope <- fit(model, d$x, d$y, epochs = 2, batch_size = 25, shuffle = FALSE, verbose = 0)
    h_one <- fit(outside, d$x, d$y, epochs = 2, batch_size = 25, shuffle = FALSE, verbose = 0)
    h_parallel <- fit(parallel, d$x, d$y, epochs = 2, batch_size = 25, shuffle = FALSE, verbose = 0)
    expect_identical(replicas_used(model), 0:1)
    expect_identical(replicas_used(outside), integer())
    expect_equal(h_scope$metrics$loss, h_one$metrics$loss, tolerance = 1e-5)
    expect_equal(h_scope$metrics$loss, h_parallel$metrics$loss, tolerance = 1e-6)
    for (i in seq_along(get_weights(model))) {
      expect_equal(get_weights(model)[[i]], get_weights(outside)[[i]], tolerance = 1e-5)
      expect_equal(get_weights(model)[[i]], get_weights(template)[[i]], tolerance = 1e-6)
    }
    expect_equal(predict(model, d$x), predict(outside, d$x), tolerance = 1e-5)
  })
})

test_that("functional and loaded models join the scope; the scope ends even on an error", {
  with_virtual_gpus(2, {
    strategy <- mirrored_strategy()
    path <- tempfile(fileext = ".h5")
    on.exit(unlink(path), add = TRUE)
    save_model_hdf5(small_classifier(), path)
    d <- toy_data(n = 20)
    expect_error(with(strategy$scope(), {
      input <- layer_input(shape = 6)
      functional <- keras_model(input, input %>% layer_dense(3, activation = "softmax"))
      loaded <- load_model_hdf5(path, compile = FALSE)
      stop("made in the scope")
    }), "made in the scope")
    after <- small_classifier()
    for (m in list(functional, loaded, after)) {
      compile(m, optimizer = "sgd", loss = "categorical_crossentropy")
      fit(m, d$x, d$y, epochs = 1, batch_size = 10, verbose = 0)
    }
    expect_identical(replicas_used(functional), 0:1)
    expect_identical(replicas_used(loaded), 0:1)
    expect_identical(replicas_used(after), integer())
    # A custom model, built at its first data (outside the scope), joins the scope it was made in.
    with(strategy$scope(), {
      custom <- keras_model_custom(function(self) {
        self$dense <- layer_dense(units = 3, activation = "softmax")
        function(x, mask = NULL) self$dense(x)
      })
      custom %>% compile(optimizer = "sgd", loss = "categorical_crossentropy")
    })
    fit(custom, d$x, d$y, epochs = 1, batch_size = 10, verbose = 0)
    expect_identical(replicas_used(custom), 0:1)
  })
})

test_that("stateful layers are refused in the scope, with what to do instead", {
  with_virtual_gpus(2, {
    with(mirrored_strategy()$scope(), {
      model <- keras_model_sequential() %>%
        layer_lstm(4, stateful = TRUE, batch_input_shape = c(4, 3, 2)) %>%
        layer_dense(1)
    })
    expect_error(compile(model, optimizer = "sgd", loss = "mse"), class = "rustgpu_value_error",
                 regexp = "stateful layers \\(\"lstm.*Make it outside the scope")
  })
})

test_that("synchronized batch normalization on 2 and 4 replicas equals one device on the whole batch", {
  d <- toy_data(n = 50)
  d$x <- d$x * 3 + 1
  set.seed(21)
  initial <- get_weights(bn_classifier(TRUE))
  one_device <- bn_classifier(TRUE)
  set_weights(one_device, initial)
  compile(one_device, optimizer = "sgd", loss = "categorical_crossentropy")
  h_one <- fit(one_device, d$x, d$y, epochs = 2, batch_size = 25, shuffle = FALSE, verbose = 0)
  for (n in c(2, 4)) {
    with_virtual_gpus(n, {
      for (synchronized in c(TRUE, FALSE)) {
        with(mirrored_strategy()$scope(), {
          model <- bn_classifier(synchronized)
          set_weights(model, initial)
          compile(model, optimizer = "sgd", loss = "categorical_crossentropy")
        })
        h <- fit(model, d$x, d$y, epochs = 2, batch_size = 25, shuffle = FALSE, verbose = 0)
        differences <- mapply(function(a, b) max(abs(a - b)), get_weights(model), get_weights(one_device))
        if (synchronized) {
          expect_lt(max(differences), 1e-5)
          expect_equal(h$metrics$loss, h_one$metrics$loss, tolerance = 1e-5)
        } else {
          # Keras's default, per-replica statistics: not the whole batch's.
          expect_gt(max(differences), 1e-3)
        }
      }
    })
  }
})

test_that("synchronized is a layer setting Keras reads back", {
  model <- bn_classifier(TRUE)
  expect_true(get_config(get_layer(model, index = 2))$synchronized)
  expect_null(get_config(get_layer(bn_classifier(FALSE), index = 2))$synchronized)
  path <- tempfile(fileext = ".h5")
  on.exit(unlink(path))
  save_model_hdf5(model, path)
  expect_true(get_config(get_layer(load_model_hdf5(path), index = 2))$synchronized)
  expect_error(layer_batch_normalization(synchronized = NA), class = "rustgpu_value_error", regexp = "synchronized")
})
