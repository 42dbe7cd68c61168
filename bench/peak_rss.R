# Peak resident memory of the Xception-style block net's training (issue #20: rustgpu's at
# most tf-keras's), each side in a process of its own doing the same work: one warm-up epoch,
# then REPEATS epochs and predictions (bench/suite.R's), with THREADS threads. rustgpu's is
# the R process's VmHWM (R, the package and the data included); tf-keras's the Python
# process's ru_maxrss (Python, TensorFlow and the data included).
#
#   PYTHON=bench/.venv/bin/python Rscript bench/peak_rss.R
python <- Sys.getenv("PYTHON", "bench/.venv/bin/python")
threads <- as.integer(Sys.getenv("THREADS", "2"))
repeats <- as.integer(Sys.getenv("REPEATS", "2"))
samples <- as.integer(Sys.getenv("BLOCKS_SAMPLES", "512"))
here <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1]))

child <- tempfile(fileext = ".R")
writeLines(c(
  "suppressMessages(library(rustgpu))",
  sprintf("source(%s)", deparse(file.path(normalizePath(here), "models.R"))),
  "set.seed(1)",
  "b <- bench_model('blocks')",
  sprintf("n <- %dL", samples),
  "x <- array(runif(n * prod(b$shape)), c(n, b$shape))",
  "y <- to_categorical(sample(0:9, n, replace = TRUE), 10)",
  "compile(b$model, optimizer = 'rmsprop', loss = 'categorical_crossentropy')",
  sprintf("for (i in seq_len(%d)) { fit(b$model, x, y, batch_size = b$batch, epochs = 1, verbose = 0); predict(b$model, x, batch_size = b$batch) }", repeats + 1),
  "cat(grep('^VmHWM', readLines('/proc/self/status'), value = TRUE), '\\n')"
), child)
out <- system2(file.path(R.home("bin"), "Rscript"), child, stdout = TRUE, stderr = TRUE,
               env = c(paste0("RAYON_NUM_THREADS=", threads), paste0("R_LIBS=", paste(.libPaths(), collapse = ":"))))
hwm <- as.numeric(sub("^VmHWM:\\s*([0-9]+) kB.*", "\\1", grep("^VmHWM", out, value = TRUE)))
keras <- jsonlite::fromJSON(tail(system2(python, c(file.path(here, "keras_peer.py"), "--workload", "blocks", "--repeats", repeats,
                                                   "--threads", threads, "--samples", samples), stdout = TRUE, stderr = FALSE), 1))
res <- data.frame(side = c("rustgpu", "tf-keras"), peak_rss_mb = c(hwm, keras$peak_rss_kb) / 1024)
cat(sprintf("peak RSS, block net fit+predict on %d samples, %d threads (%s)\n", samples, threads, Sys.Date()))
print(format(res, digits = 4), row.names = FALSE)
cat(sprintf("rustgpu / tf-keras: %.2fx (target <= 1.00x)\n", res$peak_rss_mb[1] / res$peak_rss_mb[2]))
utils::write.csv(res, file.path("bench", "results", sprintf("%s-%s-rss.csv", Sys.Date(), Sys.info()[["nodename"]])), row.names = FALSE)
