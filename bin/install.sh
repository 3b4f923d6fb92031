#!/usr/bin/env bash
# Installs autonet_tf and its dependencies; graphviz (for cell pictures) when
# apt-get is available. Without graphviz, cell pictures are written as .dot files.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dot >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null) \
      || echo "warning: graphviz could not be installed; cell pictures will be .dot files"
  else
    echo "note: graphviz not found; install it for PNG cell pictures (apt-get install graphviz)"
  fi
fi
python -m pip install -q -r requirements.txt
python -m pip install -q --no-deps -e .
