#!/usr/bin/env bash
# Install the Pi example: Picamera2 from Raspberry Pi OS, a venv that can see it, edgesal's
# LiteRT device profile, and the systemd unit. Run as root on Raspberry Pi OS (bookworm).
set -euo pipefail
MODEL=${1:?usage: install.sh MODEL.sal.tflite [EDGESAL_PACKAGE]}
PACKAGE=${2:-edgesal[device-litert]}
HERE=$(cd "$(dirname "$0")" && pwd)

apt-get update
apt-get install -y python3-picamera2 python3-venv
id edgesal >/dev/null 2>&1 || useradd --system --groups video --home /opt/edgesal edgesal
mkdir -p /opt/edgesal/models
# --system-site-packages: picamera2 and libcamera come from apt, not PyPI.
python3 -m venv --system-site-packages /opt/edgesal/venv
/opt/edgesal/venv/bin/pip install --upgrade pip
/opt/edgesal/venv/bin/pip install "$PACKAGE"
install -m 0644 "$MODEL" /opt/edgesal/models/model.sal.tflite
install -m 0755 "$HERE/pi_saliency.py" /opt/edgesal/pi_saliency.py
install -m 0644 "$HERE/edgesal-pi.service" /etc/systemd/system/edgesal-pi.service
chown -R edgesal /opt/edgesal
systemctl daemon-reload
systemctl enable --now edgesal-pi.service
echo "status page: http://$(hostname -I | awk '{print $1}'):8080/"
