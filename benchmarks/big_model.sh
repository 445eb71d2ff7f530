#!/usr/bin/env bash
# big_model.sh: peak resident memory of `shrink compress` on a generated bf16 safetensors file
# (default 4 GiB: 128 matrices of 4096 x 4096 bf16 plus biases). Needs GNU time (/usr/bin/time -v).
# Usage: benchmarks/big_model.sh <path to shrink> [tensors] [rows] [cols] [recipe] [threads]
set -euo pipefail
shrink=${1:?path to the shrink executable}
tensors=${2:-128}
rows=${3:-4096}
cols=${4:-4096}
recipe=${5:-int8}
threads=${6:-2}
dir=${BIG_MODEL_DIR:-$(mktemp -d)}
in="$dir/big.safetensors"
out="$dir/big.$recipe.safetensors"
trap 'rm -f "$in" "$out"' EXIT
echo "generating $tensors x [$rows, $cols] BF16 ..."
/usr/bin/time -v "$shrink" generate "$in" --tensors "$tensors" --rows "$rows" --cols "$cols" --dtype BF16 2> "$dir/gen.time"
grep -E "Maximum resident|Elapsed" "$dir/gen.time"
ls -l "$in"
echo "compressing with $recipe on $threads threads ..."
/usr/bin/time -v "$shrink" --threads "$threads" compress "$in" "$out" --recipe "$recipe" > "$dir/summary.txt" 2> "$dir/compress.time"
tail -n 2 "$dir/summary.txt"
grep -E "Maximum resident|Elapsed" "$dir/compress.time"
ls -l "$out"
kb=$(grep "Maximum resident" "$dir/compress.time" | awk '{print $NF}')
echo "peak RSS: $((kb / 1024)) MiB (limit 1024 MiB)"
[ "$kb" -lt $((1024 * 1024)) ]
