#!/usr/bin/env bash
# Installs the system packages the build needs when they are missing (Debian/Ubuntu apt):
#   protoc (protobuf-compiler)        LanceDB's build scripts
#   tesseract-ocr, libtesseract-dev,  OCR of scans and photos (the `ocr` feature, on by
#   libleptonica-dev, libclang-dev    default): the library, its English data, the headers
#                                     and libclang for the bindings
# Called by scripts/run.sh and scripts/test.sh; safe to run again.
set -euo pipefail
missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v tesseract >/dev/null || missing+=(tesseract-ocr)
[ -f /usr/include/tesseract/capi.h ] || missing+=(libtesseract-dev)
[ -f /usr/include/leptonica/allheaders.h ] || missing+=(libleptonica-dev)
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || ls /usr/lib/*/libclang*.so* >/dev/null 2>&1 || missing+=(libclang-dev)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} (apt)..." >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq "${missing[@]}" >/dev/null; fi
fi
