#!/usr/bin/env bash
# Seeds the fuzz corpora with the real test documents (fetched by scripts/fetch-test-documents.sh;
# not committed, their licences vary) and with one byte of kind in front for the per-kind target.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-test-documents.sh
mkdir -p fuzz/corpus/detect_and_extract fuzz/corpus/extract_as_each_kind
i=0
# Small hand-written seeds for the text formats and a ZIP (the registry files are PDF and DOCX).
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
printf 'name,count\nsalmon,4417\ntrout,12\n' > "$seeds/a.csv"
printf '<!DOCTYPE html><html><body><h1>T</h1><p>Soup needs 7 threads.</p><table><tr><th>a</th></tr><tr><td>1</td></tr></table></body></html>' > "$seeds/a.html"
printf '# Title\n\n## Part\n\nText with a [link](x).\n\n| a | b |\n|---|---|\n| 1 | 2 |\n' > "$seeds/a.md"
printf '{\\rtf1\\ansi{\\fonttbl\\f0 Arial;}\\f0 Hello {\\b bold} world.\\par}' > "$seeds/a.rtf"
printf 'From: a@example.com\r\nTo: b@example.com\r\nSubject: Vault\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee the note.\r\n--b\r\nContent-Type: text/plain; name="n.txt"\r\nContent-Disposition: attachment; filename="n.txt"\r\n\r\nThe code is on the card.\r\n--b--\r\n' > "$seeds/a.eml"
python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED); z.writestr("readme.txt", "The lantern festival starts at dusk."); z.writestr("inner/notes.md", "# Notes\n\nDeep text."); z.close()' "$seeds/a.zip"
# The registry files under 300 KB (the two large PDFs and the 95-page manual make each run slow).
{ find tests/documents -type f -size -300k | sort; ls "$seeds"/*; } | while read -r file; do
  i=$((i + 1))
  cp "$file" "fuzz/corpus/detect_and_extract/seed-$i"
  # Every kind byte once per file: each parser starts from every real file.
  for k in $(seq 0 13); do
    { printf "\\x$(printf %02x "$k")"; cat "$file"; } > "fuzz/corpus/extract_as_each_kind/seed-$i-$k"
  done
done
echo "corpus: $(ls fuzz/corpus/detect_and_extract | wc -l) files, $(ls fuzz/corpus/extract_as_each_kind | wc -l) with a kind byte"
