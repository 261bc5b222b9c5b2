#!/usr/bin/env bash
# Make the MLflow 2.11 Python client (and optionally its server) importable on
# Debian 12 from Debian packages only -- no PyPI.
#
#   setup.sh MLFLOW_SRC [QSP_SRC]
#
# MLFLOW_SRC  a directory holding the mlflow/ package of MLflow 2.11
#             (opendatahub-io/mlflow commit 2692f35ee18b6d06dee0de3d413d154af3c97576,
#             version string 2.11.3.dev0). Get it with, for example:
#               git archive 2692f35ee -- mlflow ':(exclude)mlflow/pypi_package_index.json' \
#                 | tar -x -C "$MLFLOW_SRC"
#             (pypi_package_index.json is only read when logging models; leave it out.)
# QSP_SRC     optional; a directory holding the querystring_parser/ package
#             (github.com/bernii/querystring-parser). Given, the server packages are
#             installed too and `python3 -m mlflow server` is checked to import.
#
# Idempotent: apt-get install is a no-op for installed packages. CI machines without
# an MLflow tree need none of this: the recorded exchanges in testdata/ are the spec.
# Use Debian's interpreter, /usr/bin/python3; a pyenv or venv python does not see
# /usr/lib/python3/dist-packages.
set -euo pipefail

if [[ $# -lt 1 || ! -f "$1/mlflow/version.py" ]]; then
  echo "usage: $0 MLFLOW_SRC [QSP_SRC]   (MLFLOW_SRC/mlflow/version.py must exist)" >&2
  exit 2
fi
MLFLOW_SRC=$(cd "$1" && pwd)
QSP_SRC=${2:+$(cd "$2" && pwd)}

client_pkgs=(python3 python3-click python3-cloudpickle python3-entrypoints python3-git
  python3-yaml python3-protobuf python3-tz python3-requests python3-packaging
  python3-importlib-metadata python3-sqlparse)
server_pkgs=(python3-flask python3-sqlalchemy python3-alembic python3-markdown
  python3-pandas python3-six gunicorn)

pkgs=("${client_pkgs[@]}")
[[ -n "$QSP_SRC" ]] && pkgs+=("${server_pkgs[@]}")

SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO=sudo
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PYPATH="$MLFLOW_SRC${QSP_SRC:+:$QSP_SRC}"
PYTHONPATH="$PYPATH" /usr/bin/python3 -c \
  'import mlflow, google.protobuf as p; print("mlflow", mlflow.__version__, "protobuf", p.__version__)'
if [[ -n "$QSP_SRC" ]]; then
  PYTHONPATH="$PYPATH" /usr/bin/python3 -c 'import mlflow.server.handlers, querystring_parser'
  echo "server imports ok"
fi
echo "export PYTHONPATH=$PYPATH   # and run /usr/bin/python3"
