# Multi-worker scaling on this machine: 1, 2 and 4 MPI ranks (mpirun), one thread each, for
# the MLP (784-512-512-10) and the CNN (conv32-pool-conv64-pool-128-10) of bench/models.R.
#
#   Rscript bench/multi_worker_scaling.R        (rustgpu built with MPI; REPEATS, SAMPLES)
#
# Strong scaling: the workload's batch (256, 128) is the global batch, each rank takes 1/N of
# it; weak scaling: each rank takes the workload's batch (global batch N times it). Each run
# is one mpirun: a warm-up epoch, then one timed fit(); rank 0 reports the job's samples/s.
# Rank counts are interleaved in every repeat so that machine noise hits them alike; the
# table has medians with min and max over REPEATS and each count's ratio to 1 rank
# (median of the per-repeat ratios). On a 2-core machine 4 ranks share 2 cores: their ideal is
# 2x, not 4x. Writes bench/results/<date>-<host>-multi-worker.csv.
suppressMessages(library(rustgpu))
stopifnot(rustgpu_build_info()$mpi, nzchar(Sys.which("mpirun")))
here <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1]))
repeats <- as.integer(Sys.getenv("REPEATS", "5"))
ranks <- c(1L, 2L, 4L)
samples <- c(mlp = as.integer(Sys.getenv("MLP_SAMPLES", "8192")), cnn = as.integer(Sys.getenv("CNN_SAMPLES", "2048")))
env_root <- if (Sys.info()[["user"]] == "root") c("OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")

run <- function(workload, mode, n) {
  env <- c(env_root, "RAYON_NUM_THREADS=1", paste0("WORKLOAD=", workload), paste0("MODE=", mode),
           paste0("SAMPLES=", samples[[workload]]), paste0("R_LIBS=", paste(.libPaths(), collapse = ":")))
  out <- system2("mpirun", c("--oversubscribe", "-np", n, file.path(R.home("bin"), "Rscript"), file.path(here, "multi_worker_rank.R")),
                 stdout = TRUE, stderr = TRUE, env = env)
  line <- grep("^THROUGHPUT ", out, value = TRUE)
  if (length(line) != 1) stop(paste(c("a run failed:", out), collapse = "\n"))
  as.numeric(sub("^THROUGHPUT ", "", line))
}

rows <- list()
for (workload in names(samples)) {
  for (mode in c("strong", "weak")) {
    t <- replicate(repeats, vapply(ranks, function(n) run(workload, mode, n), numeric(1)))
    for (i in seq_along(ranks)) {
      ratio <- t[i, ] / t[1, ]
      rows[[length(rows) + 1]] <- data.frame(
        workload = workload, scaling = mode, ranks = ranks[i], median = stats::median(t[i, ]), min = min(t[i, ]), max = max(t[i, ]),
        ratio = stats::median(ratio), ratio_min = min(ratio), ratio_max = max(ratio))
    }
  }
}
res <- do.call(rbind, rows)
cat(sprintf("samples/s of the whole job; %d repeats on %s (%d cores), 1 thread per rank\n",
            repeats, Sys.info()[["nodename"]], parallel::detectCores()))
print(format(res, digits = 3), row.names = FALSE)
out <- file.path("bench", "results", sprintf("%s-%s-multi-worker.csv", Sys.Date(), Sys.info()[["nodename"]]))
utils::write.csv(res, out, row.names = FALSE)
