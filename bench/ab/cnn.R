# A/B throughput of the benchmarks' small CNN (batch 128, 4,096 rows, RMSprop): one fit epoch
# and one predict, after a warm-up of each. Alternate runs of two builds:
#
#   R_LIBS=<lib> Rscript bench/ab/cnn.R
suppressMessages(library(rustgpu))
set.seed(1)
n <- 4096
x <- array(runif(n * 784), c(n, 28, 28, 1))
y <- to_categorical(sample(0:9, n, TRUE), 10)
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "..", "models.R"))
m <- bench_model("cnn")$model
compile(m, optimizer = "rmsprop", loss = "categorical_crossentropy")
fit(m, x, y, batch_size = 128, epochs = 1, verbose = 0)
invisible(predict(m, x, batch_size = 128))
f <- system.time(fit(m, x, y, batch_size = 128, epochs = 1, verbose = 0))[["elapsed"]]
p <- system.time(predict(m, x, batch_size = 128))[["elapsed"]]
cat(sprintf("fit %.0f samples/s  predict %.0f samples/s\n", n / f, n / p))
