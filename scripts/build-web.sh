#!/usr/bin/env bash
# Builds the web UI into web/dist/, where the server's build embeds it from:
#   1. the Leptos app for wasm32 (profile wasm-release: size over speed, LTO),
#   2. wasm-bindgen's JS glue, with the CLI at the exact version of Cargo.lock (installed once
#      from crates.io into ~/.cache/enclave/tools),
#   3. wasm-opt -Oz, binaryen 132 from the npm registry run with Node.js when there is one
#      (Debian's binaryen 108 breaks wasm-bindgen's externref table),
#   4. highlight.js and KaTeX from the npm registry (pinned versions, checked by SHA-256) with
#      their licences,
#   5. content-hashed file names, and gzip / brotli copies of the text files.
# Nothing is fetched at run time: the UI works offline.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
tools=${ENCLAVE_TOOLS:-$HOME/.cache/enclave/tools}
hljs_version=11.11.1
hljs_sha256=28a06bf6ebcc2218c6e842bdb4f1c8353508a8cada59e85110f91892f5726195
katex_version=0.16.22
katex_sha256=e9e0d167db3175481cbadaff38e8d90b130f6a3ddb451a47e43c577fd511f365
binaryen_version=132.0.0
binaryen_sha256=6543555fb29bb92548f325c7dc18e9ab7dbb1215edda25993d1e3f71d85b8618

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || rustup target list --installed | grep -q wasm32-unknown-unknown
wbg_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
wbg="$tools/bin/wasm-bindgen"
if ! "$wbg" --version 2>/dev/null | grep -q " $wbg_version"; then
  echo "build-web: installing wasm-bindgen-cli $wbg_version (once)..." >&2
  # Not --locked: the CLI's own lock file names a yanked webpki-roots; the CLI version is exact.
  cargo install wasm-bindgen-cli --version "=$wbg_version" --root "$tools" --quiet
fi

echo "build-web: compiling the app for wasm32..." >&2
cargo build -p enclave-web --target wasm32-unknown-unknown --profile wasm-release --quiet
wasm="$target_dir/wasm32-unknown-unknown/wasm-release/enclave-web.wasm"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
"$wbg" --target web --no-typescript --out-dir "$stage" --out-name app "$wasm"

# Packages from the npm registry, cached by version and checked by SHA-256.
npm_cache="$tools/npm"
mkdir -p "$npm_cache"
fetch_npm() { # name tarball-url sha256
  local file="$npm_cache/$1.tgz"
  if [ ! -f "$file" ] || ! echo "$3  $file" | sha256sum -c --quiet 2>/dev/null; then
    curl -sSfL "$2" -o "$file.part"
    echo "$3  $file.part" | sha256sum -c --quiet
    mv "$file.part" "$file"
  fi
  echo "$file"
}

if [ -z "${ENCLAVE_NO_WASM_OPT:-}" ] && command -v node >/dev/null; then
  binaryen_dir="$tools/binaryen-$binaryen_version"
  if [ ! -f "$binaryen_dir/package/bin/wasm-opt" ]; then
    binaryen_tgz=$(fetch_npm "binaryen-$binaryen_version" "https://registry.npmjs.org/binaryen/-/binaryen-$binaryen_version.tgz" "$binaryen_sha256")
    mkdir -p "$binaryen_dir" && tar xzf "$binaryen_tgz" -C "$binaryen_dir" package/bin/wasm-opt package/LICENSE
  fi
  node "$binaryen_dir/package/bin/wasm-opt" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$stage/app_bg.wasm" -o "$stage/app_bg.opt.wasm"
  mv "$stage/app_bg.opt.wasm" "$stage/app_bg.wasm"
else
  echo "build-web: no Node.js to run wasm-opt: the wasm stays larger (about 20%)" >&2
fi

hljs_tgz=$(fetch_npm "highlight-$hljs_version" "https://registry.npmjs.org/@highlightjs/cdn-assets/-/cdn-assets-$hljs_version.tgz" "$hljs_sha256")
katex_tgz=$(fetch_npm "katex-$katex_version" "https://registry.npmjs.org/katex/-/katex-$katex_version.tgz" "$katex_sha256")

out=web/dist
rm -rf "$out"
mkdir -p "$out/vendor/highlight-$hljs_version" "$out/vendor/katex-$katex_version/fonts"
tar xzf "$hljs_tgz" -C "$stage" package/highlight.min.js package/LICENSE
mv "$stage/package/highlight.min.js" "$stage/package/LICENSE" "$out/vendor/highlight-$hljs_version/"
rm -rf "$stage/package"
tar xzf "$katex_tgz" -C "$stage" package/dist/katex.min.js package/dist/katex.min.css package/LICENSE --wildcards 'package/dist/fonts/*.woff2'
mv "$stage/package/dist/katex.min.js" "$stage/package/dist/katex.min.css" "$stage/package/LICENSE" "$out/vendor/katex-$katex_version/"
mv "$stage"/package/dist/fonts/*.woff2 "$out/vendor/katex-$katex_version/fonts/"
# Browsers that read woff2 (all current ones) never ask for the older formats: drop them
# from the style sheet so that no request can miss.
sed -i -E 's/,url\(fonts\/[^)]*\.(woff|ttf)\) format\("(woff|truetype)"\)//g' "$out/vendor/katex-$katex_version/katex.min.css"

hashed() { # file extension -> name with a content hash
  echo "$(basename "$1" ".$2").$(sha256sum "$1" | cut -c1-16).$2"
}
app_js=$(hashed "$stage/app.js" js)
app_wasm=$(hashed "$stage/app_bg.wasm" wasm)
app_wasm=${app_wasm/app_bg/app}
cp "$stage/app.js" "$out/$app_js"
cp "$stage/app_bg.wasm" "$out/$app_wasm"
style=$(hashed web/static/style.css css)
cp web/static/style.css "$out/$style"
theme_js=$(hashed web/static/theme.js js)
cp web/static/theme.js "$out/$theme_js"
printf 'import init from "./%s";\ninit({ module_or_path: "/%s" });\n' "$app_js" "$app_wasm" > "$stage/boot.js"
boot_js=$(hashed "$stage/boot.js" js)
cp "$stage/boot.js" "$out/$boot_js"
cp web/static/favicon.svg "$out/favicon.svg"
sed -e "s/@STYLE@/$style/; s/@APP_JS@/$app_js/; s/@APP_WASM@/$app_wasm/; s/@BOOT_JS@/$boot_js/; s/@THEME_JS@/$theme_js/" \
  -e "s/@KATEX@/$katex_version/g; s/@HLJS@/$hljs_version/g" web/static/index.html > "$out/index.html"

find "$out" -type f \( -name '*.js' -o -name '*.css' -o -name '*.wasm' -o -name '*.html' -o -name '*.svg' \) | while read -r f; do
  gzip -9 -n -k "$f"
  if command -v brotli >/dev/null; then brotli -q 11 -k "$f"; fi
done
echo "build-web: web/dist ready ($(du -sh "$out" | cut -f1); wasm $(stat -c %s "$out/$app_wasm") bytes)" >&2
