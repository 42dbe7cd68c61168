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
#' @param weights `NULL` (random initialization). Pretrained ImageNet weights are not
#'   bundled with rustgpu.
#' @param input_tensor Not supported; must be `NULL`.
#' @param input_shape Shape of one image, `c(height, width, 3)`, at least 71x71 (default
#'   `c(299, 299, 3)`).
#' @param pooling Without the top: `NULL` (the 4-d feature map), "avg" or "max" (global
#'   pooling to 2,048 features).
#' @param classes Number of classes (with the top).
#' @param classifier_activation Activation of the classifier.
#' @return A functional model.
#' @examples
#' model <- application_xception(weights = NULL, input_shape = c(71, 71, 3), classes = 5)
#' format(model)
#' @export
application_xception <- function(include_top = TRUE, weights = NULL, input_tensor = NULL, input_shape = NULL,
                                 pooling = NULL, classes = 1000, classifier_activation = "softmax") {
  check_bool(include_top, "include_top")
  if (!is.null(weights)) {
    value_error(paste0(
      "Pretrained weights (`weights = \"", format(weights), "\"`) are not bundled with rustgpu: use `weights = NULL` ",
      "for a randomly initialized model, then load weights with load_model_weights_hdf5() if you have them."
    ))
  }
  if (!is.null(input_tensor)) value_error("`input_tensor` is not supported yet: give `input_shape`.")
  if (is.null(input_shape)) input_shape <- c(299L, 299L, 3L)
  input_shape <- check_shape(input_shape, "input_shape")
  if (length(input_shape) != 3 || input_shape[3] != 3 || any(input_shape[1:2] < 71)) {
    value_error(sprintf("`input_shape` must be c(height, width, 3) with height and width at least 71, not c(%s).",
                        paste(input_shape, collapse = ", ")))
  }
  if (!is.null(pooling) && !(is.character(pooling) && length(pooling) == 1 && pooling %in% c("avg", "max"))) {
    value_error(sprintf("`pooling` must be NULL, \"avg\" or \"max\", not %s.", describe(pooling)))
  }
  check_count(classes, "classes", min = 1)
  check_string(classifier_activation, "classifier_activation")

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

  inputs <- layer_input(shape = input_shape, name = rg_unique_name("input"))
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
  keras_model(inputs, x, name = "xception")
}
