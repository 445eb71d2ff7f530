#!/usr/bin/env bash
# run_tool_tests.sh: end-to-end checks of the shrink tool on small generated files: every command,
# documented exit codes, JSON output, hostile inputs, and no partial output on failure.
set -u
shrink="$1"
work="$2"
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fails=0
check() {  # check <expected exit code> <description> <command...>
  local want="$1" what="$2"
  shift 2
  "$@" >out.txt 2>err.txt
  local got=$?
  if [ "$got" != "$want" ]; then
    echo "FAIL: $what: exit $got, expected $want"; sed 's/^/  | /' out.txt err.txt | head -20; fails=$((fails + 1))
  else
    echo "ok: $what"
  fi
}
contains() {  # contains <file> <text> <description>
  if grep -q -- "$2" "$1"; then echo "ok: $3"; else echo "FAIL: $3 (no '$2' in $1)"; fails=$((fails + 1)); fi
}

check 0 "generate" "$shrink" generate model.safetensors --tensors 3 --rows 32 --cols 64 --dtype BF16 --seed 5
check 0 "compress int8" "$shrink" compress model.safetensors q8.safetensors --recipe int8 --threads 2
contains out.txt "total:" "summary table printed"
check 0 "compress int4-g32 --json" "$shrink" --json compress model.safetensors q4.safetensors --recipe int4-g32
contains out.txt '"bytes_after"' "compress --json"
check 0 "inspect --against" "$shrink" inspect q8.safetensors --against model.safetensors
contains out.txt "TOTAL" "inspect totals"
contains out.txt "sqnr" "inspect shows SQNR"
contains out.txt "int8" "inspect shows the scheme"
check 0 "inspect --json" "$shrink" inspect q4.safetensors --json
contains out.txt '"bits_per_weight"' "inspect --json"
check 0 "decompress" "$shrink" decompress q4.safetensors back.safetensors
check 0 "inspect decompressed" "$shrink" inspect back.safetensors --json
contains out.txt '"dtype": "BF16"' "decompressed keeps the original dtype"
check 0 "bench" "$shrink" bench q8.safetensors
contains out.txt "speedup" "bench table"
cat > recipe.json <<'JSON'
{"preset": "int4-g32", "overrides": [{"pattern": "@first", "preset": "int8"}, {"pattern": "@last", "preset": "int8"}]}
JSON
check 0 "JSON recipe with first/last overrides" "$shrink" inspect q8.safetensors
check 0 "compress with JSON recipe" "$shrink" --json compress model.safetensors r.safetensors --recipe recipe.json
contains out.txt '"scheme": "int4-g32"' "middle layer at int4"
contains out.txt '"scheme": "int8"' "first/last layer at int8"
check 0 "mixed precision --target-bits" "$shrink" compress model.safetensors mp.safetensors --target-bits 4.5
contains out.txt "budget" "allocator reported"
check 6 "unreachable target" "$shrink" compress model.safetensors tiny.safetensors --target-size 10
check 0 "--help for a command" "$shrink" compress --help
contains out.txt "--recipe" "compress --help lists options"
check 2 "no command" "$shrink"
check 2 "unknown preset" "$shrink" compress model.safetensors x.safetensors --recipe banana
for preset in codebook4 2:4 deep-compression xnor lowrank:energy=0.9; do
  check 0 "compress $preset" "$shrink" compress model.safetensors t.safetensors --recipe "$preset"
  check 0 "inspect $preset" "$shrink" inspect t.safetensors --against model.safetensors
  check 0 "decompress $preset" "$shrink" decompress t.safetensors t.back.safetensors
  check 0 "bench $preset" "$shrink" --json bench t.safetensors
  contains out.txt '"kernel"' "bench $preset names its kernel"
done
check 0 "bench int4-g32 uses the int4 kernel" "$shrink" bench q4.safetensors
contains out.txt "weight_only_gemm (int4)" "int4 bench kernel"
check 0 "generate odd columns" "$shrink" generate odd.safetensors --tensors 1 --rows 8 --cols 6
check 0 "2:4 falls back to float" "$shrink" compress odd.safetensors odd.c.safetensors --recipe 2:4
contains out.txt "kept in float" "fallback noted in the summary"
check 2 "bad lowrank energy" "$shrink" compress model.safetensors x.safetensors --recipe lowrank:energy=2
check 3 "missing input" "$shrink" inspect nope.safetensors
# Hostile inputs: truncated file, header length beyond file, garbage.
head -c 100 model.safetensors > trunc.safetensors
check 4 "truncated file" "$shrink" inspect trunc.safetensors
printf '\xff\xff\xff\x00\x00\x00\x00\x00{}' > biglen.safetensors
check 4 "header length beyond the file" "$shrink" inspect biglen.safetensors
check 4 "compress of a truncated file" "$shrink" compress trunc.safetensors never.safetensors
[ ! -e never.safetensors ] && echo "ok: no partial output" || { echo "FAIL: partial output left"; fails=$((fails + 1)); }
# SIGTERM during a compress: no temporary output left (exit 143 = killed by SIGTERM, or 0 if
# the run finished first).
"$shrink" generate big.safetensors --tensors 8 --rows 512 --cols 512 --seed 3 >/dev/null 2>&1
"$shrink" compress big.safetensors killed.safetensors --recipe lowrank:energy=0.99 --threads 1 >/dev/null 2>&1 &
pid=$!
sleep 0.3
kill -TERM "$pid" 2>/dev/null
wait "$pid"
rc=$?
if [ "$rc" = 143 ] || [ "$rc" = 0 ]; then echo "ok: SIGTERM ends compress (exit $rc)"; else echo "FAIL: SIGTERM exit $rc"; fails=$((fails + 1)); fi
[ "$rc" = 0 ] || [ ! -e killed.safetensors ] && echo "ok: no output after SIGTERM" || { echo "FAIL: output after SIGTERM"; fails=$((fails + 1)); }
leftovers=$(ls -a | grep -c '\.tmp\.' || true)
[ "$leftovers" = 0 ] && echo "ok: no temporary files left" || { echo "FAIL: temporaries left"; fails=$((fails + 1)); }
echo "$fails failure(s)"
[ "$fails" = 0 ]
