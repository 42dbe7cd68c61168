# Text and sequence preprocessing, as Keras's keras.preprocessing (R keras 2.x wraps the
# Python versions; these follow their rules: same vocabulary order, same padding).

#' Pad sequences to the same length
#'
#' Keras's `pad_sequences()`: each sequence is cut to `maxlen` (dropping values at the start
#' with `truncating = "pre"`, at the end with `"post"`) and padded with `value` (before it
#' with `padding = "pre"`, after with `"post"`).
#'
#' @param sequences A list of numeric vectors (e.g. from [texts_to_sequences()]).
#' @param maxlen Length of every output row (default: the longest sequence).
#' @param dtype `"int32"` (an integer matrix) or a float type such as `"float32"` (a numeric
#'   matrix).
#' @param padding,truncating `"pre"` or `"post"`.
#' @param value The padding value.
#' @return A matrix with one row per sequence and `maxlen` columns.
#' @examples
#' pad_sequences(list(c(1, 2, 3), 4, c(5, 6)), maxlen = 2)
#' pad_sequences(list(c(1, 2, 3), 4), padding = "post")
#' @export
pad_sequences <- function(sequences, maxlen = NULL, dtype = "int32", padding = "pre",
                          truncating = "pre", value = 0) {
  if (is.numeric(sequences) && is.null(dim(sequences))) sequences <- list(sequences)
  if (is.matrix(sequences)) sequences <- lapply(seq_len(nrow(sequences)), function(i) sequences[i, ])
  if (!is.list(sequences) || !all(vapply(sequences, function(s) is.null(s) || is.numeric(s) || is.logical(s), logical(1)))) {
    value_error("`sequences` must be a list of numeric vectors.")
  }
  check_count(maxlen, "maxlen", min = 1, allow_null = TRUE)
  check_string(dtype, "dtype")
  if (!padding %in% c("pre", "post")) value_error('`padding` must be "pre" or "post".')
  if (!truncating %in% c("pre", "post")) value_error('`truncating` must be "pre" or "post".')
  check_number(value, "value")
  lengths <- vapply(sequences, length, integer(1))
  if (is.null(maxlen)) maxlen <- if (length(lengths)) max(lengths) else 0L
  integer_type <- grepl("int", dtype)
  check_allocation(as.numeric(length(sequences)) * maxlen, sprintf("a %d x %.0f padded matrix", length(sequences), maxlen),
                   "use a smaller `maxlen`")
  out <- matrix(if (integer_type) as.integer(value) else as.numeric(value), length(sequences), maxlen)
  for (i in seq_along(sequences)) {
    s <- sequences[[i]]
    n <- length(s)
    if (n == 0 || maxlen == 0) next
    if (n > maxlen) s <- if (truncating == "pre") s[(n - maxlen + 1):n] else s[seq_len(maxlen)]
    k <- length(s)
    cols <- if (padding == "pre") (maxlen - k + 1):maxlen else seq_len(k)
    out[i, cols] <- if (integer_type) as.integer(s) else as.numeric(s)
  }
  out
}

# One string, possibly empty.
check_text <- function(x, arg, call = rlang::caller_env()) {
  if (!is.character(x) || length(x) != 1 || is.na(x)) {
    value_error(sprintf("`%s` must be a single string, not %s.", arg, describe(x)), call = call)
  }
}

default_filters <- "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n"

#' Split a sentence into words
#'
#' Keras's `text_to_word_sequence()`: lower-cased (with `lower`), every character of `filters`
#' replaced by `split`, then split on `split`, empty pieces dropped.
#'
#' @param text A string.
#' @param filters Characters to drop (default: punctuation, tabs and line breaks).
#' @param lower Whether to lower-case the text.
#' @param split The separator between words.
#' @return A character vector of words.
#' @examples
#' text_to_word_sequence("The cat sat on the mat.")
#' @export
text_to_word_sequence <- function(text, filters = default_filters, lower = TRUE, split = " ") {
  check_text(text, "text")
  check_text(filters, "filters")
  check_bool(lower, "lower")
  check_string(split, "split")
  if (!nzchar(split)) value_error("`split` must not be empty.")
  words_of(text, filters, lower, split)
}

#' Encode a sentence as hashed word indices
#'
#' Keras's `hashing_trick()` and `one_hot()`: the words of `text` (as
#' [text_to_word_sequence()] splits them), each as `hash(word) %% (n - 1) + 1`, an index in
#' `1..(n - 1)` (0 stays free for padding); different words may share an index. The hash is
#' MD5 of the word's UTF-8 bytes (Keras's `hash_function = "md5"`). Keras's default, Python's
#' built-in `hash()`, is salted anew in every Python process, so its indices cannot be
#' reproduced: here `NULL` means MD5 too, and the indices are the same in every session.
#'
#' @inheritParams text_to_word_sequence
#' @param n The size of the hashing space (indices run to `n - 1`).
#' @param hash_function `NULL` or "md5" (both MD5, see above).
#' @return An integer vector, one index per word (doubles when `n - 1` exceeds R's integers).
#' @examples
#' text_one_hot("The cat sat on the mat.", n = 50)
#' text_hashing_trick("the cat", n = 1000, hash_function = "md5")
#' @export
text_hashing_trick <- function(text, n, hash_function = NULL, filters = default_filters, lower = TRUE, split = " ") {
  # Indices up to n - 1; n * 16 must stay exact in a double (hex_mod()).
  if (!is.numeric(n) || length(n) != 1 || !is.finite(n) || n != round(n) || n < 2 || n > 2^48) {
    value_error(sprintf("`n` must be a whole number from 2 to 2^48, not %s.", describe(n)))
  }
  if (!is.null(hash_function) && !identical(hash_function, "md5")) {
    if (is.function(hash_function)) {
      rustgpu_abort("`hash_function` as an R function is not supported: use NULL or \"md5\".",
                    c("rustgpu_unsupported_error", "rustgpu_value_error"))
    }
    value_error(sprintf("`hash_function` must be NULL or \"md5\", not %s.", describe(hash_function)))
  }
  words <- text_to_word_sequence(text, filters = filters, lower = lower, split = split)
  if (!length(words)) return(integer(0))
  unique_words <- unique(words)
  index <- vapply(md5_of_words(unique_words), hex_mod, numeric(1), m = n - 1) + 1
  index <- index[match(words, unique_words)]
  if (n - 1 <= .Machine$integer.max) as.integer(index) else index
}

#' @rdname text_hashing_trick
#' @export
text_one_hot <- function(text, n, filters = default_filters, lower = TRUE, split = " ") {
  text_hashing_trick(text, n, hash_function = NULL, filters = filters, lower = lower, split = split)
}

# MD5 hex digests of strings' UTF-8 bytes (R has MD5 for files only: one small file each).
md5_of_words <- function(words) {
  dir <- tempfile("md5")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE))
  files <- file.path(dir, seq_along(words))
  for (i in seq_along(words)) writeBin(charToRaw(enc2utf8(words[[i]])), files[[i]])
  unname(tools::md5sum(files))
}

# A hexadecimal number modulo m, exactly (m * 16 stays below 2^53).
hex_mod <- function(hex, m) {
  r <- 0
  for (d in strtoi(strsplit(hex, "", fixed = TRUE)[[1]], 16L)) r <- (r * 16 + d) %% m
  r
}

words_of <- function(text, filters, lower, split) {
  if (lower) text <- tolower(text)
  if (nzchar(filters)) {
    chars <- strsplit(filters, "", fixed = TRUE)[[1]]
    if (nchar(split) == 1) {
      text <- chartr(filters, strrep(split, length(chars)), text)
    } else {
      for (ch in chars) text <- gsub(ch, split, text, fixed = TRUE)
    }
  }
  words <- strsplit(text, split, fixed = TRUE)[[1]]
  words[nzchar(words)]
}

#' Text tokenizer
#'
#' Keras's `Tokenizer`: [fit_text_tokenizer()] builds the vocabulary (words ranked by count,
#' ties in order of first appearance, indices from 1); [texts_to_sequences()] and
#' [texts_to_matrix()] use it. Only the `num_words - 1` most frequent words are used by
#' those (all of them when `num_words` is `NULL`). The tokenizer is updated in place, as the
#' Python object R keras wraps: read its vocabulary with `tokenizer$word_index`,
#' `tokenizer$word_counts`, `tokenizer$index_word`, `tokenizer$document_count`.
#'
#' @param num_words Size of the vocabulary used (`NULL`: every word).
#' @param filters Characters removed from the texts.
#' @param lower Whether to lower-case the texts.
#' @param split The separator between words.
#' @param char_level Whether every character is a token.
#' @param oov_token A token that stands for out-of-vocabulary words (index 1), or `NULL` to drop them.
#' @return A tokenizer.
#' @examples
#' tokenizer <- text_tokenizer(num_words = 10)
#' fit_text_tokenizer(tokenizer, c("The cat sat.", "The dog sat down."))
#' tokenizer$word_index$the
#' texts_to_sequences(tokenizer, "the dog sat on the cat")
#' @export
text_tokenizer <- function(num_words = NULL, filters = default_filters, lower = TRUE, split = " ",
                           char_level = FALSE, oov_token = NULL) {
  check_count(num_words, "num_words", min = 1, allow_null = TRUE)
  check_text(filters, "filters")
  check_bool(lower, "lower")
  check_string(split, "split")
  check_bool(char_level, "char_level")
  check_string(oov_token, "oov_token", allow_null = TRUE)
  tk <- new.env(parent = emptyenv())
  tk$num_words <- num_words
  tk$filters <- filters
  tk$lower <- lower
  tk$split <- split
  tk$char_level <- char_level
  tk$oov_token <- oov_token
  tk$document_count <- 0L
  tk$word_counts <- list()
  tk$word_docs <- list()
  tk$word_index <- list()
  tk$index_word <- list()
  tk$index_docs <- list()
  class(tk) <- c("keras_preprocessing.text.Tokenizer", "rustgpu_tokenizer")
  tk
}

#' @export
print.rustgpu_tokenizer <- function(x, ...) {
  cat(sprintf("<text tokenizer: %d words from %d documents%s>\n", length(x$word_index), x$document_count,
              if (is.null(x$num_words)) "" else sprintf(", using the %d most frequent", x$num_words - 1L)))
  invisible(x)
}

#' Save a text tokenizer to a file, and load it again
#'
#' As R keras's: the fitted vocabulary and settings, for use in another session
#' (`saveRDS()` format; R keras writes a Python pickle, which this package does not read).
#'
#' @param object A tokenizer from [text_tokenizer()].
#' @param filename The file.
#' @return `save_text_tokenizer()`: `object`, invisibly; `load_text_tokenizer()`: the tokenizer.
#' @examples
#' tokenizer <- fit_text_tokenizer(text_tokenizer(), c("a b", "b c"))
#' path <- tempfile()
#' save_text_tokenizer(tokenizer, path)
#' load_text_tokenizer(path)$word_index
#' @export
save_text_tokenizer <- function(object, filename) {
  check_tokenizer(object)
  check_string(filename, "filename")
  saveRDS(list(format = "rustgpu_tokenizer", version = 1L, fields = as.list.environment(object, all.names = TRUE)), filename)
  invisible(object)
}

#' @rdname save_text_tokenizer
#' @export
load_text_tokenizer <- function(filename) {
  check_string(filename, "filename")
  if (!file.exists(filename)) rustgpu_abort(sprintf("File \"%s\" does not exist.", filename), "rustgpu_io_error")
  saved <- tryCatch(readRDS(filename), error = function(e) NULL)
  if (!is.list(saved) || !identical(saved$format, "rustgpu_tokenizer") || !is.list(saved$fields)) {
    rustgpu_abort(sprintf("\"%s\" is not a tokenizer saved by save_text_tokenizer().", filename), "rustgpu_io_error")
  }
  tk <- list2env(saved$fields, envir = new.env(parent = emptyenv()))
  class(tk) <- c("keras_preprocessing.text.Tokenizer", "rustgpu_tokenizer")
  tk
}

check_tokenizer <- function(object, call = rlang::caller_env()) {
  if (!inherits(object, "rustgpu_tokenizer")) {
    value_error(sprintf("`object` must be a tokenizer made by text_tokenizer(), not %s.", describe(object)), call = call)
  }
}

check_texts <- function(texts, call = rlang::caller_env()) {
  if (is.list(texts)) texts <- unlist(texts)
  if (!is.character(texts) || anyNA(texts)) value_error("`texts` must be a character vector (no NA).", call = call)
  texts
}

tokens_of <- function(tk, text) {
  if (tk$char_level) {
    if (tk$lower) text <- tolower(text)
    return(strsplit(text, "", fixed = TRUE)[[1]])
  }
  words_of(text, tk$filters, tk$lower, tk$split)
}

#' Update a tokenizer's vocabulary from texts
#'
#' @param object A tokenizer from [text_tokenizer()].
#' @param x A character vector of texts.
#' @return The tokenizer, invisibly (updated in place).
#' @examples
#' tokenizer <- text_tokenizer()
#' fit_text_tokenizer(tokenizer, c("a b b", "c b"))
#' unlist(tokenizer$word_index)
#' @export
fit_text_tokenizer <- function(object, x) {
  check_tokenizer(object)
  x <- check_texts(x)
  counts <- object$word_counts
  docs <- object$word_docs
  # Counts kept in environments while counting (a named list grows quadratically).
  count_env <- list2env(counts, envir = new.env(hash = TRUE, parent = emptyenv()))
  docs_env <- list2env(docs, envir = new.env(hash = TRUE, parent = emptyenv()))
  order_seen <- names(counts)
  for (text in x) {
    object$document_count <- object$document_count + 1L
    tokens <- tokens_of(object, text)
    for (w in tokens) {
      old <- count_env[[w]]
      if (is.null(old)) {
        order_seen <- c(order_seen, w)
        count_env[[w]] <- 1L
      } else {
        count_env[[w]] <- old + 1L
      }
    }
    for (w in unique(tokens)) docs_env[[w]] <- (if (is.null(docs_env[[w]])) 0L else docs_env[[w]]) + 1L
  }
  counts <- mget(order_seen, envir = count_env)
  object$word_counts <- counts
  object$word_docs <- mget(order_seen, envir = docs_env)
  # Keras sorts by count, descending, keeping first-seen order among ties (a stable sort).
  ranked <- order_seen[order(-unlist(counts, use.names = FALSE), seq_along(order_seen))]
  vocabulary <- c(object$oov_token, ranked)
  object$word_index <- stats::setNames(as.list(seq_along(vocabulary)), vocabulary)
  object$index_word <- stats::setNames(as.list(vocabulary), seq_along(vocabulary))
  object$index_docs <- stats::setNames(object$word_docs, unlist(object$word_index[names(object$word_docs)]))
  invisible(object)
}

#' Turn texts into sequences of word indices
#'
#' Keras's `texts_to_sequences()`: each text's words as their indices in the tokenizer's
#' vocabulary; words outside it (or ranked `num_words` or beyond) are dropped, or become the
#' `oov_token`'s index.
#'
#' @param tokenizer A tokenizer fitted with [fit_text_tokenizer()].
#' @param texts A character vector of texts.
#' @return A list of integer vectors, one per text.
#' @examples
#' tokenizer <- fit_text_tokenizer(text_tokenizer(), c("a b b", "c b"))
#' texts_to_sequences(tokenizer, c("b a", "d c"))
#' @export
texts_to_sequences <- function(tokenizer, texts) {
  check_tokenizer(tokenizer)
  texts <- check_texts(texts)
  index <- tokenizer$word_index
  lookup <- list2env(index, envir = new.env(hash = TRUE, parent = emptyenv()))
  oov <- if (is.null(tokenizer$oov_token)) NULL else index[[tokenizer$oov_token]]
  limit <- tokenizer$num_words
  lapply(texts, function(text) {
    ids <- lapply(tokens_of(tokenizer, text), function(w) {
      i <- lookup[[w]]
      if (is.null(i)) return(oov)
      if (!is.null(limit) && i >= limit) return(oov)
      i
    })
    as.integer(unlist(ids))
  })
}

#' Turn texts or sequences into a matrix
#'
#' Keras's `texts_to_matrix()` and `sequences_to_matrix()`: one row per text, one column per
#' word index (from 0, which is never a word): `"binary"` (1 where the word occurs), `"count"`,
#' `"freq"` (count over the text's length) or `"tfidf"` (`(1 + log(count)) * log(1 +
#' documents / (1 + documents with the word))`).
#'
#' @param tokenizer A tokenizer fitted with [fit_text_tokenizer()].
#' @param texts A character vector of texts.
#' @param sequences A list of integer vectors of word indices.
#' @param mode `"binary"`, `"count"`, `"tfidf"` or `"freq"`.
#' @return A numeric matrix with `num_words` columns (or the vocabulary size plus one).
#' @examples
#' tokenizer <- fit_text_tokenizer(text_tokenizer(num_words = 5), c("a b b", "c b"))
#' texts_to_matrix(tokenizer, c("b a b", "c"), mode = "count")
#' @export
texts_to_matrix <- function(tokenizer, texts, mode = c("binary", "count", "tfidf", "freq")) {
  mode <- match.arg(mode)
  sequences_to_matrix(tokenizer, texts_to_sequences(tokenizer, texts), mode = mode)
}

#' @rdname texts_to_matrix
#' @export
sequences_to_matrix <- function(tokenizer, sequences, mode = c("binary", "count", "tfidf", "freq")) {
  check_tokenizer(tokenizer)
  mode <- match.arg(mode)
  width <- tokenizer$num_words
  if (is.null(width)) {
    if (length(tokenizer$word_index) == 0) {
      state_error("Specify a dimension (`num_words` argument), or fit on some text data first.")
    }
    width <- length(tokenizer$word_index) + 1L
  }
  if (mode == "tfidf" && tokenizer$document_count == 0) {
    state_error("Fit the tokenizer on some data before using tfidf mode.")
  }
  if (is.numeric(sequences)) sequences <- list(sequences)
  check_allocation(as.numeric(length(sequences)) * width, sprintf("a %d x %.0f matrix", length(sequences), width),
                   "give the tokenizer a smaller `num_words`, or use texts_to_sequences() with an embedding layer")
  out <- matrix(0, length(sequences), width)
  for (i in seq_along(sequences)) {
    s <- sequences[[i]]
    if (length(s) == 0) next
    counts <- table(s[s < width])
    if (length(counts) == 0) next
    j <- as.integer(names(counts))
    c <- as.numeric(counts)
    out[i, j + 1L] <- switch(mode,
      binary = 1,
      count = c,
      freq = c / length(s),
      tfidf = {
        docs <- vapply(as.character(j), function(k) {
          v <- tokenizer$index_docs[[k]]
          if (is.null(v)) 0 else as.numeric(v)
        }, numeric(1))
        (1 + log(c)) * log(1 + tokenizer$document_count / (1 + docs))
      })
  }
  out
}

#' Image data generator: augmentation and standardization
#'
#' Keras's `ImageDataGenerator`: random rotations (`rotation_range` degrees), shifts
#' (`width_shift_range`, `height_shift_range`: fractions of the width and height below 1,
#' pixels from 1), shear (degrees), zoom (`zoom_range`: `c(lower, upper)`, or `z` for
#' `c(1 - z, 1 + z)`) and flips, drawn per image from R's random numbers and applied as
#' Keras applies them (one affine map about the centre, linear interpolation, the edge's value
#' outside with `fill_mode = "nearest"`); then standardization: `rescale`, per-sample
#' centring and scaling, and per-channel centring and scaling with the statistics of
#' [fit_image_data_generator()]. Use it with [flow_images_from_data()] and [fit_generator()].
#'
#' @param featurewise_center,featurewise_std_normalization Subtract each channel's mean (divide
#'   by its standard deviation) over the data given to [fit_image_data_generator()].
#' @param samplewise_center,samplewise_std_normalization The same per image.
#' @param brightness_range `c(lower, upper)`: each image's brightness scaled by a factor drawn
#'   from it (over the image's range of values, clipped at its maximum).
#' @param channel_shift_range Each image's values shifted by an amount drawn from
#'   `[-range, range]`, clipped to the image's range.
#' @param preprocessing_function A function applied to each image (a `(height, width,
#'   channels)` array) before the rest of the standardization; it returns an array of the
#'   same shape.
#' @param zca_whitening,zca_epsilon,validation_split Not supported yet: leave them at their
#'   defaults.
#' @param rotation_range Degrees.
#' @param width_shift_range,height_shift_range Fractions (below 1) or pixels.
#' @param shear_range Degrees.
#' @param zoom_range A number `z` (zoom in `[1 - z, 1 + z]`) or `c(lower, upper)`.
#' @param fill_mode `"nearest"` or `"constant"` (with `cval`).
#' @param cval The value outside the image with `fill_mode = "constant"`.
#' @param horizontal_flip,vertical_flip Flip half the images.
#' @param rescale A factor every value is multiplied by (after the transform), or `NULL`.
#' @param data_format `NULL` or "channels_last" (images are `(height, width, channels)`).
#' @return A generator configuration, updated in place by [fit_image_data_generator()].
#' @examples
#' gen <- image_data_generator(rotation_range = 20, horizontal_flip = TRUE, rescale = 1 / 255)
#' x <- array(runif(2 * 8 * 8 * 3, 0, 255), c(2, 8, 8, 3))
#' batches <- flow_images_from_data(x, c(0, 1), gen, batch_size = 2)
#' dim(batches()[[1]])
#' @export
image_data_generator <- function(featurewise_center = FALSE, samplewise_center = FALSE,
                                 featurewise_std_normalization = FALSE, samplewise_std_normalization = FALSE,
                                 zca_whitening = FALSE, zca_epsilon = 1e-6, rotation_range = 0,
                                 width_shift_range = 0, height_shift_range = 0, brightness_range = NULL,
                                 shear_range = 0, zoom_range = 0, channel_shift_range = 0, fill_mode = "nearest",
                                 cval = 0, horizontal_flip = FALSE, vertical_flip = FALSE, rescale = NULL,
                                 preprocessing_function = NULL, data_format = NULL, validation_split = 0) {
  for (arg in c("featurewise_center", "samplewise_center", "featurewise_std_normalization",
                "samplewise_std_normalization", "horizontal_flip", "vertical_flip")) check_bool(get(arg), arg)
  if (!isFALSE(zca_whitening) || validation_split != 0) {
    value_error("`zca_whitening` and `validation_split` are not supported yet: leave them at their defaults.")
  }
  if (!is.null(brightness_range) && (!is.numeric(brightness_range) || length(brightness_range) != 2 || anyNA(brightness_range) ||
                                     any(brightness_range < 0) || brightness_range[1] > brightness_range[2])) {
    value_error(sprintf("`brightness_range` must be c(lower, upper) with 0 <= lower <= upper, not %s.", describe(brightness_range)))
  }
  check_number(channel_shift_range, "channel_shift_range", min = 0)
  if (!is.null(preprocessing_function) && !is.function(preprocessing_function)) {
    value_error(sprintf("`preprocessing_function` must be a function of one image (an array), not %s.", describe(preprocessing_function)))
  }
  check_number(rotation_range, "rotation_range", min = 0)
  check_number(width_shift_range, "width_shift_range", min = 0)
  check_number(height_shift_range, "height_shift_range", min = 0)
  check_number(shear_range, "shear_range", min = 0)
  if (!is.numeric(zoom_range) || !length(zoom_range) %in% 1:2 || anyNA(zoom_range) || any(zoom_range < 0)) {
    value_error("`zoom_range` must be a number >= 0 or c(lower, upper).")
  }
  zoom <- if (length(zoom_range) == 1) c(1 - zoom_range, 1 + zoom_range) else zoom_range
  if (!fill_mode %in% c("nearest", "constant")) value_error("`fill_mode` must be \"nearest\" or \"constant\" (others are not supported yet).")
  check_number(cval, "cval")
  if (!is.null(rescale)) check_number(rescale, "rescale")
  channels_last_only(data_format)
  gen <- new.env(parent = emptyenv())
  for (arg in c("featurewise_center", "samplewise_center", "featurewise_std_normalization", "samplewise_std_normalization",
                "rotation_range", "width_shift_range", "height_shift_range", "shear_range", "fill_mode", "cval",
                "horizontal_flip", "vertical_flip", "rescale", "channel_shift_range", "preprocessing_function")) {
    assign(arg, get(arg), envir = gen)
  }
  gen$brightness_range <- brightness_range
  gen$zoom_range <- zoom
  gen$mean <- NULL
  gen$std <- NULL
  class(gen) <- c("keras_preprocessing.image.ImageDataGenerator", "rustgpu_image_data_generator")
  gen
}

#' @export
print.rustgpu_image_data_generator <- function(x, ...) {
  cat(sprintf("<image data generator: rotation %s, shifts %s/%s, shear %s, zoom %s-%s%s%s%s>\n",
              x$rotation_range, x$width_shift_range, x$height_shift_range, x$shear_range, x$zoom_range[1], x$zoom_range[2],
              if (x$horizontal_flip) ", horizontal flips" else "", if (x$vertical_flip) ", vertical flips" else "",
              if (is.null(x$rescale)) "" else sprintf(", rescale %s", format(x$rescale))))
  invisible(x)
}

check_images <- function(x, arg = "x", call = rlang::caller_env()) {
  if (!is.numeric(x) || length(dim(x)) != 4) {
    value_error(sprintf("`%s` must be a 4-d array of images (samples, height, width, channels), not %s.", arg, describe(x)), call = call)
  }
}

#' Fit an image data generator's per-channel statistics
#'
#' Computes each channel's mean and standard deviation over the images (after `rescale`), as
#' Keras's `ImageDataGenerator.fit()`: used by `featurewise_center` and
#' `featurewise_std_normalization`.
#'
#' @param object An [image_data_generator()].
#' @param x Images, `(samples, height, width, channels)`.
#' @param augment,rounds Not supported yet (Keras's defaults: no augmentation, 1 round).
#' @param seed Unused without `augment`.
#' @return The generator, invisibly (updated in place).
#' @examples
#' gen <- image_data_generator(featurewise_center = TRUE)
#' fit_image_data_generator(gen, array(runif(2 * 4 * 4 * 3), c(2, 4, 4, 3)))
#' @export
fit_image_data_generator <- function(object, x, augment = FALSE, rounds = 1, seed = NULL) {
  if (!inherits(object, "rustgpu_image_data_generator")) {
    value_error(sprintf("`object` must be made by image_data_generator(), not %s.", describe(object)))
  }
  check_images(x)
  if (!isFALSE(augment) || rounds != 1) value_error("`augment` and `rounds` are not supported yet.")
  if (!is.null(object$rescale)) x <- x * object$rescale
  channels <- dim(x)[4]
  by_channel <- matrix(x, ncol = channels)
  object$mean <- colMeans(by_channel)
  # numpy's std: the population standard deviation.
  object$std <- sqrt(colMeans(sweep(by_channel, 2, object$mean)^2))
  invisible(object)
}

# One random transform per image, Keras's get_random_transform rules: an n x 8 matrix.
random_transforms <- function(gen, n, h, w) {
  u <- function(range) if (range) stats::runif(n, -range, range) else rep(0, n)
  shift <- function(range, extent) if (range) u(range) * (if (range < 1) extent else 1) else rep(0, n)
  zoom <- if (all(gen$zoom_range == 1)) matrix(1, n, 2) else matrix(stats::runif(2 * n, gen$zoom_range[1], gen$zoom_range[2]), n, 2, byrow = TRUE)
  flip <- function(on) if (on) as.numeric(stats::runif(n) < 0.5) else rep(0, n)
  cbind(u(gen$rotation_range), shift(gen$height_shift_range, h), shift(gen$width_shift_range, w), u(gen$shear_range),
        zoom[, 1], zoom[, 2], flip(gen$horizontal_flip), flip(gen$vertical_flip))
}

# Keras's pixel-wise random transforms, after the geometric ones: a channel shift (one
# intensity per image, drawn from [-range, range], added to every channel and clipped to the
# image's range before it) and a brightness change (a factor per image from
# `brightness_range`: the image scaled to [0, 1] over its range, multiplied, clipped at 1,
# and scaled back, as Keras's PIL-based one without its 8-bit rounding).
shift_images <- function(gen, x) {
  n <- dim(x)[1]
  if (gen$channel_shift_range > 0) {
    intensity <- stats::runif(n, -gen$channel_shift_range, gen$channel_shift_range)
    for (i in seq_len(n)) {
      img <- x[i, , , , drop = FALSE]
      x[i, , , ] <- pmin(pmax(img + intensity[i], min(img)), max(img))
    }
  }
  if (!is.null(gen$brightness_range)) {
    factor <- stats::runif(n, gen$brightness_range[1], gen$brightness_range[2])
    for (i in seq_len(n)) {
      img <- x[i, , , , drop = FALSE]
      lo <- min(img)
      span <- max(img) - lo
      if (span > 0) x[i, , , ] <- pmin((img - lo) / span * factor[i], 1) * span + lo
    }
  }
  x
}

# Keras's standardize(): the preprocessing function (per image), rescale, per-sample, then
# per-channel centring and scaling.
standardize_images <- function(gen, x) {
  if (is.function(gen$preprocessing_function)) {
    for (i in seq_len(dim(x)[1])) {
      out <- gen$preprocessing_function(x[i, , , ])
      if (!is.numeric(out) || !identical(as.integer(dim(out)), as.integer(dim(x)[-1]))) {
        value_error(sprintf("`preprocessing_function` must return an array of the image's shape (%s), not %s.",
                            paste(dim(x)[-1], collapse = ", "), describe(out)))
      }
      x[i, , , ] <- out
    }
  }
  if (!is.null(gen$rescale)) x <- x * gen$rescale
  # Per image (numpy's std: the population standard deviation); samples are the first axis.
  if (gen$samplewise_center) x <- x - apply(x, 1, mean)
  if (gen$samplewise_std_normalization) x <- x / (apply(x, 1, function(v) sqrt(mean((v - mean(v))^2))) + 1e-6)
  channel <- rep(seq_len(dim(x)[4]), each = prod(dim(x)[1:3]))
  if (gen$featurewise_center) {
    if (is.null(gen$mean)) state_error("`featurewise_center` needs the data's statistics: call fit_image_data_generator() first.")
    x <- x - gen$mean[channel]
  }
  if (gen$featurewise_std_normalization) {
    if (is.null(gen$std)) state_error("`featurewise_std_normalization` needs the data's statistics: call fit_image_data_generator() first.")
    x <- x / (gen$std[channel] + 1e-6)
  }
  x
}

#' Batches of augmented images
#'
#' Keras's `flow()`: a generator (an R function, for [fit_generator()] and friends) that
#' returns the next batch on each call, `list(x, y)` (or `x` without `y`), each image
#' transformed and standardized by `generator`. Each pass over the data is in a new random
#' order with `shuffle = TRUE`; the last batch of a pass may be smaller.
#'
#' @param x Images, `(samples, height, width, channels)`.
#' @param y Targets (one per sample: a vector or rows of a matrix), or `NULL`.
#' @param generator An [image_data_generator()].
#' @param batch_size Images per batch.
#' @param shuffle Whether each pass takes the images in a random order.
#' @param sample_weight,save_to_dir,save_prefix,save_format,subset Not supported yet.
#' @param seed Seed of the shuffling and the transforms (`NULL`: R's current random state).
#' @return A generator function.
#' @examples
#' gen <- image_data_generator(horizontal_flip = TRUE)
#' batches <- flow_images_from_data(array(runif(4 * 6 * 6), c(4, 6, 6, 1)), 1:4, gen, batch_size = 3)
#' str(batches())
#' @export
flow_images_from_data <- function(x, y = NULL, generator = image_data_generator(), batch_size = 32, shuffle = TRUE,
                                  sample_weight = NULL, seed = NULL, save_to_dir = NULL, save_prefix = "",
                                  save_format = "png", subset = NULL) {
  check_images(x)
  if (!inherits(generator, "rustgpu_image_data_generator")) {
    value_error(sprintf("`generator` must be made by image_data_generator(), not %s.", describe(generator)))
  }
  check_count(batch_size, "batch_size", min = 1)
  check_bool(shuffle, "shuffle")
  if (!is.null(sample_weight) || !is.null(save_to_dir) || !is.null(subset)) {
    value_error("`sample_weight`, `save_to_dir` and `subset` are not supported yet.")
  }
  n <- dim(x)[1]
  if (!is.null(y) && (if (is.null(dim(y))) length(y) else nrow(y)) != n) {
    value_error(sprintf("`x` has %d images but `y` has %d targets.", n, if (is.null(dim(y))) length(y) else nrow(y)))
  }
  if (!is.null(seed)) {
    check_count(seed, "seed", min = 0)
    set.seed(seed)
  }
  state <- new.env(parent = emptyenv())
  state$order <- integer()
  batch <- function() {
    if (length(state$order) == 0) state$order <- if (shuffle) sample.int(n) else seq_len(n)
    take <- state$order[seq_len(min(batch_size, length(state$order)))]
    state$order <- state$order[-seq_along(take)]
    images <- x[take, , , , drop = FALSE]
    d <- dim(images)
    params <- random_transforms(generator, length(take), d[2], d[3])
    images <- call_backend(rg_apply_transforms(images, params, generator$fill_mode, as.numeric(generator$cval)))
    images <- standardize_images(generator, shift_images(generator, images))
    if (is.null(y)) return(images)
    list(images, if (is.null(dim(y))) y[take] else y[take, , drop = FALSE])
  }
  structure(batch, class = c("rustgpu_image_iterator", "function"), fields = list(n = n, batch_size = batch_size))
}

# --- image files -------------------------------------------------------------

read_image_file <- function(path, call = rlang::caller_env()) {
  if (!file.exists(path)) rustgpu_abort(sprintf("Image file \"%s\" does not exist.", path), "rustgpu_io_error", call = call)
  ext <- tolower(tools::file_ext(path))
  reader <- switch(ext, png = "png", jpg = , jpeg = "jpeg",
                   value_error(sprintf("\"%s\": only PNG and JPEG images can be read.", path), call = call))
  need_packages(reader, sprintf("Reading %s images", toupper(reader)), call = call)
  img <- tryCatch(if (reader == "png") png::readPNG(path) else jpeg::readJPEG(path),
                  error = function(e) rustgpu_abort(sprintf("Cannot read image \"%s\": %s", path, conditionMessage(e)), "rustgpu_io_error", call = call))
  if (length(dim(img)) == 2) dim(img) <- c(dim(img), 1)
  img * 255
}

# Nearest-neighbour resize as PIL's: output pixel i reads input floor((i + 0.5) * in / out).
resize_nearest <- function(img, height, width) {
  rows <- pmin(floor((seq_len(height) - 0.5) * dim(img)[1] / height) + 1, dim(img)[1])
  cols <- pmin(floor((seq_len(width) - 0.5) * dim(img)[2] / width) + 1, dim(img)[2])
  img[rows, cols, , drop = FALSE]
}

#' Load images
#'
#' `image_load()` reads a PNG or JPEG file (with R's png and jpeg packages) as an image:
#' values 0-255, `(height, width, channels)`; `grayscale` averages the colour channels
#' (ITU-R 601 luma, as PIL's "L" mode), `target_size` resizes (nearest neighbour, as Keras's
#' default). `image_to_array()` gives the array; `image_array_resize()` resizes arrays.
#'
#' @param path A `.png`, `.jpg` or `.jpeg` file.
#' @param grayscale Whether to make one channel.
#' @param target_size `c(height, width)`, or `NULL` for the file's size.
#' @param interpolation Only `"nearest"`.
#' @param img An image from `image_load()` (or an array; `image_array_resize()` also takes a
#'   batch of one image, `(1, height, width, channels)`, and keeps the batch axis).
#' @param data_format `NULL` or "channels_last"; `image_to_array()` also takes
#'   "channels_first" (and `NULL` follows [k_image_data_format()] there).
#' @param height,width The new size.
#' @return `image_load()`: an image (`$size` is `list(width, height)`, as PIL's); `image_to_array()` and
#'   `image_array_resize()`: an array.
#' @examples
#' f <- tempfile(fileext = ".png")
#' png::writePNG(array(runif(4 * 6 * 3), c(4, 6, 3)), f)
#' dim(image_to_array(image_load(f, target_size = c(2, 3))))
#' @export
image_load <- function(path, grayscale = FALSE, target_size = NULL, interpolation = "nearest") {
  check_string(path, "path")
  check_bool(grayscale, "grayscale")
  if (!identical(interpolation, "nearest")) value_error("Only `interpolation = \"nearest\"` is supported yet.")
  img <- read_image_file(path)
  channels <- dim(img)[3]
  if (channels %in% c(2, 4)) img <- img[, , seq_len(channels - 1), drop = FALSE] # drop alpha
  if (grayscale && dim(img)[3] == 3) {
    img <- array(0.299 * img[, , 1] + 0.587 * img[, , 2] + 0.114 * img[, , 3], c(dim(img)[1:2], 1))
  } else if (!grayscale && dim(img)[3] == 1) {
    img <- img[, , c(1, 1, 1), drop = FALSE]
  }
  if (!is.null(target_size)) {
    size <- as_pair(target_size, "target_size", min = 1)
    img <- resize_nearest(img, size[1], size[2])
  }
  # `size` as PIL's image has it (R keras scripts read img$size): list(width, height).
  structure(list(array = img, size = list(dim(img)[2], dim(img)[1])), class = "rustgpu_image")
}

#' @rdname image_load
#' @export
image_to_array <- function(img, data_format = NULL) {
  # (height, width, channels); channels first, (channels, height, width), when asked for.
  first <- identical(check_data_format(data_format), "channels_first")
  if (inherits(img, "rustgpu_image")) return(if (first) aperm(img$array, c(3, 1, 2)) else img$array)
  if (is.array(img) && length(dim(img)) == 3) return(img)
  value_error(sprintf("`img` must be an image from image_load(), not %s.", describe(img)))
}

#' @rdname image_load
#' @export
image_array_resize <- function(img, height, width, data_format = NULL) {
  channels_last_only(data_format)
  check_count(height, "height", min = 1)
  check_count(width, "width", min = 1)
  # A batch of one image (1, height, width, channels) stays a batch, as R keras's.
  if (is.array(img) && length(dim(img)) == 4 && dim(img)[1] == 1) {
    resized <- resize_nearest(array(img, dim(img)[-1]), height, width)
    return(array(resized, c(1L, dim(resized))))
  }
  img <- image_to_array(img, data_format = "channels_last")
  resize_nearest(img, height, width)
}

#' Batches of images from a folder of class folders
#'
#' Keras's `flow_from_directory()`: every sub-folder of `directory` is a class (in
#' alphabetical order, or `classes`), every PNG or JPEG in it a sample; a generator (an R
#' function, for [fit_generator()]) returns the next batch on each call: the images (loaded,
#' resized to `target_size`, transformed and standardized by `generator`) and their labels
#' (`class_mode`: "categorical" one-hot, "sparse" ids, "binary" 0/1, or `NULL` for images
#' only). The generator has Keras's fields: `$n`, `$classes`, `$class_indices`, `$filenames`.
#'
#' @param directory A folder with one sub-folder per class.
#' @inheritParams flow_images_from_data
#' @param target_size `c(height, width)`.
#' @param color_mode `"rgb"` or `"grayscale"`.
#' @param classes Class (sub-folder) names, or `NULL` for all.
#' @param class_mode `"categorical"`, `"binary"`, `"sparse"` or `NULL`.
#' @param follow_links,interpolation Unused / only `"nearest"`.
#' @param save_to_dir,save_prefix,save_format,subset Not supported yet.
#' @return A generator function.
#' @examples
#' dir <- tempfile()
#' for (cls in c("cats", "dogs")) {
#'   dir.create(file.path(dir, cls), recursive = TRUE)
#'   png::writePNG(array(runif(8 * 8 * 3), c(8, 8, 3)), file.path(dir, cls, "a.png"))
#' }
#' batches <- flow_images_from_directory(dir, target_size = c(4, 4), batch_size = 2)
#' batches$class_indices
#' dim(batches()[[1]])
#' @export
flow_images_from_directory <- function(directory, generator = image_data_generator(), target_size = c(256, 256),
                                       color_mode = "rgb", classes = NULL, class_mode = "categorical",
                                       batch_size = 32, shuffle = TRUE, seed = NULL, save_to_dir = NULL,
                                       save_prefix = "", save_format = "png", follow_links = FALSE, subset = NULL,
                                       interpolation = "nearest") {
  check_string(directory, "directory")
  if (!dir.exists(directory)) rustgpu_abort(sprintf("Folder \"%s\" does not exist.", directory), "rustgpu_io_error")
  if (!color_mode %in% c("rgb", "grayscale")) value_error("`color_mode` must be \"rgb\" or \"grayscale\".")
  if (!is.null(class_mode) && !class_mode %in% c("categorical", "binary", "sparse")) {
    value_error("`class_mode` must be \"categorical\", \"binary\", \"sparse\" or NULL.")
  }
  if (!is.null(save_to_dir) || !is.null(subset)) value_error("`save_to_dir` and `subset` are not supported yet.")
  size <- as_pair(target_size, "target_size", min = 1)
  if (is.null(classes)) classes <- sort(basename(list.dirs(directory, recursive = FALSE)))
  files <- lapply(classes, function(cls) {
    f <- sort(list.files(file.path(directory, cls), pattern = "\\.(png|jpe?g)$", ignore.case = TRUE))
    file.path(cls, f)
  })
  labels <- rep(seq_along(classes) - 1L, lengths(files))
  files <- unlist(files)
  n <- length(files)
  message(sprintf("Found %d images belonging to %d classes.", n, length(classes)))
  if (!is.null(class_mode) && class_mode == "binary" && length(classes) != 2) {
    value_error(sprintf("`class_mode = \"binary\"` needs 2 classes, found %d.", length(classes)))
  }
  if (!is.null(seed)) {
    check_count(seed, "seed", min = 0)
    set.seed(seed)
  }
  state <- new.env(parent = emptyenv())
  state$order <- integer()
  batch <- function() {
    if (n == 0) value_error(sprintf("No images in \"%s\".", directory))
    if (length(state$order) == 0) state$order <- if (shuffle) sample.int(n) else seq_len(n)
    take <- state$order[seq_len(min(batch_size, length(state$order)))]
    state$order <- state$order[-seq_along(take)]
    images <- lapply(take, function(i) image_to_array(image_load(file.path(directory, files[i]), color_mode == "grayscale", size)))
    x <- aperm(array(unlist(images), c(dim(images[[1]]), length(take))), c(4, 1, 2, 3))
    params <- random_transforms(generator, length(take), size[1], size[2])
    x <- standardize_images(generator, shift_images(generator, call_backend(rg_apply_transforms(x, params, generator$fill_mode, as.numeric(generator$cval)))))
    if (is.null(class_mode)) return(x)
    y <- labels[take]
    list(x, switch(class_mode, categorical = to_categorical(y, length(classes)), sparse = y, binary = as.numeric(y)))
  }
  structure(batch, class = c("rustgpu_image_iterator", "function"),
            fields = list(n = n, classes = labels, class_indices = stats::setNames(as.list(seq_along(classes) - 1L), classes),
                          filenames = files, batch_size = batch_size))
}

#' @export
`$.rustgpu_image_iterator` <- function(x, name) attr(x, "fields")[[name]]

# Image arrays here are channels last: an explicit "channels_first" is refused (NULL is fine,
# whatever k_image_data_format() says, as these take and give (height, width, channels)).
channels_last_only <- function(data_format, call = rlang::caller_env()) {
  if (!is.null(data_format) && !identical(data_format, "channels_last")) {
    value_error("Only `data_format = \"channels_last\"` is supported here: images are (height, width, channels).", call = call)
  }
}

#' Skip-gram pairs and sampling tables (word2vec)
#'
#' `skipgrams()`: Keras's skip-gram pairs of a sequence of word indices: each word with each
#' other word within `window_size` of it (label 1), plus `negative_samples` times as many
#' pairs of a word with a random index (label 0); index 0 is padding and skipped. With a
#' `sampling_table`, word `i` is kept with probability `sampling_table[i + 1]`.
#' `make_sampling_table()`: those probabilities for words ranked by frequency (index 1 the
#' most frequent), from Zipf's law, as Keras computes them. Random draws use R's generator
#' (`seed` sets it for the call).
#'
#' @param sequence Word indices (0 for padding).
#' @param vocabulary_size Number of words (indices are below it).
#' @param window_size Words on each side that make pairs.
#' @param negative_samples Negative pairs per positive pair (0: none).
#' @param shuffle Shuffle the pairs.
#' @param categorical Labels as `list(0, 1)`/`list(1, 0)` instead of 1/0.
#' @param sampling_table From `make_sampling_table()`, or `NULL`.
#' @param seed A seed for this call, or `NULL`.
#' @param size Number of words.
#' @param sampling_factor Keras's `sampling_factor`.
#' @return `skipgrams()`: `list(couples, labels)`, `couples` a list of `list(word, context)`
#'   (as R keras returns them); `make_sampling_table()`: a vector of `size` probabilities.
#' @examples
#' c(couples, labels) %<-% skipgrams(c(1, 2, 3, 0, 4), vocabulary_size = 5, window_size = 1, seed = 1)
#' length(couples)
#' make_sampling_table(5)
#' @export
skipgrams <- function(sequence, vocabulary_size, window_size = 4, negative_samples = 1.0, shuffle = TRUE,
                      categorical = FALSE, sampling_table = NULL, seed = NULL) {
  if (!is.numeric(sequence) || anyNA(sequence) || any(sequence < 0) || any(sequence != round(sequence))) {
    value_error(sprintf("`sequence` must be word indices (whole numbers >= 0), not %s.", describe(sequence)))
  }
  check_count(vocabulary_size, "vocabulary_size", min = 2)
  check_count(window_size, "window_size", min = 0)
  check_number(negative_samples, "negative_samples", min = 0)
  check_bool(shuffle, "shuffle")
  check_bool(categorical, "categorical")
  check_count(seed, "seed", min = 0, allow_null = TRUE)
  if (!is.null(sampling_table) && (!is.numeric(sampling_table) || length(sampling_table) < max(sequence) + 1)) {
    value_error("`sampling_table` must be a vector of probabilities with one per word index (from make_sampling_table()).")
  }
  if (!is.null(seed)) {
    old <- if (exists(".Random.seed", globalenv())) get(".Random.seed", globalenv())
    on.exit(if (is.null(old)) rm(".Random.seed", envir = globalenv()) else assign(".Random.seed", old, globalenv()))
    set.seed(seed)
  }
  sequence <- as.integer(sequence)
  n <- length(sequence)
  words <- integer(0)
  contexts <- integer(0)
  for (i in seq_len(n)) {
    wi <- sequence[[i]]
    if (wi == 0) next
    if (!is.null(sampling_table) && sampling_table[[wi + 1]] < stats::runif(1)) next
    js <- setdiff(max(1, i - window_size):min(n, i + window_size), i)
    js <- js[sequence[js] != 0]
    words <- c(words, rep(wi, length(js)))
    contexts <- c(contexts, sequence[js])
  }
  labels <- rep(1L, length(words))
  negatives <- as.integer(length(labels) * negative_samples)
  if (negatives > 0) {
    shuffled <- words[sample.int(length(words))]
    words <- c(words, shuffled[(seq_len(negatives) - 1) %% length(shuffled) + 1])
    contexts <- c(contexts, sample.int(vocabulary_size - 1, negatives, replace = TRUE))
    labels <- c(labels, rep(0L, negatives))
  }
  if (shuffle && length(words)) {
    order <- sample.int(length(words))
    words <- words[order]
    contexts <- contexts[order]
    labels <- labels[order]
  }
  couples <- Map(function(w, c) list(w, c), words, contexts)
  labels <- if (categorical) lapply(labels, function(l) if (l == 1) list(0L, 1L) else list(1L, 0L)) else as.list(labels)
  list(unname(couples), labels)
}

#' @rdname skipgrams
#' @export
make_sampling_table <- function(size, sampling_factor = 1e-05) {
  check_count(size, "size")
  check_number(sampling_factor, "sampling_factor", min = 0)
  gamma <- 0.577
  rank <- seq_len(size) - 1
  rank[[1]] <- 1
  inv_fq <- rank * (log(rank) + gamma) + 0.5 - 1 / (12 * rank)
  f <- sampling_factor * inv_fq
  pmin(1, f / sqrt(f))
}

#' Generators: the next value, and sequences one text at a time
#'
#' `generator_next()` gives a generator's next value (R keras's name for calling it).
#' `texts_to_sequences_generator()` is a generator of each text's word indices
#' ([texts_to_sequences()]) in turn, then `NULL`.
#'
#' @param generator A generator function (e.g. from [flow_images_from_data()] or
#'   [timeseries_generator()]).
#' @param completed What an exhausted generator gives (`NULL`).
#' @param tokenizer,texts As for [texts_to_sequences()].
#' @return The next value.
#' @examples
#' tokenizer <- fit_text_tokenizer(text_tokenizer(), c("a b c", "a b"))
#' gen <- texts_to_sequences_generator(tokenizer, c("a b", "c"))
#' generator_next(gen)
#' generator_next(gen)
#' generator_next(gen)
#' @export
generator_next <- function(generator, completed = NULL) {
  if (!is.function(generator)) value_error(sprintf("`generator` must be a generator function, not %s.", describe(generator)))
  value <- generator()
  if (is.null(value)) completed else value
}

#' @rdname generator_next
#' @export
texts_to_sequences_generator <- function(tokenizer, texts) {
  sequences <- texts_to_sequences(tokenizer, texts)
  i <- 0
  function() {
    i <<- i + 1
    if (i > length(sequences)) NULL else sequences[[i]]
  }
}

#' Save an image array to a file
#'
#' Keras's `save_img()`: an array `c(height, width, channels)` (1 or 3 channels; channels
#' first with `data_format = "channels_first"`) written as PNG or JPEG, scaled to 0-255 from
#' its own minimum and maximum (`scale = TRUE`) or taken as values in 0-255.
#'
#' @param img The image array.
#' @param path The file.
#' @param data_format "channels_last" or "channels_first"; `NULL`: [k_image_data_format()].
#' @param file_format "png" or "jpeg"; `NULL`: from the file's extension.
#' @param scale Scale the values to the full range.
#' @return `path`, invisibly.
#' @examples
#' path <- tempfile(fileext = ".png")
#' image_array_save(array(runif(4 * 5 * 3), c(4, 5, 3)), path)
#' dim(image_to_array(image_load(path)))
#' @export
image_array_save <- function(img, path, data_format = NULL, file_format = NULL, scale = TRUE) {
  if (!is.numeric(img) || anyNA(img)) value_error(sprintf("`img` must be a numeric array without NA, not %s.", describe(img)))
  if (length(dim(img)) == 4 && dim(img)[[1]] == 1) img <- array(img, dim(img)[-1])
  if (length(dim(img)) != 3) value_error(sprintf("`img` must be an image array c(height, width, channels), not of %d axes.", length(dim(img))))
  if (is.null(data_format)) data_format <- k_image_data_format()
  check_choice(data_format, "data_format", c("channels_last", "channels_first"))
  if (data_format == "channels_first") img <- aperm(img, c(2, 3, 1))
  if (!dim(img)[[3]] %in% c(1, 3, 4)) value_error(sprintf("`img` must have 1, 3 or 4 channels, not %d.", dim(img)[[3]]))
  check_string(path, "path")
  check_bool(scale, "scale")
  if (is.null(file_format)) file_format <- tolower(tools::file_ext(path))
  file_format <- switch(file_format, jpg = "jpeg", file_format)
  check_choice(file_format, "file_format", c("png", "jpeg"))
  need_packages(file_format, sprintf("Writing %s images", toupper(file_format)))
  if (scale) {
    img <- img - min(img)
    top <- max(img)
    if (top != 0) img <- img / top
  } else {
    img <- img / 255
  }
  img <- pmin(pmax(img, 0), 1)
  if (dim(img)[[3]] == 1) img <- img[, , 1]
  tryCatch(if (file_format == "png") png::writePNG(img, path) else jpeg::writeJPEG(img, path, quality = 0.95),
           error = function(e) rustgpu_abort(sprintf("Cannot write image \"%s\": %s", path, conditionMessage(e)), "rustgpu_io_error"))
  invisible(path)
}

#' Normalize an array
#'
#' Keras's `normalize()`: each vector along `axis` divided by its `order`-norm (vectors of
#' norm 0 are left as they are).
#'
#' @param x A numeric array (or vector).
#' @param axis The axis (from 1; -1 the last).
#' @param order The norm (2: Euclidean).
#' @return The normalized array.
#' @examples
#' normalize(matrix(c(3, 0, 4, 1), 2))
#' @export
normalize <- function(x, axis = -1, order = 2) {
  if (!is.numeric(x) || anyNA(x)) value_error(sprintf("`x` must be a numeric array without NA, not %s.", describe(x)))
  check_number(order, "order", min = 1)
  dims <- dim(x)
  if (is.null(dims)) dims <- length(x)
  a <- core_axis(axis, length(dims)) + 1L
  norm <- function(v) {
    n <- sum(abs(v)^order)^(1 / order)
    if (n == 0) 1 else n
  }
  if (length(dims) == 1) return(as.vector(x) / norm(x))
  sweep(x, seq_along(dims)[-a], apply(x, seq_along(dims)[-a], norm), "/")
}
