# A/B throughput of the suite's Xception-style block net (71x71x3, batch 32, 128 rows): one
# fit epoch and one predict after a warm-up. Alternate runs of two builds:
#
#   R_LIBS=<lib> Rscript bench/ab/blocks.R
suppressMessages(library(rustgpu))
set.seed(1)
n <- 128
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
m <- keras_model(inputs, outputs)
xx <- array(runif(n * 71 * 71 * 3), c(n, 71, 71, 3))
y <- to_categorical(sample(0:9, n, TRUE), 10)
compile(m, optimizer = "rmsprop", loss = "categorical_crossentropy")
fit(m, xx, y, batch_size = 32, epochs = 1, verbose = 0)
f <- system.time(fit(m, xx, y, batch_size = 32, epochs = 1, verbose = 0))[["elapsed"]]
p <- system.time(predict(m, xx, batch_size = 32))[["elapsed"]]
cat(sprintf("blocks fit %.1f samples/s  predict %.1f samples/s\n", n / f, n / p))
