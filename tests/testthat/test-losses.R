# Losses and metrics as functions and objects (R/losses.R); their training numerics are
# matched against tf-keras in test-keras-numerics.R.

test_that("loss and metric functions give each sample's value", {
  y <- rbind(c(0, 1, 0), c(1, 0, 0))
  p <- rbind(c(0.2, 0.7, 0.1), c(0.5, 0.25, 0.25))
  expect_equal(as.vector(loss_mean_squared_error(y, p)), rowMeans((y - p)^2), tolerance = 1e-6)
  expect_equal(as.vector(loss_categorical_crossentropy(y, p)), -log(c(0.7, 0.5)), tolerance = 1e-6)
  expect_equal(as.vector(loss_sparse_categorical_crossentropy(c(1, 0), p)), -log(c(0.7, 0.5)), tolerance = 1e-6)
  expect_equal(as.vector(loss_kullback_leibler_divergence(y, p)), -log(c(0.7, 0.5)), tolerance = 1e-5)
  expect_equal(as.vector(loss_hinge(c(1, 0), c(0.5, 0.5))), c(0.5, 1.5), tolerance = 1e-6)
  expect_equal(as.vector(loss_huber(c(0, 0), c(0.5, 3))), c(0.125, 2.5), tolerance = 1e-6)
  expect_equal(as.vector(loss_cosine_proximity(rbind(c(1, 0)), rbind(c(1, 1)))), -1 / sqrt(2), tolerance = 1e-6)
  expect_equal(as.vector(metric_binary_accuracy(c(1, 0, 1), c(0.9, 0.2, 0.3))), c(1, 1, 0))
  expect_equal(as.vector(metric_categorical_accuracy(y, p)), c(1, 1))
  expect_equal(as.vector(metric_sparse_categorical_accuracy(c(2, 0), p)), c(0, 1))
  expect_output(print(loss_binary_crossentropy), "<loss binary_crossentropy>")
  expect_error(loss_mean_squared_error(y, p[1, , drop = FALSE]), "same number of samples", class = "rustgpu_value_error")
})

test_that("compile() takes loss and metric functions and reports metrics by their names", {
  set.seed(2)
  x <- matrix(rnorm(60), 20, 3)
  y <- as.numeric(x[, 1] > 0)
  fit_with <- function(loss, metrics) {
    set.seed(5)
    model <- keras_model_sequential() %>% layer_dense(1, activation = "sigmoid", input_shape = 3)
    compile(model, optimizer = optimizer_sgd(0.1), loss = loss, metrics = metrics)
    fit(model, x, y, epochs = 2, batch_size = 5, shuffle = FALSE, verbose = 0)
  }
  a <- fit_with(loss_binary_crossentropy, metric_binary_accuracy)
  b <- fit_with("binary_crossentropy", "binary_accuracy")
  expect_equal(a$metrics, b$metrics)
  expect_named(a$metrics, c("loss", "binary_accuracy"))
  h <- fit_with("binary_crossentropy", list("acc", metric_mean_squared_error, hits = metric_binary_accuracy, "mape"))
  expect_named(h$metrics, c("loss", "acc", "mean_squared_error", "hits", "mape"))
  expect_equal(h$metrics$hits, h$metrics$acc)
  # Written in R: the same loss and accuracy from backend functions.
  own <- fit_with(function(y_true, y_pred) k_mean(k_binary_crossentropy(y_true, y_pred), axis = -1),
                  list(hits = function(y_true, y_pred) k_mean(k_equal(y_true, k_round(y_pred)), axis = -1)))
  expect_named(own$metrics, c("loss", "hits"))
  expect_equal(own$metrics$loss, b$metrics$loss, tolerance = 1e-5)
  expect_equal(own$metrics$hits, b$metrics$binary_accuracy)
})

test_that("AUC, precision and recall are computed over all the samples: in evaluate(), fit() and on replicas", {
  set.seed(21)
  x <- matrix(rnorm(300), 100, 3)
  y <- as.numeric(x[, 1] + rnorm(100) > 0)
  model <- keras_model_sequential() %>% layer_dense(1, activation = "sigmoid", input_shape = 3)
  # A learning rate this small leaves the weights as they are: fit()'s epoch figures are
  # then those of the whole data set too.
  compile(model, optimizer = optimizer_sgd(1e-12), loss = "binary_crossentropy",
          metrics = list(metric_auc, "Precision", metric_recall))
  p <- as.numeric(predict(model, x))
  tp <- sum(p > 0.5 & y == 1)
  fp <- sum(p > 0.5 & y == 0)
  fn <- sum(p <= 0.5 & y == 1)
  s <- evaluate(model, x, y, batch_size = 7, verbose = 0)
  expect_named(s, c("loss", "auc", "precision", "recall"))
  expect_equal(s$precision, tp / (tp + fp), tolerance = 1e-6)
  expect_equal(s$recall, tp / (tp + fn), tolerance = 1e-6)
  # The area from 200 thresholds is within a bin of the exact (rank) area.
  n1 <- sum(y == 1)
  n0 <- sum(y == 0)
  exact <- (sum(rank(p)[y == 1]) - n1 * (n1 + 1) / 2) / (n1 * n0)
  expect_equal(s$auc, exact, tolerance = 0.01)
  # Not a mean of batch values: any batch size gives the same figure; so does a direct call.
  expect_equal(evaluate(model, x, y, batch_size = 100, verbose = 0), s, tolerance = 1e-6)
  expect_equal(as.numeric(metric_auc(y, p)), s$auc, tolerance = 1e-6)
  h <- fit(model, x, y, epochs = 1, batch_size = 9, verbose = 0)
  expect_equal(h$metrics$auc, s$auc, tolerance = 1e-6)
  expect_equal(h$metrics$precision, s$precision, tolerance = 1e-6)
  # Replicas add their counts: the same figures.
  use_virtual_gpus(2, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0))
  parallel <- multi_gpu_model(model, gpus = 2)
  compile(parallel, optimizer = optimizer_sgd(1e-12), loss = "binary_crossentropy", metrics = c("auc", "precision", "recall"))
  expect_equal(evaluate(parallel, x, y, batch_size = 7, verbose = 0), s, tolerance = 1e-6)
  hp <- fit(parallel, x, y, epochs = 1, batch_size = 9, verbose = 0)
  expect_equal(hp$metrics$recall, s$recall, tolerance = 1e-6)
})
