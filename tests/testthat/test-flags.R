test_that("flags() gives defaults, typed, overridden from the command line", {
  FLAGS <- flags(flag_integer("units", 64), flag_numeric("dropout", 0.2), flag_boolean("augment", FALSE),
                 flag_string("optimizer", "adam"), arguments = character(0), file = NULL)
  expect_s3_class(FLAGS, "tfruns_flags")
  expect_identical(FLAGS$units, 64L)
  expect_identical(FLAGS$dropout, 0.2)
  expect_identical(FLAGS$augment, FALSE)
  expect_identical(FLAGS$optimizer, "adam")
  FLAGS <- flags(flag_integer("units", 64), flag_numeric("dropout", 0.2), flag_boolean("augment", FALSE),
                 arguments = c("--args", "--units=128", "--augment", "true", "--dropout", "0.5"), file = NULL)
  expect_identical(FLAGS$units, 128L)
  expect_identical(FLAGS$dropout, 0.5)
  expect_identical(FLAGS$augment, TRUE)
  expect_output(print(FLAGS), "units +128")
})

test_that("flags() reads a YAML file, under the config's section", {
  file <- withr::local_tempfile(fileext = ".yml")
  writeLines(c("default:", "  units: 32", "production:", "  units: 256"), file)
  expect_identical(flags(flag_integer("units", 64), file = file, arguments = character(0))$units, 32L)
  expect_identical(flags(flag_integer("units", 64), file = file, config = "production", arguments = character(0))$units, 256L)
  expect_identical(flags(flag_integer("units", 64), file = file, arguments = "--units=8")$units, 8L)
})

test_that("bad flags are classed errors that name the flag", {
  expect_error(flags(flag_integer("units", 64), arguments = "--units=1.5", file = NULL),
               class = "rustgpu_value_error", regexp = "flag \"units\".*whole number")
  expect_error(flags(flag_integer("units", 64), arguments = "--unit=3", file = NULL),
               class = "rustgpu_value_error", regexp = "\"unit\", which is not declared")
  expect_error(flags(flag_integer("units", 64), flag_numeric("units", 1)), class = "rustgpu_value_error", regexp = "twice")
  expect_error(flag_boolean("augment", "maybe"), class = "rustgpu_value_error", regexp = "TRUE or FALSE")
  expect_error(flags(list(1)), class = "rustgpu_value_error")
})
