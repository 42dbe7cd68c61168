# multi_gpu_model(split = "measured") on virtual GPUs of unequal speed, two ways:
#   - threads: GPU 0 with 2 threads, GPU 1 with 1 (on a 2-core VM the three threads share
#     the cores, so the speeds may hardly differ);
#   - slowed: 1 thread each, replica 1 made about twice as slow by the test hook (300 us more per row).
# The CNN of bench/models.R, batch 128; after a warm-up epoch, the rows each replica gets per
# batch and the fit throughput of the even and the measured split, interleaved over REPEATS
# timed fit() calls (median, min, max).
#
#   Rscript bench/measured_split.R
suppressMessages(library(rustgpu))
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "models.R"))
repeats <- as.integer(Sys.getenv("REPEATS", "5"))
set.seed(1)
b <- bench_model("cnn")
n <- 2048
x <- array(runif(n * prod(b$shape)), c(n, b$shape))
y <- to_categorical(sample(0:9, n, replace = TRUE), 10)
scenario <- function(name, threads, slow) {
  use_virtual_gpus(2, threads_per_gpu = threads)
  on.exit(use_virtual_gpus(0))
  models <- list(even = multi_gpu_model(b$model, gpus = 2), measured = multi_gpu_model(b$model, gpus = 2, split = "measured"))
  for (m in models) {
    if (slow > 0) rustgpu:::slow_replica(m, 1, slow)
    compile(m, optimizer = "rmsprop", loss = "categorical_crossentropy")
    fit(m, x, y, epochs = 1, batch_size = b$batch, verbose = 0)
  }
  throughput <- function(m) n / system.time(fit(m, x, y, epochs = 1, batch_size = b$batch, verbose = 0))[["elapsed"]]
  t <- replicate(repeats, vapply(models, throughput, numeric(1)))
  split <- rustgpu:::rg_replica_split(models$measured$ptr, b$batch)
  cat(sprintf("%s: measured split of a batch of %d: %s rows (rows/s measured: %s)\n", name, b$batch,
              paste(split$rows, collapse = " + "), paste(round(split$speed), collapse = ", ")))
  for (s in names(models)) {
    cat(sprintf("  %-8s %6.0f samples/s (%.0f-%.0f)\n", s, stats::median(t[s, ]), min(t[s, ]), max(t[s, ])))
  }
  r <- t["measured", ] / t["even", ]
  cat(sprintf("  measured / even: %.2fx (median of the per-repeat ratios; min %.2f, max %.2f)\n", stats::median(r), min(r), max(r)))
}
scenario("threads 2 + 1", c(2, 1), 0)
scenario("slowed replica 1", 1, 3e-4)
