# Training flags (R keras re-exports tfruns's flags()): a script's tunable values with
# defaults, overridden from the command line (`Rscript train.R --epochs=20`) or a YAML file.

#' Flags for a training script
#'
#' Declares a script's hyperparameters with their defaults, as R keras's `flags()` (from
#' tfruns) does: `FLAGS <- flags(flag_integer("epochs", 10))` then `FLAGS$epochs`. A value
#' is overridden, in this order, by `file` (a YAML file of `name: value`, under a `default:`
#' section or at top level; read when it exists) and by the command line
#' (`Rscript train.R --epochs=20` or `--epochs 20`). Values are converted to the flag's type;
#' an unknown flag on the command line or in the file is an error, as in tfruns.
#'
#' @param ... Flags made by `flag_numeric()`, `flag_integer()`, `flag_boolean()` and
#'   `flag_string()`.
#' @param config The section of `file` to read (`R_CONFIG_ACTIVE`, else "default").
#' @param file A YAML file of flag values (needs the yaml package).
#' @param arguments Command-line arguments to read flags from.
#' @param name Name of the flag.
#' @param default Its default value.
#' @param description What it is for (printed with the flags).
#' @return `flags()`: a named list of the values (class `tfruns_flags`); `flag_*()`: a flag.
#' @examples
#' FLAGS <- flags(
#'   flag_integer("units", 64, "Units of the hidden layer"),
#'   flag_numeric("dropout", 0.2),
#'   arguments = c("--units=128")
#' )
#' FLAGS$units
#' FLAGS
#' @export
flags <- function(..., config = Sys.getenv("R_CONFIG_ACTIVE", unset = "default"), file = "flags.yml",
                  arguments = commandArgs(TRUE)) {
  declared <- list(...)
  if (length(declared) == 1 && is.list(declared[[1]]) && !inherits(declared[[1]], "rustgpu_flag")) declared <- declared[[1]]
  if (!all(vapply(declared, inherits, logical(1), "rustgpu_flag"))) {
    value_error("`...` must be flags made by flag_numeric(), flag_integer(), flag_boolean() or flag_string().")
  }
  names <- vapply(declared, function(f) f$name, character(1))
  if (anyDuplicated(names)) value_error(sprintf("Flag \"%s\" is declared twice.", names[anyDuplicated(names)]))
  values <- stats::setNames(lapply(declared, function(f) f$default), names)
  set <- function(name, value, where) {
    k <- match(name, names)
    if (is.na(k)) value_error(sprintf("%s sets flag \"%s\", which is not declared (flags: %s).", where, name, paste(names, collapse = ", ")), call = NULL)
    values[[name]] <<- convert_flag(declared[[k]], value, where)
  }
  check_string(file, "file", allow_null = TRUE)
  if (!is.null(file) && file.exists(file)) {
    need_packages("yaml", sprintf("Reading flags from \"%s\"", file))
    content <- tryCatch(yaml::read_yaml(file), error = function(e) value_error(sprintf("Flags file \"%s\" is not valid YAML: %s", file, conditionMessage(e)), call = NULL))
    if (is.list(content) && is.list(content[[config]])) content <- content[[config]]
    for (name in names(content)) if (!is.list(content[[name]])) set(name, content[[name]], sprintf("Flags file \"%s\"", file))
  }
  arguments <- as.character(arguments)
  i <- 1
  while (i <= length(arguments)) {
    arg <- arguments[[i]]
    if (startsWith(arg, "--") && nchar(arg) > 2) {
      body <- substring(arg, 3)
      if (grepl("=", body, fixed = TRUE)) {
        name <- sub("=.*$", "", body)
        value <- sub("^[^=]*=", "", body)
      } else {
        name <- body
        if (!name %in% names) { i <- i + 1; next }  # an argument for someone else (e.g. R's --args)
        if (i == length(arguments)) value_error(sprintf("Flag --%s on the command line has no value.", name), call = NULL)
        value <- arguments[[i + 1]]
        i <- i + 1
      }
      set(gsub("-", "_", name, fixed = TRUE), value, "The command line")
    }
    i <- i + 1
  }
  structure(values, class = "tfruns_flags", descriptions = vapply(declared, function(f) if (is.null(f$description)) "" else f$description, character(1)))
}

new_flag <- function(type, name, default, description) {
  check_string(name, "name")
  if (!grepl("^[A-Za-z_.][A-Za-z0-9_.]*$", name)) value_error(sprintf("`name` \"%s\" must be a name of letters, digits, \"_\" and \".\".", name), call = rlang::caller_env())
  check_string(description, "description", allow_null = TRUE, call = rlang::caller_env())
  flag <- structure(list(name = name, type = type, default = NULL, description = description), class = "rustgpu_flag")
  flag$default <- convert_flag(flag, default, "`default`")
  flag
}

convert_flag <- function(flag, value, where) {
  if (is.null(value)) return(NULL)
  bad <- function() value_error(sprintf("%s gives flag \"%s\" the value %s, not %s.", where, flag$name, describe(value),
                                        switch(flag$type, numeric = "a number", integer = "a whole number",
                                               boolean = "TRUE or FALSE", string = "a string")), call = NULL)
  if (length(value) != 1) bad()
  out <- switch(flag$type,
    numeric = suppressWarnings(as.numeric(value)),
    integer = { v <- suppressWarnings(as.numeric(value)); if (is.na(v) || v != round(v)) NA else as.integer(v) },
    boolean = if (is.logical(value)) value else switch(tolower(as.character(value)), true = , yes = , `1` = TRUE, false = , no = , `0` = FALSE, NA),
    string = as.character(value))
  if (is.na(out)) bad()
  out
}

#' @rdname flags
#' @export
flag_numeric <- function(name, default, description = NULL) new_flag("numeric", name, default, description)

#' @rdname flags
#' @export
flag_integer <- function(name, default, description = NULL) new_flag("integer", name, default, description)

#' @rdname flags
#' @export
flag_boolean <- function(name, default, description = NULL) new_flag("boolean", name, default, description)

#' @rdname flags
#' @export
flag_string <- function(name, default, description = NULL) new_flag("string", name, default, description)

#' @export
print.tfruns_flags <- function(x, ...) {
  values <- vapply(unclass(x), function(v) if (is.null(v)) "NULL" else format(v), character(1))
  width <- max(nchar(names(values)), 4)
  for (name in names(values)) cat(formatC(name, width = -width), " ", values[[name]], "\n", sep = "")
  invisible(x)
}
