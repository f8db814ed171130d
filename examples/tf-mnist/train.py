"""Train a tiny Keras classifier on generated, MNIST-shaped data and save it.

Real TensorFlow, no downloads: the data is drawn from a seeded generator (28x28 "digits" whose
class sets which band of pixels is bright), so the run takes seconds on a CPU and is the same
every time. Settings come from params.yaml; the model goes to $MODEL_DIR (default ./model).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf
import yaml


def make_data(samples: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=samples)
    images = rng.normal(0.0, 0.3, size=(samples, 28, 28)).astype("float32")
    band = 28 // classes
    for index, label in enumerate(labels):
        images[index, label * band : (label + 1) * band, :] += 1.0
    return images, labels


def build_model(classes: int) -> tf.keras.Model:
    model = tf.keras.Sequential([
        tf.keras.layers.Input(shape=(28, 28)),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(32, activation="relu"),
        tf.keras.layers.Dense(classes, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main() -> None:
    params = yaml.safe_load(Path(__file__).with_name("params.yaml").read_text())
    tf.keras.utils.set_random_seed(params["seed"])
    x, y = make_data(params["samples"], params["classes"], params["seed"])
    model = build_model(params["classes"])
    history = model.fit(x, y, epochs=params["epochs"], batch_size=params["batch_size"],
                        validation_split=0.2, verbose=2)
    accuracy = history.history["val_accuracy"][-1]
    out = Path(os.environ.get("MODEL_DIR", "model"))
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "tf-mnist.keras")
    print(f"tensorflow {tf.__version__}: val_accuracy={accuracy:.3f}, saved {out / 'tf-mnist.keras'}")


if __name__ == "__main__":
    main()
