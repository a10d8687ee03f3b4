#!/usr/bin/env bash
# Install the Jetson example on JetPack 6: the system OpenCV (built with GStreamer), NVIDIA's
# onnxruntime-gpu wheel for this JetPack, and the systemd unit. Run as root.
set -euo pipefail
MODEL=${1:?usage: install.sh MODEL.sal.onnx ONNXRUNTIME_GPU_WHEEL}
ORT_WHEEL=${2:?give the onnxruntime-gpu wheel for your JetPack (from NVIDIA's Jetson Zoo)}
HERE=$(cd "$(dirname "$0")" && pwd)

apt-get update
apt-get install -y python3-venv python3-opencv
id edgesal >/dev/null 2>&1 || useradd --system --groups video --home /opt/edgesal edgesal
mkdir -p /opt/edgesal/models
# --system-site-packages: JetPack's OpenCV has GStreamer; PyPI's opencv wheels do not.
python3 -m venv --system-site-packages /opt/edgesal/venv
/opt/edgesal/venv/bin/pip install --upgrade pip
/opt/edgesal/venv/bin/pip install "$ORT_WHEEL"
# runtimes only: numpy comes with the wheel above, OpenCV from apt.
/opt/edgesal/venv/bin/pip install --no-deps edgesal
install -m 0644 "$MODEL" /opt/edgesal/models/model.sal.onnx
install -m 0755 "$HERE/jetson_saliency.py" /opt/edgesal/jetson_saliency.py
install -m 0644 "$HERE/edgesal-jetson.service" /etc/systemd/system/edgesal-jetson.service
chown -R edgesal /opt/edgesal
systemctl daemon-reload
systemctl enable --now edgesal-jetson.service
