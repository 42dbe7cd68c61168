# array_reshape() (R/arrays.R) against numpy's reshape (tests/fixtures/make_preprocessing_fixtures.py).

test_that("array_reshape() lays elements out as numpy does, in C and F order", {
  fx <- jsonlite::fromJSON(test_path("..", "fixtures", "keras_preprocessing.json"))
  base <- fx$reshape_base # jsonlite gives the (2, 3, 4) array with R indices matching numpy's
  expect_equal(dim(base), c(2L, 3L, 4L))
  expect_equal(base[2, 3, 4], 23)
  for (i in seq_len(nrow(fx$reshapes))) {
    case <- fx$reshapes[i, ]
    got <- array_reshape(base, unlist(case$dim), order = case$order)
    expect_equal(dim(got), unlist(case$shape), label = paste(unlist(case$dim), collapse = ","))
    expect_equal(as.vector(got), as.vector(array(unlist(case$result[[1]]), unlist(case$shape))), ignore_attr = TRUE)
  }
})

test_that("array_reshape() flattens images row by row and refuses impossible shapes", {
  img <- matrix(1:6, 2, 3, byrow = TRUE) # rows 1 2 3 / 4 5 6
  expect_equal(as.vector(array_reshape(img, c(1, 6))), 1:6)
  expect_equal(array_reshape(img, c(3, 2)), matrix(1:6, 3, 2, byrow = TRUE))
  expect_equal(array_reshape(img, c(3, 2), order = "F"), matrix(c(1, 4, 2, 5, 3, 6), 3, 2))
  expect_equal(array_reshape(as.data.frame(img), c(6)), array(1:6))
  expect_error(array_reshape(img, c(4, 2)), "cannot reshape an array of 6 elements into shape \\(4, 2\\)", class = "rustgpu_value_error")
  expect_error(array_reshape(img, c(-1, -1)), "`dim`", class = "rustgpu_value_error")
  expect_error(array_reshape("a", 1), "`x`", class = "rustgpu_value_error")
})

test_that("to_categorical() shapes its result as Keras's: the ids' shape plus a class axis", {
  expect_equal(to_categorical(c(0, 2, 1)), rbind(c(1, 0, 0), c(0, 0, 1), c(0, 1, 0)))
  ids <- matrix(c(0, 1, 2, 1, 0, 2), 2, 3)
  onehot <- to_categorical(ids)
  expect_equal(dim(onehot), c(2, 3, 3))
  for (i in 1:2) for (j in 1:3) expect_equal(onehot[i, j, ], as.numeric(0:2 == ids[i, j]))
  # A trailing axis of 1 (a column of ids) is replaced, not kept.
  expect_equal(to_categorical(matrix(c(1, 0), 2, 1), 3), rbind(c(0, 1, 0), c(1, 0, 0)))
})
