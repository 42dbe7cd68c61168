#' Xception model
#'
#' The Xception architecture (Chollet, 2017) as Keras builds it: an entry flow of
#' convolutions and three separable-convolution blocks with 1x1 strided residual
#' connections, a middle flow of eight residual blocks of three separable convolutions, and
#' an exit flow; batch normalization after every convolution. 22,910,480 parameters at
#' 299x299x3 with 1,000 classes, as in Keras.
#'
#' @param include_top Whether to end with global average pooling and the `classes`-way
#'   dense classifier.
#' @param weights `NULL` (random initialization), "imagenet" (Keras's pretrained weights,
#'   downloaded once by [get_file()] into `~/.keras/models`) or the path of a weights file.
#' @param input_tensor A tensor to build the model on: from [layer_input()], or computed from
#'   inputs (which then are the model's inputs, as Keras's).
#' @param input_shape Shape of one image, `c(height, width, 3)`, at least 71x71 (default
#'   `c(299, 299, 3)`; with the top and ImageNet weights, only that).
#' @param pooling Without the top: `NULL` (the 4-d feature map), "avg" or "max" (global
#'   pooling to 2,048 features).
#' @param classes Number of classes (with the top).
#' @param classifier_activation Activation of the classifier.
#' @return A functional model.
#' @examples
#' model <- application_xception(weights = NULL, input_shape = c(71, 71, 3), classes = 5)
#' format(model)
#' @export
application_xception <- function(include_top = TRUE, weights = "imagenet", input_tensor = NULL, input_shape = NULL,
                                 pooling = NULL, classes = 1000, classifier_activation = "softmax") {
  app <- application_setup("xception", include_top, weights, input_tensor, input_shape, pooling, classes,
                           classifier_activation, default_size = 299, min_size = 71)
  conv_bn <- function(x, filters, kernel, strides = 1, padding = "valid", name = NULL) {
    x %>%
      layer_conv_2d(filters, kernel, strides = strides, padding = padding, use_bias = FALSE, name = name) %>%
      layer_batch_normalization(name = if (!is.null(name)) paste0(name, "_bn"))
  }
  sep_bn <- function(x, filters, name) {
    x %>%
      layer_separable_conv_2d(filters, c(3, 3), padding = "same", use_bias = FALSE, name = name) %>%
      layer_batch_normalization(name = paste0(name, "_bn"))
  }
  relu <- function(x, name) layer_activation(x, "relu", name = name)
  # An entry/exit-flow block: separable convolutions, max pooling, plus a strided 1x1 residual.
  down_block <- function(x, block, filters, first_relu = TRUE) {
    residual <- conv_bn(x, filters[2], c(1, 1), strides = 2, padding = "same")
    if (first_relu) x <- relu(x, sprintf("block%d_sepconv1_act", block))
    x <- sep_bn(x, filters[1], sprintf("block%d_sepconv1", block))
    x <- relu(x, sprintf("block%d_sepconv2_act", block))
    x <- sep_bn(x, filters[2], sprintf("block%d_sepconv2", block))
    x <- layer_max_pooling_2d(x, c(3, 3), strides = 2, padding = "same", name = sprintf("block%d_pool", block))
    layer_add(list(x, residual))
  }

  inputs <- app$input
  x <- inputs %>%
    conv_bn(32, c(3, 3), strides = 2, name = "block1_conv1") %>% relu("block1_conv1_act") %>%
    conv_bn(64, c(3, 3), name = "block1_conv2") %>% relu("block1_conv2_act")
  x <- down_block(x, 2, c(128, 128), first_relu = FALSE)
  x <- down_block(x, 3, c(256, 256))
  x <- down_block(x, 4, c(728, 728))
  for (block in 5:12) {
    residual <- x
    for (i in 1:3) {
      x <- relu(x, sprintf("block%d_sepconv%d_act", block, i))
      x <- sep_bn(x, 728, sprintf("block%d_sepconv%d", block, i))
    }
    x <- layer_add(list(x, residual))
  }
  x <- down_block(x, 13, c(728, 1024))
  x <- x %>%
    sep_bn(1536, "block14_sepconv1") %>% relu("block14_sepconv1_act") %>%
    sep_bn(2048, "block14_sepconv2") %>% relu("block14_sepconv2_act")
  if (include_top) {
    x <- x %>%
      layer_global_average_pooling_2d(name = "avg_pool") %>%
      layer_dense(classes, activation = classifier_activation, name = "predictions")
  } else if (identical(pooling, "avg")) {
    x <- layer_global_average_pooling_2d(x)
  } else if (identical(pooling, "max")) {
    x <- layer_global_max_pooling_2d(x)
  }
  application_finish(app, inputs, x, "xception")
}

# --- shared by the applications ------------------------------------------------

# Keras's pretrained files: `<app>_weights_tf_dim_ordering_tf_kernels[_notop].h5` in a folder of
# keras-applications, with their MD5s (with the top, without).
application_file_hashes <- list(
  xception = c("xception", "0a58e3b7378bc2990ea3b43d5981f1f6", "b0042744bf5b25fce3cb969f33bebb97"),
  vgg16 = c("vgg16", "64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc"),
  vgg19 = c("vgg19", "cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6"),
  resnet50 = c("resnet", "2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
  densenet121 = c("densenet", "9d60b8095a5708f2dcce2bca79d332c7", "30ee3e1110167f948a6b9946edeeb738"),
  densenet169 = c("densenet", "d699b8f76981ab1b30698df4c175e90b", "b8c4d4c20dd625c148057b9ff1c1176b"),
  densenet201 = c("densenet", "1ceb130c1ea1b78c3bf6114dbdfd8807", "c13680b51ded0fb44dff2d8f86ac8bb1"),
  inception_v3 = c("inception_v3", "9a0d58056eeedaa3f26cb7ebd46da564", "bcbd6486424b2319ff4ef7d526e38f63")
)

application_files <- function(app) {
  known <- application_file_hashes[[app]]
  base <- paste0(app, "_weights_tf_dim_ordering_tf_kernels")
  list(top = paste0(base, ".h5"), top_hash = known[[2]], notop = paste0(base, "_notop.h5"), notop_hash = known[[3]],
       url = sprintf("https://storage.googleapis.com/tensorflow/keras-applications/%s/", known[[1]]))
}

# The checks Keras's applications share (imagenet_utils.obtain_input_shape and the weights
# rules) and the model's input.
application_setup <- function(app, include_top, weights, input_tensor, input_shape, pooling, classes,
                              classifier_activation, default_size, min_size, call = rlang::caller_env()) {
  check_bool(include_top, "include_top", call = call)
  if (!is.null(weights)) {
    check_string(weights, "weights", call = call)
    if (weights != "imagenet" && !file.exists(weights)) {
      value_error(sprintf("`weights` must be NULL (random initialization), \"imagenet\" or the path of a weights file; \"%s\" is none of them.",
                          weights), call = call)
    }
  }
  check_count(classes, "classes", min = 1, call = call)
  if (identical(weights, "imagenet") && include_top && classes != 1000) {
    value_error(sprintf("`classes` must be 1000 with `weights = \"imagenet\"` and `include_top = TRUE` (not %d): the pretrained classifier has 1000 classes.",
                        as.integer(classes)), call = call)
  }
  if (!is.null(pooling) && !(is.character(pooling) && length(pooling) == 1 && pooling %in% c("avg", "max"))) {
    value_error(sprintf("`pooling` must be NULL, \"avg\" or \"max\", not %s.", describe(pooling)), call = call)
  }
  check_string(classifier_activation, "classifier_activation", call = call)
  if (!is.null(input_tensor)) {
    if (!is_tensor(input_tensor)) {
      value_error("`input_tensor` must be a tensor of the functional API (from layer_input(), k_placeholder(), or layers on them).", call = call)
    }
    if (is.null(input_shape)) input_shape <- shape_with_na(functional_shape(input_tensor))
  }
  fixed <- identical(weights, "imagenet") && include_top
  # As Keras: without a top, images of any size (height and width vary with each batch).
  if (is.null(input_shape)) input_shape <- if (include_top) c(default_size, default_size, 3L) else c(NA, NA, 3L)
  input_shape <- check_shape(input_shape, "input_shape", call = call)
  if (length(input_shape) != 3 || input_shape[3] != 3 || any(input_shape[1:2] < min_size & input_shape[1:2] != 0)) {
    value_error(sprintf("`input_shape` must be c(height, width, 3) with height and width at least %d (or NA), not c(%s).",
                        min_size, shape_text(input_shape)), call = call)
  }
  if (include_top && any(input_shape[1:2] == 0)) {
    value_error("With `include_top = TRUE`, height and width must be given: the classifier needs a fixed size.", call = call)
  }
  if (fixed && any(input_shape[1:2] != default_size)) {
    value_error(sprintf("With `include_top = TRUE` and ImageNet weights, `input_shape` must be c(%d, %d, 3), not c(%s): use `include_top = FALSE` for other sizes.",
                        default_size, default_size, shape_text(input_shape)), call = call)
  }
  if (!is.null(input_tensor) && !identical(as.integer(functional_shape(input_tensor)), as.integer(input_shape))) {
    value_error(sprintf("`input_shape` c(%s) differs from `input_tensor`'s shape c(%s).", shape_text(input_shape),
                        shape_text(functional_shape(input_tensor))), call = call)
  }
  input <- if (!is.null(input_tensor)) input_tensor else layer_input(shape = shape_with_na(input_shape))
  list(app = app, include_top = include_top, weights = weights, pooling = pooling, classes = classes,
       classifier_activation = classifier_activation, input = input, call = call)
}

# The model, with its weights loaded as Keras loads them (in Keras's layer order).
application_finish <- function(setup, inputs, outputs, name) {
  # As Keras's get_source_inputs(): an `input_tensor` computed from inputs makes them the model's.
  model <- keras_model(source_inputs(inputs), outputs, name = name)
  weights <- setup$weights
  if (is.null(weights)) return(model)
  if (identical(weights, "imagenet")) {
    files <- if (!is.null(setup$files)) setup$files else application_files(setup$app)
    which <- if (setup$include_top) "top" else "notop"
    # Keras checks no hash for some files (MobileNet's): neither does this.
    hash <- files[[paste0(which, "_hash")]]
    weights <- get_file(files[[which]], paste0(files$url, files[[which]]), cache_subdir = "models",
                        file_hash = if (check_hashes()) hash)
  }
  load_model_weights_hdf5(model, weights)
  model
}

# Keras's top: the classifier, or global pooling of the features.
application_top <- function(x, setup, pool_names = NULL) {
  if (setup$include_top) {
    return(x %>%
      layer_global_average_pooling_2d(name = "avg_pool") %>%
      layer_dense(setup$classes, activation = setup$classifier_activation, name = "predictions"))
  }
  if (identical(setup$pooling, "avg")) return(layer_global_average_pooling_2d(x, name = pool_names[1]))
  if (identical(setup$pooling, "max")) return(layer_global_max_pooling_2d(x, name = pool_names[2]))
  x
}

#' VGG16 and VGG19 models
#'
#' The VGG networks (Simonyan and Zisserman, 2014) as Keras builds them: blocks of 3x3
#' convolutions with ReLU, each ending in 2x2 max pooling, then (with the top) two dense
#' layers of 4,096 units and the classifier. Keras's layer names (`block1_conv1`, ...,
#' `fc1`, `fc2`, `predictions`), so that Keras's weight files load. 138,357,544 (VGG16) and
#' 143,667,240 (VGG19) parameters with the top, as in Keras.
#'
#' @inheritParams application_xception
#' @param input_shape Shape of one image, `c(height, width, 3)`, at least 32x32 (default
#'   `c(224, 224, 3)`; with the top and ImageNet weights, only that).
#' @return A functional model.
#' @seealso [imagenet_preprocess_input()] prepares images for the ImageNet weights.
#' @examples
#' model <- application_vgg16(weights = NULL, include_top = FALSE, input_shape = c(32, 32, 3))
#' get_layer(model, "block5_conv3")
#' @export
application_vgg16 <- function(include_top = TRUE, weights = "imagenet", input_tensor = NULL, input_shape = NULL,
                              pooling = NULL, classes = 1000, classifier_activation = "softmax") {
  vgg("vgg16", c(2, 2, 3, 3, 3), include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation)
}

#' @rdname application_vgg16
#' @export
application_vgg19 <- function(include_top = TRUE, weights = "imagenet", input_tensor = NULL, input_shape = NULL,
                              pooling = NULL, classes = 1000, classifier_activation = "softmax") {
  vgg("vgg19", c(2, 2, 4, 4, 4), include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation)
}

vgg <- function(app, convs, include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation,
                call = rlang::caller_env()) {
  setup <- application_setup(app, include_top, weights, input_tensor, input_shape, pooling, classes,
                             classifier_activation, default_size = 224, min_size = 32, call = call)
  x <- setup$input
  filters <- c(64, 128, 256, 512, 512)
  for (block in seq_along(convs)) {
    for (i in seq_len(convs[[block]])) {
      x <- layer_conv_2d(x, filters[[block]], c(3, 3), activation = "relu", padding = "same",
                         name = sprintf("block%d_conv%d", block, i))
    }
    x <- layer_max_pooling_2d(x, c(2, 2), strides = c(2, 2), name = sprintf("block%d_pool", block))
  }
  if (include_top) {
    x <- x %>%
      layer_flatten(name = "flatten") %>%
      layer_dense(4096, activation = "relu", name = "fc1") %>%
      layer_dense(4096, activation = "relu", name = "fc2") %>%
      layer_dense(classes, activation = classifier_activation, name = "predictions")
  } else {
    x <- application_top(x, setup)
  }
  application_finish(setup, setup$input, x, app)
}

#' ResNet50 model
#'
#' ResNet50 (He et al., 2015) as tf.keras builds it: a 7x7 strided convolution and max
#' pooling, then four stages of bottleneck residual blocks (3, 4, 6 and 3 blocks of 1x1, 3x3
#' and 1x1 convolutions with batch normalization; the first block of each stage has a
#' projection shortcut), with tf.keras's layer names (`conv2_block1_1_conv`, ...), so that its
#' weight files load. 25,636,712 parameters with the top, as in Keras.
#'
#' @inheritParams application_vgg16
#' @return A functional model.
#' @examples
#' model <- application_resnet50(weights = NULL, include_top = FALSE, input_shape = c(32, 32, 3))
#' count_params(model)
#' @export
application_resnet50 <- function(include_top = TRUE, weights = "imagenet", input_tensor = NULL, input_shape = NULL,
                                 pooling = NULL, classes = 1000, classifier_activation = "softmax") {
  setup <- application_setup("resnet50", include_top, weights, input_tensor, input_shape, pooling, classes,
                             classifier_activation, default_size = 224, min_size = 32)
  bn <- function(x, name) layer_batch_normalization(x, epsilon = 1.001e-5, name = name)
  block <- function(x, filters, stride, shortcut_conv, name) {
    shortcut <- if (shortcut_conv) {
      x %>% layer_conv_2d(4 * filters, 1, strides = stride, name = paste0(name, "_0_conv")) %>% bn(paste0(name, "_0_bn"))
    } else x
    x <- x %>%
      layer_conv_2d(filters, 1, strides = stride, name = paste0(name, "_1_conv")) %>% bn(paste0(name, "_1_bn")) %>%
      layer_activation("relu", name = paste0(name, "_1_relu")) %>%
      layer_conv_2d(filters, 3, padding = "same", name = paste0(name, "_2_conv")) %>% bn(paste0(name, "_2_bn")) %>%
      layer_activation("relu", name = paste0(name, "_2_relu")) %>%
      layer_conv_2d(4 * filters, 1, name = paste0(name, "_3_conv")) %>% bn(paste0(name, "_3_bn"))
    layer_add(list(shortcut, x), name = paste0(name, "_add")) %>% layer_activation("relu", name = paste0(name, "_out"))
  }
  stack <- function(x, filters, blocks, stride, name) {
    x <- block(x, filters, stride, TRUE, paste0(name, "_block1"))
    for (i in seq_len(blocks - 1) + 1) x <- block(x, filters, 1, FALSE, sprintf("%s_block%d", name, i))
    x
  }
  x <- setup$input %>%
    layer_zero_padding_2d(list(c(3, 3), c(3, 3)), name = "conv1_pad") %>%
    layer_conv_2d(64, 7, strides = 2, name = "conv1_conv") %>% bn("conv1_bn") %>%
    layer_activation("relu", name = "conv1_relu") %>%
    layer_zero_padding_2d(list(c(1, 1), c(1, 1)), name = "pool1_pad") %>%
    layer_max_pooling_2d(3, strides = 2, name = "pool1_pool") %>%
    stack(64, 3, 1, "conv2") %>% stack(128, 4, 2, "conv3") %>% stack(256, 6, 2, "conv4") %>% stack(512, 3, 2, "conv5")
  x <- application_top(x, setup, pool_names = c("avg_pool", "max_pool"))
  application_finish(setup, setup$input, x, "resnet50")
}

#' Inception V3 model
#'
#' Inception V3 (Szegedy et al., 2015) as tf.keras builds it: a stem of convolutions, then
#' the "mixed0" to "mixed10" blocks of parallel 1x1, factorized 7x7 and 3x3 convolution and
#' pooling branches joined by concatenation; batch normalization (without scale) and ReLU
#' after every convolution. Layers are named as tf.keras names them in a fresh session
#' (`conv2d`, `conv2d_1`, ..., `mixed0`, ...) and ordered as Keras orders them, so that its
#' weight files load. 23,851,784 parameters with the top, as in Keras.
#'
#' @inheritParams application_vgg16
#' @param input_shape Shape of one image, `c(height, width, 3)`, at least 75x75 (default
#'   `c(299, 299, 3)`; with the top and ImageNet weights, only that).
#' @return A functional model.
#' @seealso [inception_v3_preprocess_input()] prepares images for the ImageNet weights.
#' @examples
#' model <- application_inception_v3(weights = NULL, include_top = FALSE, input_shape = c(75, 75, 3))
#' get_layer(model, "mixed10")
#' @export
application_inception_v3 <- function(include_top = TRUE, weights = "imagenet", input_tensor = NULL, input_shape = NULL,
                                     pooling = NULL, classes = 1000, classifier_activation = "softmax") {
  setup <- application_setup("inception_v3", include_top, weights, input_tensor, input_shape, pooling, classes,
                             classifier_activation, default_size = 299, min_size = 75)
  # tf.keras leaves these layers unnamed: Keras's names in a fresh session, counted per type.
  counts <- c(conv2d = 0L, batch_normalization = 0L, activation = 0L, average_pooling2d = 0L, max_pooling2d = 0L,
              concatenate = 0L)
  auto <- function(type) {
    n <- counts[[type]]
    counts[[type]] <<- n + 1L
    if (n == 0) type else paste0(type, "_", n)
  }
  conv_bn <- function(x, filters, rows, cols, strides = 1, padding = "same") {
    x %>%
      layer_conv_2d(filters, c(rows, cols), strides = strides, padding = padding, use_bias = FALSE, name = auto("conv2d")) %>%
      layer_batch_normalization(scale = FALSE, name = auto("batch_normalization")) %>%
      layer_activation("relu", name = auto("activation"))
  }
  avg_pool <- function(x) layer_average_pooling_2d(x, c(3, 3), strides = c(1, 1), padding = "same", name = auto("average_pooling2d"))
  max_pool <- function(x) layer_max_pooling_2d(x, c(3, 3), strides = c(2, 2), name = auto("max_pooling2d"))
  join <- function(branches, name = auto("concatenate")) layer_concatenate(branches, axis = -1, name = name)

  x <- setup$input %>%
    conv_bn(32, 3, 3, strides = 2, padding = "valid") %>% conv_bn(32, 3, 3, padding = "valid") %>% conv_bn(64, 3, 3) %>%
    max_pool() %>% conv_bn(80, 1, 1, padding = "valid") %>% conv_bn(192, 3, 3, padding = "valid") %>% max_pool()
  # mixed0-2: 35x35 blocks.
  for (i in 0:2) {
    b1 <- conv_bn(x, 64, 1, 1)
    b5 <- x %>% conv_bn(48, 1, 1) %>% conv_bn(64, 5, 5)
    b3 <- x %>% conv_bn(64, 1, 1) %>% conv_bn(96, 3, 3) %>% conv_bn(96, 3, 3)
    bp <- x %>% avg_pool() %>% conv_bn(if (i == 0) 32 else 64, 1, 1)
    x <- join(list(b1, b5, b3, bp), paste0("mixed", i))
  }
  # mixed3: down to 17x17.
  b3 <- conv_bn(x, 384, 3, 3, strides = 2, padding = "valid")
  bd <- x %>% conv_bn(64, 1, 1) %>% conv_bn(96, 3, 3) %>% conv_bn(96, 3, 3, strides = 2, padding = "valid")
  x <- join(list(b3, bd, max_pool(x)), "mixed3")
  # mixed4-7: factorized 7x7 blocks.
  for (i in 4:7) {
    width <- c(128, 160, 160, 192)[[i - 3]]
    b1 <- conv_bn(x, 192, 1, 1)
    b7 <- x %>% conv_bn(width, 1, 1) %>% conv_bn(width, 1, 7) %>% conv_bn(192, 7, 1)
    bd <- x %>% conv_bn(width, 1, 1) %>% conv_bn(width, 7, 1) %>% conv_bn(width, 1, 7) %>% conv_bn(width, 7, 1) %>%
      conv_bn(192, 1, 7)
    bp <- x %>% avg_pool() %>% conv_bn(192, 1, 1)
    x <- join(list(b1, b7, bd, bp), paste0("mixed", i))
  }
  # mixed8: down to 8x8.
  b3 <- x %>% conv_bn(192, 1, 1) %>% conv_bn(320, 3, 3, strides = 2, padding = "valid")
  b7 <- x %>% conv_bn(192, 1, 1) %>% conv_bn(192, 1, 7) %>% conv_bn(192, 7, 1) %>%
    conv_bn(192, 3, 3, strides = 2, padding = "valid")
  x <- join(list(b3, b7, max_pool(x)), "mixed8")
  # mixed9-10: expanded 8x8 blocks.
  for (i in 0:1) {
    b1 <- conv_bn(x, 320, 1, 1)
    b3 <- conv_bn(x, 384, 1, 1)
    b3 <- join(list(conv_bn(b3, 384, 1, 3), conv_bn(b3, 384, 3, 1)), paste0("mixed9_", i))
    bd <- x %>% conv_bn(448, 1, 1) %>% conv_bn(384, 3, 3)
    bd <- join(list(conv_bn(bd, 384, 1, 3), conv_bn(bd, 384, 3, 1)))
    bp <- x %>% avg_pool() %>% conv_bn(192, 1, 1)
    x <- join(list(b1, b3, bd, bp), paste0("mixed", 9 + i))
  }
  x <- application_top(x, setup)
  application_finish(setup, setup$input, x, "inception_v3")
}

#' DenseNet models
#'
#' DenseNet (Huang et al., 2016) as tf.keras builds it: a strided 7x7 convolution and max
#' pooling, then four dense blocks (each layer's batch normalization, ReLU, 1x1 and 3x3
#' convolutions concatenated to its input; 32 new channels per layer) joined by transition
#' blocks that halve the channels and the size. `blocks` gives the layers per dense block:
#' DenseNet121 is `c(6, 12, 24, 16)` (8,062,504 parameters with the top, as in Keras),
#' DenseNet169 `c(6, 12, 32, 32)`, DenseNet201 `c(6, 12, 48, 32)`. Layers are named and
#' ordered as in tf.keras, except that the stem's "conv1/conv", "conv1/bn" and "conv1/relu"
#' are "conv1_conv", "conv1_bn" and "conv1_relu" ("/" cannot be in a layer's name here);
#' Keras's weight files load all the same (in Keras's order, as Keras loads them).
#'
#' @inheritParams application_vgg16
#' @param blocks Layers in each of the four dense blocks.
#' @return A functional model.
#' @seealso [densenet_preprocess_input()] prepares images for the ImageNet weights.
#' @examples
#' model <- application_densenet121(weights = NULL, include_top = FALSE, input_shape = c(32, 32, 3))
#' count_params(model)
#' @export
application_densenet <- function(blocks, include_top = TRUE, weights = "imagenet", input_tensor = NULL, input_shape = NULL,
                                 pooling = NULL, classes = 1000) {
  if (!is.numeric(blocks) || length(blocks) != 4 || anyNA(blocks) || any(blocks < 1) || any(blocks != round(blocks))) {
    value_error(sprintf("`blocks` must be 4 whole numbers >= 1 (layers per dense block), not %s.", describe(blocks)))
  }
  known <- list(densenet121 = c(6, 12, 24, 16), densenet169 = c(6, 12, 32, 32), densenet201 = c(6, 12, 48, 32))
  app <- names(known)[vapply(known, identical, logical(1), as.numeric(blocks))]
  if (!length(app)) {
    if (identical(weights, "imagenet")) value_error("ImageNet weights exist only for DenseNet121, 169 and 201 (`blocks` c(6, 12, 24, 16), c(6, 12, 32, 32), c(6, 12, 48, 32)).")
    app <- "densenet"
  }
  setup <- application_setup(app, include_top, weights, input_tensor, input_shape, pooling, classes, "softmax",
                             default_size = 224, min_size = 32)
  pads <- 0L
  zero_pad <- function(x, p) {
    force(x)  # layers before this one take their names first
    name <- if (pads == 0) "zero_padding2d" else paste0("zero_padding2d_", pads)
    pads <<- pads + 1L
    layer_zero_padding_2d(x, list(c(p, p), c(p, p)), name = name)
  }
  bn <- function(x, name) layer_batch_normalization(x, epsilon = 1.001e-5, name = name)
  relu <- function(x, name) layer_activation(x, "relu", name = name)
  dense_block <- function(x, layers, name) {
    for (i in seq_len(layers)) {
      block <- sprintf("%s_block%d", name, i)
      branch <- x %>% bn(paste0(block, "_0_bn")) %>% relu(paste0(block, "_0_relu")) %>%
        layer_conv_2d(128, 1, use_bias = FALSE, name = paste0(block, "_1_conv")) %>%
        bn(paste0(block, "_1_bn")) %>% relu(paste0(block, "_1_relu")) %>%
        layer_conv_2d(32, 3, padding = "same", use_bias = FALSE, name = paste0(block, "_2_conv"))
      x <- layer_concatenate(list(x, branch), axis = -1, name = paste0(block, "_concat"))
    }
    x
  }
  transition <- function(x, name) {
    channels <- utils::tail(functional_shape(x), 1)
    x %>% bn(paste0(name, "_bn")) %>% relu(paste0(name, "_relu")) %>%
      layer_conv_2d(as.integer(channels * 0.5), 1, use_bias = FALSE, name = paste0(name, "_conv")) %>%
      layer_average_pooling_2d(2, strides = 2, name = paste0(name, "_pool"))
  }
  x <- setup$input %>% zero_pad(3) %>%
    layer_conv_2d(64, 7, strides = 2, use_bias = FALSE, name = "conv1_conv") %>% bn("conv1_bn") %>% relu("conv1_relu") %>%
    zero_pad(1) %>% layer_max_pooling_2d(3, strides = 2, name = "pool1") %>%
    dense_block(blocks[[1]], "conv2") %>% transition("pool2") %>%
    dense_block(blocks[[2]], "conv3") %>% transition("pool3") %>%
    dense_block(blocks[[3]], "conv4") %>% transition("pool4") %>%
    dense_block(blocks[[4]], "conv5") %>% bn("bn") %>% relu("relu")
  x <- application_top(x, setup, pool_names = c("avg_pool", "max_pool"))
  application_finish(setup, setup$input, x, app)
}

#' @rdname application_densenet
#' @export
application_densenet121 <- function(include_top = TRUE, weights = "imagenet", input_tensor = NULL, input_shape = NULL,
                                    pooling = NULL, classes = 1000) {
  application_densenet(c(6, 12, 24, 16), include_top, weights, input_tensor, input_shape, pooling, classes)
}

#' @rdname application_densenet
#' @export
application_densenet169 <- function(include_top = TRUE, weights = "imagenet", input_tensor = NULL, input_shape = NULL,
                                    pooling = NULL, classes = 1000) {
  application_densenet(c(6, 12, 32, 32), include_top, weights, input_tensor, input_shape, pooling, classes)
}

#' @rdname application_densenet
#' @export
application_densenet201 <- function(include_top = TRUE, weights = "imagenet", input_tensor = NULL, input_shape = NULL,
                                    pooling = NULL, classes = 1000) {
  application_densenet(c(6, 12, 48, 32), include_top, weights, input_tensor, input_shape, pooling, classes)
}

#' MobileNet model
#'
#' MobileNet (Howard et al., 2017) as tf.keras builds it: a strided 3x3 convolution, then 13
#' blocks of a 3x3 depthwise convolution and a 1x1 pointwise convolution, each followed by
#' batch normalization and ReLU6 (strided blocks pad one row and column first). `alpha`
#' scales the filters of every layer, `depth_multiplier` the depthwise convolutions'
#' channels. With the top: global average pooling, dropout and a 1x1 convolution to the
#' classes (4,253,864 parameters at `alpha = 1`, as in Keras). Layer names and order are
#' tf.keras's, so Keras's weight files load; ImageNet weights exist for `alpha` 0.25, 0.5, 0.75
#' and 1 and square inputs of 128, 160, 192 or 224 (other sizes take the 224 weights, as Keras).
#'
#' @inheritParams application_vgg16
#' @param alpha Width multiplier of the filters.
#' @param depth_multiplier Depth multiplier of the depthwise convolutions.
#' @param dropout Dropout rate before the classifier.
#' @return A functional model.
#' @seealso [mobilenet_preprocess_input()] prepares images for the ImageNet weights.
#' @examples
#' model <- application_mobilenet(weights = NULL, include_top = FALSE, input_shape = c(32, 32, 3), alpha = 0.25)
#' count_params(model)
#' @export
application_mobilenet <- function(input_shape = NULL, alpha = 1.0, depth_multiplier = 1, dropout = 0.001, include_top = TRUE,
                                  weights = "imagenet", input_tensor = NULL, pooling = NULL, classes = 1000,
                                  classifier_activation = "softmax") {
  check_number(alpha, "alpha", min = 0, min_inclusive = FALSE)
  check_count(depth_multiplier, "depth_multiplier")
  check_number(dropout, "dropout", min = 0, max = 1, max_inclusive = FALSE)
  shape <- if (!is.null(input_shape)) input_shape else if (!is.null(input_tensor) && is_tensor(input_tensor)) input_tensor$shape
  rows <- if (length(shape) >= 2 && isTRUE(shape[[1]] == shape[[2]]) && isTRUE(shape[[1]] %in% c(128, 160, 192, 224))) as.integer(shape[[1]]) else 224L
  if (identical(weights, "imagenet")) {
    if (depth_multiplier != 1) value_error("ImageNet weights need `depth_multiplier = 1`.")
    if (!alpha %in% c(0.25, 0.5, 0.75, 1)) value_error(sprintf("ImageNet weights exist for `alpha` 0.25, 0.5, 0.75 and 1, not %s.", format(alpha)))
  }
  setup <- application_setup("mobilenet", include_top, weights, input_tensor, input_shape, pooling, classes,
                             classifier_activation, default_size = rows, min_size = 32)
  alpha_texts <- c("0.25" = "2_5", "0.5" = "5_0", "0.75" = "7_5", "1" = "1_0")
  alpha_text <- if (format(alpha) %in% names(alpha_texts)) alpha_texts[[format(alpha)]] else ""
  setup$files <- list(top = sprintf("mobilenet_%s_%d_tf.h5", alpha_text, rows), notop = sprintf("mobilenet_%s_%d_tf_no_top.h5", alpha_text, rows),
                      url = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/")
  relu6 <- function(x, name) layer_activation_relu(x, max_value = 6, name = name)
  block <- function(x, filters, id, strides = 1) {
    if (strides != 1) x <- layer_zero_padding_2d(x, list(c(0, 1), c(0, 1)), name = sprintf("conv_pad_%d", id))
    x %>%
      layer_depthwise_conv_2d(c(3, 3), strides = strides, padding = if (strides == 1) "same" else "valid",
                              depth_multiplier = depth_multiplier, use_bias = FALSE, name = sprintf("conv_dw_%d", id)) %>%
      layer_batch_normalization(name = sprintf("conv_dw_%d_bn", id)) %>% relu6(sprintf("conv_dw_%d_relu", id)) %>%
      layer_conv_2d(as.integer(filters * alpha), c(1, 1), padding = "same", use_bias = FALSE, name = sprintf("conv_pw_%d", id)) %>%
      layer_batch_normalization(name = sprintf("conv_pw_%d_bn", id)) %>% relu6(sprintf("conv_pw_%d_relu", id))
  }
  x <- setup$input %>%
    layer_conv_2d(as.integer(32 * alpha), c(3, 3), strides = 2, padding = "same", use_bias = FALSE, name = "conv1") %>%
    layer_batch_normalization(name = "conv1_bn") %>% relu6("conv1_relu")
  filters <- c(64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
  for (id in seq_along(filters)) x <- block(x, filters[[id]], id, strides = if (id %in% c(2, 4, 6, 12)) 2 else 1)
  if (include_top) {
    # Keras's GlobalAveragePooling2D(keepdims = TRUE) is the pooling and a reshape here.
    channels <- as.integer(1024 * alpha)
    x <- x %>%
      layer_global_average_pooling_2d() %>%
      layer_reshape(c(1, 1, channels)) %>%
      layer_dropout(dropout, name = "dropout") %>%
      layer_conv_2d(classes, c(1, 1), padding = "same", name = "conv_preds") %>%
      layer_reshape(classes, name = "reshape_2") %>%
      layer_activation(classifier_activation, name = "predictions")
  } else {
    x <- application_top(x, setup)
  }
  application_finish(setup, setup$input, x, sprintf("mobilenet_%.2f_%d", alpha, rows))
}

#' MobileNet V2 model
#'
#' MobileNetV2 (Sandler et al., 2018) as tf.keras builds it: a strided 3x3 convolution, then
#' 17 inverted residual blocks (a 1x1 expansion, a 3x3 depthwise convolution and a linear 1x1
#' projection, with batch normalization and ReLU6; a residual connection where the shape
#' allows), a 1x1 convolution to 1,280 channels, and (with the top) global average pooling and
#' the classifier (3,538,984 parameters at `alpha = 1`, as in Keras). Layer names and order
#' are tf.keras's, so Keras's weight files load; ImageNet weights exist for `alpha` 0.35, 0.5,
#' 0.75, 1, 1.3 and 1.4 and square inputs of 96, 128, 160, 192 or 224.
#'
#' @inheritParams application_mobilenet
#' @return A functional model.
#' @examples
#' model <- application_mobilenet_v2(weights = NULL, include_top = FALSE, input_shape = c(32, 32, 3), alpha = 0.35)
#' count_params(model)
#' @export
application_mobilenet_v2 <- function(input_shape = NULL, alpha = 1.0, include_top = TRUE, weights = "imagenet",
                                     input_tensor = NULL, pooling = NULL, classes = 1000, classifier_activation = "softmax") {
  check_number(alpha, "alpha", min = 0, min_inclusive = FALSE)
  shape <- if (!is.null(input_shape)) input_shape else if (!is.null(input_tensor) && is_tensor(input_tensor)) input_tensor$shape
  rows <- if (length(shape) >= 2 && isTRUE(shape[[1]] == shape[[2]]) && isTRUE(shape[[1]] %in% c(96, 128, 160, 192, 224))) as.integer(shape[[1]]) else 224L
  if (identical(weights, "imagenet") && !alpha %in% c(0.35, 0.5, 0.75, 1, 1.3, 1.4)) {
    value_error(sprintf("ImageNet weights exist for `alpha` 0.35, 0.5, 0.75, 1, 1.3 and 1.4, not %s.", format(alpha)))
  }
  setup <- application_setup("mobilenet_v2", include_top, weights, input_tensor, input_shape, pooling, classes,
                             classifier_activation, default_size = rows, min_size = 32)
  # Python's str(float(alpha)): "1.0", "0.35".
  alpha_text <- if (alpha == round(alpha)) sprintf("%.1f", alpha) else as.character(alpha)
  name <- sprintf("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_%s_%d", alpha_text, rows)
  setup$files <- list(top = paste0(name, ".h5"), notop = paste0(name, "_no_top.h5"),
                      url = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/")
  divisible <- function(v, divisor = 8) {
    out <- max(divisor, (as.integer(v + divisor / 2) %/% divisor) * divisor)
    if (out < 0.9 * v) out + divisor else out
  }
  bn <- function(x, name) layer_batch_normalization(x, epsilon = 1e-3, momentum = 0.999, name = name)
  relu6 <- function(x, name) layer_activation_relu(x, max_value = 6, name = name)
  block <- function(inputs, expansion, stride, filters, id) {
    in_channels <- utils::tail(functional_shape(inputs), 1)
    out_channels <- divisible(as.integer(filters * alpha))
    x <- inputs
    prefix <- if (id == 0) "expanded_conv_" else sprintf("block_%d_", id)
    if (id != 0) {
      x <- x %>% layer_conv_2d(expansion * in_channels, 1, padding = "same", use_bias = FALSE, name = paste0(prefix, "expand")) %>%
        bn(paste0(prefix, "expand_BN")) %>% relu6(paste0(prefix, "expand_relu"))
    }
    if (stride == 2) {
      # imagenet_utils.correct_pad(): one less before than after on even sizes.
      size <- functional_shape(x)[1:2]
      adjust <- 1 - size %% 2
      x <- layer_zero_padding_2d(x, list(c(1 - adjust[[1]], 1), c(1 - adjust[[2]], 1)), name = paste0(prefix, "pad"))
    }
    x <- x %>%
      layer_depthwise_conv_2d(3, strides = stride, use_bias = FALSE, padding = if (stride == 1) "same" else "valid",
                              name = paste0(prefix, "depthwise")) %>%
      bn(paste0(prefix, "depthwise_BN")) %>% relu6(paste0(prefix, "depthwise_relu")) %>%
      layer_conv_2d(out_channels, 1, padding = "same", use_bias = FALSE, name = paste0(prefix, "project")) %>%
      bn(paste0(prefix, "project_BN"))
    if (in_channels == out_channels && stride == 1) x <- layer_add(list(inputs, x), name = paste0(prefix, "add"))
    x
  }
  x <- setup$input %>%
    layer_conv_2d(divisible(32 * alpha), 3, strides = 2, padding = "same", use_bias = FALSE, name = "Conv1") %>%
    bn("bn_Conv1") %>% relu6("Conv1_relu")
  plan <- rbind(c(16, 1, 1), c(24, 2, 6), c(24, 1, 6), c(32, 2, 6), c(32, 1, 6), c(32, 1, 6), c(64, 2, 6), c(64, 1, 6),
                c(64, 1, 6), c(64, 1, 6), c(96, 1, 6), c(96, 1, 6), c(96, 1, 6), c(160, 2, 6), c(160, 1, 6), c(160, 1, 6),
                c(320, 1, 6))
  for (id in seq_len(nrow(plan)) - 1) x <- block(x, plan[id + 1, 3], plan[id + 1, 2], plan[id + 1, 1], id)
  x <- x %>%
    layer_conv_2d(if (alpha > 1) divisible(1280 * alpha) else 1280, 1, use_bias = FALSE, name = "Conv_1") %>%
    bn("Conv_1_bn") %>% relu6("out_relu")
  if (include_top) {
    x <- x %>% layer_global_average_pooling_2d() %>% layer_dense(classes, activation = classifier_activation, name = "predictions")
  } else {
    x <- application_top(x, setup)
  }
  application_finish(setup, setup$input, x, sprintf("mobilenetv2_%.2f_%d", alpha, rows))
}

#' Prepare images for, and read the predictions of, the ImageNet models
#'
#' `imagenet_preprocess_input()` scales a batch of RGB images (values 0 to 255) as Keras's
#' ImageNet weights expect: mode "caffe" (VGG16, VGG19, ResNet50) reverses the channels to
#' BGR and subtracts the ImageNet mean per channel; "tf" (Inception V3, Xception) scales to
#' \[-1, 1\]; "torch" scales to \[0, 1\] and standardizes per channel.
#' `inception_v3_preprocess_input()` and `xception_preprocess_input()` are mode "tf",
#' `mobilenet_preprocess_input()` and `mobilenet_v2_preprocess_input()` too;
#' `densenet_preprocess_input()` mode "torch". `mobilenet_decode_predictions()` and
#' `mobilenet_v2_decode_predictions()` are `imagenet_decode_predictions()`.
#' `imagenet_decode_predictions()` gives the `top` classes of each row of a model's 1,000
#' ImageNet probabilities, with Keras's class index (downloaded once by [get_file()]).
#'
#' @param x An array of images: `c(samples, height, width, 3)` (or the channels second, with
#'   `data_format = "channels_first"`).
#' @param data_format "channels_last" or "channels_first"; `NULL`: [k_image_data_format()].
#' @param mode "caffe", "tf" or "torch".
#' @param preds A matrix of predictions, one row per image and 1,000 columns.
#' @param top How many classes per image.
#' @return The preprocessed array; for `imagenet_decode_predictions()`, a list with a data
#'   frame per image (`class_name`, `class_description`, `score`), best first.
#' @examples
#' images <- array(runif(2 * 4 * 4 * 3, 0, 255), dim = c(2, 4, 4, 3))
#' range(inception_v3_preprocess_input(images))
#' dim(imagenet_preprocess_input(images))
#' @export
imagenet_preprocess_input <- function(x, data_format = NULL, mode = "caffe") {
  if (!is.numeric(x) || length(dim(x)) < 3) value_error(sprintf("`x` must be a numeric array of images, not %s.", describe(x)))
  check_choice(mode, "mode", c("caffe", "tf", "torch"))
  if (is.null(data_format)) data_format <- k_image_data_format()
  check_choice(data_format, "data_format", c("channels_last", "channels_first"))
  if (mode == "tf") return(x / 127.5 - 1)
  axis <- if (data_format == "channels_last") length(dim(x)) else 2L
  if (dim(x)[[axis]] != 3) value_error(sprintf("`x` must have 3 channels (RGB) on axis %d, not %d.", axis, dim(x)[[axis]]))
  if (mode == "torch") return(sweep(sweep(x / 255, axis, c(0.485, 0.456, 0.406)), axis, c(0.229, 0.224, 0.225), "/"))
  # caffe: BGR, minus the ImageNet mean of each (B, G, R) channel.
  index <- rep(list(TRUE), length(dim(x)))
  index[[axis]] <- 3:1
  sweep(do.call(`[`, c(list(x), index, list(drop = FALSE))), axis, c(103.939, 116.779, 123.68))
}

#' @rdname imagenet_preprocess_input
#' @export
inception_v3_preprocess_input <- function(x) imagenet_preprocess_input(x, mode = "tf")

#' @rdname imagenet_preprocess_input
#' @export
xception_preprocess_input <- function(x) imagenet_preprocess_input(x, mode = "tf")

#' @rdname imagenet_preprocess_input
#' @export
densenet_preprocess_input <- function(x, data_format = NULL) imagenet_preprocess_input(x, data_format, mode = "torch")

#' @rdname imagenet_preprocess_input
#' @export
mobilenet_preprocess_input <- function(x) imagenet_preprocess_input(x, mode = "tf")

#' @rdname imagenet_preprocess_input
#' @export
mobilenet_decode_predictions <- function(preds, top = 5) imagenet_decode_predictions(preds, top)

#' @rdname imagenet_preprocess_input
#' @export
mobilenet_v2_preprocess_input <- function(x) imagenet_preprocess_input(x, mode = "tf")

#' @rdname imagenet_preprocess_input
#' @export
mobilenet_v2_decode_predictions <- function(preds, top = 5) imagenet_decode_predictions(preds, top)

#' @rdname imagenet_preprocess_input
#' @export
imagenet_decode_predictions <- function(preds, top = 5) {
  if (!is.numeric(preds) || length(dim(preds)) != 2 || ncol(preds) != 1000) {
    value_error(sprintf("`preds` must be a matrix of predictions with 1000 columns (one row per image), not %s.", describe(preds)))
  }
  check_count(top, "top", min = 1)
  top <- min(top, 1000)
  path <- get_file("imagenet_class_index.json", "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json",
                   cache_subdir = "models", file_hash = if (check_hashes()) "c2c37ea517e94d9795004a39431a14cb")
  need_packages("jsonlite", "Reading ImageNet's class index")
  index <- tryCatch(jsonlite::fromJSON(path, simplifyVector = FALSE),
                    error = function(e) rustgpu_abort(sprintf("\"%s\" is not ImageNet's class index (JSON): %s", path, conditionMessage(e)), "rustgpu_io_error"))
  if (length(index) != 1000 || !all(as.character(0:999) %in% names(index))) {
    rustgpu_abort(sprintf("\"%s\" is not ImageNet's class index: it must map \"0\" to \"999\" to classes.", path), "rustgpu_io_error")
  }
  lapply(seq_len(nrow(preds)), function(i) {
    best <- order(preds[i, ], decreasing = TRUE)[seq_len(top)]
    entries <- index[as.character(best - 1)]
    data.frame(class_name = vapply(entries, function(e) as.character(e[[1]]), character(1)),
               class_description = vapply(entries, function(e) as.character(e[[2]]), character(1)),
               score = preds[i, best], stringsAsFactors = FALSE, row.names = NULL)
  })
}
