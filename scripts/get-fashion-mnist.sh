#!/usr/bin/env bash
# Make Fashion-MNIST available, idempotently:
#   1. already present in /usr/share/datasets/fashion-mnist or the cache -> nothing to do;
#   2. apt is there (and we are root)        -> Debian package dataset-fashion-mnist;
#   3. the network reaches the upstream site -> download into ${TORCHSLIM_CACHE:-~/.cache/torchslim}/fashion-mnist;
#   4. otherwise a clear error naming both ways.
set -euo pipefail
FILES="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
SYSTEM_DIR=/usr/share/datasets/fashion-mnist
CACHE_DIR="${TORCHSLIM_CACHE:-$HOME/.cache/torchslim}/fashion-mnist"
UPSTREAM="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"

have_all() { for f in $FILES; do [ -s "$1/$f" ] || return 1; done; }

if have_all "$SYSTEM_DIR" || have_all "$CACHE_DIR"; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "Fashion-MNIST: installing Debian package dataset-fashion-mnist ..."
  if (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
      (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) \
      && have_all "$SYSTEM_DIR"; then
    exit 0
  fi
  echo "Fashion-MNIST: the Debian package could not be installed; trying the upstream download." >&2
fi
mkdir -p "$CACHE_DIR"
for f in $FILES; do
  if [ ! -s "$CACHE_DIR/$f" ]; then
    if ! curl -fsSL --max-time 120 -o "$CACHE_DIR/$f.part" "$UPSTREAM/$f"; then
      rm -f "$CACHE_DIR/$f.part"
      echo "error: Fashion-MNIST is missing. Get it one of two ways:" >&2
      echo "  - Debian/Ubuntu (as root): apt-get install dataset-fashion-mnist  (files land in $SYSTEM_DIR)" >&2
      echo "  - download the four files from $UPSTREAM into $CACHE_DIR" >&2
      exit 1
    fi
    mv "$CACHE_DIR/$f.part" "$CACHE_DIR/$f"
  fi
done
