"""The policy gate: Rego v1 rules over one input document, fail-closed.

Every rule is a package ``tfgov.rules.<name>`` with a set ``deny`` of messages; the default bundle
(``tfgov_ci/policies/``) holds one file per rule, a team adds its own files
(``stages.policy.options.policies``), the platform team makes rules mandatory. Parameters reach
the rules as ``data.tfgov.params``.

Fail-closed, whatever the engine: a file without ``import rego.v1`` is refused before evaluation
(a v0 ``deny[msg] { ... }`` reads as an object rule that never denies); an evaluation error, a
timeout, a rule whose ``deny`` is undefined or of the wrong type, a mandatory rule that did not
evaluate: each is a denial with its reason, never a pass.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tfgov_ci.errors import ConfigError, GateFailed, Problem
from tfgov_ci.stages.policy.exceptions import DEFAULT_FILE, DEFAULT_MAX_DAYS

BUNDLE = Path(__file__).resolve().parents[2] / "policies"
RULES_PACKAGE = "tfgov.rules"
QUERY = "data.tfgov.rules"

# By package name, Debian and PyPI: what a production image must not carry.
SHELLS = ("bash", "dash", "busybox", "zsh", "ksh", "mksh", "tcsh")
PACKAGE_MANAGERS = ("apt", "dpkg", "pip", "python3-pip", "rpm", "yum", "dnf", "apk-tools")

DEFAULT_PARAMS: dict[str, Any] = {
    "severity_threshold": "HIGH",
    "fixable_only": True,
    "naming_rule": "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
    "required_labels": [
        "org.opencontainers.image.revision",
        "org.opencontainers.image.created",
        "org.opencontainers.image.title",
        "org.opencontainers.image.base.name",
        "org.opencontainers.image.base.digest",
        "io.tfgov.lock.digest",
    ],
    "production": True,
    "forbidden_packages": [*SHELLS, *PACKAGE_MANAGERS],
    # With production false only: the forbidden packages this image may carry (the CI tools
    # image's shell and pip), named one by one; the others still deny it.
    "allowed_tools": [],
    "max_image_mb": 4000,
}
# stages.policy.options: the parameters above, plus these.
OPTIONS = {
    "policies": "extra .rego files or folders (relative to tfgov.yaml)",
    "disable": "default rules to switch off (never a mandatory one)",
    "mandatory": "rules that must evaluate and may not be disabled (the platform team's list)",
    "exceptions": "the governed exceptions file (default tfgov-exceptions.yaml)",
    "exceptions_max_days": "the longest an exception may run (default 90)",
    "timeout_s": "evaluation time limit in seconds (default 10)",
}
SEVERITY_LEVELS = ("CRITICAL", "HIGH", "MEDIUM", "LOW")


@dataclass(frozen=True)
class Module:
    name: str  # the rule package's last part, e.g. "non_root"
    file: Path
    text: str
    builtin: bool


@dataclass(frozen=True)
class RuleResult:
    name: str
    file: str
    denials: tuple[str, ...]
    error: str | None = None  # set: the rule failed closed

    @property
    def passed(self) -> bool:
        return not self.denials and self.error is None


@dataclass(frozen=True)
class Decision:
    allow: bool
    rules: tuple[RuleResult, ...]
    engine: str
    errors: tuple[str, ...] = ()  # failures not tied to one rule (parse error, timeout, crash)

    @property
    def denials(self) -> list[tuple[str, str]]:
        out = [(r.name, d) for r in self.rules for d in r.denials]
        out += [(r.name, r.error) for r in self.rules if r.error]
        out += [("engine", e) for e in self.errors]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "allow": self.allow,
            "engine": self.engine,
            "denials": [{"rule": rule, "message": message} for rule, message in self.denials],
            "rules": [
                {
                    "name": r.name,
                    "file": r.file,
                    "passed": r.passed,
                    "denials": list(r.denials),
                    "error": r.error,
                }
                for r in self.rules
            ],
            "errors": list(self.errors),
        }


@dataclass(frozen=True)
class Settings:
    params: Mapping[str, Any]
    policies: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    mandatory: tuple[str, ...] = ()
    exceptions: str = DEFAULT_FILE
    exceptions_max_days: int = DEFAULT_MAX_DAYS
    timeout_s: float = 10.0
    extra: Mapping[str, Any] = field(default_factory=dict)


def settings(
    options: Mapping[str, Any], where: tuple[str | int, ...] = ("stages", "policy", "options")
) -> Settings:
    """``stages.policy.options`` checked: unknown keys and wrong values are config problems."""
    problems = []
    known = {*DEFAULT_PARAMS, *OPTIONS}

    def problem(key: str, message: str, hint: str | None = None) -> None:
        problems.append(Problem("tfgov.yaml", ".".join(map(str, (*where, key))), message, hint))

    for key in options:
        if key not in known:
            problem(key, f"unknown policy option {key!r}", f"options are: {', '.join(sorted(known))}")
    params = {**DEFAULT_PARAMS, **{k: v for k, v in options.items() if k in DEFAULT_PARAMS}}
    if params["severity_threshold"] not in SEVERITY_LEVELS:
        problem(
            "severity_threshold",
            f"{params['severity_threshold']!r} is not a level",
            ", ".join(SEVERITY_LEVELS),
        )
    for key in ("fixable_only", "production"):
        if not isinstance(params[key], bool):
            problem(key, "must be true or false")
    try:
        re.compile(str(params["naming_rule"]))
    except re.error as exc:
        problem("naming_rule", f"not a regular expression ({exc})")
    if not isinstance(params["max_image_mb"], int | float) or params["max_image_mb"] <= 0:
        problem("max_image_mb", "must be a positive number of megabytes")
    lists = {}
    for key in ("policies", "disable", "mandatory", "required_labels", "forbidden_packages", "allowed_tools"):
        value = options.get(key, params.get(key, []))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problem(key, "must be a list of strings")
            value = []
        lists[key] = tuple(value)
    if params["production"] is False and not lists["allowed_tools"]:
        problem(
            "production",
            "a non-production image names the shells and package managers it may carry",
            "list them in allowed_tools (e.g. [dash, pip] for a CI tools image); "
            "model images keep production true",
        )
    if params["production"] is not False and lists["allowed_tools"]:
        problem(
            "allowed_tools",
            "only a non-production image may carry shells or package managers",
            "set production: false too, and only for an image that is never deployed (a CI tools image)",
        )
    strays = sorted(set(lists["allowed_tools"]) - set(lists["forbidden_packages"]))
    if strays:
        problem("allowed_tools", f"{', '.join(strays)} is not a forbidden package: nothing to allow")
    forced = sorted(set(lists["disable"]) & set(lists["mandatory"]))
    if forced:
        problem(
            "disable", f"{', '.join(forced)} is mandatory and cannot be disabled", "ask the platform team"
        )
    if problems:
        raise ConfigError(problems)
    return Settings(
        params=params,
        policies=lists["policies"],
        disable=lists["disable"],
        mandatory=lists["mandatory"],
        exceptions=str(options.get("exceptions", DEFAULT_FILE)),
        exceptions_max_days=int(options.get("exceptions_max_days", DEFAULT_MAX_DAYS)),
        timeout_s=float(options.get("timeout_s", 10)),
    )


# --- rule files ------------------------------------------------------------------------------

_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([A-Za-z0-9_.]+)[ \t]*$", re.MULTILINE)
_REGO_V1 = re.compile(r"^[ \t]*import[ \t]+rego\.v1[ \t]*$", re.MULTILINE)


def _rego_files(path: Path) -> list[Path]:
    return sorted(path.rglob("*.rego")) if path.is_dir() else [path]


def load_modules(project_dir: Path | None, chosen: Settings) -> list[Module]:
    """The default bundle (minus disabled rules) and the team's files; ConfigError for a file that
    is missing, outside ``tfgov.rules``, or not Rego v1, with its line."""
    modules = [_module(path, builtin=True) for path in sorted(BUNDLE.glob("*.rego"))]
    modules = [m for m in modules if m.name not in chosen.disable]
    roots = [(project_dir / entry) if project_dir else Path(entry) for entry in chosen.policies]
    return modules + team_modules(roots)


def team_modules(paths: Sequence[Path]) -> list[Module]:
    """Rule files or folders given by hand (``verify --policy``), checked as the gate checks a
    team's files; ConfigError naming each bad file and line."""
    problems: list[Problem] = []
    modules = []
    for root in paths:
        if not root.exists():
            problems.append(Problem(str(root), "", "no such policy file or folder"))
            continue
        for path in _rego_files(root):
            try:
                modules.append(_module(path, builtin=False))
            except ConfigError as exc:
                problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return modules


def _module(path: Path, *, builtin: bool) -> Module:
    text = path.read_text(encoding="utf-8")
    found = _PACKAGE.search(text)
    if not found or not found.group(1).startswith(RULES_PACKAGE + "."):
        line = text[: found.start()].count("\n") + 1 if found else 1
        raise ConfigError(
            [
                Problem(
                    str(path),
                    "",
                    f"package {found.group(1) if found else '(none)'} is not a rule package",
                    f"name it `package {RULES_PACKAGE}.<rule>` and give it a `deny contains msg if` rule",
                    line,
                )
            ]
        )
    if not _REGO_V1.search(text):
        raise ConfigError(
            [
                Problem(
                    str(path),
                    "",
                    "policy files must use Rego v1",
                    "add `import rego.v1` and write rules as `deny contains msg if { ... }`: "
                    "a v0 `deny[msg] { ... }` is read as an object and would never deny",
                    text[: found.end()].count("\n") + 1,
                )
            ]
        )
    return Module(found.group(1)[len(RULES_PACKAGE) + 1 :], path, text, builtin)


def decide(engine: str, modules: Sequence[Module], raw: Any, mandatory: Sequence[str] = ()) -> Decision:
    """Turn the engine's value of ``data.tfgov.rules`` into a decision, checking every type."""
    names = list(dict.fromkeys(m.name for m in modules))
    files = {m.name: str(m.file) for m in modules}
    if not isinstance(raw, dict):
        return Decision(False, (), engine, (f"the rules evaluated to {_kind(raw)}, not an object of rules",))
    results = []
    for name in names:
        value = raw.get(name, {}) if name in raw else None
        deny = value.get("deny") if isinstance(value, dict) else None
        if value is None or deny is None:
            results.append(
                RuleResult(name, files[name], (), "its deny rule is undefined: denied (fail-closed)")
            )
        elif not isinstance(deny, list):
            results.append(
                RuleResult(
                    name,
                    files[name],
                    (),
                    f"deny is {_kind(deny)}, not a set of messages: a Rego v0 rule? denied (fail-closed)",
                )
            )
        else:
            results.append(RuleResult(name, files[name], tuple(sorted(str(d) for d in deny))))
    missing = [m for m in mandatory if m not in names]
    errors = tuple(f"mandatory rule {m} did not evaluate (no such rule loaded)" for m in missing)
    allow = all(r.passed for r in results) and not errors
    return Decision(allow, tuple(results), engine, errors)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a set"
    return "undefined" if value is None else f"a {type(value).__name__}"


class EvaluationFailed(Exception):
    """The engine produced no value to trust: a parse error, an error, a timeout, a crash."""


class Engine(ABC):
    """A Rego evaluator: the default bundle and team files, data and input in; the value of
    ``data.tfgov.rules`` out. Evaluation starts in the background (another process), so the
    caller can write its other reports meanwhile."""

    name: ClassVar[str]

    @abstractmethod
    def start(
        self,
        modules: Sequence[Module],
        data: Mapping[str, Any],
        document: Mapping[str, Any],
        timeout_s: float,
    ) -> Callable[[], Any]:
        """Begin; the returned function waits for the rules' value, or raises
        :class:`EvaluationFailed` when there is none to trust."""

    def argv(self, folder: str, modules: Sequence[Module]) -> list[str] | None:
        """The command an engine that runs a tool starts (files in ``folder``); None in-process."""
        return None


def begin(
    engine: Engine, modules: Sequence[Module], params: Mapping[str, Any], document: Mapping[str, Any],
    timeout_s: float, mandatory: Sequence[str] = (),
) -> Callable[[], Decision]:  # fmt: skip
    """Start an evaluation; the returned function waits for its decision, failing closed."""

    def failed(exc: EvaluationFailed) -> Decision:
        return Decision(False, (), engine.name, (f"{exc}: denied (fail-closed)",))

    try:
        wait = engine.start(modules, {"tfgov": {"params": dict(params)}}, document, timeout_s)
    except EvaluationFailed as exc:
        early = failed(exc)
        return lambda: early

    def finish() -> Decision:
        try:
            raw = wait()
        except EvaluationFailed as exc:
            return failed(exc)
        return decide(engine.name, modules, raw, mandatory)

    return finish


def evaluate(
    engine: Engine, modules: Sequence[Module], params: Mapping[str, Any], document: Mapping[str, Any],
    timeout_s: float, mandatory: Sequence[str] = (),
) -> Decision:  # fmt: skip
    """One evaluation, start to decision."""
    return begin(engine, modules, params, document, timeout_s, mandatory)()


def denied(decision: Decision) -> GateFailed:
    first = decision.denials[:3]
    more = len(decision.denials) - len(first)
    text = "; ".join(f"{rule}: {message}" for rule, message in first) + (f"; and {more} more" if more else "")
    return GateFailed(
        f"policy denied the image: {text}", "see the policy summary (summary.md) for every rule"
    )
