#!/usr/bin/env bash
# Install posegen-tui with its test extras (CPU torch pins) and run lint + the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -c constraints-cpu.txt -e '.[test]'
ruff check .
lint-imports  # the layer contracts in pyproject.toml
mypy  # types of the packages listed in pyproject.toml's [tool.mypy]
python -m pytest -q "$@"
