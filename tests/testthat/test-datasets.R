# Data sets (R/datasets.R) from small files in Keras's formats, against what tf-keras's own
# loaders make of the same files (tests/fixtures/make_dataset_fixtures.py). No network.

with_fixture_cache <- function(code) {
  home <- tempfile("keras-home")
  dir.create(home)
  file.copy(test_path("..", "fixtures", "datasets", "datasets"), home, recursive = TRUE)
  withr_env <- Sys.getenv("KERAS_HOME", NA)
  Sys.setenv(KERAS_HOME = home)
  old <- options(rustgpu.check_dataset_hashes = FALSE)
  on.exit({
    options(old)
    if (is.na(withr_env)) Sys.unsetenv("KERAS_HOME") else Sys.setenv(KERAS_HOME = withr_env)
    unlink(home, recursive = TRUE)
  })
  force(code)
}

expected_datasets <- function() jsonlite::fromJSON(test_path("..", "fixtures", "datasets", "expected.json"), simplifyVector = TRUE)

same_split <- function(got, want, label) {
  if (is.list(got$x)) {
    # jsonlite makes a matrix of sequences that happen to have one length.
    want_x <- if (is.matrix(want$x)) lapply(seq_len(nrow(want$x)), function(i) want$x[i, ]) else want$x
    expect_equal(lapply(got$x, as.integer), lapply(want_x, as.integer), label = paste(label, "x"))
  } else {
    expect_equal(dim(got$x), dim(want$x), label = paste(label, "dim"))
    expect_equal(unname(got$x), unname(want$x), ignore_attr = TRUE, label = paste(label, "x"))
  }
  expect_equal(as.vector(got$y), as.vector(want$y), label = paste(label, "y"))
}

test_that("every data set reads as tf-keras reads the same files", {
  want <- expected_datasets()
  with_fixture_cache({
    got <- list(
      mnist = dataset_mnist(), fashion_mnist = dataset_fashion_mnist(), cifar10 = dataset_cifar10(),
      cifar100_fine = dataset_cifar100(), cifar100_coarse = dataset_cifar100("coarse"), imdb = dataset_imdb(),
      imdb_limited = dataset_imdb(num_words = 20, skip_top = 2, maxlen = 12, seed = 5),
      reuters = dataset_reuters(test_split = 0.3), boston_housing = dataset_boston_housing()
    )
    for (name in names(got)) {
      same_split(got[[name]]$train, want[[name]]$train, paste(name, "train"))
      same_split(got[[name]]$test, want[[name]]$test, paste(name, "test"))
    }
    expect_equal(dim(got$cifar10$train$y), c(10L, 1L))
    expect_equal(dataset_imdb_word_index()$film, 19L)
    # R keras's unpacking works on them.
    c(c(x_train, y_train), c(x_test, y_test)) %<-% dataset_mnist()
    expect_equal(dim(x_train), c(6L, 28L, 28L))
  })
})

test_that("get_file() uses the cache, checks hashes and fails offline with what to do", {
  dir <- tempfile("cache")
  dir.create(file.path(dir, "datasets"), recursive = TRUE)
  path <- file.path(dir, "datasets", "data.bin")
  writeBin(charToRaw("rustgpu"), path)
  sha <- "aa6364054e7769ed779322c803eef34336403ad65198eb6160dc0e51692ebbf7" # printf rustgpu | sha256sum
  md5 <- unname(tools::md5sum(path))
  offline <- "http://127.0.0.1:9/data.bin"
  expect_equal(get_file("data.bin", offline, cache_dir = dir), path)
  expect_equal(get_file("data.bin", offline, file_hash = md5, cache_dir = dir), path)
  expect_equal(get_file("data.bin", offline, file_hash = sha, cache_dir = dir), path)
  # A wrong hash: the cached file is dropped and the download, offline, fails saying where to put it.
  err <- expect_error(suppressMessages(get_file("data.bin", offline, file_hash = strrep("0", 64), cache_dir = dir)),
                      class = "rustgpu_io_error")
  expect_match(conditionMessage(err), "Put the file \"data.bin\" in")
  expect_false(file.exists(path))
  expect_error(suppressMessages(dataset_mnist("missing.npz")), "missing.npz", class = "rustgpu_io_error")
})
