"""Reading and writing the files tfgov-ci owns.

Writes are whole or not at all: a temp file in the same folder, fsync, then rename, so a killed
run never leaves a half-written result, lock or record that a later run would trust.
YAML is read with a map from key path to line, so that every problem can name its line.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tfgov_ci.errors import ConfigError, Problem


def atomic_write_text(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(mode)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any, *, compact: bool = False) -> None:
    """Write ``data`` as stable JSON (sorted keys, trailing newline), atomically: indented for
    people, or ``compact`` for large files that machines read (about eight times faster to write:
    the standard library's C encoder does not indent)."""
    text = (
        json.dumps(data, separators=(",", ":"), sort_keys=True)
        if compact
        else json.dumps(data, indent=2, sort_keys=True)
    )
    atomic_write_text(path, text + "\n")


def display_path(path: Path) -> str:
    """A path as the user gave it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def key_path(parts: tuple[str | int, ...] | list[str | int]) -> str:
    """``("app", "files", 2)`` -> ``"app.files[2]"``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class YamlDoc:
    """A parsed YAML mapping plus the 1-based line of every key path in it."""

    file: str
    data: dict[str, Any]
    lines: dict[tuple[str | int, ...], int]

    def line_of(self, parts: tuple[str | int, ...]) -> int | None:
        """The line of the deepest existing prefix of ``parts`` (a missing key: its parent)."""
        for end in range(len(parts), -1, -1):
            line = self.lines.get(parts[:end])
            if line is not None:
                return line
        return None

    def has(self, parts: tuple[str | int, ...]) -> bool:
        return parts in self.lines


def load_yaml(path: Path, display: str | None = None) -> YamlDoc:
    """Parse a YAML file that must hold one mapping; problems raise :class:`ConfigError`."""
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(shown, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(shown, "", f"cannot read: {exc}")]) from None
    # One parse (libyaml's when PyYAML has it): the node tree gives the lines, the data is built
    # from that same tree.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            [Problem(shown, "", f"YAML syntax error: {reason}", "check indentation and quoting", line)]
        ) from None
    finally:
        loader.dispose()
    if data is None:
        data, node = {}, None
    if not isinstance(data, dict):
        raise ConfigError(
            [
                Problem(
                    shown,
                    "",
                    f"expected a mapping at the top, found {type(data).__name__}",
                    "the file holds keys such as 'version:' and 'image:'",
                    1,
                )
            ]
        )
    lines: dict[tuple[str | int, ...], int] = {(): 1}
    problems: list[Problem] = []
    if node is not None:
        _walk(node, (), lines, problems, shown)
    if problems:
        raise ConfigError(problems)
    return YamlDoc(shown, data, lines)


def _walk(
    node: yaml.Node,
    here: tuple[str | int, ...],
    lines: dict[tuple[str | int, ...], int],
    problems: list[Problem],
    shown: str,
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            child = (*here, key)
            if key in seen:
                # PyYAML keeps the last value silently; a duplicated key is almost always a mistake.
                problems.append(
                    Problem(
                        shown,
                        key_path(child),
                        "duplicate key",
                        "keep one of them",
                        key_node.start_mark.line + 1,
                    )
                )
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines, problems, shown)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*here, index)
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines, problems, shown)


def cache_dir() -> Path:
    """Where wheels, .debs, base images and dependency layers are cached: ``$TFGOV_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/tfgov-ci`` (``~/.cache/tfgov-ci``). Safe to delete at any time."""
    if os.environ.get("TFGOV_CACHE_DIR"):
        return Path(os.environ["TFGOV_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tfgov-ci"


def schema_problems(doc: YamlDoc, schema_name: str) -> list[Problem]:
    """Every place ``doc`` breaks ``schemas/<schema_name>.schema.json``, with its line."""
    import jsonschema

    from tfgov_ci import _resources

    validator = jsonschema.Draft202012Validator(_resources.schema(schema_name))
    return [
        Problem(
            doc.file, key_path(list(e.absolute_path)), e.message, line=doc.line_of(tuple(e.absolute_path))
        )
        for e in validator.iter_errors(doc.data)
    ]
