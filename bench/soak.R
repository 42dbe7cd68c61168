# Soak run: 10,000 training steps on 2 virtual GPUs, resident memory sampled every 500 steps.
#
#   Rscript bench/soak.R
#
# Passes when RSS after warm-up (the first 1,000 steps) stays within 5% of its first sample.
# Writes bench/results/<date>-<host>-soak.csv.
suppressMessages(library(rustgpu))
rss_mb <- function() {
  status <- readLines("/proc/self/status")
  as.numeric(gsub("[^0-9]", "", grep("^VmRSS", status, value = TRUE))) / 1024
}
steps <- as.integer(Sys.getenv("SOAK_STEPS", "10000"))
batches_per_epoch <- 100
batch_size <- 64
set.seed(1)
n <- batches_per_epoch * batch_size
x <- matrix(rnorm(n * 64), n, 64)
y <- to_categorical(sample(0:9, n, replace = TRUE), 10)
use_virtual_gpus(2, threads_per_gpu = 1)
template <- keras_model_sequential() %>%
  layer_dense(128, activation = "relu", input_shape = 64) %>%
  layer_dropout(0.1) %>%
  layer_dense(10, activation = "softmax")
parallel <- multi_gpu_model(template, gpus = 2)
compile(parallel, optimizer = "adam", loss = "categorical_crossentropy", metrics = "accuracy")

samples <- data.frame(step = integer(), rss_mb = numeric(), threads = integer())
done <- 0
sampler <- callback_lambda(on_batch_end = function(batch, logs) {
  done <<- done + 1
  if (done %% 500 == 0) {
    samples[nrow(samples) + 1, ] <<- list(done, rss_mb(), length(list.files("/proc/self/task")))
  }
})
started <- Sys.time()
fit(parallel, x, y, batch_size = batch_size, epochs = ceiling(steps / batches_per_epoch), verbose = 0,
    callbacks = list(sampler))
elapsed <- as.numeric(difftime(Sys.time(), started, units = "secs"))

after_warmup <- samples[samples$step > 1000, ]
drift <- max(abs(after_warmup$rss_mb / after_warmup$rss_mb[1] - 1))
cat(sprintf("%d steps on 2 virtual GPUs in %.0f s; RSS %.1f MB at step %d, %.1f MB at step %d; max drift after warm-up %.2f%%; threads %d..%d\n",
            done, elapsed, after_warmup$rss_mb[1], after_warmup$step[1], tail(samples$rss_mb, 1), tail(samples$step, 1),
            100 * drift, min(samples$threads), max(samples$threads)))
print(samples, row.names = FALSE)
out <- file.path("bench", "results", sprintf("%s-%s-soak.csv", Sys.Date(), Sys.info()[["nodename"]]))
utils::write.csv(samples, out, row.names = FALSE)
if (drift > 0.05) stop("RSS drifted by more than 5% after warm-up")
