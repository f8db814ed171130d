"""Lock with uv: ``uv pip compile --generate-hashes`` for the base's Python and platform.

uv resolves for another platform than the one it runs on (``--python-version``,
``--python-platform``): the base's, read from its labels. The base's own Python packages are
constraints (see :class:`~tfgov_ci.stages.lock.interface.Compiler`).
"""

from __future__ import annotations

import os
from pathlib import Path

from tfgov_ci import tools
from tfgov_ci.context import Context
from tfgov_ci.stages.lock.interface import Compiler


def uv_binary() -> str:
    """uv from the uv package installed beside tfgov-ci, else from PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return tools.which("uv")


class UvLocker(Compiler):
    name = "uv"
    tool = "uv"
    tools = ("skopeo", "uv")

    def _argv(self, ctx: Context, platform: str, output: str, constraints: str | None) -> list[str]:
        cfg = ctx.config
        argv = [
            "uv",
            "pip",
            "compile",
            "--quiet",
            "--generate-hashes",
            "--no-header",
            "--python-version",
            cfg.runtime.python,
            "--python-platform",
            platform,
            "--output-file",
            output,
            cfg.dependencies.requirements,  # relative (uv runs in the project): "# via -r requirements.txt"
        ]
        if constraints:
            argv += ["--constraint", constraints]
        return argv

    def _executable(self) -> list[str]:
        return [uv_binary()]

    def _settings(self, ctx: Context) -> dict[str, str | bytes]:
        """uv's ``UV_*`` variables and the configuration files it may read: ``uv.toml`` and
        ``pyproject.toml`` in the project folder and each above it, the user's and the system's
        ``uv.toml``, and ``$UV_CONFIG_FILE``. Each is named by its place in that search, not by its
        path, so a move of the whole tree keeps the key."""
        found: dict[str, str | bytes] = {
            name: value for name, value in os.environ.items() if name.startswith("UV_")
        }
        here = ctx.config.project_dir.resolve()
        places = {
            f"{up} folders up: {name}": folder / name
            for up, folder in enumerate([here, *here.parents])
            for name in ("uv.toml", "pyproject.toml")
        }
        places["user: uv.toml"] = (
            Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "uv/uv.toml"
        )
        for n, folder in enumerate([*os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":"), "/etc"]):
            places[f"system {n}: uv.toml"] = Path(folder) / "uv/uv.toml"
        if os.environ.get("UV_CONFIG_FILE"):
            places["UV_CONFIG_FILE"] = Path(os.environ["UV_CONFIG_FILE"])
        for place, path in places.items():
            if path.is_file():
                found[f"file {place}"] = path.read_bytes()
        return found
