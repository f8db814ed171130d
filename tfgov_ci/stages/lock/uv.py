"""Lock with uv: ``uv pip compile --generate-hashes`` for the base's Python and platform.

uv resolves for another platform than the one it runs on (``--python-version``,
``--python-platform``): the base's, read from its labels. The base's own Python packages are
constraints (see :class:`~tfgov_ci.stages.lock.interface.Compiler`).
"""

from __future__ import annotations

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
