"""Lock with pip-tools: ``pip-compile --generate-hashes``, run by the Python tfgov-ci runs on.

pip-compile resolves for the interpreter it runs on: its Python version, its platform, its glibc.
So this backend locks only where that interpreter matches the base (the same Python minor version,
x86_64 Linux, a glibc no newer than the base's, so that no wheel is chosen that the base cannot
load) and says so otherwise; uv (the default) resolves for any target. The base's own packages
are constraints, as with uv (see :class:`~tfgov_ci.stages.lock.interface.Compiler`).
"""

from __future__ import annotations

import platform
import sys

from tfgov_ci.context import Context
from tfgov_ci.stages.lock.interface import Compiler, LockStageError


def host_target() -> tuple[str, str]:
    """This interpreter's Python version (3.11) and platform tag (manylinux_2_36_x86_64)."""
    libc, glibc = platform.libc_ver()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if libc != "glibc" or not glibc:
        return python, f"{sys.platform}_{platform.machine()}"
    major, minor = glibc.split(".")[:2]
    return python, f"manylinux_{major}_{minor}_{platform.machine()}"


class PipToolsLocker(Compiler):
    name = "pip-tools"
    tool = "pip-compile"
    tools = ("skopeo", "pip-compile")

    def _argv(self, ctx: Context, platform: str, output: str, constraints: str | None) -> list[str]:
        cfg = ctx.config
        argv = [
            "pip-compile",
            "--quiet",
            "--generate-hashes",
            "--no-header",
            "--no-emit-index-url",
            "--strip-extras",
            "--allow-unsafe",  # pip, setuptools pinned too: nothing unlocked in the image
            "--output-file",
            output,
            cfg.dependencies.requirements,
        ]
        if constraints:
            argv += ["--constraint", constraints]
        return argv

    def _executable(self) -> list[str]:
        return [sys.executable, "-m", "piptools", "compile"]

    def _check_target(self, ctx: Context, platform_tag: str) -> None:
        python, host = host_target()
        (host_glibc, host_arch), (base_glibc, base_arch) = _manylinux(host), _manylinux(platform_tag)
        if python != ctx.config.runtime.python or host_arch != base_arch or host_glibc > base_glibc:
            raise LockStageError(
                f"pip-tools resolves for the Python it runs on ({python} on {host}), not for the base's "
                f"(Python {ctx.config.runtime.python} on {platform_tag})",
                f"run tfgov-ci with Python {ctx.config.runtime.python} on x86_64 Linux with glibc "
                f"{base_glibc[0]}.{base_glibc[1]} or older, or use stages.lock.backend: uv",
            )


def _manylinux(tag: str) -> tuple[tuple[int, int], str]:
    """``manylinux_2_36_x86_64`` -> ((2, 36), "x86_64"); anything else -> ((0, 0), "")."""
    parts = tag.split("_", 3)
    if parts[0] != "manylinux" or len(parts) != 4 or not (parts[1] + parts[2]).isdigit():
        return (0, 0), ""
    return (int(parts[1]), int(parts[2])), parts[3]
