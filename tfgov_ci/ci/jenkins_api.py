"""Jenkins through jenkinsapi: trigger a job, stream its console, return its result.

The server from ``--url`` or ``JENKINS_URL``; the user and API token from ``TFGOV_JENKINS_USER`` and
``TFGOV_JENKINS_TOKEN`` (never from the command line, never in output).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from tfgov_ci.errors import GateFailed, ToolError, UsageError


def run(
    job_name: str,
    params: Mapping[str, str],
    env: Mapping[str, str],
    url: str | None,
    write: Callable[[str], Any],
    poll_s: float = 2.0,
) -> str:
    """Trigger ``job_name`` with ``params``, stream its console through ``write``; its result
    (SUCCESS), or :class:`GateFailed` for any other."""
    from jenkinsapi.custom_exceptions import (  # type: ignore[import-untyped]
        JenkinsAPIException,
        UnknownJob,
    )
    from jenkinsapi.jenkins import Jenkins  # type: ignore[import-untyped]
    from requests import RequestException

    logging.getLogger("jenkinsapi").setLevel(logging.WARNING)  # its INFO lines are not ours to print
    url = url or env.get("JENKINS_URL")
    if not url:
        raise UsageError("no Jenkins server", "pass --url, or set JENKINS_URL")
    user, token = env.get("TFGOV_JENKINS_USER"), env.get("TFGOV_JENKINS_TOKEN")
    try:
        server = Jenkins(url, username=user, password=token, lazy=True, timeout=30)
        job = server.get_job(job_name)
        queued = job.invoke(build_params=dict(params) or None)
        build = queued.block_until_building(delay=poll_s)
        write(f"tfgov-ci: {job_name} #{build.get_number()} started: {build.baseurl}\n")
        for chunk in build.stream_logs(interval=poll_s):
            write(chunk)
        build.block_until_complete(delay=poll_s)
        result = str(build.get_status())
    except UnknownJob:
        raise UsageError(f"Jenkins has no job {job_name!r}", f"check the name at {url}") from None
    except (JenkinsAPIException, RequestException) as exc:
        reason = str(exc).replace(token, "***") if token else str(exc)
        raise ToolError(
            f"Jenkins did not run {job_name}: {reason}", "check JENKINS_URL and the token"
        ) from None
    if result != "SUCCESS":
        raise GateFailed(f"{job_name} #{build.get_number()} finished {result}", f"see {build.baseurl}console")
    return result
