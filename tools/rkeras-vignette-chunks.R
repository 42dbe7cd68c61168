# Runs each R chunk of R keras vignettes (.Rmd) with rustgpu, in one environment per
# vignette, going on after errors, and prints each chunk that fails with its first error.
# Chunks are often fragments that use objects defined nowhere (`model`, `data`): those fail
# with "object not found" in R keras too. R keras's files are not part of this project: point
# it at a local copy, e.g.
#   git -C <clone of rstudio/keras> archive 2.2.5.0 vignettes | tar -x -C /tmp/rkeras
#   Rscript tools/rkeras-vignette-chunks.R /tmp/rkeras/vignettes/*.Rmd
# Data sets come from the stand-in cache of tools/rkeras-examples.sh (run that once first);
# `library(keras)` becomes `library(rustgpu)` and epochs are capped at 1.
args <- commandArgs(TRUE)
root <- normalizePath(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), ".."))
.libPaths(c(file.path(root, ".rlib"), .libPaths()))
cache <- Sys.getenv("RKERAS_CACHE", "/tmp/rustgpu-fake-keras")
Sys.setenv(KERAS_HOME = cache)
options(rustgpu.check_dataset_hashes = FALSE)
work <- tempfile("vignettes")
dir.create(work)
invisible(file.copy(list.files(file.path(cache, "work"), full.names = TRUE), work, recursive = TRUE))
setwd(work)
for (rmd in args) {
  cat("==", basename(rmd), "\n")
  lines <- readLines(rmd, warn = FALSE)
  starts <- grep("^```\\{r", lines)
  ends <- grep("^```\\s*$", lines)
  env <- new.env(parent = globalenv())
  failed <- 0
  for (s in starts) {
    e <- min(ends[ends > s])
    code <- lines[seq_len(e - s - 1) + s]
    code <- gsub("library\\(keras\\)", "library(rustgpu)", code)
    code <- gsub("keras::", "rustgpu::", code, fixed = TRUE)
    code <- gsub("epochs *= *[0-9]+", "epochs = 1", code)
    code <- gsub("^\\s*(install_keras|devtools::install_github)\\(.*\\)", "NULL", code)
    if (!length(code)) next
    result <- tryCatch({
      utils::capture.output(for (ex in parse(text = code)) withVisible(eval(ex, env)))
      "ok"
    }, error = function(err) paste0(class(err)[[1]], ": ", conditionMessage(err)))
    if (result != "ok") {
      failed <- failed + 1
      cat(sprintf("  line %d: %s\n", s, substr(gsub("\n", " ", result), 1, 200)))
    }
  }
  cat(sprintf("  %d of %d chunks ran\n", length(starts) - failed, length(starts)))
}
