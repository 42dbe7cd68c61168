# Numerics against fixtures made by real tf-keras (tests/fixtures/make_keras_fixtures.py).

test_that("activations match Keras on a probe vector", {
  fx <- keras_fixtures()
  probe <- matrix(fx$activation_probe, nrow = 1)
  for (act in names(fx$activations)) {
    model <- keras_model_sequential() %>% layer_activation(act, input_shape = ncol(probe))
    out <- predict(model, probe)
    expect_equal(as.numeric(out), fx$activations[[act]], tolerance = 1e-6, label = act)
  }
})

test_that("predictions from Keras-initialised weights match Keras within 1e-5", {
  fx <- keras_fixtures()
  for (case in fx$cases) {
    x <- fixture_input(fx, case)
    model <- build_fixture_model(case, sample_shape(x))
    set_weights(model, as_weight_list(case$initial_weights))
    pred <- predict(model, x)
    expected <- case$initial_predictions
    if (is.null(dim(expected))) expected <- as.matrix(expected)
    expect_equal(unname(pred), unname(expected), tolerance = 1e-5, label = case$name)
  }
})

test_that("2 epochs without shuffling (dense and conv nets) match Keras's losses, metrics and weights within 1e-4", {
  fx <- keras_fixtures()
  for (case in fx$cases) {
    x <- fixture_input(fx, case)
    model <- build_fixture_model(case, sample_shape(x))
    set_weights(model, as_weight_list(case$initial_weights))
    compile(model, optimizer = fixture_optimizer(case$optimizer), loss = case$loss,
            metrics = case$metrics)
    h <- fit(model, x, fixture_target(fx, case), epochs = case$epochs,
             batch_size = case$batch_size, shuffle = FALSE, verbose = 0)
    for (metric in names(case$history)) {
      expect_equal(h$metrics[[metric]], case$history[[metric]], tolerance = 1e-4,
                   label = paste(case$name, metric))
    }
    final <- as_weight_list(case$final_weights)
    got <- get_weights(model)
    for (i in seq_along(final)) {
      expect_equal(as.numeric(got[[i]]), as.numeric(final[[i]]), tolerance = 1e-4,
                   label = paste(case$name, "weight", i))
    }
  }
})
