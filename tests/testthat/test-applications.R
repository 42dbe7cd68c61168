test_that("application_xception has Keras's architecture and parameter count", {
  model <- application_xception(weights = NULL, input_shape = c(299, 299, 3), classes = 1000)
  text <- format(model)
  # Keras: 22,910,480 parameters, 54,528 of them non-trainable (batch norm statistics).
  expect_match(text, "Total params: 22,910,480", fixed = TRUE)
  expect_match(text, "Non-trainable params: 54,528", fixed = TRUE)
  expect_match(text, "block14_sepconv2 (SeparableConv2D)", fixed = TRUE)
  expect_match(text, "predictions (Dense)", fixed = TRUE)
  no_top <- application_xception(weights = NULL, include_top = FALSE, pooling = "avg", input_shape = c(71, 71, 3))
  expect_match(format(no_top), "Total params: 20,861,480", fixed = TRUE)
  expect_error(application_xception(weights = "imagenet", input_shape = c(71, 71, 3)), "include_top = FALSE", class = "rustgpu_value_error")
  expect_error(application_xception(weights = NULL, input_shape = c(32, 32, 3)), "at least 71", class = "rustgpu_value_error")
  expect_error(application_xception(weights = NULL, input_shape = c(71, 71, 3), pooling = "mean"), "`pooling`",
               class = "rustgpu_value_error")
})

test_that("the reference page's example runs as written, at a small size, on 2 virtual GPUs", {
  use_virtual_gpus(2)
  on.exit(use_virtual_gpus(0))
  num_samples <- 32
  height <- 71
  width <- 71
  num_classes <- 5
  model <- application_xception(weights = NULL, input_shape = c(height, width, 3), classes = num_classes)
  parallel_model <- multi_gpu_model(model, gpus = 2)
  parallel_model %>% compile(loss = "categorical_crossentropy", optimizer = "rmsprop")
  x <- array(runif(num_samples * height * width * 3), dim = c(num_samples, height, width, 3))
  y <- array(runif(num_samples * num_classes), dim = c(num_samples, num_classes))
  before <- get_weights(model)[[1]]
  history <- parallel_model %>% fit(x, y, epochs = 1, batch_size = 256, verbose = 0)
  expect_true(is.finite(history$metrics$loss))
  expect_false(identical(get_weights(model)[[1]], before))  # the template holds the trained weights
  path <- tempfile(fileext = ".h5")
  model %>% save_model_hdf5(path)
  restored <- load_model_hdf5(path, compile = FALSE)
  expect_equal(predict(restored, x[1:2, , , , drop = FALSE]), predict(model, x[1:2, , , , drop = FALSE]), tolerance = 1e-6)
})

application_fixtures <- function() {
  jsonlite::fromJSON(test_path("..", "fixtures", "keras_applications.json"), simplifyVector = FALSE)
}

test_that("VGG16, VGG19, ResNet50, Inception V3, DenseNet121, MobileNet and MobileNetV2 have tf-keras's layers, in its order, shapes and parameters", {
  fx <- application_fixtures()$applications
  for (app in names(fx)) {
    make <- get(paste0("application_", app))
    expect_equal(count_params(make(weights = NULL)), fx[[app]]$top_total_params, label = app)
    model <- make(weights = NULL, include_top = FALSE, input_shape = unlist(fx[[app]]$small_input_shape))
    theirs <- Filter(function(l) l$class_name != "InputLayer", fx[[app]]$no_top$layers)
    ours <- model$layers
    # "/" cannot be in a layer's name here: DenseNet's "conv1/conv" is "conv1_conv".
    expect_equal(vapply(ours, function(l) l$name, ""), gsub("/", "_", vapply(theirs, function(l) l$name, "")), label = app)
    expect_equal(vapply(ours, function(l) l$class_name, ""), vapply(theirs, function(l) l$class_name, ""), label = app)
    expect_equal(vapply(ours, function(l) l$count_params, 0), vapply(theirs, function(l) l$params, 0), label = app)
    expect_equal(unlist(model$output_shape[-1]), unlist(theirs[[length(theirs)]]$output_shape), label = app)
    expect_equal(count_params(model), fx[[app]]$no_top$total_params, label = app)
  }
})

test_that("an application's weights load from a file, and from the Keras cache as \"imagenet\"", {
  model <- application_vgg16(weights = NULL, include_top = FALSE, input_shape = c(32, 32, 3), pooling = "max")
  path <- withr::local_tempfile(fileext = ".h5")
  save_model_weights_hdf5(model, path)
  x <- array(runif(2 * 32 * 32 * 3, 0, 255), c(2, 32, 32, 3))
  again <- application_vgg16(weights = path, include_top = FALSE, input_shape = c(32, 32, 3), pooling = "max")
  expect_equal(predict(again, x), predict(model, x), tolerance = 1e-6)
  home <- withr::local_tempdir()
  dir.create(file.path(home, "models"))
  file.copy(path, file.path(home, "models", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"))
  withr::local_envvar(KERAS_HOME = home)
  # A stand-in, not Keras's file: its MD5 differs, so the check is off (get_file()'s tests cover it).
  withr::local_options(rustgpu.check_dataset_hashes = FALSE)
  cached <- application_vgg16(include_top = FALSE, input_shape = c(32, 32, 3), pooling = "max")
  expect_equal(predict(cached, x), predict(model, x), tolerance = 1e-6)
})

test_that("application arguments are checked as Keras checks them", {
  expect_error(application_vgg16(weights = "imagenet", classes = 10), class = "rustgpu_value_error", regexp = "must be 1000")
  expect_error(application_resnet50(weights = NULL, input_shape = c(16, 16, 3)), class = "rustgpu_value_error", regexp = "at least 32")
  expect_error(application_inception_v3(weights = "imagenet", input_shape = c(100, 100, 3)), class = "rustgpu_value_error",
               regexp = "include_top = FALSE")
  expect_error(application_vgg19(weights = "no/such/file.h5"), class = "rustgpu_value_error", regexp = "none of them")
  expect_error(application_vgg16(weights = NULL, pooling = "mean", include_top = FALSE), class = "rustgpu_value_error")
  expect_error(application_mobilenet(alpha = 0.3), class = "rustgpu_value_error", regexp = "0.25, 0.5, 0.75 and 1")
  expect_error(application_mobilenet(depth_multiplier = 2), class = "rustgpu_value_error", regexp = "depth_multiplier = 1")
  expect_equal(application_mobilenet(weights = NULL, alpha = 0.5, input_shape = c(128, 128, 3))$name, "mobilenet_0.50_128")
  expect_error(application_mobilenet_v2(alpha = 0.3), class = "rustgpu_value_error", regexp = "0.35, 0.5")
  # Odd sizes pad the strided blocks symmetrically (imagenet_utils.correct_pad()).
  odd <- application_mobilenet_v2(weights = NULL, include_top = FALSE, input_shape = c(33, 33, 3), alpha = 0.35)
  expect_equal(unlist(odd$output_shape), c(2, 2, 1280))
  expect_error(application_densenet(c(1, 2, 3)), class = "rustgpu_value_error", regexp = "4 whole numbers")
  expect_error(application_densenet(c(1, 2, 3, 4)), class = "rustgpu_value_error", regexp = "DenseNet121, 169 and 201")
  expect_equal(count_params(application_densenet169(weights = NULL)), 14307880)
  expect_equal(count_params(application_densenet201(weights = NULL)), 20242984)
  small <- application_densenet(c(1, 1, 1, 1), weights = NULL, include_top = FALSE, input_shape = c(32, 32, 3))
  expect_equal(unlist(small$output_shape), c(1, 1, 68))  # 64 channels, +32 per layer, halved by each transition
  input <- layer_input(shape = c(40, 40, 3))
  model <- application_resnet50(weights = NULL, include_top = FALSE, input_tensor = input, pooling = "avg")
  expect_identical(model$input, input)
  expect_error(application_resnet50(weights = NULL, input_tensor = "x"), class = "rustgpu_value_error", regexp = "input_tensor")
})

test_that("ImageNet preprocessing matches tf-keras's modes; predictions decode with the class index", {
  fx <- application_fixtures()$preprocess
  to_array <- function(v) {
    dims <- integer(0)
    x <- v
    while (is.list(x)) { dims <- c(dims, length(x)); x <- x[[1]] }
    aperm(array(unlist(v), dim = rev(dims)), rev(seq_along(dims)))
  }
  images <- to_array(fx$images)
  expect_equal(imagenet_preprocess_input(images), to_array(fx$caffe), tolerance = 1e-5)
  expect_equal(imagenet_preprocess_input(images, mode = "tf"), to_array(fx$tf), tolerance = 1e-6)
  expect_equal(inception_v3_preprocess_input(images), to_array(fx$tf), tolerance = 1e-6)
  expect_equal(xception_preprocess_input(images), to_array(fx$tf), tolerance = 1e-6)
  expect_equal(densenet_preprocess_input(images), to_array(fx$torch), tolerance = 1e-5)
  expect_equal(mobilenet_preprocess_input(images), to_array(fx$tf), tolerance = 1e-6)
  expect_equal(mobilenet_v2_preprocess_input(images), to_array(fx$tf), tolerance = 1e-6)
  expect_equal(imagenet_preprocess_input(images, mode = "torch"), to_array(fx$torch), tolerance = 1e-5)
  expect_equal(imagenet_preprocess_input(aperm(images, c(1, 4, 2, 3)), data_format = "channels_first"),
               to_array(fx$caffe_channels_first), tolerance = 1e-5)
  expect_error(imagenet_preprocess_input(images, mode = "cafe"), class = "rustgpu_value_error")
  expect_error(imagenet_preprocess_input(1:3), class = "rustgpu_value_error")

  home <- withr::local_tempdir()
  dir.create(file.path(home, "models"))
  index <- stats::setNames(lapply(0:999, function(i) list(sprintf("n%08d", i), sprintf("class %d", i))), 0:999)
  jsonlite::write_json(index, file.path(home, "models", "imagenet_class_index.json"), auto_unbox = TRUE)
  withr::local_envvar(KERAS_HOME = home)
  withr::local_options(rustgpu.check_dataset_hashes = FALSE)
  preds <- matrix(runif(2000), 2)
  preds[1, 8] <- 2
  decoded <- imagenet_decode_predictions(preds, top = 3)
  expect_length(decoded, 2)
  expect_equal(names(decoded[[1]]), c("class_name", "class_description", "score"))
  expect_equal(decoded[[1]]$class_name[[1]], "n00000007")
  expect_equal(decoded[[1]]$class_description[[1]], "class 7")
  expect_equal(decoded[[2]]$score, sort(preds[2, ], decreasing = TRUE)[1:3])
  expect_error(imagenet_decode_predictions(matrix(0, 2, 10)), class = "rustgpu_value_error", regexp = "1000 columns")
})

test_that("without their top, applications take images of any size by default, as Keras's", {
  model <- application_vgg16(weights = NULL, include_top = FALSE)
  expect_equal(model$input_shape, list(NULL, NULL, NULL, 3L))
  expect_equal(model$output_shape, list(NULL, NULL, NULL, 512L))
  expect_equal(dim(predict(model, array(0, c(1, 40, 72, 3)))), c(1L, 1L, 2L, 512L))
  expect_error(application_vgg16(weights = NULL, input_shape = c(NA, NA, 3)), "fixed size", class = "rustgpu_value_error")
})
