#!/usr/bin/env bash
# Renders systemd/soong-daemon.service.in to stdout.
#
#   systemd/render.sh [--bindir DIR] [--config FILE] [--credentials-dir DIR]
#
# Defaults are the paths cloud-init and Ansible use on an instance:
#   --bindir /usr/local/bin  --config /etc/soong/daemon.yaml
#   --credentials-dir /etc/soong/credentials
# The same substitution as a sed one-liner, for packagers:
#   sed -e 's|@bindir@|/usr/bin|g' -e 's|@config@|/etc/soong/daemon.yaml|g' \
#       -e 's|@credentials_dir@|/etc/soong/credentials|g' soong-daemon.service.in
set -euo pipefail
bindir=/usr/local/bin
config=/etc/soong/daemon.yaml
credentials_dir=/etc/soong/credentials
while (($#)); do
  case "$1" in
    --bindir) bindir=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --credentials-dir) credentials_dir=$2; shift 2 ;;
    -h | --help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "error: unknown argument \`$1\`" >&2; exit 2 ;;
  esac
done
for value in "$bindir" "$config" "$credentials_dir"; do
  # Absolute, and nothing systemd or sed would read specially.
  [[ "$value" =~ ^/[A-Za-z0-9._/-]*$ ]] || {
    echo "error: \`$value\` must be an absolute path of [A-Za-z0-9._/-]" >&2
    exit 2
  }
done
sed -e "s|@bindir@|$bindir|g" -e "s|@config@|$config|g" \
  -e "s|@credentials_dir@|$credentials_dir|g" \
  "$(dirname "$0")/soong-daemon.service.in"
