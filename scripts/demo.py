"""The main job: the governed pipeline on examples/tf-mnist, against a registry it starts itself.

1. start a throwaway registry on 127.0.0.1 (CNCF distribution);
2. build the central base (examples/tf-base: distroless Python 3.11 + TensorFlow, locked) and push it;
3. clone the example as a model team would have it, pin the base by the digest just pushed, scan
   offline against the PyPA advisory database (the test fixture; no network), commit;
4. a signing key pair, outside the repository (as a CI secret would be): the private key in
   COSIGN_PRIVATE_KEY, its password in COSIGN_PASSWORD;
5. `tfgov-ci plan`, then `tfgov-ci run`, which signs and attests the image by digest, publishes it
   under the commit's tags with its SBOMs, writes and attests the build record, prints the summary;
6. `tfgov-ci verify` on what was pushed, by tag (may it run?), and the SBOM fetched back by tag.
Exits with `tfgov-ci run`'s code, or verify's when the run passed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tfgov_ci.testing.registry import LocalRegistry  # noqa: E402


def sh(*argv: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    print(f"$ {' '.join(argv)}", flush=True)
    done = subprocess.run(argv, cwd=cwd, text=True, stdout=subprocess.PIPE, check=False)
    print(done.stdout, end="", flush=True)
    if check and done.returncode != 0:
        raise SystemExit(done.returncode)
    return done


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=demo", "-c", "user.email=demo@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="tfgov-demo.") as tmp, LocalRegistry() as registry:
        work = Path(tmp)
        print(f"== registry: {registry.host} (throwaway, 127.0.0.1 only)")

        print("\n== the platform team builds and pushes the central base image")
        base = work / "platform"
        shutil.copytree(ROOT / "examples" / "tf-base", base, ignore=shutil.ignore_patterns(".tfgov"))
        definition = base / "tfgov-base.yaml"
        definition.write_text(
            definition.read_text().replace(
                "  name: tf-base\n", f"  name: tf-base\n  registry: {registry.host}\n"
            )
        )
        built = sh("tfgov-ci", "base", "build", cwd=base)
        digest = re.search(r"^digest\s+(sha256:[0-9a-f]{64})", built.stdout, re.M)
        assert digest, "base build printed no digest"

        print("\n== a model team's repository: examples/tf-mnist, pinned to that base")
        origin = work / "tf-mnist"
        shutil.copytree(
            ROOT / "examples" / "tf-mnist", origin, ignore=shutil.ignore_patterns(".tfgov", "model")
        )
        config = origin / "tfgov.yaml"
        text = config.read_text()
        text = re.sub(
            r"image: registry\.example\.com/platform/tf-base@sha256:[0-9a-f]{64}",
            f"image: {registry.host}/platform/tf-base@{digest.group(1)}",
            text,
        )
        text = text.replace("registry: registry.example.com", f"registry: {registry.host}")
        text = text.replace(
            "allowed_registries: [registry.example.com]", f"allowed_registries: [{registry.host}]"
        )
        # Offline scanning: the osv matcher on the PyPA advisory database (a 2024 snapshot, in the
        # tests' fixtures). With network access, `backend: trivy+osv` adds trivy's database.
        with tarfile.open(ROOT / "tests" / "fixtures" / "osv" / "pypa-advisory-database.tar.gz") as archive:
            archive.extractall(work, filter="data")
        advisories = work / "pypa-advisory-database" / "vulns"
        text += f"\nstages:\n  scan:\n    backend: osv\n    options: {{advisories: {advisories}}}\n"
        config.write_text(text)
        git(origin, "init", "-q", "-b", "main")
        git(origin, "add", "-A")
        git(origin, "commit", "-q", "-m", "tf-mnist on the central base")
        clone = work / "clone"
        subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
        # The lock is the team's to commit: make it once, commit it, as a developer would.
        sh("tfgov-ci", "lock", cwd=clone)
        git(clone, "add", "requirements.lock", "requirements.lock.tree.json")
        git(clone, "commit", "-q", "-m", "lock")

        print("\n== the signing key (a CI secret in real life; never in the repository)")
        keys = work / "keys"
        keys.mkdir()
        os.environ["COSIGN_PASSWORD"] = "demo-only-password"
        cosign = shutil.which("cosign") or str(Path(sys.executable).parent / "cosign")
        subprocess.run([cosign, "generate-key-pair"], cwd=keys, check=True, capture_output=True)
        os.environ["COSIGN_PRIVATE_KEY"] = (keys / "cosign.key").read_text()
        print(f"public key: {keys / 'cosign.pub'}")

        print("\n== tfgov-ci plan (the dry run)")
        sh("tfgov-ci", "plan", cwd=clone)
        print("== tfgov-ci run")
        status = sh("tfgov-ci", "run", cwd=clone, check=False).returncode
        if status == 3:
            print("\ndemo: the pipeline stopped at a stage this version of tfgov-ci does not implement yet")
            print("      (exit 3, see CHANGELOG.md); every stage before it ran for real.")
        publish = clone / ".tfgov" / "out" / "publish" / "result.json"
        if publish.is_file() and '"status": "passed"' in publish.read_text():
            image = f"{registry.host}/ml/tf-mnist:main"
            print(f"\n== may {image} run? (what an admission controller asks)")
            # This run was a laptop's, so its builder is trusted here by name; CI's are by default.
            local = "https://tfgov-ci.dev/builders/local"
            key = str(keys / "cosign.pub")
            verdict = sh(
                "tfgov-ci", "verify", image, "--key", key, "--trusted-builder", local, cwd=work, check=False
            )
            sh("tfgov-ci", "sbom", "fetch", image, "--output", "fetched.spdx.json", cwd=work)
            status = status or verdict.returncode
        return status


if __name__ == "__main__":
    os.environ.setdefault("SYFT_CHECK_FOR_APP_UPDATE", "false")
    raise SystemExit(main())
