#!/usr/bin/env bash
# Installs the system packages the build needs when they are missing (Debian/Ubuntu apt):
# protoc (protobuf-compiler) for LanceDB's build scripts. Called by scripts/run.sh and
# scripts/test.sh; safe to run again.
set -euo pipefail
missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} (apt)..." >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq "${missing[@]}" >/dev/null; fi
fi
