#!/usr/bin/env bash
# Download WikiPron's German pronunciation list (broad IPA, filtered) at a fixed commit, check it, and split it
# into train / validation / test by word with `seq2seq split` (all pronunciations of a word in one split).
#
# Usage: scripts/download_wikipron.sh [OUT_DIR]     (default: data/wikipron/de)
#
# Result: OUT_DIR/deu_latn_broad_filtered.tsv (47,779 lines, 42,873 distinct words), then OUT_DIR/train.tsv,
# val.tsv (2,000 words) and test.tsv (4,000 words), split with seed 1 — what configs/g2p_de.yaml reads.
# Source: github.com/CUNY-CL/wikipron, data/scrape/tsv/deu_latn_broad_filtered.tsv, commit 185dfcf5 (Apache 2.0;
# the pronunciations are Wiktionary's, CC BY-SA).
#
# No internet access? Point WIKIPRON_TSV at a copy of that file and the script copies it instead:
#   WIKIPRON_TSV=/path/to/deu_latn_broad_filtered.tsv scripts/download_wikipron.sh
# The split runs `seq2seq`: $SEQ2SEQ if set, else the one on the PATH, else the checkout's .venv/bin/seq2seq (the
# README's quick start installs it there).
set -euo pipefail

OUT_DIR="${1:-data/wikipron/de}"
CHECKOUT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME=deu_latn_broad_filtered.tsv
URL="https://github.com/CUNY-CL/wikipron/raw/185dfcf5/data/scrape/tsv/$NAME"
SHA256=b06a76e70054f91d467e7df657fafb78734a4efd2ae7c4394d3551a4fd6043a3
BY_HAND="give the file by hand: WIKIPRON_TSV=/path/to/$NAME bash scripts/download_wikipron.sh"

# Which seq2seq splits the list, decided before anything is downloaded.
if [[ -n "${SEQ2SEQ:-}" ]]; then
    :
elif command -v seq2seq >/dev/null 2>&1; then
    SEQ2SEQ=seq2seq
elif [[ -x "$CHECKOUT/.venv/bin/seq2seq" ]]; then
    SEQ2SEQ="$CHECKOUT/.venv/bin/seq2seq"
else
    echo "error: no seq2seq command: not on the PATH and no $CHECKOUT/.venv/bin/seq2seq (run the README's quick start, or set SEQ2SEQ=/path/to/seq2seq)" >&2
    exit 1
fi

mkdir -p "$OUT_DIR"
target="$OUT_DIR/$NAME"
if [[ -s "$target" ]]; then
    echo "skip $target (already present)"
elif [[ -n "${WIKIPRON_TSV:-}" ]]; then
    if [[ ! -s "$WIKIPRON_TSV" ]]; then
        echo "error: WIKIPRON_TSV=$WIKIPRON_TSV: no such file (or it is empty)" >&2
        exit 1
    fi
    cp "$WIKIPRON_TSV" "$target.part" && mv "$target.part" "$target"
elif command -v curl >/dev/null 2>&1 || command -v wget >/dev/null 2>&1; then
    if command -v curl >/dev/null 2>&1; then
        fetch=(curl -fsSL --retry 3 -o "$target.part" "$URL")
    else
        fetch=(wget -q -O "$target.part" "$URL")
    fi
    if ! "${fetch[@]}" 2>/dev/null; then
        rm -f "$target.part"
        echo "error: could not download $URL (no internet access?); $BY_HAND" >&2
        exit 1
    fi
    mv "$target.part" "$target"
else
    echo "error: neither curl nor wget is installed; $BY_HAND" >&2
    exit 1
fi

actual="$(sha256sum "$target" | cut -d' ' -f1)"
if [[ "$actual" != "$SHA256" ]]; then
    echo "error: $target: sha256 $actual, expected $SHA256 (another version of the list? remove it and run again)" >&2
    exit 1
fi

if [[ -s "$OUT_DIR/train.tsv" ]]; then
    echo "skip the split ($OUT_DIR/train.tsv already present)"
else
    "$SEQ2SEQ" split "$target" --valid 2000 --test 4000 --seed 1 --out "$OUT_DIR"
fi
echo "ready: $OUT_DIR/train.tsv, val.tsv, test.tsv (configs/g2p_de.yaml reads them)"
