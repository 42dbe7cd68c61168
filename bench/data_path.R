# The R data path: what converting R's data costs against the training step, and the peak
# memory of a fit on 1 GB of R data. Run through the R package (what users run):
#
#   Rscript bench/data_path.R
#
# fit() stages x once per fit as a row-major float copy (rg_stage); each batch is then a
# copy of whole rows. For each workload: the one-time staging per fit, and one batch's
# conversion, from the staged copy and (for comparison) straight from R's column-major
# doubles, each against the median training step. Writes bench/results/<date>-<host>-data-path.csv.
suppressMessages(library(rustgpu))
repeats <- as.integer(Sys.getenv("REPEATS", "5"))
set.seed(1)
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "models.R"))
workloads <- list(MLP = list(model = "mlp", n = 60000), CNN = list(model = "cnn", n = 10000))
rows <- list()
for (name in names(workloads)) {
  w <- workloads[[name]]
  b <- bench_model(w$model)
  x <- array(runif(w$n * prod(b$shape)), c(w$n, b$shape))
  y <- to_categorical(sample(0:9, w$n, replace = TRUE), 10)
  model <- b$model
  compile(model, optimizer = "rmsprop", loss = "categorical_crossentropy")
  fit(model, x, y, batch_size = b$batch, epochs = 1, verbose = 0)
  steps <- ceiling(w$n / b$batch)
  step_s <- stats::median(replicate(repeats, system.time(
    fit(model, x, y, batch_size = b$batch, epochs = 1, verbose = 0))[["elapsed"]])) / steps
  stage_s <- stats::median(replicate(repeats, system.time(rustgpu:::rg_stage(x, "x", NULL))[["elapsed"]]))
  staged <- rustgpu:::rg_stage(x, "x", NULL)
  batch_rows <- sample.int(w$n, b$batch)  # a shuffled batch, as fit() draws them
  from_staged <- rustgpu:::rg_gather_seconds(staged, batch_rows, 200)
  from_r <- rustgpu:::rg_gather_seconds(x, batch_rows, 200)
  rows[[name]] <- data.frame(
    workload = name, batch_size = b$batch, step_ms = 1e3 * step_s,
    batch_from_staged_ms = 1e3 * from_staged, staged_share_of_step = from_staged / step_s,
    batch_from_r_ms = 1e3 * from_r, r_share_of_step = from_r / step_s,
    staging_per_fit_s = stage_s, staging_share_of_epoch = stage_s / (step_s * steps)
  )
}
res <- do.call(rbind, rows)
cat(sprintf("R data path, %s (%d cores), %s, medians of %d\n", Sys.info()[["nodename"]], parallel::detectCores(),
            Sys.Date(), repeats))
print(format(res, digits = 3), row.names = FALSE)

# Peak memory of a fit on 1 GB of R data, beyond R's own copy, in a fresh R process (its
# peak RSS is reset once the data exists, through /proc/self/clear_refs).
peak_script <- tempfile(fileext = ".R")
writeLines(c(
  "suppressMessages(library(rustgpu))",
  "rss <- function(key) as.numeric(sub('[^0-9]*([0-9]+).*', '\\\\1', grep(key, readLines('/proc/self/status'), value = TRUE))) / 1024",
  "x <- matrix(runif(1.25e8), ncol = 100)  # 1 GB of doubles: 1.25 million rows of 100",
  "y <- runif(nrow(x))",
  "m <- keras_model_sequential() %>% layer_dense(1, input_shape = 100)",
  "compile(m, optimizer = 'sgd', loss = 'mse')",
  "invisible(gc())",
  "base <- rss('^VmRSS')",
  "writeLines('5', '/proc/self/clear_refs')",
  "fit(m, x, y, batch_size = 4096, epochs = 1, verbose = 0)",
  "cat(sprintf('%.0f %.0f\\n', base, rss('^VmHWM')))"
), peak_script)
mem <- scan(text = system2(file.path(R.home("bin"), "Rscript"), peak_script, stdout = TRUE), quiet = TRUE)
cat(sprintf("\nfit on 1 GB of R data: RSS %.0f MB before, peak %.0f MB during: %.0f MB beyond R's copy (target <= 1300 MB)\n",
            mem[1], mem[2], mem[2] - mem[1]))
res$fit_1gb_peak_beyond_r_mb <- mem[2] - mem[1]
out <- file.path("bench", "results", sprintf("%s-%s-data-path.csv", Sys.Date(), Sys.info()[["nodename"]]))
utils::write.csv(res, out, row.names = FALSE)
