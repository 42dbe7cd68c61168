#!/bin/sh
# Makes .venv-keras with tf-keras and tensorflow-cpu from PyPI: the reference Keras that
# tests/fixtures/make_*.py use to write the fixtures (and bench/keras_peer.py runs against).
set -e
cd "$(dirname "$0")/.."
[ -x .venv-keras/bin/python ] || python3 -m venv .venv-keras
.venv-keras/bin/python -c "import tf_keras, scipy, tensorboard" 2>/dev/null || .venv-keras/bin/pip install -q tensorflow-cpu tf-keras scipy tensorboard
echo "keras-venv: $(.venv-keras/bin/python -c 'import tf_keras; print("tf-keras", tf_keras.__version__)')"
