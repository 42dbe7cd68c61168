# The benchmarks' models, one definition for every script in bench/ (the suite against
# tf-keras, the scaling and data-path benches, the A/B scripts in bench/ab/): each with its
# input shape and batch size. bench/keras_peer.py builds the same models in tf-keras.
# Scripts load it with: source(file.path(dirname(sub("^--file=", "", grep("^--file=",
# commandArgs(FALSE), value = TRUE)[1])), "models.R")) ("../models.R" from bench/ab/).
# Recurrent workloads read word indices (`tokens`: the vocabulary size) and end in one sigmoid
# unit (binary cross-entropy); the others read floats and end in 10 softmax units.
bench_model <- function(workload) {
  imdb <- function(recurrent) list(model = keras_model_sequential() %>%
                                     layer_embedding(20000, 128, input_length = 80) %>%
                                     recurrent(units = 128) %>%
                                     layer_dense(1, activation = "sigmoid"), shape = 80, batch = 32, tokens = 20000)
  switch(workload,
    imdb_lstm = imdb(layer_lstm),
    imdb_gru = imdb(layer_gru),
    mlp = list(model = keras_model_sequential() %>%
                 layer_dense(512, activation = "relu", input_shape = 784) %>%
                 layer_dense(512, activation = "relu") %>%
                 layer_dense(10, activation = "softmax"), shape = 784, batch = 256),
    cnn = list(model = keras_model_sequential() %>%
                 layer_conv_2d(32, 3, activation = "relu", input_shape = c(28, 28, 1)) %>%
                 layer_max_pooling_2d() %>%
                 layer_conv_2d(64, 3, activation = "relu") %>%
                 layer_max_pooling_2d() %>%
                 layer_flatten() %>%
                 layer_dense(128, activation = "relu") %>%
                 layer_dense(10, activation = "softmax"), shape = c(28, 28, 1), batch = 128),
    blocks = {
      inputs <- layer_input(c(71, 71, 3))
      x <- inputs %>% layer_conv_2d(32, 3, strides = 2, use_bias = FALSE) %>% layer_batch_normalization() %>%
        layer_activation("relu")
      for (filters in c(64, 128)) {
        residual <- x %>% layer_conv_2d(filters, 1, strides = 2, padding = "same", use_bias = FALSE) %>%
          layer_batch_normalization()
        x <- x %>% layer_activation("relu") %>%
          layer_separable_conv_2d(filters, 3, padding = "same", use_bias = FALSE) %>% layer_batch_normalization() %>%
          layer_activation("relu") %>%
          layer_separable_conv_2d(filters, 3, padding = "same", use_bias = FALSE) %>% layer_batch_normalization() %>%
          layer_max_pooling_2d(3, strides = 2, padding = "same")
        x <- layer_add(list(x, residual))
      }
      outputs <- x %>% layer_global_average_pooling_2d() %>% layer_dense(10, activation = "softmax")
      list(model = keras_model(inputs, outputs), shape = c(71, 71, 3), batch = 32)
    },
    # Keras's whole Xception at its smallest input, 10 classes, no pretrained weights.
    xception = list(model = application_xception(weights = NULL, input_shape = c(71, 71, 3), classes = 10),
                    shape = c(71, 71, 3), batch = 16)
  )
}

# Random data of `n` samples for a bench_model(): floats and one-hot labels of 10 classes, or
# word indices and 0/1 labels for the recurrent workloads; with the loss to compile with.
bench_data <- function(b, n) {
  if (is.null(b$tokens)) {
    list(x = array(runif(n * prod(b$shape)), c(n, b$shape)), y = to_categorical(sample(0:9, n, replace = TRUE), 10),
         loss = "categorical_crossentropy")
  } else {
    list(x = array(sample(0:(b$tokens - 1), n * prod(b$shape), replace = TRUE), c(n, b$shape)),
         y = matrix(sample(0:1, n, replace = TRUE), n, 1), loss = "binary_crossentropy")
  }
}
