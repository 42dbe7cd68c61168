# rustgpu vs tf-keras, side by side in one run (see bench/run.sh, which sets everything up).
#
#   PYTHON=bench/.venv/bin/python THREADS=2 REPEATS=3 ROUNDS=3 Rscript bench/suite.R
#
# Fit and predict throughput (samples/s) of the same models, batch sizes, float32 random data
# and RMSprop on both sides, the same number of threads, the warm-up epoch excluded. Each
# workload runs in ROUNDS rounds, each round both sides (which goes first alternates), each
# side REPEATS timed fits and predicts: this VM has slow stretches of a minute or more, and
# one round per side let a stretch land on one side only (the block net's fit measured 0.84x
# and, minutes later, 1.0x). The ratio of a workload is the median of its rounds' ratios
# (each the median of the round's repeats), printed with the lowest and highest round.
# rustgpu runs through the R package (what users run). Writes bench/results/<date>-<host>.csv
# (a row per round and side) and prints the ratios (rustgpu/tf-keras: above 1 means rustgpu
# is faster).
suppressMessages(library(rustgpu))
python <- Sys.getenv("PYTHON", "bench/.venv/bin/python")
threads <- as.integer(Sys.getenv("THREADS", "2"))
repeats <- as.integer(Sys.getenv("REPEATS", "3"))
rounds <- as.integer(Sys.getenv("ROUNDS", "3"))
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
  for (round in seq_len(rounds)) {
    sides <- if (round %% 2 == 1) c("rustgpu", "tf-keras") else c("tf-keras", "rustgpu")
    got <- list()
    for (side in sides) got[[side]] <- if (side == "rustgpu") rustgpu_side(w, samples[[w]]) else keras_side(w, samples[[w]])
    for (what in c("fit", "predict")) {
      for (side in c("rustgpu", "tf-keras")) {
        v <- got[[side]][, what]
        rows[[length(rows) + 1]] <- data.frame(workload = w, measure = what, side = side, samples = samples[[w]], round = round,
                                               median = stats::median(v), min = min(v), max = max(v))
      }
    }
  }
}
res <- do.call(rbind, rows)
cat(sprintf("rustgpu vs tf-keras, %d threads each, %d rounds of %d repeats, %s (%d cores), %s\n", threads, rounds, repeats,
            Sys.info()[["nodename"]], parallel::detectCores(), Sys.Date()))
print(format(res, digits = 4), row.names = FALSE)
cat("\nratio rustgpu / tf-keras (samples/s; > 1: rustgpu faster): median of the rounds [lowest, highest]\n")
for (w in names(samples)) for (what in c("fit", "predict")) {
  a <- res[res$workload == w & res$measure == what, ]
  ratios <- a$median[a$side == "rustgpu"] / a$median[a$side == "tf-keras"]
  cat(sprintf("  %-9s %-8s %.2fx [%.2f, %.2f]\n", w, what, stats::median(ratios), min(ratios), max(ratios)))
}
dir.create("bench/results", showWarnings = FALSE)
# A run of some workloads (WORKLOADS=...) is named after them, so it does not replace the
# day's full run.
subset <- if (Sys.getenv("WORKLOADS") != "") paste0("-", paste(names(samples), collapse = "+")) else ""
utils::write.csv(res, file.path("bench", "results", sprintf("%s-%s%s.csv", Sys.Date(), Sys.info()[["nodename"]], subset)),
                 row.names = FALSE)
