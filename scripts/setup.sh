#!/usr/bin/env bash
# Install tfgov-ci (editable, with test and dev extras) into .venv, and the system tools its
# tests use. Idempotent: each part is skipped when already done (apt packages present, the right
# gitlab-ci-local, .venv installed from this pyproject.toml, TensorFlow unpacked), so a second run
# takes seconds. `make demo`, `make test` and `make lint` run it through the stamp .venv/.setup-done.
# Later stages add their tools here.
set -euo pipefail
cd "$(dirname "$0")/.."

# golang-go and bbolt: the tests and benchmarks write a small trivy vulnerability database
# (tfgov_ci/testing/trivydb), as trivy cannot download one offline. groovy and a JRE compile and
# run the Jenkins library; rsync is gitlab-ci-local's. postgresql: the inventory's tests start a
# throwaway PostgreSQL 15 cluster (tfgov_ci/testing/postgres.py); the package starts no service here.
# prometheus: the fleet tests start a real one scraping a fixture exporter
# (tfgov_ci/testing/prometheus.py); the package starts no service here either. chromium: the fleet
# page's tests open it headless (tfgov_ci/testing/browser.py, through Playwright's Python package,
# which then downloads no browser of its own); fonts-dejavu-core is the font its charts name.
apt_packages=(git docker-registry skopeo buildah docker.io apache2-utils openssl golang-go
  golang-github-coreos-bbolt-dev groovy default-jre-headless rsync postgresql prometheus chromium
  fonts-dejavu-core)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: need root to install ${missing[*]} (apt-get)" >&2
    exit 2
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# gitlab-ci-local runs the emitted GitLab template end to end (4.73.0: later ones need Node 22).
if ! command -v gitlab-ci-local >/dev/null || [[ $(gitlab-ci-local --version) != 4.73.0 ]]; then
  npm install --global --silent gitlab-ci-local@4.73.0
fi

# tfgov-ci itself, editable: skipped when this pyproject.toml is what .venv was installed from (its
# hash in .venv/.pip-installed), so that a run on a set-up machine takes a second, offline.
# Moving modules inside tfgov_ci/ needs no reinstall (the editable install points at the folder).
pip_spec='.[test,dev]'
pip_key="$(sha256sum pyproject.toml | cut -d' ' -f1) $pip_spec"
if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c '' 2>/dev/null; then
  python3 -m venv --clear .venv
fi
if [[ ! -x .venv/bin/tfgov-ci || $(cat .venv/.pip-installed 2>/dev/null) != "$pip_key" ]]; then
  rm -f .venv/.pip-installed
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e "$pip_spec"
  echo "$pip_key" >.venv/.pip-installed
fi
# tfgov-ci's own bytecode, as installing its wheel writes it: an editable install writes none, and
# with PYTHONDONTWRITEBYTECODE set (CI images often set it) every command would compile its modules
# again (0.1 s a process). A changed module is compiled again in memory, as always.
.venv/bin/python -m compileall -q tfgov_ci
# The example's runtime, for the test that trains examples/tf-mnist for real: TensorFlow for the
# base's Python and platform, installed into a folder (not the venv), as the base image holds it.
tf_dir=.cache/tensorflow-cpu-2.21.0
if [[ ! -f $tf_dir/.complete ]]; then
  rm -rf "$tf_dir"
  .venv/bin/python -m pip install -q --target "$tf_dir" --only-binary=:all: \
    --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 --python-version 3.11 \
    tensorflow-cpu==2.21.0 PyYAML
  touch "$tf_dir/.complete"
fi

# cosign 3 signs and verifies (the sign stage, `tfgov-ci verify`). It is not in bookworm; Debian sid's
# package is a static Go binary that runs here. Fetched with a private sources list (the machine's
# apt sources are not changed) and unpacked beside tfgov-ci's Python, where tfgov-ci looks for tools.
cosign_version=3.1.1
# (Debian's build reports "GitVersion: devel", so the stamp .venv/.cosign-version says which it is.)
if [[ ! -x .venv/bin/cosign || $(cat .venv/.cosign-version 2>/dev/null) != "$cosign_version" ]]; then
  sid=$(mktemp -d)
  trap 'rm -rf "$sid"' EXIT
  # the machine's own Debian mirror (a missing sources file is no error)
  mirror=$(sed -n 's|^URIs: *\(http[^ ]*\).*|\1|p; s|^deb \(\[[^]]*\] \)\{0,1\}\(http[^ ]*\).*|\2|p' \
    /etc/apt/sources.list.d/* /etc/apt/sources.list 2>/dev/null | awk 'NR == 1') || true
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror:-http://deb.debian.org/debian} sid main" \
    >"$sid/sources.list"
  mkdir -p "$sid/lists/partial" "$sid/cache/archives/partial"
  apt_sid=(-o "Dir::Etc::sourcelist=$sid/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$sid/lists"
    -o "Dir::Cache=$sid/cache" -o APT::Sandbox::User=root)
  apt-get -qq "${apt_sid[@]}" update
  (cd "$sid" && apt-get -qq "${apt_sid[@]}" download "cosign=$cosign_version-*")
  dpkg-deb -x "$sid"/cosign_*.deb "$sid/root"
  install -m 0755 "$sid/root/usr/bin/cosign" .venv/bin/cosign
  echo "$cosign_version" >.venv/.cosign-version
fi

echo "setup: done: $(.venv/bin/tfgov-ci --version) in .venv, cosign $cosign_version"
