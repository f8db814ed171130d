"""Prometheus' HTTP API, as the fleet commands read the cluster's own telemetry through it.

Two calls: an instant query (``/api/v1/query``) and a range query (``/api/v1/query_range``),
each answering a list of series (labels and samples). Both are POSTed as a form, as Grafana does:
a selector naming every pod of a large repository is longer than a URL may be. Anything that is not
a successful answer is :class:`PrometheusError` (exit 3) naming the URL, the query and what
Prometheus (or the network) said, so that a CI job's log says which query to try by hand. A
bearer token, when the server needs one, comes from ``$TFGOV_PROMETHEUS_TOKEN`` (a masked CI
variable), never from the command line; it is sent only to that server and never printed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tfgov_ci.errors import TfgovError, UsageError
from tfgov_ci.tools import redact

TOKEN_ENV = "TFGOV_PROMETHEUS_TOKEN"
TIMEOUT_S = 60
NOT_PROMETHEUS = "the answer is not JSON (is this Prometheus' base URL?)"


class PrometheusError(TfgovError):
    """Prometheus could not be reached or answered an error (exit 3): URL, query, reason."""


@dataclass(frozen=True)
class Series:
    """One time series of an answer: its labels and its samples (unix seconds, value)."""

    labels: Mapping[str, str]
    samples: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Prometheus:
    """A Prometheus server by its base URL (``http://prometheus.monitoring:9090``)."""

    url: str

    @classmethod
    def of(cls, url: str) -> Prometheus:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
            parts.port  # noqa: B018 (raises ValueError for a port that is no number)
        except ValueError:
            valid = False
        if not valid:
            raise UsageError(
                f"{redact(url)} is not a Prometheus URL",
                "give its base URL, e.g. http://prometheus.monitoring.svc:9090",
            )
        return cls(url.rstrip("/"))

    @property
    def shown(self) -> str:
        return redact(self.url)

    def query(self, promql: str, at: float | None = None) -> list[Series]:
        """The instant query's series (a vector; a scalar is one series without labels)."""
        params = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})}
        return self._series(self._ask("/api/v1/query", params, promql), promql)

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        """The range query's series (a matrix), samples every ``step`` seconds."""
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return self._series(self._ask("/api/v1/query_range", params, promql), promql)

    def _fail(self, promql: str, reason: str) -> PrometheusError:
        return PrometheusError(
            f"Prometheus {self.shown}: query {promql!r}: {reason}",
            "check the Prometheus URL and that the query runs in Prometheus' own UI",
        )

    def _ask(self, path: str, params: Mapping[str, str], promql: str) -> Any:
        import urllib.error
        import urllib.parse
        import urllib.request

        form = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(
            f"{self.url}{path}", form, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        token = os.environ.get(TOKEN_ENV)
        if token:
            request.add_unredirected_header("Authorization", f"Bearer {token}")  # not on to a redirect
        secrets = [token] if token else []
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            # Prometheus answers a bad query with 400 and a JSON error document: show its words
            body = exc.read()
            try:
                said = json.loads(body)
                reason = f"{said.get('errorType', 'error')}: {said.get('error', '')}"
            except ValueError:  # a proxy's or another server's page: its words if they are plain text
                text = body.decode(errors="replace").strip()
                reason = NOT_PROMETHEUS if text.startswith("<") else text[:300]
            raise self._fail(promql, redact(f"HTTP {exc.code}: {reason}", secrets)) from None
        except (urllib.error.URLError, OSError) as exc:
            why = getattr(exc, "reason", exc)
            raise self._fail(promql, redact(f"cannot connect: {why}", secrets)) from None
        try:
            answer = json.loads(body)
        except ValueError:
            raise self._fail(promql, NOT_PROMETHEUS) from None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            said = answer if isinstance(answer, dict) else {}
            raise self._fail(promql, f"{said.get('errorType', 'error')}: {said.get('error', answer)}")
        return answer.get("data")

    def _series(self, data: Any, promql: str) -> list[Series]:
        if not isinstance(data, dict) or "result" not in data:
            raise self._fail(promql, "the answer has no data.result")
        kind, result = data.get("resultType"), data["result"]
        if kind == "scalar":
            return [Series({}, ((float(result[0]), float(result[1])),))]
        if kind not in ("vector", "matrix"):
            raise self._fail(promql, f"expected a vector or matrix, got {kind}")
        out = []
        for entry in result:
            labels = {str(k): str(v) for k, v in (entry.get("metric") or {}).items()}
            points = entry.get("values") if kind == "matrix" else [entry.get("value")]
            out.append(Series(labels, tuple((float(t), float(v)) for t, v in points or [] if v is not None)))
        return out
