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
from tfgov_ci.stages.lock import reuse
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

    def _settings(self, ctx: Context) -> dict[str, str | bytes] | None:
        """uv's ``UV_*`` variables (credentials left out) and the files they name, and the
        configuration files uv may read: ``uv.toml`` and ``pyproject.toml`` in the project folder
        and each above it, the user's and the system's ``uv.toml``. Each file is named by its place
        in that search, not by its path, so a move of the whole tree keeps the key. None (resolve
        every run) when a variable names a folder (``UV_FIND_LINKS``): its wheels are not in a key."""
        here = ctx.config.project_dir.resolve()
        found: dict[str, str | bytes] = {}
        places: dict[str, Path] = {}
        for name, value in sorted(os.environ.items()):
            kept = reuse.setting(name, value) if name.startswith("UV_") else None
            if kept is None:
                continue
            found[name] = kept
            for n, word in enumerate(kept.split()):  # uv's lists are space-separated
                if "://" in word:
                    continue  # a URL: its text is the setting
                named = here / word  # uv runs in the project folder; an absolute path stays itself
                if named.is_dir() and not name.endswith("_DIR"):
                    return None  # a folder of inputs (UV_FIND_LINKS), not uv's own (UV_CACHE_DIR)
                places[f"{name} file {n}"] = named
        for up, folder in enumerate([here, *here.parents]):
            for file in ("uv.toml", "pyproject.toml"):
                places[f"{up} folders up: {file}"] = folder / file
        places["user: uv.toml"] = (
            Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "uv/uv.toml"
        )
        systems = [*os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":"), "/etc"]
        for n, system in enumerate(systems):
            places[f"system {n}: uv.toml"] = Path(system) / "uv/uv.toml"
        for place, path in places.items():
            if path.is_file():
                found[f"file {place}"] = path.read_bytes()
        return found
