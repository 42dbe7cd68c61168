# Recurrent layers and their wrappers from R. Their numerics against tf-keras are in
# test-keras-numerics.R (the recurrent fixture cases) and test-saving.R (a Keras-saved model);
# the backward passes' finite-difference checks are in the core
# (src/rust/core/src/layers/recurrent/tests.rs).

seq_data <- function(n = 12, steps = 5, features = 3, seed = 1) {
  withr_seed(seed, array(rnorm(n * steps * features), c(n, steps, features)))
}

test_that("recurrent layers give Keras's shapes, parameter counts and summary", {
  model <- keras_model_sequential() %>%
    layer_lstm(units = 8, return_sequences = TRUE, input_shape = c(5, 3)) %>%
    layer_gru(units = 4, return_sequences = TRUE) %>%
    layer_gru(units = 4, reset_after = FALSE) %>%
    layer_repeat_vector(2) %>%
    layer_simple_rnn(units = 2, return_sequences = TRUE) %>%
    time_distributed(layer_dense(units = 3)) %>%
    bidirectional(layer_lstm(units = 2), merge_mode = "concat")
  expect_equal(dim(predict(model, seq_data())), c(12, 4))
  # Keras: LSTM 4u(d+u+1), GRU reset_after 3u(d+u+2), GRU 3u(d+u+1), SimpleRNN u(d+u+1).
  expect_equal(count_params(model), 4 * 8 * (3 + 8 + 1) + 3 * 4 * (8 + 4 + 2) + 3 * 4 * (4 + 4 + 1) +
                 2 * (4 + 2 + 1) + (2 * 3 + 3) + 2 * 4 * 2 * (3 + 2 + 1))
  out <- format(model)
  expect_match(out, "lstm(_[0-9]+)? \\(LSTM\\)")
  expect_match(out, "(None, 5, 8)", fixed = TRUE)
  expect_match(out, "bidirectional(_[0-9]+)? \\(Bidirectional\\)")
  expect_match(out, "time_distributed(_[0-9]+)? \\(TimeDistributed\\)")
  inner <- keras_model_sequential() %>% layer_dense(2, input_shape = 3)
  expect_error(layer_input(shape = c(4, 3)) %>% bidirectional(inner), "A model cannot be wrapped here",
               class = "rustgpu_unsupported_error")
})

test_that("time_distributed() of a model runs it on every step, sharing its weights", {
  # R keras's video example: a model applied to each frame, then a recurrent layer.
  frame_in <- layer_input(shape = 3)
  frame_model <- keras_model(frame_in, frame_in %>% layer_dense(4, activation = "tanh") %>% layer_dense(2))
  steps_in <- layer_input(shape = c(5, 3))
  per_step <- steps_in %>% time_distributed(frame_model, name = "frames")
  model <- keras_model(steps_in, per_step %>% layer_lstm(units = 3))
  x <- seq_data(n = 6)
  steps_model <- keras_model(steps_in, per_step)
  out <- predict(steps_model, x)
  expect_equal(dim(out), c(6, 5, 2))
  for (t in 1:5) expect_equal(out[, t, ], predict(frame_model, x[, t, ]), tolerance = 1e-6)
  expect_equal(count_params(model), count_params(frame_model) + 4 * 3 * (2 + 3 + 1))
  expect_match(format(model), "frames_steps_to_rows (Lambda)", fixed = TRUE)
  # Training the outer model trains the frame model's weights (one set of weights).
  before <- get_weights(frame_model)
  compile(model, optimizer = optimizer_sgd(0.5), loss = "mse")
  fit(model, x, matrix(1, 6, 3), epochs = 2, batch_size = 3, verbose = 0)
  expect_false(isTRUE(all.equal(get_weights(frame_model), before)))
  expect_equal(predict(steps_model, x)[, 2, ], predict(frame_model, x[, 2, ]), tolerance = 1e-6)
  # A sequential model: the same layers, then the next ones.
  seq_model <- keras_model_sequential() %>% time_distributed(frame_model, input_shape = c(5, 3)) %>% layer_flatten()
  expect_equal(predict(seq_model, x), matrix(aperm(predict(steps_model, x), c(1, 3, 2)), 6), tolerance = 1e-6)
  expect_error(layer_input(shape = c(NA, 3)) %>% time_distributed(frame_model), "known number of steps",
               class = "rustgpu_unsupported_error")
  expect_error(time_distributed(layer = frame_model), "needs what to apply it to", class = "rustgpu_state_error")
})

test_that("recurrent models train, and the loss falls", {
  x <- seq_data(n = 40)
  y <- to_categorical(as.integer(x[, 5, 1] > 0), 2)
  model <- keras_model_sequential() %>%
    layer_gru(units = 6, input_shape = c(5, 3), dropout = 0.1, recurrent_dropout = 0.1) %>%
    layer_dense(2, activation = "softmax")
  compile(model, optimizer = optimizer_adam(0.02), loss = "categorical_crossentropy", metrics = "accuracy")
  h <- fit(model, x, y, epochs = 15, batch_size = 8, verbose = 0)
  expect_lt(tail(h$metrics$loss, 1), h$metrics$loss[1] * 0.7)
})

test_that("masked steps are skipped: padding does not change the output", {
  model <- keras_model_sequential() %>%
    layer_masking(mask_value = 0, input_shape = c(6, 2)) %>%
    layer_lstm(units = 3)
  x <- seq_data(n = 2, steps = 4, features = 2)
  padded <- array(0, c(2, 6, 2))
  padded[, 3:6, ] <- x
  short <- keras_model_sequential() %>% layer_lstm(units = 3, input_shape = c(4, 2))
  set_weights(short, get_weights(model))
  expect_equal(predict(model, padded), predict(short, x), tolerance = 1e-5) # float32 rounding, compared value by value

  tokens <- keras_model_sequential() %>%
    layer_embedding(input_dim = 10, output_dim = 2, mask_zero = TRUE, input_length = 5) %>%
    layer_simple_rnn(units = 2)
  a <- predict(tokens, matrix(c(0, 0, 3, 4, 5), 1))
  b <- predict(tokens, matrix(c(0, 3, 0, 4, 5), 1))
  expect_equal(a, b, tolerance = 1e-6)
})

test_that("stateful layers carry states across batches until reset_states()", {
  model <- keras_model_sequential() %>%
    layer_lstm(units = 3, stateful = TRUE, batch_input_shape = c(2, 4, 1)) %>%
    layer_dense(1)
  x <- array(seq(0.1, 1.6, length.out = 16), c(4, 4, 1))
  first <- predict(model, x[1:2, , , drop = FALSE], batch_size = 2)
  again <- predict(model, x[1:2, , , drop = FALSE], batch_size = 2)
  expect_false(isTRUE(all.equal(first, again)))
  expect_identical(reset_states(model), model)
  expect_equal(predict(model, x[1:2, , , drop = FALSE], batch_size = 2), first)
  expect_error(predict(model, x[1:3, , , drop = FALSE], batch_size = 3), class = "rustgpu_value_error")
  compile(model, optimizer = "sgd", loss = "mse")
  expect_error(multi_gpu_model(model, gpus = 2), "stateful", class = "rustgpu_value_error")
})

test_that("replicas of a recurrent model equal the template", {
  make <- function() {
    set.seed(9)
    keras_model_sequential() %>%
      layer_masking(input_shape = c(5, 3)) %>%
      bidirectional(layer_gru(units = 3, return_sequences = TRUE)) %>%
      layer_lstm(units = 2) %>%
      layer_dense(2, activation = "softmax")
  }
  x <- seq_data(n = 10)
  x[1:3, 1:2, ] <- 0
  y <- to_categorical(rep(0:1, 5), 2)
  template <- make()
  use_virtual_gpus(2, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0))
  parallel <- multi_gpu_model(template, gpus = 2)
  expect_equal(predict(parallel, x, batch_size = 10), predict(template, x, batch_size = 10), tolerance = 1e-6)
  reference <- make()
  compile(reference, optimizer = "adam", loss = "categorical_crossentropy")
  compile(parallel, optimizer = "adam", loss = "categorical_crossentropy")
  fit(reference, x, y, epochs = 2, batch_size = 10, shuffle = FALSE, verbose = 0)
  fit(parallel, x, y, epochs = 2, batch_size = 10, shuffle = FALSE, verbose = 0)
  for (i in seq_along(get_weights(reference))) {
    expect_equal(get_weights(template)[[i]], get_weights(reference)[[i]], tolerance = 1e-5)
  }
})

test_that("masked sequence outputs: loss and metrics count unmasked steps, replicas equal the template", {
  make <- function() {
    set.seed(4)
    keras_model_sequential() %>%
      layer_embedding(input_dim = 7, output_dim = 3, mask_zero = TRUE, input_length = 5) %>%
      layer_lstm(units = 3, return_sequences = TRUE) %>%
      time_distributed(layer_dense(units = 2, activation = "softmax"))
  }
  # Replica 1 gets the heavily padded rows, replica 2 the full ones: each replica's share of
  # the batch's unmasked steps differs from its share of the rows.
  x <- rbind(c(0, 0, 0, 0, 1), c(0, 0, 0, 2, 3), c(0, 0, 4, 5, 6), c(1, 2, 3, 4, 5), c(6, 5, 4, 3, 2), c(2, 2, 2, 2, 2))
  y <- to_categorical((x + col(x)) %% 2, 2)
  sw <- c(1, 2, 0.5, 1, 3, 1)
  template <- make()
  compile(template, optimizer = "sgd", loss = "categorical_crossentropy", metrics = "accuracy")
  p <- predict(template, x)
  mask <- x != 0
  step_loss <- -log(p[, , 1] * y[, , 1] + p[, , 2] * y[, , 2])
  hit <- (p[, , 2] > p[, , 1]) == (y[, , 2] == 1)
  score <- evaluate(template, x, y, sample_weight = sw, batch_size = 6, verbose = 0)
  expect_equal(score$loss, sum(step_loss * mask * sw) / sum(mask), tolerance = 1e-6)
  expect_equal(score$acc, sum(hit * mask) / sum(mask), tolerance = 1e-6)
  # Every step masked: nothing counts, nothing is learned.
  zeros <- matrix(0, 2, 5)
  expect_equal(evaluate(template, zeros, y[1:2, , ], verbose = 0)$loss, 0)

  reference <- make()
  compile(reference, optimizer = "sgd", loss = "categorical_crossentropy", metrics = "accuracy")
  use_virtual_gpus(2, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0))
  for (cpu_merge in c(TRUE, FALSE)) {
    parallel_template <- make()
    parallel <- multi_gpu_model(parallel_template, gpus = 2, cpu_merge = cpu_merge)
    compile(parallel, optimizer = "sgd", loss = "categorical_crossentropy", metrics = "accuracy")
    h1 <- fit(reference, x, y, sample_weight = sw, epochs = 2, batch_size = 6, shuffle = FALSE, verbose = 0)
    h2 <- fit(parallel, x, y, sample_weight = sw, epochs = 2, batch_size = 6, shuffle = FALSE, verbose = 0)
    expect_equal(h2$metrics, h1$metrics[names(h2$metrics)], tolerance = 1e-6)
    expect_equal(evaluate(parallel, x, y, verbose = 0), evaluate(reference, x, y, verbose = 0), tolerance = 1e-6)
    for (i in seq_along(get_weights(reference))) {
      expect_equal(get_weights(parallel_template)[[i]], get_weights(reference)[[i]], tolerance = 1e-5)
    }
    reference <- make()
    compile(reference, optimizer = "sgd", loss = "categorical_crossentropy", metrics = "accuracy")
  }
})

test_that("bad recurrent arguments are classed errors that say what to change", {
  expect_error(layer_lstm(units = 0), "units", class = "rustgpu_value_error")
  expect_error(layer_gru(units = 2, dropout = 1), "dropout", class = "rustgpu_value_error")
  expect_error(layer_lstm(units = 2, go_backwards = "yes"), "go_backwards", class = "rustgpu_value_error")
  expect_error(bidirectional(layer = "lstm"), "layer_lstm", class = "rustgpu_value_error")
  expect_error(keras_model_sequential() %>% bidirectional(layer_dense(units = 2), input_shape = c(3, 2)),
               "recurrent layer", class = "rustgpu_value_error")
  expect_error(keras_model_sequential() %>% bidirectional(layer_lstm(units = 2), merge_mode = "max", input_shape = c(3, 2)),
               "merge_mode", class = "rustgpu_value_error")
  expect_error(keras_model_sequential() %>% layer_lstm(units = 2, input_shape = 4), "(batch, time, features)",
               fixed = TRUE, class = "rustgpu_value_error")
  expect_error(layer_repeat_vector(n = 0), "n", class = "rustgpu_value_error")
  expect_error(layer_masking(mask_value = NA), "mask_value", class = "rustgpu_value_error")
})

test_that("a step whose recurrent states would not fit in memory is a resource error, not an abort", {
  # The output is small (100 x 1000) but the steps kept for backpropagation are not.
  model <- keras_model_sequential() %>% layer_lstm(units = 1000, input_shape = c(1e5, 1))
  x <- array(0, c(100, 1e5, 1))
  expect_error(predict(model, x, batch_size = 100), class = "rustgpu_resource_error")
})

test_that("an encoder's states start a decoder (return_state, initial_state) as in tf-keras", {
  fx <- jsonlite::fromJSON(test_path("..", "fixtures", "h5", "expected.json"), simplifyVector = TRUE,
                           simplifyMatrix = TRUE, simplifyDataFrame = FALSE)$seq2seq
  encoder_input <- layer_input(shape = c(5, 3), name = "encoder_input")
  c(., state_h, state_c) %<-% layer_lstm(encoder_input, units = 4, return_state = TRUE, name = "encoder")
  decoder_input <- layer_input(shape = c(4, 2), name = "decoder_input")
  decoder <- layer_lstm(units = 4, return_sequences = TRUE, return_state = TRUE, name = "decoder")
  c(decoded, ., .) %<-% decoder(decoder_input, initial_state = list(state_h, state_c))
  head <- decoded %>% time_distributed(layer_dense(units = 2, activation = "softmax"), name = "head")
  c(., gru_state) %<-% layer_gru(decoded, units = 3, return_state = TRUE, name = "summary")
  side <- gru_state %>% layer_dense(units = 1, name = "side")
  model <- keras_model(list(encoder_input, decoder_input), list(head, side))
  x <- list(fx$xe, fx$xd)
  set_weights(model, as_weight_list(fx$initial_weights))
  pred <- predict(model, x)
  expect_equal(pred[[1]], fx$initial_predictions[[1]], tolerance = 1e-5)
  expect_equal(pred[[2]], fx$initial_predictions[[2]], tolerance = 1e-5)
  compile(model, optimizer = optimizer_adam(0.01), loss = list("categorical_crossentropy", "mse"))
  h <- fit(model, x, list(fx$y_seq, fx$y_side), epochs = 2, batch_size = 3, shuffle = FALSE, verbose = 0)
  expect_equal(h$metrics$loss, fx$history$loss, tolerance = 1e-4)
  expect_equal(h$metrics$head_loss, fx$history$head_loss, tolerance = 1e-4)
  final <- as_weight_list(fx$final_weights)
  got <- get_weights(model)
  for (i in seq_along(final)) expect_equal(as.numeric(got[[i]]), as.numeric(final[[i]]), tolerance = 1e-4)

  keras_made <- load_model_hdf5(test_path("..", "fixtures", "h5", "keras_seq2seq_model.h5"))
  expect_equal(predict(keras_made, x)[[2]], fx$predictions[[2]], tolerance = 1e-5)
  path <- tempfile(fileext = ".h5")
  save_model_hdf5(model, path)
  expect_equal(predict(load_model_hdf5(path), x), predict(model, x))
  wrong <- decoder(decoder_input, initial_state = list(state_h))[[1]]
  expect_error(keras_model(list(encoder_input, decoder_input), wrong), "initial state", class = "rustgpu_value_error")
})

abind_last <- function(a, b) {
  out <- array(0, c(dim(a)[-3], dim(a)[3] + dim(b)[3]))
  out[, , seq_len(dim(a)[3])] <- a
  out[, , dim(a)[3] + seq_len(dim(b)[3])] <- b
  out
}

test_that("bidirectional(merge_mode = NULL) gives both directions, which concat would have joined", {
  input <- layer_input(shape = c(5, 3))
  c(forward, backward) %<-% bidirectional(input, layer_gru(units = 2, return_sequences = TRUE), merge_mode = NULL)
  separate <- keras_model(input, list(forward, backward))
  joined <- keras_model(input, bidirectional(input, layer_gru(units = 2, return_sequences = TRUE)))
  set_weights(joined, get_weights(separate))
  x <- seq_data(n = 4)
  both <- predict(separate, x)
  expect_equal(abind_last(both[[1]], both[[2]]), predict(joined, x), tolerance = 1e-6)
  # Trains through both outputs, and the config keeps merge_mode = NULL.
  compile(separate, optimizer = "adam", loss = list("mse", "mse"))
  h <- fit(separate, x, list(array(0, c(4, 5, 2)), array(1, c(4, 5, 2))), epochs = 3, verbose = 0)
  expect_lt(tail(h$metrics$loss, 1), h$metrics$loss[1])
  path <- tempfile(fileext = ".h5")
  save_model_hdf5(separate, path)
  expect_equal(predict(load_model_hdf5(path), x), predict(separate, x))
})

test_that("a bidirectional encoder's four states start a decoder as in tf-keras", {
  all <- jsonlite::fromJSON(test_path("..", "fixtures", "h5", "expected.json"), simplifyVector = TRUE,
                            simplifyMatrix = TRUE, simplifyDataFrame = FALSE)
  data <- all$seq2seq
  fx <- all$bidirectional_seq2seq
  encoder_input <- layer_input(shape = c(5, 3), name = "encoder_input")
  c(., fh, fc, bh, bc) %<-% bidirectional(encoder_input, layer_lstm(units = 3, return_state = TRUE), name = "encoder")
  state_h <- layer_concatenate(list(fh, bh), name = "state_h")
  state_c <- layer_concatenate(list(fc, bc), name = "state_c")
  decoder_input <- layer_input(shape = c(4, 2), name = "decoder_input")
  decoded <- layer_lstm(units = 6, return_sequences = TRUE, name = "decoder")(decoder_input, initial_state = list(state_h, state_c))
  out <- decoded %>% time_distributed(layer_dense(units = 2, activation = "softmax"), name = "head")
  model <- keras_model(list(encoder_input, decoder_input), out)
  x <- list(data$xe, data$xd)
  set_weights(model, as_weight_list(fx$initial_weights))
  expect_equal(predict(model, x), fx$initial_predictions, tolerance = 1e-5)
  compile(model, optimizer = optimizer_adam(0.01), loss = "categorical_crossentropy")
  h <- fit(model, x, data$y_seq, epochs = 2, batch_size = 3, shuffle = FALSE, verbose = 0)
  expect_equal(h$metrics$loss, fx$history$loss, tolerance = 1e-4)
  final <- as_weight_list(fx$final_weights)
  got <- get_weights(model)
  for (i in seq_along(final)) expect_equal(as.numeric(got[[i]]), as.numeric(final[[i]]), tolerance = 1e-4)
  path <- tempfile(fileext = ".h5")
  save_model_hdf5(model, path)
  expect_equal(predict(load_model_hdf5(path), x), predict(model, x))
})

test_that("summary() lists a layer's outputs as Keras does when it has several", {
  input <- layer_input(shape = c(5, 3))
  c(out, h, c) %<-% layer_lstm(input, units = 4, return_state = TRUE, name = "encoder")
  model <- keras_model(input, list(out, h, c))
  expect_match(paste(format(model), collapse = "\n"), "[(None, 4), (None, 4), (None, 4)]", fixed = TRUE)
})

test_that("a time axis of any length (shape = list(NULL, n)) trains and predicts as tf-keras's", {
  fx <- jsonlite::fromJSON(test_path("..", "fixtures", "h5", "expected.json"), simplifyVector = TRUE,
                           simplifyMatrix = TRUE, simplifyDataFrame = FALSE)$variable_length
  encoder_input <- layer_input(shape = list(NULL, 3), name = "encoder_input")
  c(., state_h, state_c) %<-% layer_lstm(encoder_input, units = 4, return_state = TRUE, name = "encoder")
  decoder_input <- layer_input(shape = c(NA, 2), name = "decoder_input")
  decoder <- layer_lstm(units = 4, return_sequences = TRUE, return_state = TRUE, name = "decoder")
  c(decoded, ., .) %<-% decoder(decoder_input, initial_state = list(state_h, state_c))
  head <- decoded %>% layer_dense(units = 2, activation = "softmax", name = "head")
  model <- keras_model(list(encoder_input, decoder_input), head)
  expect_equal(model$output_shape, list(NULL, NULL, 2L))
  expect_equal(get_layer(model, "decoder")$output_shape, list(list(NULL, NULL, 4L), list(NULL, 4L), list(NULL, 4L)))
  expect_output(summary(model), "(None, None, 2)", fixed = TRUE)
  set_weights(model, as_weight_list(fx$initial_weights))
  x <- list(fx$xe, fx$xd)
  expect_equal(predict(model, x), fx$initial_predictions, tolerance = 1e-5)
  # Other lengths than the training batches': 2 encoder steps, 1 decoder step.
  short <- list(fx$xe[1:2, 1:2, , drop = FALSE], fx$xd[1:2, 1, , drop = FALSE])
  expect_equal(predict(model, short), fx$short_predictions, tolerance = 1e-5)

  keras_made <- load_model_hdf5(test_path("..", "fixtures", "h5", "keras_variable_length_model.h5"))
  expect_equal(keras_made$input_shape, list(list(NULL, NULL, 3L), list(NULL, NULL, 2L)))
  expect_equal(predict(keras_made, short), fx$short_predictions, tolerance = 1e-5)

  compile(model, optimizer = optimizer_rmsprop(0.01), loss = "categorical_crossentropy", metrics = "accuracy")
  h <- fit(model, x, fx$y, epochs = 2, batch_size = 3, shuffle = FALSE, verbose = 0)
  expect_equal(h$metrics$loss, fx$history$loss, tolerance = 1e-4)
  expect_equal(h$metrics$accuracy, fx$history$accuracy, tolerance = 1e-6)
  final <- as_weight_list(fx$final_weights)
  got <- get_weights(model)
  for (i in seq_along(final)) expect_equal(as.numeric(got[[i]]), as.numeric(final[[i]]), tolerance = 1e-4)
  # Batches of another length train too; saving keeps the sizes variable.
  fit(model, short, fx$y[1:2, 1, , drop = FALSE], epochs = 1, verbose = 0)
  path <- tempfile(fileext = ".h5")
  save_model_hdf5(model, path)
  again <- load_model_hdf5(path)
  expect_equal(again$output_shape, list(NULL, NULL, 2L))
  expect_equal(predict(again, short), predict(model, short))
})

test_that("layer_conv_lstm_2d() runs over frames of any number and refuses what it lacks", {
  model <- keras_model_sequential() %>%
    layer_conv_lstm_2d(3, c(3, 3), padding = "same", return_sequences = TRUE, input_shape = list(NULL, 6, 5, 1)) %>%
    layer_conv_lstm_2d(2, c(2, 2))
  expect_equal(model$output_shape, list(NULL, 5L, 4L, 2L))
  expect_equal(dim(get_weights(model)[[2]]), c(3L, 3L, 3L, 12L))
  expect_equal(dim(predict(model, array(runif(2 * 4 * 6 * 5), c(2, 4, 6, 5, 1)))), c(2L, 5L, 4L, 2L))
  expect_equal(dim(predict(model, array(runif(2 * 7 * 6 * 5), c(2, 7, 6, 5, 1)))), c(2L, 5L, 4L, 2L))
  expect_error(keras_model_sequential() %>% layer_conv_lstm_2d(2, 3, dropout = 0.2, input_shape = c(3, 6, 6, 1)),
               "not supported yet", class = "rustgpu_value_error")
  expect_error(layer_conv_lstm_2d(filters = 2, kernel_size = 3, data_format = "channels_first"), "channels last",
               class = "rustgpu_value_error")
})
