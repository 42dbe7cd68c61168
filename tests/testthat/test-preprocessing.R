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

test_that("image transforms are Keras's apply_transform", {
  fx <- jsonlite::fromJSON(test_path("..", "fixtures", "keras_preprocessing.json"), simplifyVector = TRUE)$image_transforms
  img <- fx$image # (6, 5, 2)
  x <- array(img, c(1, dim(img)))
  for (i in seq_len(nrow(fx$cases))) {
    p <- fx$cases$params[i, ]
    get <- function(k, default) if (!is.null(p[[k]]) && !is.na(p[[k]])) as.numeric(p[[k]]) else default
    params <- matrix(c(get("theta", 0), get("tx", 0), get("ty", 0), get("shear", 0), get("zx", 1), get("zy", 1),
                       get("flip_horizontal", 0), get("flip_vertical", 0)), 1)
    got <- rustgpu:::call_backend(rustgpu:::rg_apply_transforms(x, params, fx$cases$fill_mode[i], fx$cases$cval[i]))
    expect_equal(got[1, , , ], fx$cases$result[[i]], tolerance = 1e-5, label = paste(names(p)[!is.na(p)], collapse = ","))
  }
})

test_that("flow_images_from_data() gives every image once a pass, standardized, and trains a model", {
  set.seed(1)
  x <- array(runif(10 * 6 * 6 * 3, 0, 255), c(10, 6, 6, 3))
  gen <- image_data_generator(featurewise_center = TRUE, featurewise_std_normalization = TRUE, rescale = 1 / 255)
  fit_image_data_generator(gen, x)
  expect_equal(gen$mean, as.vector(apply(x / 255, 4, mean)))
  batches <- flow_images_from_data(x, seq_len(10), gen, batch_size = 4, shuffle = TRUE)
  seen <- unlist(lapply(1:3, function(i) batches()[[2]]))
  expect_setequal(seen, 1:10)
  b <- batches()
  expect_equal(dim(b[[1]]), c(4L, 6L, 6L, 3L))
  # No augmentation: the images come back standardized, in the order asked.
  plain <- flow_images_from_data(x, NULL, gen, batch_size = 10, shuffle = FALSE)()
  channel <- rep(1:3, each = 10 * 36)
  expect_equal(plain, (x / 255 - gen$mean[channel]) / (gen$std[channel] + 1e-6), tolerance = 1e-6)
  aug <- image_data_generator(rotation_range = 30, width_shift_range = 0.2, height_shift_range = 0.2, zoom_range = 0.1,
                              horizontal_flip = TRUE)
  model <- keras_model_sequential() %>% layer_flatten(input_shape = c(6, 6, 3)) %>% layer_dense(2, activation = "softmax")
  compile(model, optimizer = "adam", loss = "categorical_crossentropy")
  h <- fit_generator(model, flow_images_from_data(x / 255, to_categorical(rep(0:1, 5), 2), aug, batch_size = 5),
                     steps_per_epoch = 2, epochs = 2, verbose = 0)
  expect_length(h$metrics$loss, 2)
  expect_error(image_data_generator(zca_whitening = TRUE), "not supported yet", class = "rustgpu_value_error")
  expect_error(flow_images_from_data(matrix(1, 2, 2)), "4-d array", class = "rustgpu_value_error")
})

test_that("image files load as Keras loads them, and a folder of classes flows in batches", {
  set.seed(3)
  dir <- tempfile("images")
  pixels <- list()
  for (cls in c("cat", "dog")) {
    dir.create(file.path(dir, cls), recursive = TRUE)
    for (k in 1:3) {
      img <- array(round(runif(6 * 4 * 3) * 255) / 255, c(6, 4, 3))
      png::writePNG(img, file.path(dir, cls, sprintf("%d.png", k)))
      pixels[[paste(cls, k)]] <- img * 255
    }
  }
  loaded <- image_to_array(image_load(file.path(dir, "cat", "1.png")))
  expect_equal(loaded, pixels[["cat 1"]], tolerance = 1e-6)
  grey <- image_to_array(image_load(file.path(dir, "cat", "1.png"), grayscale = TRUE))
  expect_equal(dim(grey), c(6L, 4L, 1L))
  expect_equal(grey[2, 3, 1], sum(c(0.299, 0.587, 0.114) * pixels[["cat 1"]][2, 3, ]), tolerance = 1e-6)
  # Nearest neighbour as PIL (checked against PIL.Image.resize): 6 x 4 to 3 x 2 takes rows
  # 2, 4, 6 and columns 2, 4 (each output pixel reads the input at its centre).
  small <- image_to_array(image_load(file.path(dir, "cat", "1.png"), target_size = c(3, 2)))
  expect_equal(small, pixels[["cat 1"]][c(2, 4, 6), c(2, 4), , drop = FALSE], tolerance = 1e-6)
  expect_equal(image_array_resize(loaded, 3, 2), small)
  expect_equal(image_load(file.path(dir, "cat", "1.png"))$size, list(4L, 6L))  # PIL's (width, height)
  expect_equal(image_array_resize(array(loaded, c(1, dim(loaded))), 3, 2), array(small, c(1, 3, 2, 3)))
  jpg <- tempfile(fileext = ".jpg")
  jpeg::writeJPEG(array(0.5, c(5, 5, 3)), jpg, quality = 1)
  expect_equal(dim(image_to_array(image_load(jpg))), c(5L, 5L, 3L))
  expect_error(image_load(file.path(dir, "nope.png")), "does not exist", class = "rustgpu_io_error")

  batches <- suppressMessages(flow_images_from_directory(dir, image_data_generator(rescale = 1 / 255), target_size = c(6, 4),
                                                         batch_size = 4, shuffle = FALSE))
  expect_equal(batches$n, 6L)
  expect_equal(batches$class_indices, list(cat = 0L, dog = 1L))
  b <- batches()
  expect_equal(dim(b[[1]]), c(4L, 6L, 4L, 3L))
  expect_equal(b[[2]], to_categorical(c(0, 0, 0, 1), 2))
  expect_equal(b[[1]][1, , , ], pixels[["cat 1"]] / 255, tolerance = 1e-6)
  model <- keras_model_sequential() %>% layer_flatten(input_shape = c(6, 4, 3)) %>% layer_dense(2, activation = "softmax")
  compile(model, optimizer = "sgd", loss = "categorical_crossentropy")
  h <- fit_generator(model, batches, steps_per_epoch = 2, epochs = 1, verbose = 0)
  expect_length(h$metrics$loss, 1)
})

test_that("tokenizers save and load; layers take initial weights and trainable = FALSE (pretrained embeddings)", {
  tokenizer <- fit_text_tokenizer(text_tokenizer(num_words = 10), c("the cat sat", "the dog sat down"))
  path <- tempfile()
  save_text_tokenizer(tokenizer, path)
  again <- load_text_tokenizer(path)
  expect_identical(texts_to_sequences(again, "the dog sat"), texts_to_sequences(tokenizer, "the dog sat"))
  writeLines("x", path)
  expect_error(load_text_tokenizer(path), "not a tokenizer", class = "rustgpu_io_error")
  # A pretrained embedding matrix, frozen, in a functional model (as R keras's GloVe example).
  pretrained <- matrix(seq_len(12) / 10, 6, 2)
  embedding <- layer_embedding(input_dim = 6, output_dim = 2, input_length = 3, weights = list(pretrained), trainable = FALSE)
  ids <- layer_input(shape = list(3), dtype = "int32")
  model <- keras_model(ids, ids %>% embedding %>% layer_flatten() %>% layer_dense(1))
  expect_equal(get_weights(model)[[1]], pretrained, tolerance = 1e-6)
  expect_match(format(model), "Non-trainable params: 12", fixed = TRUE)
  compile(model, optimizer = optimizer_sgd(0.1), loss = "mse")
  fit(model, matrix(c(1, 2, 3, 4, 5, 0), 2, 3, byrow = TRUE), c(1, 2), epochs = 2, verbose = 0)
  expect_equal(get_weights(model)[[1]], pretrained, tolerance = 1e-6)
  expect_error(layer_dense(keras_model_sequential(), 2, input_shape = 3, weights = list(matrix(0, 2, 2), 0)),
               "shape", class = "rustgpu_value_error")
})

test_that("channel shifts, brightness changes and a preprocessing function apply per image, as Keras's", {
  set.seed(4)
  x <- array(runif(4 * 5 * 6 * 3), c(4, 5, 6, 3))
  same <- function(gen) {
    set.seed(9)
    flow_images_from_data(x, generator = gen, batch_size = 4, shuffle = FALSE)()
  }
  # A channel shift adds one amount per image, clipped to the image's range.
  shifted <- same(image_data_generator(channel_shift_range = 0.2))
  for (i in 1:4) {
    d <- shifted[i, , , ] - x[i, , , ]
    inside <- shifted[i, , , ] > min(x[i, , , ]) & shifted[i, , , ] < max(x[i, , , ])
    expect_lt(diff(range(d[inside])), 1e-6)  # (the transform step computes in float32)
    expect_lte(max(abs(d)), 0.2 + 1e-6)
    expect_gte(min(shifted[i, , , ]), min(x[i, , , ]) - 1e-6)
    expect_lte(max(shifted[i, , , ]), max(x[i, , , ]) + 1e-6)
  }
  # Brightness scales each image over its range by one factor from brightness_range.
  bright <- same(image_data_generator(brightness_range = c(0.5, 0.8)))
  for (i in 1:4) {
    lo <- min(x[i, , , ])
    keep <- x[i, , , ] - lo > 0.05  # away from the minimum, where float32 rounding dominates
    ratio <- (bright[i, , , ][keep] - lo) / (x[i, , , ][keep] - lo)
    expect_lt(diff(range(ratio)), 1e-5)
    expect_true(ratio[1] >= 0.5 && ratio[1] <= 0.8)
  }
  # The preprocessing function runs on each image, before rescale.
  pre <- same(image_data_generator(preprocessing_function = function(img) img[, , c(3, 2, 1)] * 2, rescale = 0.5))
  expect_equal(as.vector(pre), as.vector(x[, , , c(3, 2, 1)]), tolerance = 1e-6)
  expect_equal(dim(pre), dim(x))
  expect_error(same(image_data_generator(preprocessing_function = function(img) img[, , 1])), "image's shape", class = "rustgpu_value_error")
  expect_error(image_data_generator(brightness_range = 0.5), "`brightness_range`", class = "rustgpu_value_error")
  expect_error(image_data_generator(preprocessing_function = "f"), "`preprocessing_function`", class = "rustgpu_value_error")
})

test_that("timeseries_generator() gives tf-keras's TimeseriesGenerator batches", {
  fx <- jsonlite::fromJSON(test_path("..", "fixtures", "keras_preprocessing.json"), simplifyVector = TRUE)$sequence_utils
  cases <- jsonlite::fromJSON(test_path("..", "fixtures", "keras_preprocessing.json"), simplifyVector = FALSE)$sequence_utils$timeseries
  for (case in cases) {
    args <- c(list(fx$data, fx$targets), case$args)
    gen <- do.call(timeseries_generator, args)
    expect_equal(length(gen), case$length)
    for (i in seq_along(case$batches)) {
      want <- case$batches[[i]]
      got <- gen()
      x <- aperm(array(unlist(want$x), c(3, length(want$x[[1]]), length(want$x))), c(3, 2, 1))
      expect_equal(got[[1]], x, label = sprintf("batch %d of %s", i, paste(names(case$args), case$args, collapse = ", ")))
      expect_equal(got[[2]], unlist(want$y))
      expect_equal(gen(i), got)
    }
    expect_equal(gen(), gen(1))  # after the last batch, the first again
  }
  shuffled <- timeseries_generator(1:30, 1:30, length = 5, shuffle = TRUE, batch_size = 4)
  batch <- shuffled()
  expect_equal(dim(batch[[1]]), c(4L, 5L))
  expect_equal(batch[[1]][, 5] + 1, batch[[2]])  # each window ends just before its target
  expect_error(timeseries_generator(1:5, 1:4, length = 2), class = "rustgpu_value_error", regexp = "same length")
  expect_error(timeseries_generator(1:5, 1:5, length = 6), class = "rustgpu_value_error", regexp = "no window fits")
})

test_that("make_sampling_table() and skipgrams() as tf-keras's; random parts from R's generator", {
  fx <- jsonlite::fromJSON(test_path("..", "fixtures", "keras_preprocessing.json"), simplifyVector = FALSE)$sequence_utils
  expect_equal(make_sampling_table(8, sampling_factor = 0.05), unlist(fx$sampling_table), tolerance = 1e-12)
  c(couples, labels) %<-% skipgrams(unlist(fx$skipgram_sequence), vocabulary_size = 6, window_size = 2,
                                    negative_samples = 0, shuffle = FALSE)
  expect_equal(lapply(couples, unlist), lapply(fx$skipgram_couples, unlist))
  expect_equal(unlist(labels), unlist(fx$skipgram_labels))
  c(couples, labels) %<-% skipgrams(c(1, 2, 3, 4), vocabulary_size = 10, window_size = 1, seed = 3)
  expect_equal(sum(unlist(labels)), 6)
  expect_length(labels, 12)
  expect_identical(skipgrams(c(1, 2, 3, 4), vocabulary_size = 10, window_size = 1, seed = 3), list(couples, labels))
  expect_true(all(vapply(couples[unlist(labels) == 0], function(c) c[[2]] >= 1 && c[[2]] <= 9, logical(1))))
  cat_labels <- skipgrams(c(1, 2), vocabulary_size = 3, negative_samples = 0, categorical = TRUE)[[2]]
  expect_equal(cat_labels[[1]], list(0L, 1L))
  expect_error(skipgrams(c(1, -2), vocabulary_size = 3), class = "rustgpu_value_error")
})

test_that("generator_next(), texts_to_sequences_generator(), normalize() and image_array_save()", {
  tokenizer <- fit_text_tokenizer(text_tokenizer(), c("a b c", "a b", "a"))
  gen <- texts_to_sequences_generator(tokenizer, c("a b", "c a"))
  expect_equal(generator_next(gen), c(1L, 2L))
  expect_equal(generator_next(gen), c(3L, 1L))
  expect_null(generator_next(gen))
  expect_equal(generator_next(gen, completed = "done"), "done")
  m <- matrix(c(3, 0, 4, 0), 2)
  expect_equal(normalize(m), matrix(c(0.6, 0, 0.8, 0), 2))
  expect_equal(normalize(m, axis = 1), matrix(c(1, 0, 1, 0), 2))
  expect_equal(normalize(c(1, 1), order = 1), c(0.5, 0.5))
  img <- array(seq(0, 1, length.out = 4 * 5 * 3), c(4, 5, 3))
  path <- withr::local_tempfile(fileext = ".png")
  image_array_save(img * 10, path)
  back <- image_to_array(image_load(path))
  expect_equal(dim(back), c(4L, 5L, 3L))
  expect_equal(back, round(img * 255), tolerance = 1 / 255)
  jpg <- withr::local_tempfile(fileext = ".jpg")
  image_array_save(img * 255, jpg, scale = FALSE)
  expect_equal(dim(image_to_array(image_load(jpg))), c(4L, 5L, 3L))
  expect_error(image_array_save(img, withr::local_tempfile(fileext = ".gif")), class = "rustgpu_value_error")
  expect_error(image_array_save(matrix(1, 2, 2), path), class = "rustgpu_value_error", regexp = "height, width, channels")
})

test_that("text_hashing_trick() and text_one_hot() give tf-keras's MD5 indices", {
  fx <- preprocessing_fixture()
  for (case in fx$hashing_trick) {
    args <- c(list(case$text, case$n), case$args)
    expected <- as.integer(unlist(case$result))
    expect_identical(do.call(text_hashing_trick, c(args, list(hash_function = "md5"))), expected)
    expect_identical(do.call(text_one_hot, args), expected)
  }
  expect_error(text_hashing_trick("a b", 1), "`n`", class = "rustgpu_value_error")
  expect_error(text_hashing_trick("a b", 10, hash_function = "sha1"), "NULL or \"md5\"", class = "rustgpu_value_error")
  expect_error(text_hashing_trick("a b", 10, hash_function = function(w) 1), "not supported", class = "rustgpu_unsupported_error")
})
