# Layers shared by several models have one set of weights; models are called like layers.

toy_x <- function(n = 40, d = 4) {
  set.seed(11)
  matrix(runif(n * d), n, d)
}

test_that("an autoencoder and its encoder share the encoder's weights, both ways", {
  x <- toy_x()
  input <- layer_input(shape = 4)
  encoded <- input %>% layer_dense(2, activation = "relu", name = "code")
  decoded <- encoded %>% layer_dense(4, name = "reconstruction")
  autoencoder <- keras_model(input, decoded)
  encoder <- keras_model(input, encoded)
  compile(autoencoder, optimizer = optimizer_adam(0.05), loss = "mse")
  before <- get_weights(encoder)
  fit(autoencoder, x, x, epochs = 2, batch_size = 8, verbose = 0)
  expect_false(identical(get_weights(encoder), before))
  expect_identical(get_weights(encoder), get_weights(autoencoder)[1:2])
  w <- get_weights(autoencoder)
  expect_equal(predict(encoder, x), pmax(sweep(x %*% w[[1]], 2, w[[2]], "+"), 0), tolerance = 1e-5)
  # Training the encoder alone changes the autoencoder's first layer too.
  compile(encoder, optimizer = optimizer_sgd(0.5), loss = "mse")
  train_on_batch(encoder, x, matrix(1, nrow(x), 2))
  expect_identical(get_weights(autoencoder)[1:2], get_weights(encoder))
  expect_identical(get_weights(autoencoder)[3:4], w[3:4])
  # set_weights() on one is seen by the other.
  set_weights(autoencoder, lapply(w, function(a) a * 0 + 0.25))
  expect_true(all(unlist(get_weights(encoder)) == 0.25))
})

test_that("a model called on two tensors shares its layers: a siamese network", {
  x1 <- toy_x()
  x2 <- toy_x() * 2 - 1
  encoder <- keras_model_sequential() %>% layer_dense(3, activation = "tanh", input_shape = 4)
  a <- layer_input(shape = 4)
  b <- layer_input(shape = 4)
  distance <- layer_subtract(list(encoder(a), b %>% encoder)) %>% layer_dense(1)
  siamese <- keras_model(list(a, b), distance)
  # The encoder's weights once (15), the head's (4).
  expect_match(format(siamese), "Total params: 19", fixed = TRUE)
  w <- get_weights(siamese)
  expect_identical(w[1:2], get_weights(encoder))
  enc <- function(x) tanh(sweep(x %*% w[[1]], 2, w[[2]], "+"))
  expect_equal(predict(siamese, list(x1, x2)), (enc(x1) - enc(x2)) %*% w[[3]] + w[[4]][1], tolerance = 1e-5)
  compile(siamese, optimizer = optimizer_sgd(0.1), loss = "mse")
  fit(siamese, list(x1, x2), rowSums(x1 - x2), epochs = 2, batch_size = 8, verbose = 0)
  expect_identical(get_weights(encoder), get_weights(siamese)[1:2])
  expect_false(identical(get_weights(encoder), w[1:2]))
})

test_that("models compose: model(tensor) chains models, %>% model adds its layers, model(array) predicts", {
  x <- toy_x()
  encoder <- keras_model(layer_input(shape = 4) -> i, i %>% layer_dense(2, activation = "relu"))
  decoder <- keras_model(layer_input(shape = 2) -> j, j %>% layer_dense(4))
  z <- layer_input(shape = 4)
  full <- keras_model(z, z %>% encoder() %>% decoder())
  expect_equal(predict(full, x), predict(decoder, predict(encoder, x)), tolerance = 1e-6)
  expect_equal(encoder(x), predict(encoder, x))
  expect_equal(x %>% encoder(), predict(encoder, x))
  # A sequential model inside a sequential model; a functional chain too.
  base <- keras_model_sequential() %>% layer_dense(4, input_shape = 4, activation = "tanh")
  stacked <- keras_model_sequential() %>% base() %>% encoder() %>% layer_dense(1)
  expect_equal(length(stacked$layers), 3)
  expect_identical(get_weights(stacked)[1:4], c(get_weights(base), get_weights(encoder)) |> (\(w) w[1:4])())
  expect_error(keras_model_sequential() %>% layer_dense(2, input_shape = 3) %>% keras_model(list(a <- layer_input(3), b <- layer_input(3)), layer_add(list(a, b)))(),
               class = "rustgpu_state_error")
  expect_error(encoder(list(z, z)), "has 1 input but was called on 2 tensors", class = "rustgpu_value_error")
  expect_error(encoder(), "Call a model on tensors", class = "rustgpu_value_error")
})

test_that("layers frozen before a model is made stay frozen in it; a compiled model keeps what it trained (GAN)", {
  set.seed(12)
  noise <- matrix(rnorm(64), 16, 4)
  real <- matrix(rnorm(48, mean = 2), 16, 3)
  generator <- keras_model_sequential() %>% layer_dense(3, input_shape = 4)
  discriminator <- keras_model_sequential() %>% layer_dense(1, activation = "sigmoid", input_shape = 3)
  compile(discriminator, optimizer = optimizer_sgd(0.5), loss = "binary_crossentropy")
  freeze_weights(discriminator)
  z <- layer_input(shape = 4)
  combined <- keras_model(z, discriminator(generator(z)))
  compile(combined, optimizer = optimizer_sgd(0.5), loss = "binary_crossentropy")
  expect_match(format(combined), "Non-trainable params: 4", fixed = TRUE)
  for (step in 1:3) {
    d_before <- get_weights(discriminator)
    fake <- predict(generator, noise)
    # The discriminator, compiled before it was frozen, still learns on its own ...
    # (Keras's warning about it, once.)
    if (step == 1) {
      expect_warning(train_on_batch(discriminator, rbind(real, fake), c(rep(1, 16), rep(0, 16))), "Discrepancy between trainable weights")
    } else {
      expect_no_warning(train_on_batch(discriminator, rbind(real, fake), c(rep(1, 16), rep(0, 16))))
    }
    expect_false(identical(get_weights(discriminator), d_before))
    # ... and the combined model uses its newest weights, training only the generator.
    d_now <- get_weights(discriminator)
    g_before <- get_weights(generator)
    expect_equal(predict(combined, noise), predict(discriminator, predict(generator, noise)), tolerance = 1e-6)
    train_on_batch(combined, noise, rep(1, 16))
    expect_identical(get_weights(discriminator), d_now)
    expect_false(identical(get_weights(generator), g_before))
    expect_identical(get_weights(generator), get_weights(combined)[1:2])
  }
})

test_that("a parallel model of a composed model trains the shared layers", {
  use_virtual_gpus(2, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0))
  x <- toy_x()
  base <- keras_model_sequential() %>% layer_dense(3, input_shape = 4, activation = "tanh")
  outer <- keras_model_sequential() %>% base() %>% layer_dense(1)
  parallel <- multi_gpu_model(outer, gpus = 2)
  compile(parallel, optimizer = optimizer_sgd(0.1), loss = "mse")
  before <- get_weights(base)
  fit(parallel, x, rowSums(x), epochs = 1, batch_size = 8, verbose = 0)
  expect_false(identical(get_weights(base), before))
  expect_identical(get_weights(base), get_weights(outer)[1:2])
})

test_that("unbuilt sequential models called on tensors share their layers with the model built from them", {
  sequence <- layer_input(shape = 4)
  encoder <- keras_model_sequential() %>% layer_embedding(input_dim = 10, output_dim = 3) %>% layer_dropout(0.1)
  encoded <- encoder(sequence)
  model <- keras_model(sequence, encoded %>% layer_flatten() %>% layer_dense(1))
  compile(model, optimizer = "sgd", loss = "mse")
  x <- matrix(c(1, 2, 3, 4, 5, 6, 7, 8), 2)
  before <- get_weights(model)[[1]]
  fit(model, x, matrix(c(1, 0)), epochs = 1, verbose = 0)
  expect_false(isTRUE(all.equal(get_weights(model)[[1]], before)))
  expect_equal(dim(predict(model, x)), c(2, 1))
})
