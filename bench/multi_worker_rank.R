# One rank of bench/multi_worker_scaling.R (started by mpirun there): builds the workload's
# model in a multi_worker_mirrored_strategy() scope, fits one warm-up epoch, then times
# EPOCHS epochs; rank 0 prints the job's throughput. Settings from the environment:
# WORKLOAD (mlp, cnn), MODE (strong: the workload's batch is the global batch; weak: each
# rank's), SAMPLES, EPOCHS.
suppressMessages(library(rustgpu))
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "models.R"))
strategy <- multi_worker_mirrored_strategy()
workload <- Sys.getenv("WORKLOAD", "mlp")
samples <- as.integer(Sys.getenv("SAMPLES", "8192"))
epochs <- as.integer(Sys.getenv("EPOCHS", "1"))
with(strategy$scope(), {
  b <- bench_model(workload)
  b$model %>% compile(optimizer = "rmsprop", loss = "categorical_crossentropy")
})
batch <- if (Sys.getenv("MODE", "strong") == "weak") b$batch * strategy$num_replicas_in_sync else b$batch
set.seed(1)
x <- array(runif(samples * prod(b$shape)), c(samples, b$shape))
y <- to_categorical(sample(0:9, samples, replace = TRUE), 10)
fit(b$model, x, y, epochs = 1, batch_size = batch, verbose = 0)
elapsed <- system.time(fit(b$model, x, y, epochs = epochs, batch_size = batch, verbose = 0))[["elapsed"]]
if (strategy$is_chief) cat(sprintf("THROUGHPUT %.3f\n", epochs * samples / elapsed))
