# Failures never crash R or lose work: failing replicas, Ctrl-C, NaN losses, GC of models.

thread_count <- function() length(list.files("/proc/self/task"))

# Starts `lines` in a child R process (rustgpu loaded, `dir` set to a fresh folder that is
# removed when the calling test ends); returns the folder, where the child writes its files.
start_child_r <- function(lines, env = parent.frame()) {
  dir <- tempfile("child")
  dir.create(dir)
  withr::defer(unlink(dir, recursive = TRUE), envir = env)
  script <- file.path(dir, "child.R")
  writeLines(c(sprintf("library(rustgpu, lib.loc = '%s')", dirname(find.package("rustgpu"))), sprintf("dir <- '%s'", dir), lines), script)
  rscript <- file.path(R.home("bin"), "Rscript")
  system2(rscript, script, wait = FALSE, stdout = file.path(dir, "log"), stderr = file.path(dir, "log"))
  dir
}

test_that("a replica failing mid-step stops fit with its name, leaves the weights, and the next fit works", {
  skip_on_os(c("windows", "mac", "solaris"))  # thread counts are read from Linux's /proc
  use_virtual_gpus(2, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0))
  d <- toy_data(n = 40)
  template <- small_classifier()
  parallel <- multi_gpu_model(template, gpus = 2)
  compile(parallel, optimizer = optimizer_sgd(0.1), loss = "categorical_crossentropy")
  # Workers belong to devices and are shared by every parallel model on them.
  threads <- thread_count()
  for (kind in c("error", "panic")) {
    # Fail in the third step: the weights must be those after the second.
    expected <- {
      shadow <- small_classifier()
      set_weights(shadow, get_weights(template))
      shadow_parallel <- multi_gpu_model(shadow, gpus = 2)
      compile(shadow_parallel, optimizer = optimizer_sgd(0.1), loss = "categorical_crossentropy")
      train_on_batch(shadow_parallel, d$x[1:10, ], d$y[1:10, ])
      train_on_batch(shadow_parallel, d$x[11:20, ], d$y[11:20, ])
      get_weights(shadow)
    }
    compile(parallel, optimizer = optimizer_sgd(0.1), loss = "categorical_crossentropy")
    inject_replica_failure(parallel, replica = 1, after_steps = 2, kind = kind)
    err <- expect_error(fit(parallel, d$x, d$y, batch_size = 10, epochs = 1, shuffle = FALSE, verbose = 0),
                        class = "rustgpu_device_error")
    expect_match(conditionMessage(err), "replica 1 on /gpu:1")
    expect_match(conditionMessage(err), "injected failure")
    expect_identical(get_weights(template), expected, label = kind)
    # No worker left busy or dead: the same model trains again, with as many threads as before.
    h <- fit(parallel, d$x, d$y, batch_size = 10, epochs = 1, verbose = 0)
    expect_true(all(is.finite(h$metrics$loss)))
    expect_equal(thread_count(), threads)
  }
})

test_that("Ctrl-C during fit on 2 virtual GPUs stops cleanly and keeps the last completed step", {
  skip_on_os(c("windows", "solaris"))  # needs SIGINT
  dir <- start_child_r(c(
    "use_virtual_gpus(2, threads_per_gpu = 1)",
    "set.seed(1)",
    "x <- matrix(rnorm(512 * 64), 512, 64); y <- to_categorical(rep(0:3, 128), 4)",
    "net <- function() keras_model_sequential() %>% layer_dense(256, activation = 'relu', input_shape = 64) %>% layer_dense(4, activation = 'softmax')",
    "template <- net(); initial <- get_weights(template)",
    "parallel <- multi_gpu_model(template, gpus = 2)",
    "compile(parallel, optimizer = optimizer_sgd(0.01), loss = 'categorical_crossentropy')",
    "threads <- length(list.files('/proc/self/task'))",
    "writeLines(as.character(Sys.getpid()), file.path(dir, 'pid'))",
    "status <- tryCatch({ fit(parallel, x, y, batch_size = 64, epochs = 100000, shuffle = FALSE, verbose = 0); 'finished' },",
    "                   interrupt = function(e) 'interrupted')",
    "after <- get_weights(template)",
    "# Replay step by step on an identical replica set: the interrupted weights must equal some step's.",
    "replay <- net(); set_weights(replay, initial); rp <- multi_gpu_model(replay, gpus = 2)",
    "compile(rp, optimizer = optimizer_sgd(0.01), loss = 'categorical_crossentropy')",
    "batches <- split(1:512, ceiling(1:512 / 64)); matched <- identical(get_weights(replay), after); steps <- 0",
    "while (!matched && steps < 100000) { b <- batches[[steps %% 8 + 1]]; train_on_batch(rp, x[b, ], y[b, ]); steps <- steps + 1; matched <- identical(get_weights(replay), after) }",
    "again <- tryCatch({ fit(parallel, x, y, batch_size = 64, epochs = 1, verbose = 0); 'ok' }, error = function(e) conditionMessage(e))",
    "same_threads <- length(list.files('/proc/self/task')) == threads",
    "writeLines(c(status, matched, steps, again, same_threads), file.path(dir, 'out'))"
  ))
  pid_file <- file.path(dir, "pid")
  for (i in 1:300) if (file.exists(pid_file) && length(readLines(pid_file)) == 1) break else Sys.sleep(0.1)
  expect_true(file.exists(pid_file))
  Sys.sleep(1.5)  # well into fit()
  tools::pskill(as.integer(readLines(pid_file)), tools::SIGINT)
  out_file <- file.path(dir, "out")
  for (i in 1:600) if (file.exists(out_file)) break else Sys.sleep(0.1)
  out <- if (file.exists(out_file)) readLines(out_file) else readLines(file.path(dir, "log"))
  expect_equal(out[1], "interrupted")
  expect_equal(out[2], "TRUE")           # weights are exactly those after a completed step
  expect_gt(as.integer(out[3]), 0)       # and training had made progress
  expect_equal(out[4], "ok")             # the next fit works
  expect_equal(out[5], "TRUE")           # no worker thread left behind or added
})

test_that("Ctrl-C stops predict(), evaluate() and fit()'s validation within 0.5 s, the model unchanged", {
  skip_on_os(c("windows", "solaris"))  # needs SIGINT
  dir <- start_child_r(c(
    "set.seed(1)",
    "# Each call takes several seconds on 2 cores: 20000 rows through 6M multiply-adds each.",
    "x <- matrix(runif(20000 * 1024), 20000, 1024); y <- to_categorical(sample(0:9, 20000, TRUE), 10)",
    "m <- keras_model_sequential() %>% layer_dense(2048, activation = 'relu', input_shape = 1024) %>%",
    "  layer_dense(2048, activation = 'relu') %>% layer_dense(10, activation = 'softmax')",
    "compile(m, optimizer = 'sgd', loss = 'categorical_crossentropy')",
    "w0 <- get_weights(m)",
    "run <- function(phase, expr) {",
    "  writeLines(as.character(Sys.getpid()), file.path(dir, paste0(phase, '.ready')))",
    "  status <- tryCatch({ force(expr); 'finished' }, interrupt = function(e) 'interrupted')",
    "  writeLines(c(status, format(as.numeric(Sys.time()), digits = 15)), file.path(dir, paste0(phase, '.out')))",
    "}",
    "# predict() places and folds the weights once for all batches: three times the rows",
    "# (bound first: R's own rbind() is not interruptible, and not what is timed here).",
    "x3 <- rbind(x, x, x)",
    "run('predict', predict(m, x3, batch_size = 256))",
    "run('evaluate', evaluate(m, x, y, batch_size = 256, verbose = 0))",
    "unchanged <- identical(get_weights(m), w0)",
    "run('validation', fit(m, x[1:32, ], y[1:32, ], epochs = 1, batch_size = 32, validation_data = list(x, y), verbose = 0))",
    "works <- identical(dim(predict(m, x[1:5, ])), c(5L, 10L))",
    "writeLines(as.character(c(unchanged, works)), file.path(dir, 'final'))"
  ))
  wait_for <- function(path, seconds) {
    for (i in seq_len(seconds * 20)) if (file.exists(path) && length(readLines(path)) > 0) return(TRUE) else Sys.sleep(0.05)
    FALSE
  }
  for (phase in c("predict", "evaluate", "validation")) {
    expect_true(wait_for(file.path(dir, paste0(phase, ".ready")), 120), label = paste(phase, "started"))
    Sys.sleep(1.5)  # well into the call
    sent <- as.numeric(Sys.time())
    tools::pskill(as.integer(readLines(file.path(dir, paste0(phase, ".ready")))), tools::SIGINT)
    expect_true(wait_for(file.path(dir, paste0(phase, ".out")), 60), label = paste(phase, "returned"))
    out <- readLines(file.path(dir, paste0(phase, ".out")))
    expect_equal(out[1], "interrupted", label = phase)
    expect_lt(as.numeric(out[2]) - sent, 0.5, label = paste(phase, "seconds from SIGINT to R's interrupt"))
  }
  expect_true(wait_for(file.path(dir, "final"), 60))
  expect_equal(readLines(file.path(dir, "final")), c("TRUE", "TRUE"))
})

test_that("a NaN loss goes on like Keras, or stops with callback_terminate_on_naan()", {
  x <- matrix(rnorm(200), 100, 2)
  y <- x %*% c(1e3, -1e3)
  model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
  compile(model, optimizer = optimizer_sgd(learning_rate = 1e6), loss = "mse")
  h <- fit(model, x, y, epochs = 3, batch_size = 10, verbose = 0)
  expect_length(h$metrics$loss, 3)
  expect_false(is.finite(tail(h$metrics$loss, 1)))
  model2 <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
  compile(model2, optimizer = optimizer_sgd(learning_rate = 1e6), loss = "mse")
  expect_message(h2 <- fit(model2, x, y, epochs = 3, batch_size = 10, verbose = 0,
                           callbacks = list(callback_terminate_on_naan())),
                 "Batch [0-9]+: Invalid loss, terminating training")
  expect_length(h2$metrics$loss, 1)
})

test_that("dropped parallel models free their memory and start no threads", {
  skip_on_os(c("windows", "mac", "solaris"))  # reads /proc
  use_virtual_gpus(2, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0))
  rss <- function() {
    status <- readLines("/proc/self/status")
    as.numeric(gsub("[^0-9]", "", grep("^VmRSS", status, value = TRUE))) * 1024
  }
  template <- small_classifier(inputs = 32, hidden = 64)
  x <- matrix(rnorm(64 * 32), 64, 32)
  make_and_use <- function() {
    p <- multi_gpu_model(template, gpus = 2)
    predict(p, x)
    invisible(NULL)
  }
  for (i in 1:20) make_and_use()
  invisible(gc())
  # Models of earlier tests that gc() just freed leave their devices' workers to be stopped
  # at the next model's start: let that happen before counting.
  make_and_use()
  threads <- thread_count()
  rss_before <- rss()
  for (i in 1:200) make_and_use()
  invisible(gc())
  invisible(gc())
  expect_equal(thread_count(), threads)
  expect_lt(rss(), rss_before * 1.10)
})

# Forked children (parallel::mclapply) have none of the parent's threads: they compute on a
# pool of their own, and a parallel model made in the parent says so instead of hanging.
in_children <- function(n, f, timeout = 60) {
  jobs <- lapply(seq_len(n), function(i) parallel::mcparallel(f(i), silent = TRUE))
  pids <- vapply(jobs, function(j) j$pid, integer(1))
  results <- list()
  deadline <- Sys.time() + timeout
  while (length(results) < n && Sys.time() < deadline) {
    pending <- jobs[!as.character(pids) %in% names(results)]
    got <- parallel::mccollect(pending, wait = FALSE, timeout = 1)
    for (pid in names(got)) results[[pid]] <- got[[pid]]
  }
  # Children still running after the timeout hang: stop them and report it.
  hung <- pids[!as.character(pids) %in% names(results)]
  for (p in hung) tools::pskill(p)
  list(results = unname(results[as.character(pids[!pids %in% hung])]), hung = length(hung))
}

test_that("predict and fit in forked children (mclapply) answer as the parent, after parallel training", {
  skip_on_os("windows") # no fork there
  set.seed(5)
  model <- keras_model_sequential() %>%
    layer_dense(64, activation = "relu", input_shape = 20) %>%
    layer_dense(2, activation = "softmax")
  compile(model, optimizer = "adam", loss = "categorical_crossentropy")
  x <- matrix(rnorm(2000 * 20), 2000)
  y <- to_categorical(rep(0:1, 1000), 2)
  use_virtual_gpus(2, threads_per_gpu = 1)
  on.exit(use_virtual_gpus(0))
  parallel_model <- multi_gpu_model(model, gpus = 2)
  compile(parallel_model, optimizer = "adam", loss = "categorical_crossentropy")
  fit(parallel_model, x, y, epochs = 1, batch_size = 256, verbose = 0)
  expected <- predict(model, x)
  fit_once <- function() {
    set.seed(11)
    fit(model, x, y, epochs = 1, batch_size = 256, shuffle = FALSE, verbose = 0)
    get_weights(model)
  }
  kids <- in_children(2, function(i) list(predict = predict(model, x), fitted = fit_once()))
  expect_equal(kids$hung, 0)
  parent_fitted <- fit_once()
  for (k in kids$results) {
    expect_equal(k$predict, expected)
    expect_equal(k$fitted, parent_fitted)
  }
  kids <- in_children(1, function(i) tryCatch(predict(parallel_model, x), error = function(e) class(e)))
  expect_equal(kids$hung, 0)
  expect_true("rustgpu_state_error" %in% kids$results[[1]])
})
