# rustgpu demo: classify iris species with a small network, data-parallel over two
# devices (real GPUs when there are two, else CPU-backed virtual GPUs).
# Run: Rscript inst/examples/iris.R   (or source(system.file("examples", "iris.R", package = "rustgpu")))
library(rustgpu)
set.seed(2026)

# Stratified 80/20 split: 40 training and 10 test flowers per species.
test_rows <- unlist(lapply(split(seq_len(nrow(iris)), iris$Species), sample, size = 10))
train <- iris[-test_rows, ]
test <- iris[test_rows, ]

# Scale with the training set's statistics; one-hot encode the species.
features <- c("Sepal.Length", "Sepal.Width", "Petal.Length", "Petal.Width")
center <- colMeans(train[, features])
spread <- apply(train[, features], 2, sd)
x_train <- scale(as.matrix(train[, features]), center, spread)
x_test <- scale(as.matrix(test[, features]), center, spread)
y_train <- to_categorical(as.integer(train$Species) - 1)
y_test <- to_categorical(as.integer(test$Species) - 1)

model <- keras_model_sequential(name = "iris") %>%
  layer_dense(units = 16, activation = "relu", input_shape = 4) %>%
  layer_dense(units = 3, activation = "softmax")

if (cuda_device_count() >= 2) {
  cat(sprintf("Using %d CUDA GPUs.\n", cuda_device_count()))
} else {
  use_virtual_gpus(2)
  cat("No pair of CUDA GPUs here: using 2 virtual GPUs (CPU-backed devices that run the same\n",
      "data-parallel code path: replicas, split batches, merged outputs and gradients).\n", sep = "")
}
parallel_model <- multi_gpu_model(model, gpus = 2)
summary(parallel_model)

parallel_model %>% compile(
  optimizer = optimizer_adam(learning_rate = 0.01),
  loss = "categorical_crossentropy",
  metrics = "accuracy"
)
history <- parallel_model %>% fit(x_train, y_train, epochs = 40, batch_size = 16, verbose = 2)

# The template shares the trained weights: evaluate it on the held-out flowers.
compile(model, optimizer = "adam", loss = "categorical_crossentropy", metrics = "accuracy")
result <- evaluate(model, x_test, y_test, verbose = 0)
predicted <- levels(iris$Species)[max.col(predict(model, x_test))]
cat(sprintf("\nHeld-out accuracy: %.3f (%d of %d test flowers)\n", result[["accuracy"]],
            sum(predicted == test$Species), nrow(test)))
print(table(predicted = predicted, actual = test$Species))
if (result[["accuracy"]] < 0.9) stop("held-out accuracy below 0.9")
