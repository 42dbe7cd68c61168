# The cost of model code written in R: a dense layer written as an R6 layer class (traced:
# k_relu(k_dot(x, kernel) + bias)) against the built-in layer_dense(), in the same MLP
# (784-256-256-10, RMSprop, batch 128), side by side in one run, interleaved (this VM is
# noisy). Prints each side's median fit and predict throughput with min and max, and the
# ratio traced/built-in of the medians (1 = no cost; below 1 = the traced layer is slower).
#
#   SAMPLES=10000 REPEATS=7 Rscript bench/traced_layers.R
suppressMessages(library(rustgpu))
n <- as.integer(Sys.getenv("SAMPLES", "10000"))
repeats <- as.integer(Sys.getenv("REPEATS", "7"))

TracedDense <- R6::R6Class("TracedDense", inherit = KerasLayer, public = list(
  units = NULL, kernel = NULL, bias = NULL,
  initialize = function(units) self$units <- units,
  build = function(input_shape) {
    self$kernel <- self$add_weight("kernel", list(input_shape[[2]], self$units), initializer = "glorot_uniform")
    self$bias <- self$add_weight("bias", list(self$units), initializer = "zeros")
  },
  call = function(x, mask = NULL) k_relu(k_dot(x, self$kernel) + self$bias)
))
layer_traced_dense <- function(object, units, input_shape = NULL) {
  create_layer(TracedDense, object, list(units = units, input_shape = input_shape))
}

make <- function(traced) {
  set.seed(1)
  hidden <- if (traced) layer_traced_dense else function(object, units, input_shape = NULL) {
    layer_dense(object, units, activation = "relu", input_shape = input_shape)
  }
  model <- keras_model_sequential() %>%
    hidden(256, input_shape = 784) %>%
    hidden(256) %>%
    layer_dense(10, activation = "softmax")
  compile(model, optimizer = "rmsprop", loss = "categorical_crossentropy")
  model
}

set.seed(2)
x <- matrix(runif(n * 784), n)
y <- to_categorical(sample(0:9, n, replace = TRUE), 10)
models <- list(builtin = make(FALSE), traced = make(TRUE))
for (m in models) {
  fit(m, x, y, batch_size = 128, epochs = 1, verbose = 0)
  predict(m, x, batch_size = 128)
}
times <- list()
for (r in seq_len(repeats)) {
  for (side in names(models)) {
    m <- models[[side]]
    times[[length(times) + 1]] <- data.frame(
      side = side,
      fit = n / system.time(fit(m, x, y, batch_size = 128, epochs = 1, verbose = 0))[["elapsed"]],
      predict = n / system.time(predict(m, x, batch_size = 128))[["elapsed"]]
    )
  }
}
times <- do.call(rbind, times)
for (what in c("fit", "predict")) {
  for (side in names(models)) {
    v <- times[times$side == side, what]
    cat(sprintf("%-8s %-8s median %8.0f samples/s (min %8.0f, max %8.0f)\n", what, side, stats::median(v), min(v), max(v)))
  }
  ratio <- stats::median(times[times$side == "traced", what]) / stats::median(times[times$side == "builtin", what])
  cat(sprintf("%-8s traced/built-in: %.2f\n", what, ratio))
}
