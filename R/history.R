# Training history and Keras-style progress output.

#' @export
print.keras_training_history <- function(x, ...) {
  p <- x$params
  # As R keras prints it: what it trained on, then each metric's last value.
  epochs <- min(c(p$epochs, max(c(0, lengths(x$metrics)))))
  count <- function(v) if (is.null(v) || is.na(v)) "NA" else prettyNum(v, big.mark = ",")
  validated <- if (is.null(p$validation_samples)) "" else sprintf(", validated on %s samples", count(p$validation_samples))
  cat(sprintf("Trained on %s samples%s (batch_size=%s, epochs=%s)\n", count(p$samples), validated, count(p$batch_size), epochs))
  cat("Final epoch (plot to see history):\n")
  last <- vapply(x$metrics, function(v) if (length(v)) v[[length(v)]] else NA_real_, numeric(1))
  width <- max(nchar(names(last)))
  values <- prettyNum(last, big.mark = ",", digits = 4, scientific = FALSE)
  cat(paste0(sprintf(paste0("%", width, "s"), names(last)), ": ", values, collapse = "\n"), "\n")
  invisible(x)
}

#' Training history as a data frame
#'
#' One row per epoch and metric, as R keras returns it: columns `epoch`, `value`,
#' `metric` and `data` ("training" or "validation").
#'
#' @param x A `keras_training_history` from [fit()].
#' @param ... Unused.
#' @return A data frame.
#' @examples
#' x <- matrix(runif(40), ncol = 2)
#' model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
#' compile(model, optimizer = "sgd", loss = "mse")
#' h <- fit(model, x, rowSums(x), epochs = 2, verbose = 0)
#' as.data.frame(h)
#' @export
as.data.frame.keras_training_history <- function(x, ...) {
  metrics <- x$metrics
  epochs <- max(c(0, lengths(metrics)))
  nms <- names(metrics)
  base <- sub("^val_", "", nms)
  rows <- lapply(seq_along(metrics), function(i) {
    v <- metrics[[i]]
    data.frame(
      epoch = seq_along(v), value = v,
      metric = rep(base[[i]], length(v)),
      data = rep(if (startsWith(nms[[i]], "val_")) "validation" else "training", length(v)),
      stringsAsFactors = FALSE
    )
  })
  df <- do.call(rbind, rows)
  if (is.null(df)) df <- data.frame(epoch = integer(), value = numeric(), metric = character(), data = character())
  df$metric <- factor(df$metric, levels = unique(base))
  df$data <- factor(df$data, levels = c("training", "validation"))
  rownames(df) <- NULL
  attr(df, "epochs") <- epochs
  df
}

#' Plot training history
#'
#' Loss and metrics per epoch, training and validation, one panel per metric: with ggplot2
#' when it is installed (a ggplot object, drawn when printed), otherwise with base graphics.
#'
#' @param x A `keras_training_history` from [fit()].
#' @param y Unused.
#' @param metrics Names of the metrics to plot (default: all).
#' @param method "auto" (ggplot2 when installed), "ggplot2" or "base".
#' @param ... Passed to [graphics::plot()] (base method).
#' @return A ggplot object, or `x` invisibly (base method).
#' @examples
#' x <- matrix(runif(40), ncol = 2)
#' model <- keras_model_sequential() %>% layer_dense(1, input_shape = 2)
#' compile(model, optimizer = "sgd", loss = "mse")
#' h <- fit(model, x, rowSums(x), epochs = 3, verbose = 0, validation_split = 0.25)
#' plot(h, method = "base")
#' @export
plot.keras_training_history <- function(x, y, metrics = NULL, method = c("auto", "ggplot2", "base"), ...) {
  method <- match.arg(method)
  df <- as.data.frame(x)
  if (!is.null(metrics)) df <- df[df$metric %in% metrics, , drop = FALSE]
  df$metric <- droplevels(df$metric)
  has_ggplot <- requireNamespace("ggplot2", quietly = TRUE)
  if (method == "ggplot2" && !has_ggplot) value_error("`method = \"ggplot2\"` needs the ggplot2 package.")
  if (method != "base" && has_ggplot) {
    p <- ggplot2::ggplot(df, ggplot2::aes(x = .data$epoch, y = .data$value, colour = .data$data)) +
      ggplot2::geom_point() +
      ggplot2::geom_line() +
      ggplot2::facet_grid(metric ~ ., switch = "y", scales = "free_y") +
      ggplot2::labs(x = "epoch", y = NULL, colour = NULL)
    return(p)
  }
  metric_levels <- levels(df$metric)
  old <- graphics::par(mfrow = c(length(metric_levels), 1), mar = c(4, 4, 1, 1))
  on.exit(graphics::par(old))
  for (m in metric_levels) {
    d <- df[df$metric == m, ]
    graphics::plot(d$epoch, d$value, type = "n", xlab = "epoch", ylab = m, ...)
    for (set in c("training", "validation")) {
      s <- d[d$data == set, ]
      if (nrow(s)) graphics::lines(s$epoch, s$value, type = "b", pch = 19, col = if (set == "training") "black" else "steelblue")
    }
  }
  invisible(x)
}

format_logs <- function(logs) {
  paste(sprintf("%s: %.4f", names(logs), logs), collapse = " - ")
}

# Progress: "Epoch 1/10" then Keras's bar line. In interactive sessions with verbose = 1
# the bar is redrawn per batch; otherwise one line per epoch.
progress_start <- function(epoch, epochs, steps, verbose) {
  state <- new.env(parent = emptyenv())
  state$verbose <- as.numeric(verbose)
  state$steps <- steps
  state$start <- Sys.time()
  state$live <- state$verbose == 1 && interactive()
  if (state$verbose > 0) cat(sprintf("Epoch %d/%d\n", epoch, epochs))
  state
}

progress_bar <- function(done, steps) {
  width <- 30
  filled <- if (steps > 0) floor(width * done / steps) else width
  bar <- if (done < steps) paste0(strrep("=", max(filled - 1, 0)), ">", strrep(".", width - filled))
         else strrep("=", width)
  sprintf("%d/%d [%s]", done, steps, bar)
}

progress_update <- function(state, done, logs, names) {
  if (!state$live) return(invisible())
  elapsed <- as.numeric(difftime(Sys.time(), state$start, units = "secs"))
  eta <- if (done < state$steps) sprintf(" - ETA: %.0fs", elapsed / done * (state$steps - done)) else ""
  cat(sprintf("\r%s%s - %s", progress_bar(done, state$steps), eta, format_logs(stats::setNames(logs, names))))
  utils::flush.console()
}

progress_end <- function(state, logs) {
  if (state$verbose == 0) return(invisible())
  elapsed <- as.numeric(difftime(Sys.time(), state$start, units = "secs"))
  per_step <- 1000 * elapsed / max(state$steps, 1)
  prefix <- if (state$verbose == 1) progress_bar(state$steps, state$steps) else sprintf("%d/%d", state$steps, state$steps)
  cat(sprintf("%s%s - %.0fs %.0fms/step - %s\n", if (state$live) "\r" else "", prefix, elapsed, per_step,
              format_logs(logs)))
}
