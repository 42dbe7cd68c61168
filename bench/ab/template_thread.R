# The template's fit against the 1-replica wrapper's (whose step runs on one pinned worker),
# alternated in one script: 8 pairs of 2-epoch fits, one thread each. Where the template is
# slower, its step loses time moving between cores. Run it with a build, and with the whole
# process held to one core to see the template without that loss:
#
#   R_LIBS=<lib> RAYON_NUM_THREADS=1 [WL=mlp] Rscript bench/ab/template_thread.R
#   R_LIBS=<lib> RAYON_NUM_THREADS=1 taskset -c 0 Rscript bench/ab/template_thread.R
suppressMessages(library(rustgpu))
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "..", "models.R"))
use_virtual_gpus(2, threads_per_gpu = 1)
wl <- Sys.getenv("WL", "cnn")
n <- if (wl == "cnn") 2048 else 16384
b <- bench_model(wl)
set.seed(1)
x <- array(runif(n * prod(b$shape)), c(n, b$shape))
y <- to_categorical(sample(0:9, n, TRUE), 10)
template <- b$model
wrapper <- rustgpu:::new_model(rustgpu:::call_backend(rustgpu:::rg_multi_gpu(template$ptr, 0, TRUE, FALSE, "even")), "one_replica",
                               template = template, gpus = 0L)
for (m in list(template, wrapper)) {
  compile(m, optimizer = "rmsprop", loss = "categorical_crossentropy")
  fit(m, x, y, epochs = 1, batch_size = b$batch, verbose = 0)
}
seconds <- function(m) system.time(fit(m, x, y, epochs = 2, batch_size = b$batch, verbose = 0))[["elapsed"]]
r <- replicate(8, c(template = seconds(template), wrapper = seconds(wrapper)))
cat(sprintf("%s, 2 epochs: template %.3f s, wrapper %.3f s (medians of 8); template / wrapper per pair, median %.3f [%.3f, %.3f]\n",
            wl, median(r["template", ]), median(r["wrapper", ]), median(r["template", ] / r["wrapper", ]),
            min(r["template", ] / r["wrapper", ]), max(r["template", ] / r["wrapper", ])))
