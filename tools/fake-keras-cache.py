"""Fills a Keras cache folder with stand-ins for Keras's data-set files: the real formats and
sample shapes, random values, fewer samples. For running published R keras scripts offline
(tools/rkeras-examples.sh); never used by the tests.

    .venv-keras/bin/python tools/fake-keras-cache.py DIR     # writes DIR/datasets/...
"""
import gzip
import io
import json
import os
import pickle
import struct
import sys
import tarfile
import tempfile

import numpy as np

root = os.path.join(sys.argv[1], "datasets")
os.makedirs(root, exist_ok=True)
rng = np.random.default_rng(0)


def images(n, shape):
    return rng.integers(0, 256, (n,) + shape, dtype=np.uint8)


# MNIST and Fashion-MNIST at their real sizes: scripts index them by count (x_train[1:60000, , ]).
np.savez(os.path.join(root, "mnist.npz"), x_train=images(60000, (28, 28)), y_train=rng.integers(0, 10, 60000, dtype=np.uint8),
         x_test=images(10000, (28, 28)), y_test=rng.integers(0, 10, 10000, dtype=np.uint8))
fashion = os.path.join(root, "fashion-mnist")
os.makedirs(fashion, exist_ok=True)
for prefix, n in [("train", 60000), ("t10k", 10000)]:
    with gzip.open(os.path.join(fashion, f"{prefix}-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">II", 2049, n) + rng.integers(0, 10, n, dtype=np.uint8).tobytes())
    with gzip.open(os.path.join(fashion, f"{prefix}-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, 28, 28) + images(n, (28, 28)).tobytes())
tmp = tempfile.mkdtemp()
for folder, files, key in [("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], None),
                           ("cifar-100-python", ["train", "test"], "fine")]:
    os.makedirs(os.path.join(tmp, folder))
    for name in files:
        n = 400
        d = {b"data": images(n, (3072,)), b"labels": list(map(int, rng.integers(0, 10, n))),
             b"fine_labels": list(map(int, rng.integers(0, 100, n))), b"coarse_labels": list(map(int, rng.integers(0, 20, n)))}
        with open(os.path.join(tmp, folder, name), "wb") as f:
            pickle.dump(d, f, protocol=2)
    with tarfile.open(os.path.join(root, folder + ".tar.gz"), "w:gz") as t:
        t.add(os.path.join(tmp, folder), arcname=folder)


def reviews(n, vocab):
    lengths = rng.integers(20, 400, n)
    return np.array([list(map(int, np.minimum(rng.zipf(1.3, k), vocab))) for k in lengths], dtype=object)


# IMDB's real counts (25,000 reviews each): tutorials index into them (train_data[1:10000, ]).
np.savez(os.path.join(root, "imdb.npz"), x_train=reviews(25000, 88000), y_train=rng.integers(0, 2, 25000),
         x_test=reviews(25000, 88000), y_test=rng.integers(0, 2, 25000))
with open(os.path.join(root, "imdb_word_index.json"), "w") as f:
    json.dump({f"word{i}": i for i in range(1, 88585)}, f)
np.savez(os.path.join(root, "reuters.npz"), x=reviews(1000, 30000), y=rng.integers(0, 46, 1000))
with open(os.path.join(root, "reuters_word_index.json"), "w") as f:
    json.dump({f"word{i}": i for i in range(1, 30980)}, f)
np.savez(os.path.join(root, "boston_housing.npz"), x=rng.normal(size=(506, 13)) * 10 + 20, y=rng.normal(size=506) * 9 + 22)

# Files scripts download themselves, in the folder they run in (`work/`, copied there by
# tools/rkeras-examples.sh): GloVe vectors and 20 Newsgroups texts, in their real formats.
work = os.path.join(os.path.dirname(root), "work")
os.makedirs(os.path.join(work, "glove.6B"), exist_ok=True)
words = [f"w{i}" for i in range(3000)]
with open(os.path.join(work, "glove.6B", "glove.6B.100d.txt"), "w") as f:
    for w in words[:2500]:
        f.write(w + " " + " ".join(f"{v:.5f}" for v in rng.normal(size=100)) + "\n")
for g in range(20):
    folder = os.path.join(work, "20_newsgroup", f"group.{g}")
    os.makedirs(folder, exist_ok=True)
    for d in range(25):
        body = " ".join(rng.choice(words, size=int(rng.integers(200, 1200))))
        with open(os.path.join(folder, str(50000 + d)), "w") as f:
            f.write(f"From: someone\nSubject: {g}\n\n{body}\n")

# Nietzsche's text (lstm_text_generation.R): lines of lower- and upper-case words and
# punctuation, shorter than the real 600,000 characters so that the script's own R loops
# over its sequences stay quick.
alphabet = list("abcdefghijklmnopqrstuvwxyz")
with open(os.path.join(root, "nietzsche.txt"), "w") as f:
    for line in range(120):
        sentence = " ".join("".join(rng.choice(alphabet, size=int(rng.integers(2, 9)))) for _ in range(int(rng.integers(4, 12))))
        f.write(sentence.capitalize() + rng.choice([".", ",", ";", "!", "?"]) + "\n")

# bAbI tasks (babi_rnn.R, babi_memnn.R): the archive's layout and its story format (numbered
# sentences; questions with a tab, the answer and the supporting sentences), few stories.
people, places = ["Mary", "John", "Sandra", "Daniel"], ["bathroom", "hallway", "kitchen", "garden", "office"]


def babi_story(facts):
    lines, where = [], {}
    for i in range(1, facts + 1):
        who, place = rng.choice(people), rng.choice(places)
        where[who] = (place, i)
        lines.append(f"{i} {who} moved to the {place}.")
    who = rng.choice(list(where))
    place, i = where[who]
    lines.append(f"{facts + 1} Where is {who}? \t{place}\t{i}")
    return lines


with tarfile.open(os.path.join(root, "babi-tasks-v1-2.tar.gz"), "w:gz") as tar:
    for folder, task in [("en", "qa2_two-supporting-facts"), ("en-10k", "qa1_single-supporting-fact"),
                         ("en", "qa1_single-supporting-fact"), ("en-10k", "qa2_two-supporting-facts")]:
        for split, stories in [("train", 300), ("test", 100)]:
            text = "\n".join(line for _ in range(stories) for line in babi_story(int(rng.integers(2, 6)))) + "\n"
            data = text.encode()
            info = tarfile.TarInfo(f"tasks_1-20_v1-2/{folder}/{task}_{split}.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

# Lines of English and French separated by a tab (lstm_seq2seq.R's fra.txt), and Quora's
# question pairs (quora_siamese_lstm.R): their formats, random words.
with open(os.path.join(work, "fra.txt"), "w") as f:
    for _ in range(2000):
        english = " ".join(rng.choice(words[:300], size=int(rng.integers(1, 5))))
        french = " ".join(rng.choice(words[300:600], size=int(rng.integers(1, 6))))
        f.write(f"{english.capitalize()}.\t{french.capitalize()}.\n")
with open(os.path.join(root, "quora_duplicate_questions.tsv"), "w") as f:
    f.write("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n")
    for i in range(2000):
        q1 = " ".join(rng.choice(words[:500], size=int(rng.integers(3, 12)))) + "?"
        q2 = " ".join(rng.choice(words[:500], size=int(rng.integers(3, 12)))) + "?"
        f.write(f"{i}\t{2 * i + 1}\t{2 * i + 2}\t{q1}\t{q2}\t{int(rng.integers(0, 2))}\n")

# Images that scripts read from their own folder (neural_style_transfer.R).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import tensorflow as tf  # noqa: E402

picture = rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
with open(os.path.join(work, "neural-style-base-img.png"), "wb") as f:
    f.write(tf.io.encode_png(picture).numpy())
with open(os.path.join(work, "neural-style-style.jpg"), "wb") as f:
    f.write(tf.io.encode_jpeg(picture[::-1]).numpy())
# The applications vignette's photo (a user's "elephant.jpg").
with open(os.path.join(work, "elephant.jpg"), "wb") as f:
    f.write(tf.io.encode_jpeg(rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)).numpy())

# Pretrained application weights (random values, Keras's file names and layout, written by
# tf-keras) and ImageNet's class index, in the cache's models/ folder.
import tf_keras as keras  # noqa: E402

models = os.path.join(sys.argv[1], "models")
os.makedirs(models, exist_ok=True)
for name, make in [("vgg16", keras.applications.VGG16), ("vgg19", keras.applications.VGG19),
                   ("resnet50", keras.applications.ResNet50), ("inception_v3", keras.applications.InceptionV3),
                   ("xception", keras.applications.Xception)]:
    for top in [True, False]:
        path = os.path.join(models, f"{name}_weights_tf_dim_ordering_tf_kernels{'' if top else '_notop'}.h5")
        if not os.path.exists(path):
            keras.backend.clear_session()
            make(weights=None, include_top=top).save_weights(path)
with open(os.path.join(models, "imagenet_class_index.json"), "w") as f:
    json.dump({str(i): [f"n{10000000 + i}", f"class_{i}"] for i in range(1000)}, f)
