"""Which Python and CUDA versions each TensorFlow release was built and tested with.

Source: the "Tested build configurations" tables (Linux CPU and GPU) of
https://www.tensorflow.org/install/source, for TensorFlow 2.10 to 2.20.
TensorFlow 2.21 is not in that table yet; its Python range was read off the wheels PyPI serves
for tensorflow-cpu 2.21.0 (cp310 to cp313; checked 2026-11-25), and its CUDA/cuDNN are assumed
unchanged from 2.20 (marked ``assumed`` below, and said so in every message that uses them).
Add a row when TensorFlow publishes a release; the unit tests walk every row.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "https://www.tensorflow.org/install/source#tested_build_configurations"


@dataclass(frozen=True)
class TfRelease:
    """One TensorFlow minor release and what it was tested with."""

    version: str  # major.minor
    python_min: tuple[int, int]
    python_max: tuple[int, int]
    cuda: str
    cudnn: str
    assumed: bool = False  # True where a value is not from the published table

    def supports_python(self, python: str) -> bool:
        major, minor = (int(part) for part in python.split("."))
        return self.python_min <= (major, minor) <= self.python_max

    def python_range(self) -> str:
        return f"{_dotted(self.python_min)}-{_dotted(self.python_max)}"


def _dotted(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


RELEASES: tuple[TfRelease, ...] = (
    TfRelease("2.21", (3, 10), (3, 13), "12.5", "9.3", assumed=True),
    TfRelease("2.20", (3, 9), (3, 13), "12.5", "9.3"),
    TfRelease("2.19", (3, 9), (3, 12), "12.5", "9.3"),
    TfRelease("2.18", (3, 9), (3, 12), "12.5", "9.3"),
    TfRelease("2.17", (3, 9), (3, 12), "12.3", "8.9"),
    TfRelease("2.16", (3, 9), (3, 12), "12.3", "8.9"),
    TfRelease("2.15", (3, 9), (3, 11), "12.2", "8.9"),
    TfRelease("2.14", (3, 9), (3, 11), "11.8", "8.7"),
    TfRelease("2.13", (3, 8), (3, 11), "11.8", "8.6"),
    TfRelease("2.12", (3, 8), (3, 11), "11.8", "8.6"),
    TfRelease("2.11", (3, 7), (3, 10), "11.2", "8.1"),
    TfRelease("2.10", (3, 7), (3, 10), "11.2", "8.1"),
)


def release(tensorflow: str) -> TfRelease | None:
    """The row for a TensorFlow version such as '2.21.0' or '2.21', or None if unknown."""
    minor = ".".join(tensorflow.split(".")[:2])
    return next((row for row in RELEASES if row.version == minor), None)


def releases_for_python(python: str) -> list[str]:
    """TensorFlow minor versions tested with this Python, newest first."""
    return [row.version for row in RELEASES if row.supports_python(python)]


def cuda_compatible(row: TfRelease, cuda: str) -> bool:
    """Same CUDA major, minor at least the tested one (CUDA's minor-version compatibility)."""
    want_major, want_minor = (int(part) for part in row.cuda.split("."))
    major, minor = (int(part) for part in cuda.split("."))
    return major == want_major and minor >= want_minor
