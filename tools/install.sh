#!/usr/bin/env bash
# Create or update .venv with kd installed in editable mode: `tools/install.sh EXTRAS`, where EXTRAS
# is `core` (what the default pipeline needs) or a comma-separated list of pyproject.toml's extras
# (`test`, `jax,torch`, ...). Versions come from constraints.txt, so the environment is the tested one.
#
# Called by the Makefile before every target that needs .venv; when .venv already holds what was
# asked for, with the same pyproject.toml and constraints.txt, it returns at once. An environment
# whose install did not finish (killed, out of disk, no network) has no stamp and is rebuilt.
# Every failure is one line saying what is missing and the command that fixes it.
set -uo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP=$VENV/kd-install
LOG=.venv-install.log
want=${1:-core}

fail() { echo "error: $*" >&2; exit 1; }

# The interpreter: $PYTHON when given, else python3.11 (the version constraints.txt was tested
# with), else a newer python3.x, else python3 if it is >= 3.11.
version_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }
find_python() {
    if [ -n "${PYTHON:-}" ]; then
        command -v "$PYTHON" >/dev/null 2>&1 || fail "PYTHON=$PYTHON: no such interpreter; name a Python >= 3.11, e.g. make repro PYTHON=python3.12"
        version_ok "$PYTHON" || fail "PYTHON=$PYTHON is $("$PYTHON" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo 'not a working Python'); kd needs Python >= 3.11"
        echo "$PYTHON"; return
    fi
    for candidate in python3.11 python3.12 python3.13 python3.14 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && version_ok "$candidate"; then echo "$candidate"; return; fi
    done
    found=$(command -v python3 >/dev/null 2>&1 && python3 -c 'import platform; print("python3 is " + platform.python_version())' 2>/dev/null || echo "no python3 on PATH")
    fail "kd needs Python >= 3.11 ($found): install one (Debian/Ubuntu: apt-get install python3.11 python3.11-venv) or name it with PYTHON=/path/to/python3.12"
}

# What .venv must hold: the extras and the hash of the files that decide its contents.
digest=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import kd' >/dev/null 2>&1; then
    read -r have_digest have_extras < "$STAMP"
    if [ "$have_digest" = "$digest" ]; then
        [ "$want" = core ] && exit 0
        missing=0
        for extra in ${want//,/ }; do case ",$have_extras," in *",$extra,"*) ;; *) missing=1 ;; esac; done
        [ $missing = 0 ] && exit 0
    fi
    have=$have_extras
else
    have=core
    if [ -e "$VENV" ]; then
        echo "kd: $VENV is incomplete (an earlier install did not finish): rebuilding it" >&2
        rm -rf "$VENV"
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    python=$(find_python) || exit 1
    "$python" -c 'import venv, ensurepip' >/dev/null 2>&1 || \
        fail "$python has no venv module (Debian/Ubuntu: apt-get install python3-venv, or python$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv)"
    "$python" -m venv "$VENV" >"$LOG" 2>&1 || { rm -rf "$VENV"; fail "$python -m venv $VENV failed (see $LOG)"; }
fi

# Extras accumulate: `make test` after `make repro` adds to the same environment.
extras=$have
[ "$want" != core ] && extras="$have,$want"
extras=$(echo "$extras" | tr ',' '\n' | grep -v '^core$' | sort -u | paste -sd, -)
spec="."
[ -n "$extras" ] && spec=".[$extras]"
no_deps=$("$VENV/bin/python" -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["tool"]["kd"]["no-deps"]))') \
    || fail "pyproject.toml has no [tool.kd] no-deps list"

echo "kd: installing $spec into $VENV (pinned by constraints.txt; log: $LOG)" >&2
rm -f "$STAMP"
if ! { "$VENV/bin/python" -m pip install --quiet --upgrade pip \
       && "$VENV/bin/python" -m pip install --quiet -e "$spec" -c constraints.txt \
       && "$VENV/bin/python" -m pip install --quiet --no-deps $no_deps; } >>"$LOG" 2>&1; then
    reason=$(grep -m1 '^ERROR' "$LOG" || tail -n1 "$LOG")
    fail "pip could not install kd$([ -n "$extras" ] && echo "[$extras]"): ${reason#ERROR: } (full log: $LOG; run the same command again to retry)"
fi
echo "$digest ${extras:-core}" > "$STAMP"
