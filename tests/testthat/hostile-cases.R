# The hostile-input suite: each case is an expression that must fail with a classed error
# (a condition inheriting from rustgpu_error of the given kind, whose message matches the
# pattern), or, for kind "ok", return TRUE. test-bad-inputs.R runs every case in a child R
# process of its own (a crash or a hang there is a failed case, not a dead test run) and then
# checks that the models the case could reach still hold their weights, predict and train.
# Sourced by that test and by each child; `fixtures_dir` is set by whoever sources it.

x_ok <- matrix(runif(40), 10, 4)
y_ok <- to_categorical(rep(0:2, length.out = 10), 3)

fresh_models <- function() {
  set.seed(1)
  compiled <- small_classifier(inputs = 4, hidden = 8, classes = 3)
  compile(compiled, optimizer = "adam", loss = "categorical_crossentropy", metrics = "accuracy")
  uncompiled <- small_classifier(inputs = 4, hidden = 8, classes = 3)
  dead <- compiled
  path <- tempfile(fileext = ".rds")
  saveRDS(compiled, path)
  restored <- readRDS(path)
  unlink(path)
  collected <- rustgpu:::new_model(methods::new("externalptr"), "collected")
  # A million outputs per sample: 20000 rows of activations are 80 GB.
  wide <- keras_model_sequential() %>% layer_dense(1e6, input_shape = 1)
  compile(wide, optimizer = "sgd", loss = "mse")
  list(m = compiled, u = uncompiled, restored = restored, collected = collected, wide = wide)
}

with_na <- function(a, value) {
  a[2, 2] <- value
  a
}

fixture <- function(name) file.path(fixtures_dir, "h5", name)

text_file <- function() {
  p <- tempfile(fileext = ".h5")
  writeLines("not an hdf5 file", p)
  p
}

saved_model <- function(model) {
  p <- tempfile(fileext = ".h5")
  save_model_hdf5(model, p)
  p
}

saved_weights <- function(model) {
  p <- tempfile(fileext = ".h5")
  save_model_weights_hdf5(model, p)
  p
}

truncated_copy <- function(path) {
  bytes <- readBin(path, "raw", file.size(path))
  out <- tempfile(fileext = ".h5")
  writeBin(bytes[seq_len(length(bytes) %/% 3)], out)
  out
}

corrupt_fixture <- function(name, at, value) {
  bytes <- readBin(fixture(name), "raw", file.size(fixture(name)))
  bytes[at] <- as.raw(value)
  out <- tempfile(fileext = ".h5")
  writeBin(bytes, out)
  out
}

fifo <- function() {
  p <- tempfile(fileext = ".h5")
  if (system2("mkfifo", p) != 0) stop("mkfifo failed")
  p
}

seq_config <- function(layer) {
  list(class_name = "Sequential", config = list(name = "s", layers = list(
    list(class_name = "InputLayer", config = list(batch_input_shape = list(NULL, 8L, 8L, 3L), name = "in")), layer)))
}

conv_config <- function(filters = 2L, kernel_size = list(3L, 3L), strides = list(1L, 1L), dilation_rate = list(1L, 1L)) {
  list(class_name = "Conv2D", config = list(name = "c", filters = filters, kernel_size = kernel_size, strides = strides,
                                            dilation_rate = dilation_rate, padding = "valid"))
}

# label, expression (evaluated with m, u, restored, collected in scope), class, message pattern
bad_inputs <- list(
  list("x with the wrong feature count", quote(fit(m, matrix(runif(30), 10, 3), y_ok, verbose = 0)), "value", "expects input shape \\(n, 4\\)"),
  list("x with an extra axis", quote(predict(m, array(0, c(2, 4, 2)))), "value", "expects input shape"),
  list("x/y row mismatch", quote(fit(m, x_ok[1:5, ], y_ok, verbose = 0)), "value", "same number of samples"),
  list("x/y row mismatch in evaluate", quote(evaluate(m, x_ok, y_ok[1:3, ], verbose = 0)), "value", "same number of samples"),
  list("empty x", quote(predict(m, x_ok[0, , drop = FALSE])), "value", "no rows"),
  list("empty x in fit", quote(fit(m, x_ok[0, , drop = FALSE], y_ok[0, , drop = FALSE], verbose = 0)), "value", "no rows"),
  list("NA in x", quote(fit(m, with_na(x_ok, NA), y_ok, verbose = 0)), "value", "`x` contains NA"),
  list("NaN in x", quote(predict(m, with_na(x_ok, NaN))), "value", "`x` contains NA"),
  list("Inf in x", quote(evaluate(m, with_na(x_ok, Inf), y_ok, verbose = 0)), "value", "infinite"),
  list("-Inf in x", quote(train_on_batch(m, with_na(x_ok, -Inf), y_ok)), "value", "infinite"),
  list("NA in y", quote(fit(m, x_ok, with_na(y_ok, NA), verbose = 0)), "value", "`y` contains NA"),
  list("NaN in y", quote(test_on_batch(m, x_ok, with_na(y_ok, NaN))), "value", "`y` contains NA"),
  list("NA_integer_ in integer x", quote(predict(m, with_na(matrix(1L, 3, 4), NA_integer_))), "value", "`x` contains NA"),
  list("character x", quote(predict(m, matrix("a", 2, 4))), "value", "character"),
  list("factor x", quote(predict(m, factor(1:3))), "value", "factor"),
  list("list x for a one-input model", quote(predict(m, list(1, 2))), "value", "has 1 input but `x` holds 2 arrays"),
  list("list x with a non-array", quote(predict(m, list(x_ok, list(1)))), "value", "`x\\[\\[2\\]\\]` must be a numeric array"),
  list("data frame x", quote(predict(m, as.data.frame(x_ok))), "value", "as.matrix"),
  list("logical x", quote(predict(m, matrix(TRUE, 2, 4))), "value", "logical"),
  list("character y", quote(fit(m, x_ok, matrix("a", 10, 3), verbose = 0)), "value", "`y`.*character"),
  list("y with the wrong width", quote(fit(m, x_ok, y_ok[, 1:2], verbose = 0)), "value", "`y` has 2 values per sample"),
  list("missing y", quote(fit(m, x_ok, verbose = 0)), "value", "`y` is required"),
  list("missing x", quote(fit(m, y = y_ok, verbose = 0)), "value", "`x` is required"),
  list("integer overflow in input_shape", quote(layer_dense(keras_model_sequential(), 2, input_shape = c(1e5, 1e5, 1e5))), "value", "too large"),
  list("input_shape beyond integers", quote(layer_dense(keras_model_sequential(), 2, input_shape = 3e9)), "value", "`input_shape`"),
  list("zero in input_shape", quote(layer_dense(keras_model_sequential(), 2, input_shape = c(0, 3))), "value", "`input_shape`"),
  list("batch_size 0", quote(fit(m, x_ok, y_ok, batch_size = 0, verbose = 0)), "value", "`batch_size`"),
  list("negative batch_size", quote(fit(m, x_ok, y_ok, batch_size = -8, verbose = 0)), "value", "`batch_size`"),
  list("NA batch_size", quote(fit(m, x_ok, y_ok, batch_size = NA, verbose = 0)), "value", "`batch_size`"),
  list("huge batch_size", quote(fit(m, x_ok, y_ok, batch_size = 1e12, verbose = 0)), "value", "`batch_size`"),
  list("fractional batch_size", quote(predict(m, x_ok, batch_size = 2.5)), "value", "`batch_size`"),
  list("negative epochs", quote(fit(m, x_ok, y_ok, epochs = -1, verbose = 0)), "value", "`epochs`"),
  list("NA epochs", quote(fit(m, x_ok, y_ok, epochs = NA, verbose = 0)), "value", "`epochs`"),
  list("validation_split 1", quote(fit(m, x_ok, y_ok, validation_split = 1, verbose = 0)), "value", "`validation_split`"),
  list("negative validation_split", quote(fit(m, x_ok, y_ok, validation_split = -0.1, verbose = 0)), "value", "`validation_split`"),
  list("validation_split leaving no training rows", quote(fit(m, x_ok[1:2, ], y_ok[1:2, ], validation_split = 0.9, verbose = 0)), "value", "leaves no"),
  list("malformed validation_data", quote(fit(m, x_ok, y_ok, validation_data = list(x_ok), verbose = 0)), "value", "`validation_data`"),
  list("bad verbose", quote(fit(m, x_ok, y_ok, verbose = 7)), "value", "`verbose`"),
  list("non-logical shuffle", quote(fit(m, x_ok, y_ok, shuffle = "yes", verbose = 0)), "value", "`shuffle`"),
  list("unknown activation", quote(layer_dense(keras_model_sequential(), 3, activation = "relux")), "value", "unknown activation \"relux\""),
  list("unknown activation layer", quote(layer_activation(keras_model_sequential(), "swishy")), "value", "unknown activation"),
  list("unknown initializer", quote(layer_dense(keras_model_sequential(), 3, kernel_initializer = "nope")), "value", "unknown initializer"),
  list("unknown loss", quote(compile(m, optimizer = "adam", loss = "hinge_typo")), "value", "unknown loss"),
  list("missing loss", quote(compile(m, optimizer = "adam")), "value", "`loss` is required"),
  list("unknown optimizer", quote(compile(m, optimizer = "adamw", loss = "mse")), "value", "unknown optimizer \"adamw\": expected one of \"sgd\""),
  list("optimizer of the wrong type", quote(compile(m, optimizer = 3, loss = "mse")), "value", "`optimizer`"),
  list("unknown metric", quote(compile(m, optimizer = "adam", loss = "mse", metrics = "auroc")), "value", "unknown metric"),
  list("negative learning rate", quote(optimizer_adam(learning_rate = -1)), "value", "`learning_rate`"),
  list("rho out of range", quote(optimizer_rmsprop(rho = 1)), "value", "`rho`"),
  list("beta_1 out of range", quote(optimizer_adam(beta_1 = 1.5)), "value", "`beta_1`"),
  list("negative momentum", quote(optimizer_sgd(momentum = -0.5)), "value", "`momentum`"),
  list("optimizer argument misspelt", quote(optimizer_sgd(0.1, nestrov = TRUE)), "value", "Unknown argument `nestrov`"),
  list("lr and learning_rate both", quote(optimizer_adam(learning_rate = 0.1, lr = 0.2)), "value", "not both"),
  list("negative decay", quote(optimizer_rmsprop(decay = -1)), "value", "`decay`"),
  list("zero clipnorm", quote(optimizer_adam(clipnorm = 0)), "value", "`clipnorm`"),
  list("clipvalue NA", quote(optimizer_adagrad(clipvalue = NA)), "value", "`clipvalue`"),
  list("negative initial accumulator", quote(optimizer_adagrad(initial_accumulator_value = -0.1)), "value", "`initial_accumulator_value`"),
  list("Nadam schedule_decay changed", quote(optimizer_nadam(schedule_decay = 0.01)), "value", "`schedule_decay`"),
  list("units 0", quote(layer_dense(keras_model_sequential(), 0)), "value", "`units`"),
  list("fractional units", quote(layer_dense(keras_model_sequential(), 2.5)), "value", "`units`"),
  list("negative dropout rate", quote(layer_dropout(keras_model_sequential(), -0.1)), "value", "`rate`"),
  list("dropout rate 1", quote(layer_dropout(keras_model_sequential(), 1)), "value", "`rate`"),
  list("kernel larger than input", quote(layer_conv_2d(keras_model_sequential(), 2, 5, input_shape = c(3, 3, 1))), "value", "larger than"),
  list("pool larger than input", quote(layer_max_pooling_2d(keras_model_sequential(), 4, input_shape = c(3, 3, 1))), "value", "larger than"),
  list("conv on 1-d input", quote(layer_conv_2d(keras_model_sequential(), 2, 3, input_shape = 10)), "value", "height, width, channels"),
  list("bad padding", quote(layer_conv_2d(keras_model_sequential(), 2, 3, padding = "full")), "value", "`padding`"),
  list("duplicate layer name", quote(layer_dense(m, 2, name = rustgpu:::model_info(m)$layer_names[[1]])), "value", "unique names"),
  list("input_shape on a later layer", quote(layer_dense(m, 2, input_shape = 3)), "value", "first layer"),
  list("gpus = 1", quote(multi_gpu_model(m, gpus = 1)), "value", "`gpus >= 2`. Received: `gpus=1`"),
  list("gpus = 0", quote(multi_gpu_model(m, gpus = 0)), "value", "`gpus >= 2`"),
  list("gpus negative", quote(multi_gpu_model(m, gpus = -2)), "value", "`gpus`"),
  list("gpus fractional", quote(multi_gpu_model(m, gpus = 2.5)), "value", "`gpus`"),
  list("gpus NA", quote(multi_gpu_model(m, gpus = NA)), "value", "`gpus`"),
  list("gpus character", quote(multi_gpu_model(m, gpus = "2")), "value", "`gpus`"),
  list("gpus duplicated", quote(multi_gpu_model(m, gpus = c(1, 1))), "value", "more than once"),
  list("gpus empty", quote(multi_gpu_model(m, gpus = integer())), "value", "`gpus`"),
  list("gpus beyond the machine", quote(multi_gpu_model(m, gpus = 3)), "device", "However this machine only has"),
  list("gpu id beyond the machine", quote(multi_gpu_model(m, gpus = c(0, 7))), "device", "/gpu:7"),
  list("cpu_merge NA", quote(multi_gpu_model(m, cpu_merge = NA)), "value", "`cpu_merge`"),
  list("cpu_merge of length 2", quote(multi_gpu_model(m, cpu_merge = c(TRUE, FALSE))), "value", "`cpu_merge`"),
  list("cpu_merge numeric", quote(multi_gpu_model(m, cpu_merge = 1)), "value", "`cpu_merge`"),
  list("cpu_relocation character", quote(multi_gpu_model(m, cpu_relocation = "yes")), "value", "`cpu_relocation`"),
  list("cpu_relocation NULL", quote(multi_gpu_model(m, cpu_relocation = NULL)), "value", "`cpu_relocation`"),
  list("fit before compile", quote(fit(u, x_ok, y_ok, verbose = 0)), "state", "must be compiled"),
  list("evaluate before compile", quote(evaluate(u, x_ok, y_ok)), "state", "must be compiled"),
  list("train_on_batch before compile", quote(train_on_batch(u, x_ok, y_ok)), "state", "must be compiled"),
  list("predict on a model without layers", quote(predict(keras_model_sequential(), x_ok)), "state", "no layers"),
  list("set_weights with too few arrays", quote(set_weights(m, get_weights(m)[1:3])), "value", "list of 4 arrays"),
  list("set_weights with a wrong shape", quote(set_weights(m, replace(get_weights(m), 1, list(matrix(0, 3, 8))))), "value", "shape \\(4, 8\\).*\\(3, 8\\)"),
  list("set_weights with NA", quote(set_weights(m, replace(get_weights(m), 2, list(as.array(rep(NA_real_, 8)))))), "value", "contains NA"),
  list("set_weights with a non-list", quote(set_weights(m, "w")), "value", "list of arrays"),
  list("set_weights beyond float32", quote(set_weights(m, replace(get_weights(m), 2, list(as.array(rep(1e39, 8)))))), "value", "beyond float32"),
  list("x beyond float32", quote(fit(m, with_na(x_ok, -1e39), y_ok, verbose = 0)), "value", "`x` holds -1e39"),
  list("y beyond float32", quote(evaluate(m, x_ok, with_na(y_ok, 4e38), verbose = 0)), "value", "`y` holds 4e38"),
  list("sample_weight beyond float32", quote(fit(m, x_ok, y_ok, sample_weight = rep(1e39, 10), verbose = 0)), "value", "float32's range"),
  list("class_weight beyond float32", quote(fit(m, x_ok, y_ok, class_weight = list("0" = 1e39, "1" = 1, "2" = 1), verbose = 0)), "value", "float32's range"),
  list("predict with every layer popped", quote({ e <- keras_model_sequential() %>% layer_dense(2, input_shape = 4); pop_layer(e); predict(e, x_ok) }),
       "state", "no layers"),
  list("model used after saveRDS()/readRDS()", quote(predict(restored, x_ok)), "state", "readRDS"),
  list("fit on a model after readRDS()", quote(fit(restored, x_ok, y_ok)), "state", "readRDS"),
  list("model whose pointer was collected", quote(get_weights(collected)), "state", "compiled data is gone"),
  list("wrong object type for evaluate", quote(evaluate(list(), x_ok, y_ok)), "value", "made by rustgpu"),
  list("wrong object type for get_weights", quote(get_weights(42)), "value", "made by rustgpu"),
  list("wrong object type for train_on_batch", quote(train_on_batch("model", x_ok, y_ok)), "value", "made by rustgpu"),
  list("wrong object type for multi_gpu_model", quote(multi_gpu_model(data.frame())), "value", "`model`"),
  list("sparse labels out of range", quote({
    s <- small_classifier(inputs = 4, classes = 3)
    compile(s, optimizer = "sgd", loss = "sparse_categorical_crossentropy")
    fit(s, x_ok, rep(5, 10), verbose = 0)
  }), "value", "class index 5"),
  list("embedding index out of range", quote(predict(keras_model_sequential() %>% layer_embedding(5, 2, input_length = 2),
                                                   matrix(c(1, 7), 1))), "value", "index 7"),
  list("conv_1d on 2-d input", quote(layer_conv_1d(keras_model_sequential(), 2, 3, input_shape = c(4, 4, 1))), "value",
       "\\(steps, channels\\)"),
  list("to_categorical with ids beyond num_classes", quote(to_categorical(c(0, 5), num_classes = 3)), "value", "class id 5"),
  list("use_virtual_gpus negative", quote(use_virtual_gpus(-1)), "value", "`n`"),
  list("use_virtual_gpus too many", quote(use_virtual_gpus(1000)), "value", "between 0 and 64"),
  # Sizes beyond memory are refused before anything is allocated (Rust would abort R).
  list("a billion units", quote(layer_dense(keras_model_sequential(), units = 1e9, input_shape = 10)), "resource", "kernel of shape \\(10, 1000000000\\) needs 37.3 GB"),
  list("a 1e5 x 1e5 kernel", quote(layer_dense(keras_model_sequential(), 1e5, input_shape = 1e5)), "resource", "use fewer units"),
  list("an embedding of a billion words", quote(layer_embedding(keras_model_sequential(), input_dim = 1e9, output_dim = 64, input_length = 3)), "resource", "embeddings"),
  list("huge conv filters", quote(layer_conv_2d(keras_model_sequential(), 1e6, 300, input_shape = c(300, 300, 3))), "resource", "kernel"),
  list("huge units from a config", quote(from_config(list(class_name = "Sequential", config = list(name = "s", layers = list(
    list(class_name = "InputLayer", config = list(batch_input_shape = list(NULL, 4L), name = "in")),
    list(class_name = "Dense", config = list(units = 4e9, name = "d"))))))), "resource", "needs"),
  list("a batch whose activations do not fit", quote(predict(wide, matrix(0, 20000, 1), batch_size = 20000)), "resource", "smaller batch_size"),
  list("a layer name with a slash", quote(layer_dense(keras_model_sequential(), 2, input_shape = 3, name = "a/b")), "value", "must not contain"),
  list("callback_csv_logger to a missing folder", quote(fit(m, x_ok, y_ok, epochs = 1, verbose = 0,
                                                              callbacks = list(callback_csv_logger(file.path(tempfile(), "no", "log.csv"))))),
       "io", "cannot write"),
  list("to_categorical of a huge class id", quote(to_categorical(1e10)), "resource", "one-hot matrix needs"),
  list("to_categorical with huge num_classes", quote(to_categorical(0:9, num_classes = 2e9)), "resource", "num_classes"),
  list("pad_sequences to a huge maxlen", quote(pad_sequences(as.list(1:10), maxlen = 2e9)), "resource", "smaller `maxlen`"),
  list("sequences_to_matrix with a huge vocabulary", quote(sequences_to_matrix(text_tokenizer(num_words = 2e9), as.list(1:10))),
       "resource", "smaller `num_words`"),
  list("a training batch whose activations do not fit", quote(fit(wide, matrix(0, 20000, 1), matrix(0, 20000, 1), batch_size = 20000, verbose = 0)), "resource", "smaller batch_size")
  ,
  # Files: anything that is not a readable Keras file is an io error naming it; nothing blocks.
  list("a text file as a model", quote(load_model_hdf5(text_file())), "io", "not a readable HDF5 file"),
  list("an empty file as a model", quote(load_model_hdf5({ p <- tempfile(fileext = ".h5"); file.create(p); p })), "io", "not a readable HDF5 file"),
  list("random bytes as a model", quote(unserialize_model(as.raw(sample(0:255, 4096, TRUE)))), "io", "not a readable HDF5 file"),
  list("a missing file", quote(load_model_hdf5(tempfile(fileext = ".h5"))), "io", "does not exist"),
  list("a truncated model file", quote(load_model_hdf5(truncated_copy(saved_model(m)))), "io", "truncated|corrupt|not a readable"),
  list("a weights file as a model", quote(load_model_hdf5({ p <- tempfile(fileext = ".h5"); save_model_weights_hdf5(m, p); p })), "io", "weights only"),
  list("a FIFO as a model", quote(load_model_hdf5(fifo())), "io", "not a regular file"),
  list("a FIFO as weights", quote(load_model_weights_hdf5(m, fifo())), "io", "not a regular file"),
  list("a device node as a model", quote(load_model_hdf5("/dev/zero")), "io", "not a regular file"),
  list("a folder as a model", quote(load_model_hdf5(tempdir())), "io", "not a regular file|folder"),
  list("saving over a FIFO", quote(save_model_hdf5(m, fifo())), "io", "not a regular file"),
  list("saving over a device node", quote(save_model_hdf5(m, "/dev/null")), "io", "not a regular file"),
  list("saving weights over a folder", quote(save_model_weights_hdf5(m, tempdir())), "io", "not a regular file"),
  list("saving into a missing folder", quote(save_model_hdf5(m, file.path(tempfile(), "m.h5"))), "io", "does not exist"),
  list("saving over a file with overwrite = FALSE", quote(save_model_hdf5(m, saved_model(m), overwrite = FALSE)), "io", "already exists"),
  list("weights of another layer count", quote(load_model_weights_hdf5(keras_model_sequential() %>% layer_dense(3, input_shape = 4), saved_weights(m))),
       "value", "layer count mismatch"),
  list("weights of another shape", quote(load_model_weights_hdf5(small_classifier(inputs = 5, hidden = 8, classes = 3), saved_weights(m))),
       "value", "\\(4, 8\\).*\\(5, 8\\)|\\(5, 8\\).*\\(4, 8\\)"),
  list("a file listing a layer it lacks", quote(load_model_weights_hdf5(keras_model_sequential() %>% layer_dense(8, input_shape = 5), fixture("broken_missing_group.h5"))),
       "io", "lists layer \"ghost\" but has no group"),
  list("a file whose config has a byte that is not UTF-8", quote(load_model_hdf5(corrupt_fixture("keras_dense_model.h5", 3612, 0xff))), "io", "not valid UTF-8"),
  list("a file whose weight declares 12.8 GB", quote(load_model_hdf5(corrupt_fixture("keras_dense_model.h5", 17856, 0xff))), "io", "\"dense_2/bias:0\" (declares 3 values .* but stores 12 bytes|cannot be read .*): the file is corrupt"),
  list("a string step count in a file", quote(load_model_hdf5(fixture("damaged_string_iteration.h5"))), "value", "iteration:0 must hold one integer"),
  list("string loss weights in a file", quote(load_model_hdf5(fixture("damaged_string_loss_weights.h5"))), "value", "`loss_weights` must be numbers"),
  list("NaN optimizer state in a file", quote(load_model_hdf5(fixture("damaged_nan_optimizer_state.h5"))), "value", "holds NaN or infinite values"),
  list("float64 optimizer state beyond float32", quote(load_model_hdf5(fixture("damaged_huge_optimizer_state.h5"))), "value", "holds NaN or infinite values"),
  list("unserialize_model() of a string", quote(unserialize_model("bytes")), "value", "raw vector"),
  list("a file path of the wrong type", quote(load_model_hdf5(42)), "value", "`filepath`"),
  list("a legal layer name with dots saves and loads", quote({
    d <- keras_model_sequential() %>% layer_dense(2, input_shape = 3, name = "dense.v1.2")
    identical(get_weights(load_model_hdf5(saved_model(d))), get_weights(d))
  }), "ok", ""),
  # Configs from users and files: fields that make no sense are value errors naming them.
  list("a config nested 10000 levels", quote(from_config(Reduce(function(a, b) list(a), 1:10000, list()))), "value", "nested more than"),
  list("a config that is not a list", quote(from_config("nope")), "value", "`config`"),
  list("a config of an unknown layer class", quote(from_config(seq_config(list(class_name = "Dense3000", config = list(units = 2, name = "d"))))), "value", "Dense3000"),
  list("a config with zero filters", quote(from_config(seq_config(conv_config(filters = 0L)))), "value", "filters"),
  list("a config with a zero kernel", quote(from_config(seq_config(conv_config(kernel_size = list(0L, 3L))))), "value", "kernel_size"),
  list("a config with zero strides", quote(from_config(seq_config(conv_config(strides = list(0L, 1L))))), "value", "strides"),
  list("a config with zero dilation", quote(from_config(seq_config(conv_config(dilation_rate = list(1L, 0L))))), "value", "dilation_rate"),
  list("a config with a zero pool", quote(from_config(seq_config(list(class_name = "MaxPooling2D", config = list(name = "p", pool_size = list(0L, 2L), strides = list(2L, 2L), padding = "valid"))))),
       "value", "pool_size"),
  list("a config with zero pool strides", quote(from_config(seq_config(list(class_name = "MaxPooling2D", config = list(name = "p", pool_size = list(2L, 2L), strides = list(0L, 2L), padding = "valid"))))),
       "value", "strides"),
  list("a config with string units", quote(from_config(seq_config(list(class_name = "Dense", config = list(units = "ten", name = "d"))))), "value", "units"),
  list("a config with negative units", quote(from_config(seq_config(list(class_name = "Dense", config = list(units = -3L, name = "d"))))), "value", "units"),
  list("weights into a model from a config without an input shape", quote(load_model_weights_hdf5(
    from_config(list(class_name = "Sequential", config = list(name = "s", layers = list(list(class_name = "Dense", config = list(units = 2L, name = "d")))))),
    saved_weights(keras_model_sequential() %>% layer_dense(2, input_shape = 3)))), "state", "not built yet: give the first layer an `input_shape`.*before loading weights"),
  list("model JSON that is not JSON", quote(model_from_json("{not json")), "value", "JSON"),
  list("model JSON without a class", quote(model_from_json("{}")), "value", "has no \"class_name\""),
  # Values that mean nothing are refused where they are given.
  list("an interpolation rustgpu does not have", quote(layer_upsampling_2d(keras_model_sequential(), interpolation = "bicubic", input_shape = c(4, 4, 1))),
       "value", "`interpolation` must be \"nearest\" or \"bilinear\""),
  list("output_padding not below the strides", quote(layer_conv_2d_transpose(keras_model_sequential(), 2, 3, strides = 2, output_padding = 2, input_shape = c(4, 4, 1))),
       "value", "`output_padding` \\(2, 2\\) must be smaller than `strides` \\(2, 2\\)"),
  list("a data format that is not one", quote(layer_max_pooling_2d(keras_model_sequential(), data_format = "NHWC", input_shape = c(4, 4, 1))),
       "value", "`data_format` must be \"channels_last\" or \"channels_first\""),
  list("batch norm momentum above 1", quote(layer_batch_normalization(keras_model_sequential(), momentum = 1.5, input_shape = 3)), "value", "`momentum`"),
  list("batch norm negative epsilon", quote(layer_batch_normalization(keras_model_sequential(), epsilon = -1, input_shape = 3)), "value", "`epsilon`"),
  list("negative Adam epsilon", quote(optimizer_adam(epsilon = -1)), "value", "`epsilon`"),
  list("infinite learning rate", quote(optimizer_sgd(learning_rate = Inf)), "value", "`learning_rate`"),
  list("beta_2 of 1", quote(optimizer_adam(beta_2 = 1)), "value", "`beta_2`"),
  list("negative loss weight", quote(compile(m, optimizer = "sgd", loss = "categorical_crossentropy", loss_weights = -1)), "value", "`loss_weights`"),
  list("NA loss weight", quote(compile(m, optimizer = "sgd", loss = "categorical_crossentropy", loss_weights = NA)), "value", "`loss_weights`"),
  list("negative sample weights", quote(fit(m, x_ok, y_ok, sample_weight = rep(-1, 10), verbose = 0)), "value", "`sample_weight`"),
  list("sample weights of the wrong length", quote(fit(m, x_ok, y_ok, sample_weight = rep(1, 3), verbose = 0)), "value", "`sample_weight`"),
  # Memory: sizes beyond what the process can get are refused before allocating.
  list("zero padding of 1e5", quote(predict(keras_model_sequential() %>% layer_zero_padding_2d(padding = 1e5, input_shape = c(4, 4, 3)), array(0, c(1, 4, 4, 3)))),
       "resource", "needs 447.1 GB of memory but .* are available: use a smaller batch_size"),
  list("a parallel predict whose activations do not fit", quote(predict(multi_gpu_model(wide, gpus = 2), matrix(0, 40000, 1), batch_size = 40000)),
       "resource", "smaller batch_size"),
  list("an evaluate whose activations do not fit", quote({
    deep <- keras_model_sequential() %>% layer_dense(1e6, input_shape = 1) %>% layer_dense(1)
    compile(deep, optimizer = "sgd", loss = "mse")
    evaluate(deep, matrix(0, 20000, 1), matrix(0, 20000, 1), batch_size = 20000, verbose = 0)
  }), "resource", "smaller batch_size"),
  # fork: children of a process that trained in parallel answer as it does.
  list("predict in forked children after parallel training", quote({
    p <- multi_gpu_model(m, gpus = 2)
    compile(p, optimizer = "sgd", loss = "categorical_crossentropy")
    fit(p, x_ok, y_ok, epochs = 2, verbose = 0)
    want <- predict(m, x_ok)
    got <- parallel::mclapply(1:2, function(i) predict(m, x_ok), mc.cores = 2)
    all(vapply(got, function(g) isTRUE(all.equal(g, want)), logical(1)))
  }), "ok", ""),
  list("fit in forked children after parallel training", quote({
    p <- multi_gpu_model(m, gpus = 2)
    compile(p, optimizer = "sgd", loss = "categorical_crossentropy")
    fit(p, x_ok, y_ok, epochs = 1, verbose = 0)
    start <- get_weights(m)
    got <- parallel::mclapply(1:2, function(i) { fit(m, x_ok, y_ok, epochs = 1, shuffle = FALSE, verbose = 0); get_weights(m) }, mc.cores = 2)
    set_weights(m, start)
    fit(m, x_ok, y_ok, epochs = 1, shuffle = FALSE, verbose = 0)
    want <- get_weights(m)
    set_weights(m, start)
    all(vapply(got, function(g) isTRUE(all.equal(g, want)), logical(1)))
  }), "ok", "")
)
