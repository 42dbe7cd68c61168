test_that("%<-% unpacks lists as in R keras examples", {
  c(c(x_train, y_train), c(x_test, y_test)) %<-% list(list(1, 2), list(3, 4))
  expect_equal(c(x_train, y_train, x_test, y_test), c(1, 2, 3, 4))
})
