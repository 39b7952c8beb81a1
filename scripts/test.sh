#!/usr/bin/env bash
# Install posegen-tui with its test extras (CPU torch pins) and run lint + the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -c constraints-cpu.txt -e '.[test]'
ruff check .
lint-imports  # the layer contracts in pyproject.toml
# Types of engine/ and sessions/ ([tool.mypy] in pyproject.toml). Not a gate yet (#14):
# files being refactored elsewhere still have errors; drop the `||` once they land.
mypy || echo "mypy found errors (not failing the run yet, #14)" >&2
python -m pytest -q "$@"
