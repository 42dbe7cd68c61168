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
