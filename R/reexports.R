#' Multiple assignment
#'
#' zeallot's `%<-%`, re-exported as R keras does, so that
#' `c(c(x_train, y_train), c(x_test, y_test)) %<-% dataset_mnist()` unpacks a data set.
#' See \code{zeallot::\link[zeallot:operator]{\%<-\%}}.
#' @name %<-%
#' @rdname multi-assign
#' @keywords internal
#' @importFrom zeallot %<-%
#' @export
#' @usage x \%<-\% value
#' @return `value`, invisibly; the names on the left are assigned in the calling environment.
NULL
