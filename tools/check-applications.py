"""Checks rustgpu's applications against tf-keras's: for each, tf-keras builds the model
(random weights, small input), saves its weights and its predictions on random images; then
R builds the same application with `weights = <that file>` and compares predictions.
Run: .venv-keras/bin/python tools/check-applications.py  (needs the package installed in
.rlib). Prints the largest difference per application."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import tf_keras as keras  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = {
    "vgg16": (keras.applications.VGG16, (32, 32, 3)),
    "vgg19": (keras.applications.VGG19, (32, 32, 3)),
    "resnet50": (keras.applications.ResNet50, (64, 64, 3)),
    "inception_v3": (keras.applications.InceptionV3, (75, 75, 3)),
    "xception": (keras.applications.Xception, (71, 71, 3)),
    "densenet121": (keras.applications.DenseNet121, (32, 32, 3)),
    "mobilenet": (keras.applications.MobileNet, (32, 32, 3)),
    "mobilenet_v2": (keras.applications.MobileNetV2, (33, 33, 3)),
}


def main():
    out = tempfile.mkdtemp()
    rng = np.random.default_rng(0)
    cases = {}
    for name, (make, shape) in APPS.items():
        keras.backend.clear_session()
        model = make(weights=None, include_top=False, input_shape=shape, pooling="avg")
        # Batch normalization's moving statistics away from 0 and 1, so that they count.
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                w = layer.get_weights()
                w[-2] = rng.normal(0, 0.1, w[-2].shape).astype("float32")
                w[-1] = rng.uniform(0.5, 1.5, w[-1].shape).astype("float32")
                layer.set_weights(w)
        path = os.path.join(out, name + ".h5")
        model.save_weights(path)
        x = rng.uniform(0, 255, (2,) + shape).astype("float32")
        np.save(os.path.join(out, name + "_x.npy"), x)
        cases[name] = {"weights": path, "x": x.tolist(), "pred": model.predict(x, verbose=0).tolist(), "shape": list(shape)}
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(cases, f)
    script = f"""
.libPaths(c('{ROOT}/.rlib', .libPaths())); library(rustgpu)
cases <- jsonlite::fromJSON('{out}/cases.json', simplifyVector = TRUE)
for (name in names(cases)) {{
  c <- cases[[name]]
  model <- get(paste0('application_', name))(weights = c$weights, include_top = FALSE, input_shape = c$shape, pooling = 'avg')
  got <- predict(model, c$x)
  cat(sprintf('%-13s max |difference| %.2e (largest value %.2e)\\n', name, max(abs(got - c$pred)), max(abs(c$pred))))
}}
"""
    sys.exit(subprocess.call(["Rscript", "-e", script]))


if __name__ == "__main__":
    main()
