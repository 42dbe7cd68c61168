# A/B throughput of one suite workload as bench/suite.R measures it (its rows, batch size,
# warm-up, REPEATS fit epochs and predicts; medians), without the tf-keras side. Alternate
# runs of two builds (or two settings):
#
#   R_LIBS=<lib> REPEATS=3 Rscript bench/ab/workload.R blocks
#
# ONLY=predict times the predicts alone (each printed, then their median).
suppressMessages(library(rustgpu))
workload <- commandArgs(TRUE)[1]
repeats <- as.integer(Sys.getenv("REPEATS", "3"))
n <- c(mlp = 60000, cnn = 10000, blocks = 512, xception = 128, imdb_lstm = 3200, imdb_gru = 3200)[[workload]]
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "..", "models.R"))
set.seed(1)
b <- bench_model(workload)
d <- bench_data(b, n)
x <- d$x
y <- d$y
compile(b$model, optimizer = "rmsprop", loss = d$loss)
fit(b$model, x, y, batch_size = b$batch, epochs = 1, verbose = 0)
invisible(predict(b$model, x, batch_size = b$batch))
if (Sys.getenv("ONLY") == "predict") {
  p <- vapply(seq_len(repeats), function(i) n / system.time(predict(b$model, x, batch_size = b$batch))[["elapsed"]], 1)
  cat(sprintf("%s predict %s samples/s (median %.0f of %d)\n", workload, paste(round(p), collapse = " "), median(p), repeats))
  quit(save = "no")
}
r <- vapply(seq_len(repeats), function(i) c(
  fit = n / system.time(fit(b$model, x, y, batch_size = b$batch, epochs = 1, verbose = 0))[["elapsed"]],
  predict = n / system.time(predict(b$model, x, batch_size = b$batch))[["elapsed"]]
), numeric(2))
cat(sprintf("%s fit %.0f predict %.0f samples/s (medians of %d)\n", workload, median(r["fit", ]), median(r["predict", ]), repeats))
