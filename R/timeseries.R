#' Batches of windows over a time series
#'
#' Keras's `TimeseriesGenerator`: each sample is the window of `length` steps before a time
#' (every `sampling_rate`-th step) and its target is the value at that time. Times run from
#' `start_index + length` to `end_index` (0-based, as in Keras), every `stride` steps, in
#' batches of `batch_size` (at random times with `shuffle = TRUE`, drawn from R's generator).
#' The result is a generator for [fit_generator()] (each call gives the next batch,
#' `list(samples, targets)`, from the first again after the last); `length()` is the number of
#' batches and `generator(i)` gives batch `i` (from 1).
#'
#' @param data An array whose first axis is time (a vector is one value per step).
#' @param targets Targets, one per step (the same length as `data`'s first axis).
#' @param length Steps in each window.
#' @param sampling_rate Every how many steps a window takes a value.
#' @param stride Steps between consecutive windows.
#' @param start_index,end_index The first and last times (0-based) windows may end at;
#'   `end_index = NULL`: the last step.
#' @param shuffle Windows at random times instead of in order.
#' @param reverse Each window's steps in reverse order.
#' @param batch_size Windows per batch.
#' @return A generator function.
#' @examples
#' gen <- timeseries_generator(1:10, 1:10, length = 3, batch_size = 2)
#' length(gen)
#' gen(1)
#' @export
timeseries_generator <- function(data, targets, length, sampling_rate = 1, stride = 1, start_index = 0,
                                 end_index = NULL, shuffle = FALSE, reverse = FALSE, batch_size = 128) {
  if (!is.numeric(data) && !is.logical(data)) value_error(sprintf("`data` must be a numeric array, not %s.", describe(data)))
  vector_data <- is.null(dim(data))
  if (vector_data) data <- array(data, c(base::length(data), 1))
  steps <- dim(data)[[1]]
  inner <- dim(data)[-1]
  by_step <- matrix(data, nrow = steps)
  targets_dims <- dim(targets)
  n_targets <- if (is.null(targets_dims)) base::length(targets) else targets_dims[[1]]
  if (n_targets != steps) value_error(sprintf("`data` and `targets` must have the same length: %d and %d.", steps, n_targets))
  check_count(length, "length")
  check_count(sampling_rate, "sampling_rate")
  check_count(stride, "stride")
  check_count(start_index, "start_index", min = 0)
  check_count(end_index, "end_index", min = 0, allow_null = TRUE)
  check_bool(shuffle, "shuffle")
  check_bool(reverse, "reverse")
  check_count(batch_size, "batch_size")
  if (is.null(end_index)) end_index <- steps - 1
  if (end_index > steps - 1) value_error(sprintf("`end_index` (%d) must be below the series' length (%d).", as.integer(end_index), steps))
  first <- start_index + length
  if (first > end_index) {
    value_error(sprintf("`start_index` + `length` (%d) must not exceed `end_index` (%d): no window fits.", as.integer(first), as.integer(end_index)))
  }
  span <- batch_size * stride
  n_batches <- (end_index - first + span) %/% span
  take_rows <- function(a, rows) {
    if (is.null(dim(a))) return(a[rows])
    dims <- dim(a)
    array(matrix(a, nrow = dims[[1]])[rows, , drop = FALSE], c(base::length(rows), dims[-1]))
  }
  batch_at <- function(i) {
    rows <- if (shuffle) {
      sample.int(end_index - first + 1, batch_size, replace = TRUE) + first - 1
    } else {
      from <- first + span * (i - 1)
      seq(from, min(from + span - 1, end_index), by = stride)
    }
    steps_in <- lapply(rows, function(r) seq(r - length, r - 1, by = sampling_rate))
    idx <- unlist(lapply(steps_in, function(s) if (reverse) rev(s) else s)) + 1
    window <- base::length(steps_in[[1]])
    # Rows of `flat` are (sample, step), the step varying fastest.
    flat <- by_step[idx, , drop = FALSE]
    samples <- aperm(array(flat, c(window, base::length(rows), prod(inner))), c(2, 1, 3))
    samples <- array(samples, c(base::length(rows), window, if (vector_data) NULL else inner))
    list(samples, take_rows(targets, rows + 1))
  }
  position <- 0
  generator <- function(i = NULL) {
    if (is.null(i)) {
      position <<- position %% n_batches + 1
      i <- position
    }
    check_count(i, "i")
    if (i > n_batches) value_error(sprintf("Batch %d asked for: the generator has %d.", as.integer(i), as.integer(n_batches)))
    batch_at(i)
  }
  structure(generator, class = c("rustgpu_timeseries_generator", "function"), batches = n_batches)
}

#' @export
length.rustgpu_timeseries_generator <- function(x) attr(x, "batches")

#' @export
print.rustgpu_timeseries_generator <- function(x, ...) {
  cat(sprintf("<timeseries generator: %d batches>\n", attr(x, "batches")))
  invisible(x)
}
