# Issue #20's targets against measured figures: each row with its ratio, the target, and
# whether it holds, from the suite and scaling CSVs in bench/results/ (for each workload the
# newest file that measures it), or from the files given. A row no CSV measures says so.
#
#   Rscript bench/targets.R [suite.csv [scaling.csv]]
args <- commandArgs(TRUE)
results <- sort(list.files("bench/results", pattern = "\\.csv$", full.names = TRUE), decreasing = TRUE)
suite_files <- if (length(args) >= 1) args[[1]] else grep("-(scaling|data-path|soak|multi-worker|rss)[^/]*\\.csv$", results, value = TRUE, invert = TRUE)
scaling_files <- if (length(args) >= 2) args[[2]] else grep("-scaling\\.csv$", results, value = TRUE)
suites <- lapply(suite_files, utils::read.csv)
scaling_csv <- if (length(scaling_files)) scaling_files[[1]] else NA_character_
scaling <- if (!is.na(scaling_csv)) utils::read.csv(scaling_csv) else NULL
used <- character(0)

# The suite's ratio rustgpu / tf-keras for a workload and measure, from the newest file that
# has it (its last run when it holds several): with rounds, the median of the rounds' ratios.
suite_ratio <- function(workload, measure) {
  for (i in seq_along(suites)) {
    s <- suites[[i]][suites[[i]]$workload == workload & suites[[i]]$measure == measure, ]
    if (!nrow(s)) next
    if ("run" %in% names(s)) s <- s[s$run == max(s$run), ]
    if (!"round" %in% names(s)) s$round <- 1
    s <- s[order(s$round), ]
    r <- s$median[s$side == "rustgpu"]
    k <- s$median[s$side == "tf-keras"]
    if (length(r) >= 1 && length(r) == length(k)) {
      used <<- union(used, basename(suite_files[[i]]))
      return(stats::median(r / k))
    }
  }
  NA_real_
}
# A configuration's throughput against the template's: the median of the repeats' ratios
# (each repeat against the template's run next to it, which cancels the VM's slow stretches),
# or, in files from before the bench recorded them, the ratio of the medians.
scaling_ratio <- function(workload, config) {
  if (is.null(scaling)) return(NA_real_)
  s <- scaling[toupper(scaling$workload) == toupper(workload), ]
  if ("repeat_ratio_median" %in% names(s)) {
    paired <- s$repeat_ratio_median[s$config == config]
    if (length(paired) == 1) return(paired)
  }
  base <- s$median[s$config == "template, 1 device x 1 thread"]
  other <- s$median[s$config == config]
  if (length(base) != 1 || length(other) != 1) NA_real_ else other / base
}
# The lowest of the repeats' ratios (each repeat against the template's run next to it);
# files from before the scaling bench recorded them have none.
scaling_lowest_repeat <- function(workload, config) {
  if (is.null(scaling) || !"repeat_ratio_min" %in% names(scaling)) return(NA_real_)
  s <- scaling[toupper(scaling$workload) == toupper(workload) & scaling$config == config, ]
  if (nrow(s) != 1) NA_real_ else s$repeat_ratio_min
}

rows <- list(
  list("MLP fit", suite_ratio("mlp", "fit"), 1.5), list("MLP predict", suite_ratio("mlp", "predict"), 1.5),
  list("CNN fit", suite_ratio("cnn", "fit"), 1.2), list("CNN predict", suite_ratio("cnn", "predict"), 1.5),
  list("blocks fit", suite_ratio("blocks", "fit"), 1.0), list("blocks predict", suite_ratio("blocks", "predict"), 1.0),
  list("application_xception 71x71 fit", suite_ratio("xception", "fit"), 1.0), list("application_xception 71x71 predict", suite_ratio("xception", "predict"), 1.0),
  list("LSTM text model fit", suite_ratio("imdb_lstm", "fit"), 1.0), list("LSTM text model predict", suite_ratio("imdb_lstm", "predict"), 1.0),
  list("2 virtual GPUs / 1 device, MLP", scaling_ratio("MLP", "parallel, 2 virtual GPUs x 1 thread"), 1.9),
  list("2 virtual GPUs / 1 device, CNN", scaling_ratio("CNN", "parallel, 2 virtual GPUs x 1 thread"), 1.9),
  list("  lowest repeat, MLP", scaling_lowest_repeat("MLP", "parallel, 2 virtual GPUs x 1 thread"), 1.8),
  list("  lowest repeat, CNN", scaling_lowest_repeat("CNN", "parallel, 2 virtual GPUs x 1 thread"), 1.8),
  list("  machine's ceiling: 2 template fits at once, MLP", scaling_ratio("MLP", "machine: 2 copies of the template at once"), NA_real_),
  list("  machine's ceiling: 2 template fits at once, CNN", scaling_ratio("CNN", "machine: 2 copies of the template at once"), NA_real_),
  list("    its lowest repeat, MLP", scaling_lowest_repeat("MLP", "machine: 2 copies of the template at once"), NA_real_),
  list("    its lowest repeat, CNN", scaling_lowest_repeat("CNN", "machine: 2 copies of the template at once"), NA_real_),
  list("wrapper cost (1-replica parallel / template), MLP", scaling_ratio("MLP", "parallel, 1 replica x 1 thread"), NA_real_)
)
cat(sprintf("Targets of issue #20 (bench/results: %s; scaling: %s)\n", paste(used, collapse = ", "), basename(scaling_csv)))
for (r in rows) {
  value <- r[[2]]
  target <- r[[3]]
  status <- if (is.na(value)) "not measured" else if (is.na(target)) "" else if (value >= target) "holds" else "not reached"
  shown_target <- if (is.na(target)) "" else sprintf(">= %.2fx", target)
  # The wrapper cost's target is an upper bound on template / parallel: at most 1.03x.
  if (grepl("wrapper cost", r[[1]]) && !is.na(value)) {
    cost <- 1 / value
    shown_target <- "<= 1.03x"
    status <- if (cost <= 1.03) "holds" else "not reached"
    value <- cost
  }
  cat(sprintf("  %-52s %8s  %-9s %s\n", r[[1]], if (is.na(value)) "-" else sprintf("%.2fx", value), shown_target, status))
}
# Peak RSS: the newest bench/peak_rss.R file; the target is an upper bound (rustgpu / tf-keras).
rss_files <- grep("-rss\\.csv$", results, value = TRUE)
rss <- if (length(rss_files)) utils::read.csv(rss_files[[1]]) else NULL
rss_ratio <- if (is.null(rss)) NA_real_ else rss$peak_rss_mb[rss$side == "rustgpu"] / rss$peak_rss_mb[rss$side == "tf-keras"]
cat(sprintf("  %-52s %8s  %-9s %s\n", "peak RSS of the blocks fit vs tf-keras's", if (is.na(rss_ratio)) "-" else sprintf("%.2fx", rss_ratio),
            "<= 1.00x", if (is.na(rss_ratio)) "not measured" else if (rss_ratio <= 1) "holds" else "not reached"))
