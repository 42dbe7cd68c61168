# Data-parallel scaling on virtual GPUs, run through the R package (what users run).
#
#   RAYON_NUM_THREADS=1 Rscript bench/multi_gpu_scaling.R
#
# Fit throughput (samples/s) of the MLP 784-512-512-10 (batch 256, RMSprop) on
#   - the template on one device with one thread,
#   - a 1-replica parallel model (the wrapper's own cost),
#   - 2 virtual GPUs with one thread each,
# side by side in one run; each figure is the median of REPEATS timed epochs after a
# warm-up epoch, with min and max. Writes bench/results/<date>-<host>-scaling.csv.
suppressMessages(library(rustgpu))
if (Sys.getenv("RAYON_NUM_THREADS") != "1") {
  stop("run with RAYON_NUM_THREADS=1 so that one device means one thread")
}
repeats <- as.integer(Sys.getenv("REPEATS", "5"))
samples <- as.integer(Sys.getenv("SAMPLES", "8192"))
set.seed(1)
x <- matrix(runif(samples * 784), samples, 784)
y <- to_categorical(sample(0:9, samples, replace = TRUE), 10)

mlp <- function() {
  keras_model_sequential() %>%
    layer_dense(512, activation = "relu", input_shape = 784) %>%
    layer_dense(512, activation = "relu") %>%
    layer_dense(10, activation = "softmax")
}

prepare <- function(model) {
  compile(model, optimizer = "rmsprop", loss = "categorical_crossentropy", metrics = "accuracy")
  fit(model, x, y, epochs = 1, batch_size = 256, verbose = 0)  # warm-up
  model
}

epoch_throughput <- function(model) {
  samples / system.time(fit(model, x, y, epochs = 1, batch_size = 256, verbose = 0))[["elapsed"]]
}

use_virtual_gpus(2, threads_per_gpu = 1)
template <- mlp()
one_replica <- rustgpu:::new_model(
  rustgpu:::call_backend(rustgpu:::rg_multi_gpu(template$ptr, 0, TRUE, FALSE)),
  "one_replica", template = template, gpus = 0L
)
models <- list(
  "template, 1 device x 1 thread" = prepare(template),
  "parallel, 1 replica x 1 thread" = prepare(one_replica),
  "parallel, 2 virtual GPUs x 1 thread" = prepare(multi_gpu_model(template, gpus = 2))
)
# Interleave the configurations in every repeat so that machine noise hits them alike.
times <- replicate(repeats, vapply(models, epoch_throughput, numeric(1)))
runs <- split(times, row(times))
names(runs) <- names(models)
res <- data.frame(
  config = names(runs),
  median = vapply(runs, stats::median, 0), min = vapply(runs, min, 0), max = vapply(runs, max, 0),
  row.names = NULL
)
cat(sprintf("MLP 784-512-512-10, batch 256, %d samples, %d repeats, %s\n", samples, repeats,
            Sys.info()[["nodename"]]))
print(format(res, digits = 4), row.names = FALSE)
cat(sprintf("\nspeedup, 2 virtual GPUs / 1 device: %.2fx (target >= 1.8x)\n", res$median[3] / res$median[1]))
cat(sprintf("wrapper cost, 1-replica parallel time / template time: %.3fx (target <= 1.05x)\n",
            res$median[1] / res$median[2]))
out <- file.path("bench", "results", sprintf("%s-%s-scaling.csv", Sys.Date(), Sys.info()[["nodename"]]))
utils::write.csv(res, out, row.names = FALSE)
