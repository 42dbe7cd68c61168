# Arrays as numpy lays them out: R keras code reshapes with numpy's row-major order.

#' Reshape an array in row-major (C) order
#'
#' Reshapes as numpy's `reshape()` does, which is what R keras's `array_reshape()` (from
#' reticulate) calls: with `order = "C"` the last axis varies fastest, so
#' `array_reshape(images, c(n, 28 * 28))` flattens each image row by row, as Keras expects.
#' `order = "F"` is R's own column-major order (`dim<-`). One entry of `dim` may be `-1`: its
#' extent is worked out from the others.
#'
#' @param x An array, matrix, vector or data frame of numbers.
#' @param dim The new dimensions.
#' @param order `"C"` (row-major, numpy's default) or `"F"` (column-major).
#' @return An array with dimensions `dim` holding the elements of `x`.
#' @examples
#' x <- array(1:6, c(2, 3))
#' array_reshape(x, c(3, 2))
#' array_reshape(x, c(-1, 1))
#' @export
array_reshape <- function(x, dim, order = c("C", "F")) {
  order <- match.arg(order)
  if (is.data.frame(x)) x <- as.matrix(x)
  if (!(is.numeric(x) || is.logical(x)) || is.object(x) && !is.array(x)) {
    value_error(sprintf("`x` must be a numeric array, matrix or vector, not %s.", describe(x)))
  }
  if (!is.numeric(dim) || length(dim) == 0 || anyNA(dim) || any(dim != round(dim)) ||
      any(dim < -1) || sum(dim == -1) > 1) {
    value_error("`dim` must be whole numbers >= 0, with at most one -1 (worked out from the others).")
  }
  n <- length(x)
  if (any(dim == -1)) {
    known <- prod(dim[dim != -1])
    if (known == 0 || n %% known != 0) {
      value_error(sprintf("cannot reshape an array of %d elements into shape (%s)",
                          n, paste(dim, collapse = ", ")))
    }
    dim[dim == -1] <- n %/% known
  }
  if (prod(dim) != n) {
    value_error(sprintf("cannot reshape an array of %d elements into shape (%s)",
                        n, paste(dim, collapse = ", ")))
  }
  dim <- as.integer(dim)
  if (order == "F") {
    x <- as.vector(x)
    dim(x) <- dim
    return(x)
  }
  old <- base::dim(x)
  values <- if (is.null(old) || length(old) == 1) as.vector(x) else as.vector(aperm(x, rev(seq_along(old))))
  if (length(dim) == 1) {
    return(array(values, dim))
  }
  aperm(array(values, rev(dim)), rev(seq_along(dim)))
}

#' A tensor shape
#'
#' R keras's `shape()`: sizes as a list (Keras's tuple), `NULL` or `NA` for a size that
#' varies, for arguments such as `input_shape` and `add_weight()`'s `shape`.
#'
#' @param ... Sizes (whole numbers, `NULL` or `NA`).
#' @return A list of integers (and `NULL`s).
#' @examples
#' shape(28, 28, 1)
#' shape(NULL, 3)
#' @export
shape <- function(...) {
  lapply(list(...), function(d) {
    if (is.null(d) || (length(d) == 1 && is.na(d))) return(NULL)
    if (!is.numeric(d) || length(d) != 1 || d < 0 || d != round(d)) {
      value_error(sprintf("shape() takes whole sizes >= 0, NULL or NA, not %s.", describe(d)))
    }
    as.integer(d)
  })
}
