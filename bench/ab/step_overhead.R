# The fixed cost of a training step (R loop, binding, thread hand-offs): a one-unit model on
# 65,536 rows at batch 256, template and 2 virtual GPUs; milliseconds per step.
#
#   R_LIBS=<lib> RAYON_NUM_THREADS=1 Rscript bench/ab/step_overhead.R
suppressMessages(library(rustgpu))
n <- 65536
x <- matrix(runif(n * 2), n)
y <- runif(n)
use_virtual_gpus(2, threads_per_gpu = 1)
template <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
parallel <- multi_gpu_model(template, gpus = 2)
for (m in list(template, parallel)) {
  compile(m, optimizer = "rmsprop", loss = "mse")
  fit(m, x, y, epochs = 1, batch_size = 256, verbose = 0)
}
for (name in c("template", "parallel")) {
  m <- if (name == "template") template else parallel
  s <- system.time(fit(m, x, y, epochs = 4, batch_size = 256, verbose = 0))[["elapsed"]]
  cat(sprintf("%s: %.3f ms per step\n", name, 1e3 * s / (4 * n / 256)))
}
