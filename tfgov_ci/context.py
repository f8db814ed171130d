"""Who, what and where: the commit (GitPython), the CI system, and the image references.

Tag rules (also in the README, "Image tags"):

- ``<full sha>`` (40 hex) and ``<short sha>`` (the first 8, as GitLab's CI_COMMIT_SHORT_SHA);
- the branch, slugged; every git tag on the commit, slugged;
- slug: lowercase; every run of characters outside ``[a-z0-9_.-]`` becomes one ``-``; leading
  ``.``/``-`` and trailing ``-`` dropped; at most 128 characters (Docker's tag grammar
  ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``);
- on a dirty tree (``--allow-dirty`` only) every tag ends in ``-dirty``, still within 128.
"""

from __future__ import annotations

import os
import re
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from tfgov_ci.errors import ContextError
from tfgov_ci.oci.reference import Reference

if TYPE_CHECKING:
    from tfgov_ci.config import Config

SHORT_SHA_LENGTH = 8
MAX_TAG = 128
DIRTY_SUFFIX = "-dirty"
TFGOV_DIR = ".tfgov"  # tfgov-ci's own working folder in a project: never counts as dirt
LOCAL_LAYOUT = f"{TFGOV_DIR}/oci"  # where images go when no registry is configured


@dataclass(frozen=True)
class GitInfo:
    """The commit being built. ``commit_time`` is the committer timestamp (Unix seconds)."""

    root: Path
    sha: str
    branch: str | None
    tags: tuple[str, ...]
    dirty: bool
    dirty_paths: tuple[str, ...]
    commit_time: int
    remote_url: str | None
    detached: bool

    @property
    def short_sha(self) -> str:
        return self.sha[:SHORT_SHA_LENGTH]


@dataclass(frozen=True)
class CIInfo:
    """The CI system running us, from its environment variables; ``local`` on a laptop."""

    provider: str  # "gitlab" | "jenkins" | "local"
    pipeline_id: str | None = None
    pipeline_url: str | None = None
    job_id: str | None = None
    job_url: str | None = None
    branch: str | None = None
    tag: str | None = None
    commit: str | None = None
    repo_url: str | None = None


@dataclass(frozen=True)
class ImageRefs:
    """Where the image goes and under which tags."""

    repository: str  # "registry.example.com/ml/fraud-trainer" or "oci:.tfgov/oci:fraud-trainer", for people
    tags: tuple[str, ...]
    moving: tuple[str, ...] = ()  # the branch tag: it follows the branch; every other tag is immutable
    # the repository in the registry (no tag, no digest); None: the local OCI layout
    remote: Reference | None = None

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(f"{self.repository}:{tag}" for tag in self.tags)


@dataclass(frozen=True)
class Context:
    """Everything a stage may know about where it runs. Built once per command."""

    config: Config
    git: GitInfo
    ci: CIInfo
    out_dir: Path
    allow_dirty: bool = False
    force_retag: bool = False
    source_date_epoch: int = 0
    source_date_epoch_from: str = "commit"  # or "env" when SOURCE_DATE_EPOCH was set
    host: str = field(default_factory=socket.gethostname)

    def images(self) -> ImageRefs:
        """The image repository and commit tags; refuses a dirty tree unless allowed."""
        if self.git.dirty and not self.allow_dirty:
            shown = ", ".join(self.git.dirty_paths[:5])
            more = f" and {len(self.git.dirty_paths) - 5} more" if len(self.git.dirty_paths) > 5 else ""
            raise ContextError(
                f"the working tree has uncommitted changes ({shown}{more}): "
                "commit tags would not describe what is built",
                "commit or stash the changes, or pass --allow-dirty (tags then end in -dirty)",
            )
        tags = commit_tags(self.git, self.ci)
        branch = self.git.branch or self.ci.branch
        moving = tuple(t for t in commit_tags(self.git, self.ci, only_branch=True) if branch and t in tags)
        image = self.config.image
        remote = Reference(image.registry, image.repository) if image.registry else None
        return ImageRefs(image_repository(self.config), tags, moving, remote)


def image_repository(config: Config) -> str:
    """``registry/repository``, or the local OCI layout when no registry is configured."""
    if config.image.registry:
        return f"{config.image.registry}/{config.image.repository}"
    return f"oci:{LOCAL_LAYOUT}:{config.image.repository}"


def slug(text: str) -> str:
    """A branch or tag name as a Docker tag (see the module docstring)."""
    lowered = re.sub(r"[^a-z0-9_.-]+", "-", text.lower())
    lowered = re.sub(r"-{2,}", "-", lowered).lstrip(".-")[:MAX_TAG]
    return lowered.rstrip("-")


def commit_tags(git: GitInfo, ci: CIInfo, *, only_branch: bool = False) -> tuple[str, ...]:
    """The image tags of this commit (see the module docstring); ``only_branch``: the branch's."""
    tags = [] if only_branch else [git.sha, git.short_sha]
    branch = git.branch or ci.branch
    names = [branch] if branch else []
    if not only_branch:
        names += sorted(set(git.tags) | ({ci.tag} if ci.tag else set()))
    for name in names:
        tag = slug(name)
        if tag and tag not in tags:
            tags.append(tag)
    if git.dirty:
        room = MAX_TAG - len(DIRTY_SUFFIX)
        tags = [tag[:room].rstrip("-.") + DIRTY_SUFFIX for tag in tags]
    return tuple(dict.fromkeys(tags))


def strip_credentials(url: str | None) -> str | None:
    """Drop user:password@ from http(s)/ssh URLs; scp-like ``git@host:path`` is kept as is."""
    if not url:
        return url
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme and parsed.hostname:
        host = parsed.hostname if ":" not in parsed.hostname else f"[{parsed.hostname}]"
        netloc = f"{host}:{parsed.port}" if parsed.port else host
        return urllib.parse.urlunsplit(parsed._replace(netloc=netloc))
    return url


def detect_ci(env: Mapping[str, str]) -> CIInfo:
    """GitLab (GITLAB_CI=true), Jenkins (JENKINS_URL or BUILD_URL with BUILD_NUMBER), or local.
    GitLab sets GITLAB_CI to "true"; gitlab-ci-local sets "false", and is a local run."""

    def get(name: str) -> str | None:
        return env.get(name) or None

    if get("GITLAB_CI") == "true":
        return CIInfo(
            provider="gitlab",
            pipeline_id=get("CI_PIPELINE_ID"),
            pipeline_url=get("CI_PIPELINE_URL"),
            job_id=get("CI_JOB_ID"),
            job_url=get("CI_JOB_URL"),
            branch=get("CI_COMMIT_BRANCH") or get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"),
            tag=get("CI_COMMIT_TAG"),
            commit=get("CI_COMMIT_SHA"),
            repo_url=strip_credentials(get("CI_PROJECT_URL") or get("CI_REPOSITORY_URL")),
        )
    if get("JENKINS_URL") or (get("BUILD_URL") and get("BUILD_NUMBER")):
        git_branch = get("GIT_BRANCH")
        if git_branch and git_branch.startswith("origin/"):
            git_branch = git_branch.removeprefix("origin/")
        return CIInfo(
            provider="jenkins",
            pipeline_id=get("BUILD_TAG") or get("BUILD_NUMBER"),
            pipeline_url=get("BUILD_URL"),
            job_id=get("BUILD_NUMBER"),
            job_url=get("JOB_URL"),
            # Multibranch: CHANGE_BRANCH is a pull request's source, BRANCH_NAME the branch job.
            branch=get("CHANGE_BRANCH") or get("BRANCH_NAME") or git_branch,
            tag=get("TAG_NAME"),
            commit=get("GIT_COMMIT"),
            repo_url=strip_credentials(get("GIT_URL")),
        )
    return CIInfo(provider="local")


def read_git(start: Path, ignore: tuple[Path, ...] = ()) -> GitInfo:
    """Describe the commit checked out at ``start``; detached HEAD (as CI checks out) works."""
    import git  # GitPython: imported here so `tfgov-ci --version` stays fast

    try:
        repo = git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ContextError(
            f"{start} is not inside a git repository",
            "tfgov-ci tags images with the commit they are built from: "
            "run it in a clone, or `git init && git add -A && git commit`",
        ) from None
    if repo.working_tree_dir is None:
        raise ContextError(f"{start} is a bare git repository", "run tfgov-ci in a working tree")
    root = Path(repo.working_tree_dir).resolve()
    try:
        commit = repo.head.commit
    except ValueError:
        raise ContextError(
            f"the git repository at {root} has no commit yet", "commit the project first"
        ) from None
    detached = repo.head.is_detached
    tags = tuple(sorted(tag.name for tag in repo.tags if _tag_commit(tag) == commit.hexsha))
    remote = None
    if repo.remotes:
        names = [r.name for r in repo.remotes]
        chosen = repo.remote("origin") if "origin" in names else repo.remotes[0]
        remote = strip_credentials(next(iter(chosen.urls), None))
    dirty_paths = _dirty_paths(repo, root, ignore)
    return GitInfo(
        root=root,
        sha=commit.hexsha,
        branch=None if detached else repo.active_branch.name,
        tags=tags,
        dirty=bool(dirty_paths),
        dirty_paths=dirty_paths,
        commit_time=int(commit.committed_date),
        remote_url=remote,
        detached=detached,
    )


def _tag_commit(tag: object) -> str | None:
    try:
        return str(tag.commit.hexsha)  # type: ignore[attr-defined]
    except ValueError:  # a tag pointing at a tree or blob
        return None


def _dirty_paths(repo: object, root: Path, ignore: tuple[Path, ...]) -> tuple[str, ...]:
    """Changed, staged and untracked paths, except tfgov-ci's own working folders."""
    status: str = repo.git.status("--porcelain=v1", "-z", "--untracked-files=all")  # type: ignore[attr-defined]
    skip = []
    for folder in ignore:
        try:
            skip.append(PurePosixPath(folder.resolve().relative_to(root).as_posix()))
        except ValueError:
            continue  # outside the repository: cannot make it dirty
    paths = []
    entries = iter(status.split("\0"))
    for entry in entries:
        if not entry:
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":
            next(entries, None)  # a rename's source path follows as its own entry
        posix = PurePosixPath(path)
        if any(part == TFGOV_DIR for part in posix.parts):
            continue
        if any(posix == folder or folder in posix.parents for folder in skip):
            continue
        paths.append(path)
    return tuple(paths)


def discover(
    config: Config,
    out_dir: Path,
    *,
    allow_dirty: bool = False,
    force_retag: bool = False,
    env: Mapping[str, str] | None = None,
) -> Context:
    """Build the context for ``config``'s project."""
    environ = os.environ if env is None else env
    git = read_git(config.project_dir, ignore=(out_dir,))
    epoch, origin = git.commit_time, "commit"
    if environ.get("SOURCE_DATE_EPOCH"):
        try:
            epoch, origin = int(environ["SOURCE_DATE_EPOCH"]), "env"
        except ValueError:
            raise ContextError(
                f"SOURCE_DATE_EPOCH={environ['SOURCE_DATE_EPOCH']!r} is not an integer",
                "unset it to use the commit time, or set Unix seconds",
            ) from None
    return Context(
        config=config,
        git=git,
        ci=detect_ci(environ),
        out_dir=out_dir,
        allow_dirty=allow_dirty,
        force_retag=force_retag,
        source_date_epoch=epoch,
        source_date_epoch_from=origin,
    )
