# The hostile-input suite (hostile-cases.R), each case in a child R process of its own: a
# case that kills or hangs its child fails here instead of taking the test run down. Every
# case must end in a classed condition (inheriting from rustgpu_error) whose message names
# what was wrong, or, for kind "ok", return TRUE; and afterwards the models it could reach
# must hold the same weights, predict and train.

# Runs `child` (lines of R) for each case, two at a time, each killed after `timeout`
# seconds; returns one result per case: the child's report (NULL when it wrote none), its
# exit status and its output.
run_cases_in_children <- function(n, child, timeout = 120, parallel = 2) {
  dir <- tempfile("hostile")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE))
  rscript <- file.path(R.home("bin"), "Rscript")
  start <- function(i) {
    script <- file.path(dir, sprintf("case%03d.R", i))
    writeLines(c(sprintf("case_index <- %d", i), sprintf("report_path <- '%s'", file.path(dir, sprintf("case%03d.rds", i))), child), script)
    # `timeout -s KILL`: a case that hangs is killed, and its exit status (137) says so.
    cmd <- sprintf("timeout -s KILL %d %s --vanilla %s > %s 2>&1; echo $? > %s", timeout, shQuote(rscript), shQuote(script),
                   shQuote(file.path(dir, sprintf("case%03d.log", i))), shQuote(file.path(dir, sprintf("case%03d.status", i))))
    system2("sh", c("-c", shQuote(cmd)), wait = FALSE)
  }
  status_file <- function(i) file.path(dir, sprintf("case%03d.status", i))
  done <- function(i) file.exists(status_file(i)) && length(readLines(status_file(i), warn = FALSE)) == 1
  running <- integer()
  queue <- seq_len(n)
  while (length(queue) || length(running)) {
    running <- running[!vapply(running, done, logical(1))]
    while (length(queue) && length(running) < parallel) {
      start(queue[1])
      running <- c(running, queue[1])
      queue <- queue[-1]
    }
    Sys.sleep(0.05)
  }
  lapply(seq_len(n), function(i) {
    report <- file.path(dir, sprintf("case%03d.rds", i))
    list(report = if (file.exists(report)) readRDS(report),
         status = as.integer(readLines(status_file(i))),
         log = paste(readLines(file.path(dir, sprintf("case%03d.log", i)), warn = FALSE), collapse = "\n"))
  })
}

test_that("every hostile input gives a classed, explanatory error in a child R process, which neither crashes nor hangs", {
  skip_on_os(c("windows", "mac", "solaris"))  # timeout(1) from coreutils, mkfifo, /dev nodes
  cases_file <- normalizePath(test_path("hostile-cases.R"))
  source(cases_file, local = TRUE)
  child <- c(
    sprintf("suppressMessages(library(rustgpu, lib.loc = '%s'))", dirname(find.package("rustgpu"))),
    sprintf("fixtures_dir <- '%s'", normalizePath(test_path("..", "fixtures"))),
    sprintf("source('%s')", normalizePath(test_path("helper-fixtures.R"))),
    sprintf("source('%s')", cases_file),
    "case <- bad_inputs[[case_index]]",
    "use_virtual_gpus(2, threads_per_gpu = 1)",
    "env <- list2env(fresh_models(), envir = new.env())",
    "before <- get_weights(env$m)",
    "report <- tryCatch({ value <- eval(case[[2]], env); list(value = isTRUE(value)) },",
    "                   error = function(e) list(class = class(e), message = conditionMessage(e)))",
    "saveRDS(report, report_path)",
    "# What the case could reach still works (the fork cases and compile() cases change m on purpose).",
    "report$weights_kept <- case[[3]] == 'ok' || grepl('compile', deparse(case[[2]])[1]) || identical(get_weights(env$m), before)",
    "report$predicts <- identical(dim(predict(env$m, x_ok)), c(10L, 3L))",
    "report$trains <- tryCatch({ fit(env$m, x_ok, y_ok, epochs = 1, verbose = 0); TRUE }, error = function(e) conditionMessage(e))",
    "saveRDS(report, report_path)"
  )
  results <- run_cases_in_children(length(bad_inputs), child)
  tally <- c(crashed = 0, hung = 0, failed = 0, passed = 0)
  for (i in seq_along(bad_inputs)) {
    case <- bad_inputs[[i]]
    label <- sprintf("case %d, %s", i, case[[1]])
    r <- results[[i]]
    if (r$status == 137) {
      tally["hung"] <- tally["hung"] + 1
      fail(sprintf("%s: hung (killed after the timeout)", label))
      next
    }
    if (r$status != 0 || is.null(r$report)) {
      tally["crashed"] <- tally["crashed"] + 1
      fail(sprintf("%s: the child R died (exit status %d):\n%s", label, r$status, r$log))
      next
    }
    rep <- r$report
    checks <- if (case[[3]] == "ok") {
      c("returned TRUE" = isTRUE(rep$value))
    } else {
      kinds <- paste0("rustgpu_", strsplit(case[[3]], "|", fixed = TRUE)[[1]], "_error")
      c("raised an error" = is.null(rep$value),
        "is a rustgpu_error" = "rustgpu_error" %in% rep$class,
        "is of the expected kind" = any(kinds %in% rep$class),
        "says what was wrong" = is.character(rep$message) && grepl(case[[4]], rep$message))
    }
    checks <- c(checks, "left the weights as they were" = isTRUE(rep$weights_kept),
                "left the model predicting" = isTRUE(rep$predicts), "left the model training" = isTRUE(rep$trains))
    for (what in names(checks)) {
      expect_true(checks[[what]], label = sprintf("%s %s (got %s: %s; training: %s)", label, what,
                                                  paste(rep$class, collapse = "/"), format(rep$message), format(rep$trains)))
    }
    if (all(checks)) tally["passed"] <- tally["passed"] + 1 else tally["failed"] <- tally["failed"] + 1
  }
  expect_gte(length(bad_inputs), 150)
  message(sprintf("test-bad-inputs.R: %d hostile inputs, each in a child R process: %s", length(bad_inputs),
                  paste(names(tally), tally, sep = " ", collapse = ", ")))
})
