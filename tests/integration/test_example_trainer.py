"""The example is a real TensorFlow trainer: train it on generated data and load the saved model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import EXAMPLE, ROOT, unavailable

TF_DIR = ROOT / ".cache" / "tensorflow-cpu-2.21.0"  # installed by scripts/setup.sh


def test_train_py_trains_and_saves_a_keras_model(tmp_path: Path) -> None:
    if not (TF_DIR / ".complete").is_file():
        unavailable(f"TensorFlow for the example is not installed in {TF_DIR} (make setup)")
    for name in ("train.py", "params.yaml"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    env = {
        **os.environ,
        "PYTHONPATH": str(TF_DIR),
        "MODEL_DIR": str(tmp_path / "model"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
    }

    def python(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    done = python("train.py")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tensorflow 2.21.0: val_accuracy=" in done.stdout
    accuracy = float(done.stdout.split("val_accuracy=")[1].split(",")[0])
    assert accuracy > 0.5  # ten classes: chance is 0.1
    loaded = python(
        "-c",
        "import tensorflow as tf; print(tf.keras.models.load_model('model/tf-mnist.keras').output_shape)",
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().endswith("(None, 10)")
