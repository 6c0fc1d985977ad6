#!/usr/bin/env bash
# Installs the programs the tests run for real (redis-server, nginx, chromium, node) and the
# checkers of the deployment files (docker-compose, haproxy, envsubst) when missing.
# Uses apt-get as root (or through sudo); elsewhere it says what to install and fails.
set -euo pipefail

declare -A package_of=([redis-server]=redis-server [redis-cli]=redis-tools [nginx]=nginx [chromium]=chromium
  [node]=nodejs [docker-compose]=docker-compose [haproxy]=haproxy [envsubst]=gettext-base)
missing=()
for binary in redis-server redis-cli nginx chromium node docker-compose haproxy envsubst; do
  command -v "$binary" >/dev/null 2>&1 || [ -x "/usr/sbin/$binary" ] || missing+=("${package_of[$binary]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing programs: ${missing[*]} - install them with your package manager" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "missing programs: ${missing[*]} - run: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
echo "installing ${missing[*]} with apt-get" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
