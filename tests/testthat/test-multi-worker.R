# multi_worker_mirrored_strategy() with real MPI ranks: mpirun starts 2 or 3 R processes on
# this machine, each running a script; what they write is compared with one process's
# training on the same global batches.

mpirun <- Sys.which("mpirun")

# A folder for one run's files (under the session's temporary folder, removed with it).
new_dir <- function() {
  d <- tempfile("workers")
  dir.create(d)
  d
}

skip_without_mpi <- function() {
  skip_if_not(rustgpu_build_info()$mpi, "rustgpu was built without MPI (no mpicc when it was installed)")
  skip_if(!nzchar(mpirun), "mpirun (Open MPI) is not on the PATH")
  skip_on_os(c("windows", "mac", "solaris"))  # timeout(1) from coreutils
}

# Runs `script` (R code, as text) on `n` ranks in `dir`, with this R's libraries; returns the
# ranks' output. --enable-recovery: a dead rank does not make Open MPI end the others, which
# then report it themselves.
run_ranks <- function(n, script, dir, limit = 120, env = character()) {
  path <- file.path(dir, "script.R")
  writeLines(c(
    sprintf(".libPaths(c(%s, .libPaths()))", paste(deparse(.libPaths()), collapse = "")),
    sprintf("setwd(%s)", deparse(dir)),
    "suppressMessages(library(rustgpu))",
    script
  ), path)
  env <- c(
    env,
    if (Sys.info()[["user"]] == "root") c("OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"),
    "OMPI_MCA_rmaps_base_oversubscribe=1"
  )
  out <- suppressWarnings(system2("timeout", c(limit, mpirun, "--enable-recovery", "-np", n, file.path(R.home("bin"), "Rscript"), path),
                                  stdout = TRUE, stderr = TRUE, env = env))
  structure(out, status = if (is.null(attr(out, "status"))) 0L else attr(out, "status"))
}

# A model (dense, or with a synchronized batch normalization) and its training, shared by the
# ranks' script and the one-process reference.
model_code <- '
make_model <- function(bn) {
  model <- keras_model_sequential() %>% layer_dense(6, input_shape = 5)
  if (bn) model <- model %>% layer_batch_normalization(momentum = 0.5, synchronized = TRUE)
  model %>% layer_activation("relu") %>% layer_dense(3, activation = "softmax")
}
make_data <- function() {
  set.seed(99)
  list(x = matrix(rnorm(57 * 5, mean = 1), 57, 5), y = to_categorical(sample(0:2, 57, replace = TRUE), 3))
}
'

test_that("2 and 3 ranks train as one process on the same global batches, with and without synchronized batch normalization", {
  skip_without_mpi()
  eval(parse(text = model_code))
  for (bn in c(FALSE, TRUE)) {
    for (n in c(2, 3)) {
      dir <- new_dir()
      out <- run_ranks(n, c(model_code, sprintf('
strategy <- multi_worker_mirrored_strategy()
with(strategy$scope(), {
  model <- make_model(%s)
  model %%>%% compile(optimizer = optimizer_sgd(lr = 0.2), loss = "categorical_crossentropy", metrics = "accuracy")
})
if (strategy$is_chief) saveRDS(get_weights(model), "initial.rds")
d <- make_data()
h <- fit(model, d$x, d$y, epochs = 3, batch_size = 20, shuffle = FALSE, verbose = 0)
saveRDS(list(weights = get_weights(model), history = h$metrics), sprintf("rank-%%d.rds", strategy$rank))
save_model_hdf5(model, sprintf("model-%%d.h5", strategy$rank))
', bn)), dir, env = c(
        # Buckets of 25 gradient values: several MPI sums started during each backward pass.
        "RUSTGPU_BUCKET_BYTES=200"))
      expect_identical(attr(out, "status"), 0L, label = paste(out, collapse = "\n"))
      ranks <- lapply(seq_len(n) - 1, function(r) readRDS(file.path(dir, sprintf("rank-%d.rds", r))))
      one <- make_model(bn)
      set_weights(one, readRDS(file.path(dir, "initial.rds")))
      compile(one, optimizer = optimizer_sgd(lr = 0.2), loss = "categorical_crossentropy", metrics = "accuracy")
      d <- make_data()
      h <- fit(one, d$x, d$y, epochs = 3, batch_size = 20, shuffle = FALSE, verbose = 0)
      for (r in ranks) {
        expect_lt(max(mapply(function(a, b) max(abs(a - b)), r$weights, get_weights(one))), 1e-5)
        expect_equal(r$history$loss, h$metrics$loss, tolerance = 1e-5)
        # Every rank's fit() returns the same history.
        expect_identical(r$history, ranks[[1]]$history)
      }
      # Saving happens once, on rank 0.
      expect_identical(sort(list.files(dir, pattern = "\\.h5$")), "model-0.h5")
    }
  }
})

test_that("shuffled batches are the same on every rank, and only the chief prints progress", {
  skip_without_mpi()
  dir <- new_dir()
  out <- run_ranks(2, c(model_code, '
strategy <- multi_worker_mirrored_strategy()
print(strategy)
with(strategy$scope(), {
  model <- make_model(FALSE)
  model %>% compile(optimizer = "adam", loss = "categorical_crossentropy")
})
d <- make_data()
# 57 rows in batches of 28: the last batch (1 row, fewer than the workers) joins the one before.
h <- fit(model, d$x, d$y, epochs = 2, batch_size = 28, verbose = 2)
# A generator drawing from the R RNG gives every rank the same global batches.
fit_generator(model, function() { i <- sample(57, 12); list(d$x[i, ], d$y[i, ]) }, steps_per_epoch = 3, epochs = 1, verbose = 0)
score <- evaluate(model, d$x, d$y, verbose = 1)
saveRDS(list(weights = get_weights(model), history = h$metrics, score = score), sprintf("rank-%d.rds", strategy$rank))
'), dir)
  expect_identical(attr(out, "status"), 0L, label = paste(out, collapse = "\n"))
  a <- readRDS(file.path(dir, "rank-0.rds"))
  b <- readRDS(file.path(dir, "rank-1.rds"))
  expect_identical(a, b)
  expect_true(any(grepl("<MultiWorkerMirroredStrategy: rank 0 of 2 workers (the chief)>", out, fixed = TRUE)))
  expect_true(any(grepl("<MultiWorkerMirroredStrategy: rank 1 of 2 workers>", out, fixed = TRUE)))
  expect_identical(sum(grepl("^Epoch 1/2", out)), 1L)
  expect_identical(sum(grepl("^loss: ", out)), 1L)
})

worker_failure_script <- function(how) c(model_code, sprintf('
strategy <- multi_worker_mirrored_strategy()
with(strategy$scope(), {
  model <- make_model(FALSE)
  model %%>%% compile(optimizer = "sgd", loss = "categorical_crossentropy")
})
d <- make_data()
fail <- callback_lambda(on_batch_end = function(batch, logs) {
  if (strategy$rank == 1 && batch == 1) %s
})
started <- Sys.time()
outcome <- tryCatch({
  fit(model, d$x[rep(1:57, 20), ], d$y[rep(1:57, 20), ], epochs = 5, batch_size = 10, verbose = 0, callbacks = list(fail))
  "finished"
}, error = function(e) paste(class(e)[1], conditionMessage(e)), interrupt = function(e) "interrupted")
writeLines(c(outcome, format(as.numeric(difftime(Sys.time(), started, units = "secs")))), sprintf("outcome-%%d.txt", strategy$rank))
', how))

test_that("a rank killed mid-fit makes the others stop with a classed error naming it, in bounded time", {
  skip_without_mpi()
  dir <- new_dir()
  run_ranks(3, worker_failure_script("tools::pskill(Sys.getpid(), tools::SIGKILL)"), dir)
  for (r in c(0, 2)) {
    outcome <- readLines(file.path(dir, sprintf("outcome-%d.txt", r)))
    expect_match(outcome[1], "^rustgpu_worker_error worker rank 1 of 3 failed: its process ended")
    expect_lt(as.numeric(outcome[2]), 30)
  }
  expect_false(file.exists(file.path(dir, "outcome-1.txt")))
})

test_that("an R error on one rank stops the others with its message, and the job ends", {
  skip_without_mpi()
  dir <- new_dir()
  elapsed <- system.time(run_ranks(2, worker_failure_script('stop("the disk is full")'), dir))[["elapsed"]]
  outcome <- readLines(file.path(dir, "outcome-0.txt"))
  expect_match(outcome[1], "^rustgpu_worker_error worker rank 1 of 2 failed: .*the disk is full")
  expect_lt(as.numeric(outcome[2]), 30)
  expect_match(readLines(file.path(dir, "outcome-1.txt"))[1], "the disk is full")
  # Both processes end (neither waits in MPI_Finalize for the other).
  expect_lt(elapsed, 60)
})

test_that("a rank that leaves the job early (its script ran other calls) ends the others' wait", {
  skip_without_mpi()
  dir <- new_dir()
  elapsed <- system.time(run_ranks(2, c(model_code, '
strategy <- multi_worker_mirrored_strategy()
with(strategy$scope(), {
  model <- make_model(FALSE)
  model %>% compile(optimizer = "sgd", loss = "categorical_crossentropy")
})
d <- make_data()
# Rank 1 skips the training: rank 0 waits for sums that will not come.
if (strategy$rank == 0) {
  outcome <- tryCatch({ fit(model, d$x, d$y, epochs = 2, batch_size = 10, verbose = 0); "finished" },
                      error = function(e) paste(class(e)[1], conditionMessage(e)))
  writeLines(outcome, "outcome-0.txt")
}
'), dir))[["elapsed"]]
  expect_match(readLines(file.path(dir, "outcome-0.txt"))[1], "^rustgpu_worker_error worker rank 1 of 2 left the job")
  expect_lt(elapsed, 60)
})

test_that("Ctrl-C on one rank stops it and the others with a classed error", {
  skip_without_mpi()
  skip_if_not(file.exists("/proc/self/stat"), "process ids read from /proc (Linux)")
  dir <- new_dir()
  # Rank 1 interrupts itself (as Ctrl-C in its terminal would) once training is under way.
  elapsed <- system.time(run_ranks(2, worker_failure_script("tools::pskill(Sys.getpid(), tools::SIGINT)"), dir))[["elapsed"]]
  expect_match(readLines(file.path(dir, "outcome-0.txt"))[1], "^rustgpu_worker_error worker rank 1 of 2 failed: interrupted by the user")
  expect_match(readLines(file.path(dir, "outcome-1.txt"))[1], "^interrupted")
  expect_lt(elapsed, 60)
})

test_that("without a launcher, the strategy is a job of one worker", {
  skip_if_not(rustgpu_build_info()$mpi, "rustgpu was built without MPI")
  # In a process of its own: MPI is initialized once per process.
  dir <- new_dir()
  script <- file.path(dir, "one.R")
  writeLines(c(sprintf(".libPaths(c(%s, .libPaths()))", paste(deparse(.libPaths()), collapse = "")),
               "suppressMessages(library(rustgpu))", "s <- multi_worker_mirrored_strategy()",
               "cat(s$num_replicas_in_sync, s$is_chief, s$cluster_resolver$task_type, '\\n')"), script)
  env <- if (Sys.info()[["user"]] == "root") c("OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
  out <- suppressWarnings(system2("timeout", c(60, file.path(R.home("bin"), "Rscript"), script), stdout = TRUE, stderr = TRUE, env = env))
  expect_true(any(grepl("^1 TRUE chief", out)), label = paste(out, collapse = "\n"))
})

test_that("Ctrl-C to the launcher stops every rank", {
  skip_without_mpi()
  skip_if_not(file.exists("/proc/self/stat"), "process ids read from /proc (Linux)")
  dir <- new_dir()
  path <- file.path(dir, "script.R")
  writeLines(c(
    sprintf(".libPaths(c(%s, .libPaths()))", paste(deparse(.libPaths()), collapse = "")),
    sprintf("setwd(%s)", deparse(dir)),
    "suppressMessages(library(rustgpu))",
    model_code, '
strategy <- multi_worker_mirrored_strategy()
# This rank and its parent (the launcher, on one machine), from /proc.
stat <- strsplit(readLines("/proc/self/stat"), " ")[[1]]
writeLines(c(stat[1], stat[4]), sprintf("pid-%d.txt", strategy$rank))
with(strategy$scope(), {
  model <- make_model(FALSE)
  model %>% compile(optimizer = "sgd", loss = "categorical_crossentropy")
})
d <- make_data()
started <- callback_lambda(on_epoch_end = function(epoch, logs) if (epoch == 0) file.create(sprintf("training-%d", strategy$rank)))
fit(model, d$x, d$y, epochs = 100000, batch_size = 10, verbose = 0, callbacks = list(started))
'), path)
  env <- c(if (Sys.info()[["user"]] == "root") c("OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"),
           "OMPI_MCA_rmaps_base_oversubscribe=1")
  system2("timeout", c(120, mpirun, "-np", 2, file.path(R.home("bin"), "Rscript"), path),
          stdout = FALSE, stderr = FALSE, env = env, wait = FALSE)
  ready <- function() all(file.exists(file.path(dir, c("training-0", "training-1", "pid-0.txt", "pid-1.txt"))))
  deadline <- Sys.time() + 60
  while (!ready() && Sys.time() < deadline) Sys.sleep(0.1)
  expect_true(ready())
  pids <- vapply(0:1, function(r) as.integer(readLines(file.path(dir, sprintf("pid-%d.txt", r)))[1]), integer(1))
  launcher <- as.integer(readLines(file.path(dir, "pid-0.txt"))[2])
  # A process that ended may stay a zombie until its parent waits for it: that is not alive.
  alive <- function(pid) {
    stat <- tryCatch(readLines(sprintf("/proc/%d/stat", pid), warn = FALSE)[1], error = function(e) NA, warning = function(w) NA)
    !is.na(stat) && !grepl("^Z", sub("^[^)]*\\) ", "", stat))
  }
  expect_true(all(vapply(pids, alive, logical(1))))
  tools::pskill(launcher, tools::SIGINT)
  deadline <- Sys.time() + 30
  while (any(vapply(pids, alive, logical(1))) && Sys.time() < deadline) Sys.sleep(0.1)
  expect_false(any(vapply(pids, alive, logical(1))))
})
