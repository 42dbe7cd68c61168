"""tf-keras side of the benchmark suite: fit and predict throughput for one workload.

    python bench/keras_peer.py --workload mlp --repeats 5 --threads 2 --samples 60000

Prints one JSON object: {"fit": [samples/s per repeat], "predict": [...]}. Same models,
batch sizes, float32 random data and RMSprop as bench/suite.R; the warm-up epoch is excluded.
"""
import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_USE_LEGACY_KERAS"] = "1"


def build(keras, workload):
    L = keras.layers
    if workload in ("imdb_lstm", "imdb_gru"):
        recurrent = L.LSTM if workload == "imdb_lstm" else L.GRU
        return keras.Sequential([keras.Input((80,)), L.Embedding(20000, 128), recurrent(128),
                                 L.Dense(1, activation="sigmoid")]), (80,), 32
    if workload == "mlp":
        return keras.Sequential([keras.Input((784,)), L.Dense(512, activation="relu"), L.Dense(512, activation="relu"),
                                 L.Dense(10, activation="softmax")]), (784,), 256
    if workload == "cnn":
        return keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
                                 L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(),
                                 L.Dense(128, activation="relu"), L.Dense(10, activation="softmax")]), (28, 28, 1), 128
    if workload == "blocks":
        inputs = keras.Input((71, 71, 3))
        x = L.Conv2D(32, 3, strides=2, use_bias=False)(inputs)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
        for filters in (64, 128):
            residual = L.BatchNormalization()(L.Conv2D(filters, 1, strides=2, padding="same", use_bias=False)(x))
            x = L.Activation("relu")(x)
            x = L.BatchNormalization()(L.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x))
            x = L.Activation("relu")(x)
            x = L.BatchNormalization()(L.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x))
            x = L.MaxPooling2D(3, strides=2, padding="same")(x)
            x = L.Add()([x, residual])
        x = L.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, L.Dense(10, activation="softmax")(x)), (71, 71, 3), 32
    if workload == "xception":
        return keras.applications.Xception(weights=None, input_shape=(71, 71, 3), classes=10), (71, 71, 3), 16
    raise ValueError(workload)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workload", required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--samples", type=int, required=True)
    a = p.parse_args()
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    import tf_keras as keras
    keras.utils.set_random_seed(1)
    model, shape, batch = build(keras, a.workload)
    rng = np.random.default_rng(1)
    if a.workload.startswith("imdb"):
        model.compile(optimizer=keras.optimizers.RMSprop(), loss="binary_crossentropy")
        x = rng.integers(0, 20000, (a.samples,) + shape).astype(np.float32)
        y = rng.integers(0, 2, (a.samples, 1)).astype(np.float32)
    else:
        model.compile(optimizer=keras.optimizers.RMSprop(), loss="categorical_crossentropy")
        x = rng.random((a.samples,) + shape, dtype=np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, a.samples)]
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    model.predict(x, batch_size=batch, verbose=0)
    fit, predict = [], []
    for _ in range(a.repeats):
        t = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        fit.append(a.samples / (time.perf_counter() - t))
        t = time.perf_counter()
        model.predict(x, batch_size=batch, verbose=0)
        predict.append(a.samples / (time.perf_counter() - t))
    import resource
    # Peak resident memory of this process (Linux reports kilobytes).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"fit": fit, "predict": predict, "peak_rss_kb": peak}))


if __name__ == "__main__":
    main()
