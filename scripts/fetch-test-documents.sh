#!/usr/bin/env bash
# Fetches the real documents the tests read, from the package registries (not committed:
# their licences vary), into tests/documents/:
#   pdf/      PDFs with text layers (npm pdf-parse@1.1.1, test/data), one of them broken
#   docx/     DOCX files with tables, lists, footnotes (npm mammoth@1.13.0, test/test-data)
#   manual/   the 95-page DocBook XSL reference (Debian docbook-xsl-doc-pdf, reference.pdf.gz)
#   scans/    scanned pages without a text layer, for OCR (PyPI ocrmypdf 17.13.0 sdist,
#             tests/resources): c03-29.pdf (a JPEG page of Huckleberry Finn, public domain),
#             cardinal.pdf (4 JBIG2 pages of the LinnSequencer brochure, (C) 1985 Forat
#             Electronics, CC-BY-SA-3.0 or GFDL-1.2+), ccitt.pdf (the same page in CCITT G4)
# Safe to run again: files already there are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/documents
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ ! -f "$out/scans/cardinal.pdf" ]; then
  echo "fetching scanned test pages (PyPI ocrmypdf sdist)..." >&2
  mkdir -p "$out/scans"
  python3 -m pip download --quiet --no-deps --no-binary :all: "ocrmypdf==17.13.0" -d "$work" >/dev/null
  tar xzf "$work"/ocrmypdf-17.13.0.tar.gz -C "$work" \
    ocrmypdf-17.13.0/tests/resources/c03-29.pdf ocrmypdf-17.13.0/tests/resources/cardinal.pdf \
    ocrmypdf-17.13.0/tests/resources/ccitt.pdf
  cp "$work"/ocrmypdf-17.13.0/tests/resources/{c03-29,cardinal,ccitt}.pdf "$out/scans/"
fi
if [ -f "$out/manual/reference.pdf" ] && [ -f "$out/docx/tables.docx" ] && [ -f "$out/pdf/01-valid.pdf" ]; then
  exit 0
fi
mkdir -p "$out/pdf" "$out/docx" "$out/manual"
echo "fetching test documents (npm pdf-parse, npm mammoth, Debian docbook-xsl-doc-pdf)..." >&2
(cd "$work" && npm pack --silent pdf-parse@1.1.1 mammoth@1.13.0 >/dev/null)
tar xzf "$work"/pdf-parse-1.1.1.tgz -C "$work" package/test/data
cp "$work"/package/test/data/*.pdf "$out/pdf/"
tar xzf "$work"/mammoth-1.13.0.tgz -C "$work" package/test/test-data
cp "$work"/package/test/test-data/*.docx "$out/docx/"
(cd "$work" && apt-get download docbook-xsl-doc-pdf >/dev/null 2>&1)
dpkg-deb -x "$work"/docbook-xsl-doc-pdf_*.deb "$work/deb"
gunzip -c "$(find "$work/deb" -name 'reference.pdf.gz' | head -1)" > "$out/manual/reference.pdf"
test -s "$out/manual/reference.pdf"
echo "test documents ready in $out" >&2
