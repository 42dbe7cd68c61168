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
#' @param y A vector of class ids, from 0 to `num_classes - 1`.
#' @param num_classes Number of classes (default: `max(y) + 1`).
#' @return A numeric matrix with one row per element of `y` and one column per class.
#' @examples
#' to_categorical(c(0, 2, 1))
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
  out <- matrix(0, nrow = length(y), ncol = num_classes)
  out[cbind(seq_along(y), as.integer(y) + 1L)] <- 1
  out
}
