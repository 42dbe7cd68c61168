# rustgpu vs tf-keras, side by side in one run (see bench/run.sh, which sets everything up).
#
#   PYTHON=bench/.venv/bin/python THREADS=2 REPEATS=5 Rscript bench/suite.R
#
# Fit and predict throughput (samples/s) of the same models, batch sizes, float32 random data
# and RMSprop on both sides, the same number of threads, the warm-up epoch excluded; each
# figure the median of REPEATS with min and max. rustgpu runs through the R package (what
# users run). Writes bench/results/<date>-<host>.csv and prints the ratios (rustgpu/tf-keras:
# above 1 means rustgpu is faster).
suppressMessages(library(rustgpu))
python <- Sys.getenv("PYTHON", "bench/.venv/bin/python")
threads <- as.integer(Sys.getenv("THREADS", "2"))
repeats <- as.integer(Sys.getenv("REPEATS", "5"))
samples <- c(mlp = as.integer(Sys.getenv("MLP_SAMPLES", "60000")), cnn = as.integer(Sys.getenv("CNN_SAMPLES", "10000")),
             blocks = as.integer(Sys.getenv("BLOCKS_SAMPLES", "512")), xception = as.integer(Sys.getenv("XCEPTION_SAMPLES", "128")),
             imdb_lstm = as.integer(Sys.getenv("IMDB_SAMPLES", "3200")), imdb_gru = as.integer(Sys.getenv("IMDB_SAMPLES", "3200")))
# WORKLOADS=imdb_lstm,imdb_gru runs a subset.
wanted <- strsplit(Sys.getenv("WORKLOADS", paste(names(samples), collapse = ",")), ",")[[1]]
samples <- samples[intersect(names(samples), wanted)]

source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "models.R"))

rustgpu_side <- function(workload, n) {
  set.seed(1)
  b <- bench_model(workload)
  d <- bench_data(b, n)
  x <- d$x
  y <- d$y
  compile(b$model, optimizer = "rmsprop", loss = d$loss)
  fit(b$model, x, y, batch_size = b$batch, epochs = 1, verbose = 0)
  predict(b$model, x, batch_size = b$batch)
  t(vapply(seq_len(repeats), function(i) c(
    fit = n / system.time(fit(b$model, x, y, batch_size = b$batch, epochs = 1, verbose = 0))[["elapsed"]],
    predict = n / system.time(predict(b$model, x, batch_size = b$batch))[["elapsed"]]
  ), numeric(2)))
}

keras_side <- function(workload, n) {
  out <- system2(python, c("bench/keras_peer.py", "--workload", workload, "--repeats", repeats, "--threads", threads,
                           "--samples", n), stdout = TRUE, stderr = FALSE)
  j <- jsonlite::fromJSON(tail(out, 1))
  cbind(fit = j$fit, predict = j$predict)
}

rows <- list()
for (w in names(samples)) {
  r <- rustgpu_side(w, samples[[w]])
  k <- keras_side(w, samples[[w]])
  for (what in c("fit", "predict")) {
    for (side in c("rustgpu", "tf-keras")) {
      v <- if (side == "rustgpu") r[, what] else k[, what]
      rows[[length(rows) + 1]] <- data.frame(workload = w, measure = what, side = side, samples = samples[[w]],
                                             median = stats::median(v), min = min(v), max = max(v))
    }
  }
}
res <- do.call(rbind, rows)
cat(sprintf("rustgpu vs tf-keras, %d threads each, %d repeats, %s (%d cores), %s\n", threads, repeats,
            Sys.info()[["nodename"]], parallel::detectCores(), Sys.Date()))
print(format(res, digits = 4), row.names = FALSE)
cat("\nratio rustgpu / tf-keras (samples/s; > 1: rustgpu faster)\n")
for (w in names(samples)) for (what in c("fit", "predict")) {
  a <- res[res$workload == w & res$measure == what, ]
  cat(sprintf("  %-7s %-8s %.2fx\n", w, what, a$median[a$side == "rustgpu"] / a$median[a$side == "tf-keras"]))
}
dir.create("bench/results", showWarnings = FALSE)
# A run of some workloads (WORKLOADS=...) is named after them, so it does not replace the
# day's full run.
subset <- if (Sys.getenv("WORKLOADS") != "") paste0("-", paste(names(samples), collapse = "+")) else ""
utils::write.csv(res, file.path("bench", "results", sprintf("%s-%s%s.csv", Sys.Date(), Sys.info()[["nodename"]], subset)),
                 row.names = FALSE)
