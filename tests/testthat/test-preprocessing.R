# Text and sequence preprocessing (R/preprocessing.R) against Keras's own
# (tests/fixtures/make_preprocessing_fixtures.py).

preprocessing_fixture <- function() {
  jsonlite::fromJSON(test_path("..", "fixtures", "keras_preprocessing.json"), simplifyVector = FALSE)
}

as_matrix <- function(rows) do.call(rbind, lapply(rows, function(r) as.numeric(unlist(r))))

test_that("the tokenizer builds Keras's vocabulary, sequences and matrices", {
  fx <- preprocessing_fixture()
  texts <- unlist(fx$texts)
  for (case in fx$tokenizers) {
    tk <- do.call(text_tokenizer, case$args)
    expect_identical(fit_text_tokenizer(tk, texts), tk)
    expect_equal(tk$word_index, lapply(case$word_index, as.integer), label = case$name)
    expect_equal(lapply(tk$word_counts, as.integer), lapply(case$word_counts, as.integer), label = case$name)
    expect_equal(tk$document_count, case$document_count)
    expect_equal(texts_to_sequences(tk, unlist(fx$new_texts)), lapply(case$sequences, function(s) as.integer(unlist(s))),
                 label = case$name)
    for (mode in c("binary", "count", "tfidf", "freq")) {
      expect_equal(texts_to_matrix(tk, unlist(fx$new_texts), mode = mode), as_matrix(case[[paste0("matrix_", mode)]]),
                   tolerance = 1e-6, label = paste(case$name, mode))
    }
  }
})

test_that("fitting twice adds to the vocabulary; sequences_to_matrix takes sequences", {
  tk <- text_tokenizer()
  fit_text_tokenizer(tk, "b a b")
  fit_text_tokenizer(tk, "c a a")
  expect_equal(unlist(tk$word_index), c(a = 1L, b = 2L, c = 3L))
  expect_equal(tk$document_count, 2L)
  expect_equal(sequences_to_matrix(tk, list(c(1L, 1L, 3L)), mode = "count"), matrix(c(0, 2, 0, 1), 1))
  expect_output(print(tk), "3 words from 2 documents")
  expect_error(texts_to_matrix(text_tokenizer(), "a"), class = "rustgpu_state_error")
  expect_error(texts_to_sequences(list(), "a"), "made by text_tokenizer", class = "rustgpu_value_error")
})

test_that("pad_sequences and text_to_word_sequence give Keras's results", {
  fx <- preprocessing_fixture()
  sequences <- lapply(fx$sequences, function(s) as.numeric(unlist(s)))
  for (case in fx$pad_sequences) {
    got <- do.call(pad_sequences, c(list(sequences), case$args))
    expect_equal(unname(got), as_matrix(case$result), label = jsonlite::toJSON(case$args, auto_unbox = TRUE))
    expect_identical(is.integer(got), is.null(case$args$dtype))
  }
  for (case in fx$text_to_word_sequence) {
    expect_identical(do.call(text_to_word_sequence, c(list(case$text), case$args)), as.character(unlist(case$words)))
  }
  expect_error(pad_sequences(list("a")), "`sequences`", class = "rustgpu_value_error")
  expect_error(pad_sequences(list(1:3), padding = "middle"), "`padding`", class = "rustgpu_value_error")
})
