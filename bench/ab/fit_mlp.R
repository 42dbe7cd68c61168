# A/B timing of one fit of the MLP 784-512-512-10 (batch 256, 8,192 rows, RMSprop): the
# template on one device, or (MODE=p) the same model through 2 virtual GPUs. Compare builds
# by installing each into its own library and alternating runs:
#
#   R_LIBS=<lib> RAYON_NUM_THREADS=1 EP=4 MODE=t Rscript bench/ab/fit_mlp.R
#
# Prints system.time() of the timed fit (user, system, elapsed seconds).
suppressMessages(library(rustgpu))
set.seed(1)
n <- 8192
x <- matrix(runif(n * 784), n)
y <- to_categorical(sample(0:9, n, TRUE), 10)
use_virtual_gpus(2, threads_per_gpu = 1)
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "..", "models.R"))
template <- bench_model("mlp")$model
model <- if (Sys.getenv("MODE") == "p") multi_gpu_model(template, gpus = 2) else template
compile(model, optimizer = "rmsprop", loss = "categorical_crossentropy")
fit(model, x, y, epochs = 1, batch_size = 256, verbose = 0)
Sys.sleep(0.5)
print(system.time(fit(model, x, y, epochs = as.integer(Sys.getenv("EP", "4")), batch_size = 256, verbose = 0)))
