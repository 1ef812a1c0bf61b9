#!/usr/bin/env bash
# Installs what the dashboard's browser tests need (Debian/Ubuntu, as root or
# with sudo): Chromium, its WebDriver, and a font. The tests install nothing
# themselves; after this, run them with
#
#   cargo test -p soong-daemon --test it -- --ignored dashboard
#
# They leave a screenshot in target/test-artifacts/dashboard.png
# ($SOONG_TEST_ARTIFACTS to put it elsewhere). Other binaries:
# SOONG_CHROMIUM=/path/to/chromium SOONG_CHROMEDRIVER=/path/to/chromedriver.
set -euo pipefail
packages=(chromium chromium-driver fonts-dejavu-core)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
chromium --version 2>/dev/null  # (Debian's wrapper script complains on stderr about nothing)
chromedriver --version
