#!/usr/bin/env bash
# Long fuzz runs (docs/fuzzing.md): builds the fuzz preset, then runs each target in turn for
# a number of executions, growing build/fuzz/tests/fuzz/corpus/<target>.
#
#   tests/fuzz/run-long.sh                      # every target, 10 million executions each
#   tests/fuzz/run-long.sh -runs=1000000 session username
#   tests/fuzz/run-long.sh -max_total_time=3600 frame    # any libFuzzer flag is passed on
#
# Prints one line per target (executions, seconds, corpus size, coverage); the whole libFuzzer
# output is in build/fuzz/tests/fuzz/long-<target>.log. A crash leaves its input in
# build/fuzz/tests/fuzz/artifacts/<target>/ and stops the script with libFuzzer's exit status.
set -euo pipefail
cd "$(dirname "$0")/../.."

flags=()
targets=()
for arg in "$@"; do
  case "$arg" in
    -*) flags+=("$arg") ;;
    *) targets+=("$arg") ;;
  esac
done
[[ " ${flags[*]-} " == *" -runs="* || " ${flags[*]-} " == *" -max_total_time="* ]] || flags+=(-runs=10000000)
[ ${#targets[@]} -gt 0 ] || targets=(frame hello notify session username)

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz >/dev/null

dir=build/fuzz/tests/fuzz
for target in "${targets[@]}"; do
  dict=()
  [ "$target" = username ] || dict=(-dict=tests/fuzz/spop.dict)
  [ "$target" != session ] || dict+=(-max_len=20000)  # as in CMakeLists.txt
  mkdir -p "$dir/corpus/$target" "$dir/artifacts/$target"
  log="$dir/long-$target.log"
  start=$(date +%s)
  status=0
  "$dir/fuzz_$target" -print_final_stats=1 -timeout=120 -rss_limit_mb=2048 "${dict[@]}" \
    -artifact_prefix="$dir/artifacts/$target/" "${flags[@]}" \
    "$dir/corpus/$target" "$dir/seeds/$target" >"$log" 2>&1 || status=$?
  seconds=$(( $(date +%s) - start ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  coverage=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1)
  echo "$target: ${runs:-?} executions in ${seconds}s, ${coverage:-no coverage line}, exit $status"
  if [ "$status" -ne 0 ]; then
    grep -E 'ERROR|invariant|SUMMARY|Test unit written' "$log" >&2 || tail -20 "$log" >&2
    exit "$status"
  fi
done
