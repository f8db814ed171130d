"""Reading kube-state-metrics' series without a server: the image_id forms container runtimes
report, and the labels Prometheus renames when it scrapes kube-state-metrics without
honor_labels (the integration tests read the same series from a real Prometheus)."""

from __future__ import annotations

import pytest

from tfgov_ci.errors import UsageError
from tfgov_ci.inventory import instances
from tfgov_ci.inventory.prometheus import Series

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("image_id", "digest"),
    [
        (f"docker-pullable://registry.example.com/ml/fraud@{DIGEST}", DIGEST),  # Docker
        (f"registry.example.com/ml/fraud@{DIGEST}", DIGEST),  # containerd, CRI-O
        (DIGEST, DIGEST),  # containerd without a repository digest
        (f"docker://{DIGEST}", None),  # Docker's local image id: the config's digest
        ("", None),  # still pulling
        ("registry.example.com/ml/fraud:main", None),
        ("sha256:abc", None),
    ],
)
def test_image_id_forms_give_the_manifest_digest_or_a_reason(image_id: str, digest: str | None) -> None:
    found, reason = instances.digest_of(image_id)
    assert found == digest and bool(reason) == (digest is None)


def test_labels_renamed_by_a_scrape_without_honor_labels_are_read_as_kube_state_metrics_meant() -> None:
    labels = {"namespace": "monitoring", "pod": "kube-state-metrics-0", "exported_namespace": "ml",
              "exported_pod": "fraud-0", "container": "model", "image": "x", "image_id": DIGEST}  # fmt: skip
    found, skipped = instances._read([Series(labels, ((1.0, 1.0), (2.0, 1.0)))])
    assert list(found) == [("ml", "fraud-0", "model", DIGEST)] and not skipped


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("6h", 21600), ("7d", 604800)])
def test_durations(text: str, seconds: int) -> None:
    assert instances.seconds(text) == seconds


@pytest.mark.parametrize("text", ["7days", "0h", "-1d", "d", ""])
def test_a_malformed_duration_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="is not a duration"):
        instances.seconds(text)


def test_a_server_that_is_not_prometheus_is_named_so_not_quoted_as_an_html_page() -> None:
    """A real HTTP server (the standard library's) that answers the API's POST with its HTML error
    page, as a web server or a proxy in front of nothing would."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tfgov_ci.inventory.prometheus import Prometheus, PrometheusError

    class NoApi(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), NoApi) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with pytest.raises(PrometheusError) as raised:
                Prometheus.of(f"http://127.0.0.1:{server.server_address[1]}").query("up")
        finally:
            server.shutdown()
    said = str(raised.value)
    assert "query 'up': HTTP 501: the answer is not JSON (is this Prometheus' base URL?)" in said
    assert "<" not in said
