#!/usr/bin/env bash
# Create .venv/ in the repository root with a Python >= 3.12 and install creep-cathode into it.
# Usage: bash scripts/setup.sh [--test]      (--test also installs the test extras)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

find_python() {
  local c
  # 1. explicit choice; 2. versioned names on PATH; 3. pyenv installs; 4. plain python3
  for c in "${PYTHON:-}" python3.13 python3.12 python3.14; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && PYENV_VERSION= "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      echo "$c"; return 0
    fi
    # pyenv shims need PYENV_VERSION set to the matching install
    if command -v pyenv >/dev/null 2>&1; then
      local v
      for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9])(\.|$)' | sort -rV); do
        if PYENV_VERSION="$v" "$(pyenv root)/versions/$v/bin/python3" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
          echo "$(pyenv root)/versions/$v/bin/python3"; return 0
        fi
      done
    fi
  done
  for c in "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3 /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9] python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  return 1
}

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
  py="$(find_python)" || { echo "error: creep-cathode needs Python >= 3.12; none found (set PYTHON=/path/to/python3.12)" >&2; exit 1; }
  echo "using $py ($("$py" --version 2>&1))"
  rm -rf .venv
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
extras="."
[ "${1:-}" = "--test" ] && extras=".[test]"
.venv/bin/python -m pip install -q -e "$extras"
echo "ready: $root/.venv/bin/creep-cathode"
