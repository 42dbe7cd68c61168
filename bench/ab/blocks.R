# A/B throughput of the suite's Xception-style block net (71x71x3, batch 32, 128 rows): one
# fit epoch and one predict after a warm-up. Alternate runs of two builds:
#
#   R_LIBS=<lib> Rscript bench/ab/blocks.R
suppressMessages(library(rustgpu))
set.seed(1)
n <- 128
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "..", "models.R"))
m <- bench_model("blocks")$model
xx <- array(runif(n * 71 * 71 * 3), c(n, 71, 71, 3))
y <- to_categorical(sample(0:9, n, TRUE), 10)
compile(m, optimizer = "rmsprop", loss = "categorical_crossentropy")
fit(m, xx, y, batch_size = 32, epochs = 1, verbose = 0)
f <- system.time(fit(m, xx, y, batch_size = 32, epochs = 1, verbose = 0))[["elapsed"]]
p <- system.time(predict(m, xx, batch_size = 32))[["elapsed"]]
cat(sprintf("blocks fit %.1f samples/s  predict %.1f samples/s\n", n / f, n / p))
