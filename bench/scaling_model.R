# A model of multi-worker training on N nodes x 8 GPUs (bench/NOTES.md, "Multi-worker
# scaling"), fed with measured single-machine step times, predicting the scaling efficiency
# (step time on one GPU / step time in the job, with each GPU keeping its batch: weak scaling).
#
#   Rscript bench/scaling_model.R
#
# A ring all-reduce moves 2(n-1)/n x the gradient bytes through each member's link; with 8
# GPUs per node the reduction is hierarchical: within the node over NVLink, then across the
# N nodes over the network, then back. Two ways to run it:
#   - "today": rustgpu as built now: gradients copied to the host (PCIe) and summed as
#     doubles by MPI, after the backward pass (no overlap);
#   - "NCCL, buckets": floats on the GPUs over NCCL, in buckets overlapped with the backward
#     pass (2/3 of a step), as DDP does: only the part of the exchange that outlasts the
#     backward pass adds to the step.
# Link speeds are assumptions (the table says which); step times and parameter counts are
# measured (the CNN's step: rustgpu on an H100, batch 256, README "GPU", 2026-11-26).
# Xception has no GPU step time measured by rustgpu: its rows use three step times.
params <- c(cnn = 225034, xception = 22910480)  # count_params() of bench/models.R's CNN, application_xception()
# Bytes per second. Networks: a DGX-class node (8 x 400 Gb/s InfiniBand) or one 100 Gb/s NIC.
links <- list(nvlink = 350e9, pcie = 25e9)
networks <- c(`8x400Gb/s` = 400e9, `1x100Gb/s` = 12.5e9)
latency <- c(intra = 5e-6, inter = 10e-6)

exchange <- function(bytes, nodes, inter, gpus = 8, intra = links$nvlink) {
  ring <- function(n) 2 * (n - 1) / n
  ring(gpus) * bytes / intra + 2 * (gpus - 1) * latency[["intra"]] +
    if (nodes > 1) ring(nodes) * bytes / inter + 2 * (nodes - 1) * latency[["inter"]] else 0
}

efficiency <- function(step, p, nodes, way, network) {
  comm <- switch(way,
    today = {
      # Device -> host and back (4-byte floats), then MPI over doubles: within the node through
      # shared memory (taken as PCIe speed), across nodes over each rank's eighth of the network.
      2 * 4 * p / links$pcie + exchange(8 * p, nodes, inter = network / 8, intra = links$pcie)
    },
    nccl_buckets = max(0, exchange(4 * p, nodes, inter = network) - 2 / 3 * step)
  )
  step / (step + comm)
}

rows <- list()
cases <- list(list(model = "cnn", step = 7.90e-3, note = "measured, H100"),
              list(model = "xception", step = 0.010, note = "assumed"),
              list(model = "xception", step = 0.030, note = "assumed"),
              list(model = "xception", step = 0.100, note = "assumed"))
for (case in cases) {
  for (net in names(networks)) {
    for (way in c("today", "nccl_buckets")) {
      e <- vapply(c(1, 2, 4, 16), function(n) efficiency(case$step, params[[case$model]], n, way, networks[[net]]), numeric(1))
      rows[[length(rows) + 1]] <- data.frame(model = case$model, step_ms = case$step * 1e3, step = case$note, network = net,
                                             exchange = way, `1 node` = e[1], `2 nodes` = e[2], `4 nodes` = e[3], `16 nodes` = e[4],
                                             check.names = FALSE)
    }
  }
}
cat("Assumed links: NVLink all-reduce 350 GB/s per GPU; PCIe 25 GB/s; networks per node as named",
    "(MPI on the host: each of the 8 ranks an eighth); latency 5 us per step in a node, 10 us across.\n")
print(format(do.call(rbind, rows), digits = 2), row.names = FALSE)
