# Sourced by scripts/demo and scripts/test: create .venv, upgrade pip, install the project with the given extras.
# Re-installs only when the install inputs change, so repeated runs start in seconds.
# Usage: ensure_venv "extras" [extra pip args...]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

ensure_python() {
    # Debian's python3 ships without venv/ensurepip; install them when we can.
    if ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
            echo "==> installing python3 and python3-venv with apt-get"
            apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-dev >/dev/null
        else
            echo "error: Python >= 3.11 with the venv module is required (Debian: sudo apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
}

ensure_venv() {
    local extras="$1"; shift
    local stamp="$VENV/.avaluma-install"
    local want
    want="$(cat "$ROOT/pyproject.toml" "$ROOT"/plugins/*/pyproject.toml 2>/dev/null | sha256sum | cut -c1-16) $extras $*"
    if [ -x "$PY" ] && [ -f "$stamp" ] && grep -qxF -- "$want" "$stamp"; then
        return 0
    fi
    ensure_python
    if [ ! -x "$PY" ]; then
        echo "==> creating $VENV"
        python3 -m venv "$VENV"
    fi
    echo "==> upgrading pip"
    "$PY" -m pip install -q --upgrade pip
    # avaluma[agent] needs avaluma-livekit-plugin, which is not on PyPI yet: it comes from this checkout.
    local livekit_plugin=()
    case ",$extras," in *,agent,*) livekit_plugin=(-e "$ROOT/plugins/livekit-plugin") ;; esac
    echo "==> installing avaluma[$extras] $*"
    # setuptools tells about every editable install that it is one ("Please be careful with folders..."), ten lines
    # per package; nothing to act on, so it is silenced for this command only.
    PYTHONWARNINGS="ignore:::setuptools.command.editable_wheel" \
        "$PY" -m pip install -q -e "$ROOT[$extras]" "${livekit_plugin[@]}" "$@"
    echo "$want" >> "$stamp"
}
