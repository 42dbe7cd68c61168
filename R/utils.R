#' Pipe operator
#'
#' See \code{magrittr::\link[magrittr:pipe]{\%>\%}}.
#' @name %>%
#' @rdname pipe
#' @keywords internal
#' @importFrom magrittr %>%
#' @export
#' @usage lhs \%>\% rhs
#' @return The result of calling `rhs(lhs)`.
NULL

#' Convert class ids to one-hot rows
#'
#' @param y A vector, matrix or array of class ids, from 0 to `num_classes - 1`.
#' @param num_classes Number of classes (default: `max(y) + 1`).
#' @return As Keras's: `y`'s shape with one more axis, of one value per class (a vector
#'   gives a matrix with a row per element; a matrix of sequences of ids, one-hot rows per
#'   time step; a last axis of length 1 is replaced).
#' @examples
#' to_categorical(c(0, 2, 1))
#' dim(to_categorical(matrix(c(0, 1, 2, 1), 2)))
#' @export
to_categorical <- function(y, num_classes = NULL) {
  if (is.factor(y)) {
    value_error("`y` is a factor: use as.integer(y) - 1 to get class ids from 0.")
  }
  if (!is.numeric(y) || anyNA(y) || any(y != round(y)) || any(y < 0)) {
    value_error("`y` must hold whole-number class ids >= 0 (no NA).")
  }
  if (is.null(num_classes)) {
    num_classes <- if (length(y)) max(y) + 1 else 0
  } else {
    check_count(num_classes, "num_classes", min = 1)
  }
  if (length(y) && max(y) >= num_classes) {
    value_error(sprintf("`y` holds class id %.0f but `num_classes` is %.0f: ids must be below it.", max(y), num_classes))
  }
  check_allocation(as.numeric(length(y)) * num_classes, sprintf("a %d x %.0f one-hot matrix", length(y), num_classes),
                   "are the class ids (and `num_classes`) right? Use sparse_categorical_crossentropy with class ids instead of one-hot rows")
  if (num_classes > .Machine$integer.max) {
    value_error(sprintf("`y` holds class id %.0f: a one-hot matrix has at most %d columns.", max(y), .Machine$integer.max))
  }
  shape <- dim(y)
  if (length(shape) > 1 && shape[length(shape)] == 1) shape <- shape[-length(shape)]
  if (is.null(shape)) shape <- length(y)
  out <- array(0, dim = c(shape, num_classes))
  # Element e of y (in R's order) is class k's value at e + k * length(y).
  out[seq_along(y) + as.numeric(y) * length(y)] <- 1
  out
}
