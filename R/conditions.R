# Classed conditions, all inheriting from `rustgpu_error` (as mlverse/torch does in one file).

rustgpu_abort <- function(message, class, call = rlang::caller_env(), ...) {
  rlang::abort(message, class = c(class, "rustgpu_error"), call = call, ...)
}

value_error <- function(message, call = rlang::caller_env()) {
  rustgpu_abort(message, "rustgpu_value_error", call = call)
}

state_error <- function(message, call = rlang::caller_env()) {
  rustgpu_abort(message, "rustgpu_state_error", call = call)
}

# The Rust side returns a `rustgpu_backend_failure` object instead of raising, so no
# R error ever unwinds through Rust frames; turn it into the condition here.
call_backend <- function(result, call = rlang::caller_env()) {
  if (inherits(result, "rustgpu_backend_failure")) {
    cls <- unclass(result)
    if (identical(cls$class, "rustgpu_interrupt")) {
      # Ctrl-C stopped the call between batches or layers (nothing was changed): R's own
      # interrupt condition, as if R had been running all along.
      rlang::interrupt()
    }
    rustgpu_abort(cls$message, cls$class, call = call)
  }
  result
}

# --- argument checks ---------------------------------------------------------

# Suggested packages a function needs: a state error naming the package (and Debian's).
need_packages <- function(packages, what, call = rlang::caller_env()) {
  for (p in packages) {
    if (!requireNamespace(p, quietly = TRUE)) state_error(sprintf("%s needs the R package %s (Debian: r-cran-%s).", what, p, p), call = call)
  }
}


# Before R allocates `values` numbers whose count comes from the user: a classed
# `rustgpu_resource_error` (what, how much, what to do) instead of R's "cannot allocate vector".
check_allocation <- function(values, what, advice, call = rlang::caller_env()) {
  call_backend(rg_check_memory(what, as.numeric(values), advice), call = call)
  invisible()
}

check_count <- function(x, arg, min = 1, allow_null = FALSE, call = rlang::caller_env()) {
  if (is.null(x) && allow_null) {
    return(invisible(NULL))
  }
  if (!is.numeric(x) || length(x) != 1 || is.na(x) || !is.finite(x) || x != round(x) || x < min ||
      x > .Machine$integer.max) {
    value_error(sprintf("`%s` must be a single whole number >= %s, not %s.", arg, min, describe(x)), call = call)
  }
  invisible(x)
}

check_number <- function(x, arg, min = -Inf, max = Inf, min_inclusive = TRUE, max_inclusive = TRUE,
                         call = rlang::caller_env()) {
  ok <- is.numeric(x) && length(x) == 1 && !is.na(x) && is.finite(x) &&
    (if (min_inclusive) x >= min else x > min) && (if (max_inclusive) x <= max else x < max)
  if (!ok) {
    range <- sprintf("%s%s, %s%s", if (min_inclusive) "[" else "(", min, max, if (max_inclusive) "]" else ")")
    value_error(sprintf("`%s` must be a single number in %s, not %s.", arg, range, describe(x)), call = call)
  }
  invisible(x)
}

check_bool <- function(x, arg, call = rlang::caller_env()) {
  if (!is.logical(x) || length(x) != 1 || is.na(x)) {
    value_error(sprintf("`%s` must be a single TRUE or FALSE, not %s.", arg, describe(x)), call = call)
  }
  invisible(x)
}

# One of a few strings: `arg` must be "a" or "b".
check_choice <- function(x, arg, choices, call = rlang::caller_env()) {
  if (!is.character(x) || length(x) != 1 || !x %in% choices) {
    value_error(sprintf("`%s` must be %s, not %s.", arg, paste0("\"", choices, "\"", collapse = " or "), describe(x)), call = call)
  }
  invisible(x)
}

check_string <- function(x, arg, allow_null = FALSE, call = rlang::caller_env()) {
  if (is.null(x) && allow_null) {
    return(invisible(NULL))
  }
  if (!is.character(x) || length(x) != 1 || is.na(x) || !nzchar(x)) {
    value_error(sprintf("`%s` must be a single non-empty string, not %s.", arg, describe(x)), call = call)
  }
  invisible(x)
}

# A shape as the package keeps it: an integer vector with 0 for a size that each batch gives
# (Keras's None, written NULL in a list or NA in a vector; the core's `shape::VARIABLE`).
check_shape <- function(x, arg, call = rlang::caller_env()) {
  if (is.null(x)) {
    return(NULL)
  }
  if (is.list(x)) {
    # Keras's list form, e.g. shape = list(NULL, 100).
    x <- lapply(x, function(v) if (is.null(v)) NA_integer_ else v)
    if (all(vapply(x, function(v) (is.numeric(v) || is.logical(v)) && length(v) == 1, logical(1)))) x <- unlist(x)
  }
  if (is.logical(x) && all(is.na(x))) x <- as.integer(x)
  known <- x[!is.na(x)]
  if (!is.numeric(x) || length(x) == 0 || any(!is.finite(known)) || any(known != round(known)) ||
      any(known < 1) || any(known > .Machine$integer.max)) {
    value_error(sprintf("`%s` must be a vector of positive whole numbers (NA or NULL for a size that varies), not %s.", arg, describe(x)), call = call)
  }
  x <- as.integer(x)
  x[is.na(x)] <- 0L
  x
}

# A shape in Keras's list form with the batch axis: list(NULL, NULL, 71).
keras_shape <- function(shape) c(list(NULL), lapply(as.integer(shape), function(d) if (d == 0L) NULL else d))

# A shape as Keras prints it, without the batch axis: "None, 71".
shape_text <- function(shape) paste(ifelse(shape == 0, "None", shape), collapse = ", ")

# A shape with NA for the sizes that vary, as traces and user-facing shape arguments write them.
shape_with_na <- function(shape) ifelse(shape == 0, NA, shape)

describe <- function(x) {
  if (is.null(x)) return("NULL")
  if (is.function(x)) return("a function")
  if (is.environment(x)) return("an environment")
  if (length(x) == 0) return(sprintf("an empty %s vector", typeof(x)))
  if (is.atomic(x) && length(x) == 1) return(if (is.character(x)) sprintf("\"%s\"", x) else format(x))
  if (is.atomic(x)) return(sprintf("a %s vector of length %d", typeof(x), length(x)))
  sprintf("an object of class <%s>", paste(class(x), collapse = "/"))
}
