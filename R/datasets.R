# Keras's data sets: the same files, URLs and checksums as Keras, cached where Keras caches
# them (~/.keras/datasets, or $KERAS_HOME/datasets), read natively from the formats Keras
# ships: .npz (numpy arrays; imdb's and reuters's object arrays are pickles), gzipped IDX
# files, and CIFAR's pickled batches.

keras_origin <- "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

keras_cache_dir <- function() {
  home <- Sys.getenv("KERAS_HOME", "")
  if (nzchar(home)) home else file.path(path.expand("~"), ".keras")
}

#' Download a file, or use the cached copy
#'
#' Keras's `get_file()`: the file `fname` in `cache_dir/cache_subdir` (by default
#' `~/.keras/datasets`, or `$KERAS_HOME/datasets`) is downloaded from `origin` unless it is
#' there already, and checked against `file_hash` (SHA-256, or MD5 for a 32-character hash)
#' when one is given. With `untar = TRUE`, `origin` is a `.tar.gz` archive, extracted next to
#' it, and the extracted folder `fname` is returned. Offline, a cached file is used; without
#' one, the error says which file to put where.
#'
#' @param fname Name of the file (or of the extracted folder, with `untar`).
#' @param origin URL to download it from.
#' @param file_hash The file's expected SHA-256 or MD5 (optional).
#' @param cache_subdir Sub-folder of `cache_dir` to keep it in.
#' @param hash_algorithm `"auto"`, `"sha256"` or `"md5"`.
#' @param extract Whether to extract a `.tar.gz`, `.tar` or `.zip` archive next to the file.
#' @param archive_format Unused (the format is read from the file name).
#' @param cache_dir Where the cache lives (default `~/.keras`).
#' @param untar Whether `origin` is a `.tar.gz` to extract (Keras's older form of `extract`).
#' @return The path of the file (or extracted folder).
#' @examples
#' \dontrun{
#' path <- get_file("mnist.npz", "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz")
#' }
#' @export
get_file <- function(fname, origin, file_hash = NULL, cache_subdir = "datasets", hash_algorithm = "auto",
                     extract = FALSE, archive_format = "auto", cache_dir = NULL, untar = FALSE) {
  check_string(fname, "fname")
  check_string(origin, "origin")
  check_string(file_hash, "file_hash", allow_null = TRUE)
  check_bool(extract, "extract")
  check_bool(untar, "untar")
  if (!hash_algorithm %in% c("auto", "sha256", "md5")) value_error('`hash_algorithm` must be "auto", "sha256" or "md5".')
  if (is.null(cache_dir)) cache_dir <- keras_cache_dir()
  datadir <- file.path(path.expand(cache_dir), cache_subdir)
  dir.create(datadir, recursive = TRUE, showWarnings = FALSE)
  target <- file.path(datadir, fname)
  fpath <- if (untar) paste0(target, ".tar.gz") else target
  if (untar && dir.exists(target) && !file.exists(fpath)) return(target)
  if (file.exists(fpath) && !is.null(file_hash) && !hash_matches(fpath, file_hash, hash_algorithm)) {
    message(sprintf("A local file was found, but it seems to be incomplete or outdated because its hash does not match the original value of %s, so we will re-download the data.", file_hash))
    unlink(fpath)
  }
  if (!file.exists(fpath)) {
    download(origin, fpath, fname, datadir)
    if (!is.null(file_hash) && !hash_matches(fpath, file_hash, hash_algorithm)) {
      unlink(fpath)
      io_error(sprintf("The file downloaded from %s does not match its expected hash %s: it may be corrupt; try again.", origin, file_hash))
    }
  }
  if (untar) {
    if (!dir.exists(target)) extract_archive(fpath, datadir)
    return(target)
  }
  if (extract) extract_archive(fpath, datadir)
  fpath
}

io_error <- function(message, call = rlang::caller_env()) rustgpu_abort(message, "rustgpu_io_error", call = call)

hash_matches <- function(path, file_hash, algorithm) {
  if (algorithm == "auto") algorithm <- if (nchar(file_hash) == 64) "sha256" else "md5"
  actual <- if (algorithm == "sha256") call_backend(rg_sha256(path)) else unname(tools::md5sum(path))
  identical(tolower(actual), tolower(file_hash))
}

download <- function(origin, fpath, fname, datadir, call = rlang::caller_env()) {
  message(sprintf("Downloading data from %s", origin))
  partial <- paste0(fpath, ".part")
  ok <- tryCatch({
    status <- suppressWarnings(utils::download.file(origin, partial, mode = "wb", quiet = TRUE))
    status == 0 && file.exists(partial)
  }, error = function(e) FALSE)
  if (!ok) {
    unlink(partial)
    io_error(sprintf("Could not download %s (offline?). Put the file \"%s\" in %s and try again.",
                     origin, basename(fpath), datadir), call = call)
  }
  file.rename(partial, fpath)
}

extract_archive <- function(path, exdir) {
  ok <- if (grepl("\\.zip$", path)) {
    length(utils::unzip(path, exdir = exdir)) > 0
  } else {
    utils::untar(path, exdir = exdir) == 0
  }
  if (!isTRUE(ok)) io_error(sprintf("Could not extract \"%s\": the archive may be corrupt; delete it and try again.", path))
}

# The arrays of a .npz archive (a zip of .npy files), by name.
read_npz <- function(path, names) {
  dir <- tempfile("npz")
  on.exit(unlink(dir, recursive = TRUE))
  files <- tryCatch(utils::unzip(path, exdir = dir), error = function(e) character(), warning = function(w) character())
  if (!length(files)) io_error(sprintf("\"%s\" is not a readable .npz archive: delete it and try again.", path))
  out <- lapply(names, function(n) {
    f <- file.path(dir, paste0(n, ".npy"))
    if (!file.exists(f)) io_error(sprintf("\"%s\" has no array \"%s\".", path, n))
    call_backend(rg_read_npy(f))
  })
  stats::setNames(out, names)
}

check_hashes <- function() !identical(getOption("rustgpu.check_dataset_hashes"), FALSE)

dataset_file <- function(path, origin, file_hash, ...) {
  get_file(path, origin, file_hash = if (check_hashes()) file_hash, ...)
}

#' Keras's data sets
#'
#' Each loads the data set Keras ships, from the same file as Keras (downloaded once into
#' `~/.keras/datasets`, see [get_file()]), as R keras 2.x returns it:
#' `list(train = list(x, y), test = list(x, y))` of arrays, samples first.
#'
#' * `dataset_mnist()`, `dataset_fashion_mnist()`: 28x28 grey images (integers 0-255) and
#'   their digits (or clothing classes) 0-9.
#' * `dataset_cifar10()`, `dataset_cifar100()`: 32x32x3 colour images and one-column
#'   matrices of labels.
#' * `dataset_imdb()`, `dataset_reuters()`: lists of word-index sequences (shuffled, offset
#'   and cut as Keras does: the same `seed` gives the same order) and labels;
#'   `dataset_imdb_word_index()`, `dataset_reuters_word_index()`: the words' indices.
#' * `dataset_boston_housing()`: 13 features and the median value.
#'
#' @param path File name in the cache.
#' @param num_words Keep the `num_words - 1` most frequent words; others become `oov_char`.
#' @param skip_top Skip the most frequent words (they become `oov_char`).
#' @param maxlen Drop sequences longer than this.
#' @param seed Seed of the shuffle.
#' @param start_char Index marking the start of a sequence.
#' @param oov_char Index of words cut out (`NULL` to drop them).
#' @param index_from Word indices are offset by this.
#' @param test_split Fraction of the data held out for testing.
#' @param label_mode `"fine"` (100 classes) or `"coarse"` (20).
#' @return The data set.
#' @examples
#' \dontrun{
#' c(c(x_train, y_train), c(x_test, y_test)) %<-% dataset_mnist()
#' }
#' @name datasets
NULL

#' @rdname datasets
#' @export
dataset_mnist <- function(path = "mnist.npz") {
  file <- dataset_file(path, paste0(keras_origin, "mnist.npz"), "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1")
  a <- read_npz(file, c("x_train", "y_train", "x_test", "y_test"))
  list(train = list(x = a$x_train, y = a$y_train), test = list(x = a$x_test, y = a$y_test))
}

read_idx <- function(path, offset, dims = NULL) {
  con <- gzfile(path, "rb")
  on.exit(close(con))
  header <- readBin(con, "raw", offset)
  values <- readBin(con, "integer", n = 1e8, size = 1, signed = FALSE)
  if (length(header) < offset) io_error(sprintf("\"%s\" is not an IDX file.", path))
  if (is.null(dims)) return(values)
  n <- length(values) %/% prod(dims)
  # IDX stores each image row by row: C order.
  aperm(array(values, c(rev(dims), n)), c(length(dims) + 1, rev(seq_along(dims))))
}

#' @rdname datasets
#' @export
dataset_fashion_mnist <- function() {
  files <- c("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz")
  paths <- vapply(files, function(f) get_file(f, paste0(keras_origin, f), cache_subdir = file.path("datasets", "fashion-mnist")), "")
  list(train = list(x = read_idx(paths[[2]], 16, c(28, 28)), y = read_idx(paths[[1]], 8)),
       test = list(x = read_idx(paths[[4]], 16, c(28, 28)), y = read_idx(paths[[3]], 8)))
}

# A CIFAR batch: (n, 32, 32, 3) images (channels last) and the labels.
read_cifar_batch <- function(path, label_key = "labels") {
  d <- call_backend(rg_read_pickle(path))
  data <- d[["data"]]
  labels <- d[[label_key]]
  if (!is.matrix(data) || ncol(data) != 3072 || is.null(labels)) {
    io_error(sprintf("\"%s\" is not a CIFAR batch (no 3072-column data or no %s).", path, label_key))
  }
  # Each row holds 3 planes of 32x32 values, row by row: column c*1024 + h*32 + w (from 0)
  # is pixel (h, w) of channel c. Taken in the order of R's (n, 32, 32, 3) array.
  columns <- as.vector(outer(outer(32 * 0:31, 0:31, "+"), 1024 * 0:2, "+")) + 1
  list(x = array(data[, columns], c(nrow(data), 32, 32, 3)), y = as.integer(labels))
}

#' @rdname datasets
#' @export
dataset_cifar10 <- function() {
  dir <- get_file("cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", untar = TRUE,
                  file_hash = if (check_hashes()) "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")
  batches <- lapply(1:5, function(i) read_cifar_batch(file.path(dir, paste0("data_batch_", i))))
  x <- bind_images(lapply(batches, `[[`, "x"))
  y <- unlist(lapply(batches, `[[`, "y"))
  test <- read_cifar_batch(file.path(dir, "test_batch"))
  list(train = list(x = x, y = matrix(y, ncol = 1)), test = list(x = test$x, y = matrix(test$y, ncol = 1)))
}

#' @rdname datasets
#' @export
dataset_cifar100 <- function(label_mode = c("fine", "coarse")) {
  label_mode <- match.arg(label_mode)
  dir <- get_file("cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", untar = TRUE,
                  file_hash = if (check_hashes()) "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7")
  key <- paste0(label_mode, "_labels")
  train <- read_cifar_batch(file.path(dir, "train"), key)
  test <- read_cifar_batch(file.path(dir, "test"), key)
  list(train = list(x = train$x, y = matrix(train$y, ncol = 1)), test = list(x = test$x, y = matrix(test$y, ncol = 1)))
}

# The elements of `v` after the first `n`.
after <- function(v, n) v[seq_len(length(v) - n) + n]

# (n, h, w, c) image arrays stacked along their first axis.
bind_images <- function(parts) {
  n <- vapply(parts, function(p) dim(p)[1], numeric(1))
  out <- array(parts[[1]][1], c(sum(n), dim(parts[[1]])[-1]))
  start <- 0
  for (i in seq_along(parts)) {
    out[start + seq_len(n[i]), , , ] <- parts[[i]]
    start <- start + n[i]
  }
  out
}

# Keras's processing of word-index sequences, in its two steps: indices offset by
# `index_from` after a `start_char`, and sequences of `maxlen` or more dropped...
offset_sequences <- function(xs, labels, maxlen, start_char, index_from) {
  xs <- lapply(xs, function(x) {
    x <- as.integer(x) + as.integer(index_from)
    if (!is.null(start_char)) c(as.integer(start_char), x) else x
  })
  if (!is.null(maxlen)) {
    keep <- lengths(xs) < maxlen
    xs <- xs[keep]
    labels <- labels[keep]
  }
  list(x = xs, y = labels)
}

# ...then words outside [skip_top, num_words) replaced by `oov_char` (or dropped). Without
# `num_words`, it is the largest index (which Keras then also replaces).
limit_words <- function(xs, num_words, skip_top, oov_char) {
  if (is.null(num_words)) num_words <- max(vapply(xs, function(x) if (length(x)) max(x) else 0L, integer(1)))
  lapply(xs, function(x) {
    inside <- x >= skip_top & x < num_words
    if (is.null(oov_char)) x[inside] else ifelse(inside, x, as.integer(oov_char))
  })
}

#' @rdname datasets
#' @export
dataset_imdb <- function(path = "imdb.npz", num_words = NULL, skip_top = 0L, maxlen = NULL, seed = 113L,
                         start_char = 1L, oov_char = 2L, index_from = 3L) {
  check_count(num_words, "num_words", min = 1, allow_null = TRUE)
  check_count(skip_top, "skip_top", min = 0)
  check_count(maxlen, "maxlen", min = 1, allow_null = TRUE)
  file <- dataset_file(path, paste0(keras_origin, "imdb.npz"), "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f")
  a <- read_npz(file, c("x_train", "y_train", "x_test", "y_test"))
  order <- call_backend(rg_numpy_shuffles(as.numeric(seed), as.numeric(c(length(a$x_train), length(a$x_test)))))
  train <- offset_sequences(a$x_train[order[[1]]], as.integer(a$y_train[order[[1]]]), maxlen, start_char, index_from)
  test <- offset_sequences(a$x_test[order[[2]]], as.integer(a$y_test[order[[2]]]), maxlen, start_char, index_from)
  if (!is.null(maxlen) && (!length(train$x) || !length(test$x))) {
    value_error(sprintf("After filtering for sequences shorter than maxlen=%d, no sequence was kept. Increase maxlen.", maxlen))
  }
  xs <- limit_words(c(train$x, test$x), num_words, skip_top, oov_char)
  n <- length(train$x)
  list(train = list(x = xs[seq_len(n)], y = train$y),
       test = list(x = after(xs, n), y = test$y))
}

#' @rdname datasets
#' @export
dataset_imdb_word_index <- function(path = "imdb_word_index.json") {
  call_backend(rg_read_json(dataset_file(path, paste0(keras_origin, "imdb_word_index.json"), "bfafd718b763782e994055a2d397834f")))
}

#' @rdname datasets
#' @export
dataset_reuters <- function(path = "reuters.npz", num_words = NULL, skip_top = 0L, maxlen = NULL, test_split = 0.2,
                            seed = 113L, start_char = 1L, oov_char = 2L, index_from = 3L) {
  check_count(num_words, "num_words", min = 1, allow_null = TRUE)
  check_count(skip_top, "skip_top", min = 0)
  check_count(maxlen, "maxlen", min = 1, allow_null = TRUE)
  check_number(test_split, "test_split", min = 0, max = 1, max_inclusive = FALSE)
  file <- dataset_file(path, paste0(keras_origin, "reuters.npz"), "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916")
  a <- read_npz(file, c("x", "y"))
  order <- call_backend(rg_numpy_shuffles(as.numeric(seed), as.numeric(length(a$x))))[[1]]
  d <- offset_sequences(a$x[order], as.integer(a$y[order]), maxlen, start_char, index_from)
  xs <- limit_words(d$x, num_words, skip_top, oov_char)
  n <- as.integer(length(xs) * (1 - test_split))
  list(train = list(x = xs[seq_len(n)], y = d$y[seq_len(n)]),
       test = list(x = after(xs, n), y = after(d$y, n)))
}

#' @rdname datasets
#' @export
dataset_reuters_word_index <- function(path = "reuters_word_index.json") {
  call_backend(rg_read_json(dataset_file(path, paste0(keras_origin, "reuters_word_index.json"), "4d44cc38712099c9e383dc6e5f11a921")))
}

#' @rdname datasets
#' @export
dataset_boston_housing <- function(path = "boston_housing.npz", test_split = 0.2, seed = 113L) {
  check_number(test_split, "test_split", min = 0, max = 1, max_inclusive = FALSE)
  file <- dataset_file(path, paste0(keras_origin, "boston_housing.npz"), "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5")
  a <- read_npz(file, c("x", "y"))
  order <- call_backend(rg_numpy_shuffles(as.numeric(seed), as.numeric(nrow(a$x))))[[1]]
  x <- a$x[order, , drop = FALSE]
  y <- a$y[order]
  n <- as.integer(nrow(x) * (1 - test_split))
  rest <- seq_len(nrow(x) - n) + n
  list(train = list(x = x[seq_len(n), , drop = FALSE], y = y[seq_len(n)]),
       test = list(x = x[rest, , drop = FALSE], y = y[rest]))
}
