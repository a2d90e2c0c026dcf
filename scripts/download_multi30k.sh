#!/usr/bin/env bash
# Download the Multi30k task 1 raw files (en, de, fr) from the public GitHub
# repository multi30k/dataset and decompress them.
#
# Usage: scripts/download_multi30k.sh [OUT_DIR]     (default: data/multi30k)
#
# Result: OUT_DIR/{train,val,test_2016_flickr}.{en,de,fr}
# Expected line counts: train 29000, val 1014, test_2016_flickr 1000.
# Files already present are skipped, so the script can be re-run safely.
#
# No internet access? Use an existing copy of these files instead and point
# the config's path prefixes at it with --set, e.g.
#   --set data.train=/path/to/multi30k/train \
#   --set data.valid=/path/to/multi30k/val \
#   --set data.test=/path/to/multi30k/test_2016_flickr
set -euo pipefail

OUT_DIR="${1:-data/multi30k}"
BASE_URL="https://github.com/multi30k/dataset/raw/master/data/task1/raw"
SPLITS=(train val test_2016_flickr)
LANGS=(en de fr)

if command -v curl >/dev/null 2>&1; then
    fetch() { curl -fL --retry 3 -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
    fetch() { wget -q -O "$2" "$1"; }
else
    echo "error: neither curl nor wget is installed" >&2
    exit 1
fi

mkdir -p "$OUT_DIR"

for split in "${SPLITS[@]}"; do
    for lang in "${LANGS[@]}"; do
        target="$OUT_DIR/$split.$lang"
        if [[ -s "$target" ]]; then
            echo "skip $target (already present)"
            continue
        fi
        url="$BASE_URL/$split.$lang.gz"
        tmp="$target.gz.part"
        echo "download $url"
        fetch "$url" "$tmp"
        # Decompress to a temporary name first so an interrupted run never
        # leaves a truncated file that a later run would skip.
        gunzip -c "$tmp" > "$target.part"
        mv "$target.part" "$target"
        rm -f "$tmp"
    done
done

echo "line counts (expected: train 29000, val 1014, test_2016_flickr 1000):"
for split in "${SPLITS[@]}"; do
    for lang in "${LANGS[@]}"; do
        printf '%8d  %s\n' "$(wc -l < "$OUT_DIR/$split.$lang")" "$OUT_DIR/$split.$lang"
    done
done
