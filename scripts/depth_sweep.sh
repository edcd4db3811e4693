#!/usr/bin/env bash
# E2 / SPEC §8 overlap measurement: the reference job with balanced stages
# (decode = generate = STAGE_MS) at D = 1..4, one run each, as a table of
# period vs max/sum of the stage medians and the OverlapScore.
# Usage: scripts/depth_sweep.sh [path/to/lockstep] [STAGE_MS] [CHUNKS]
set -euo pipefail
bin="${1:-build/default/lockstep}"
stage_ms="${2:-20}"
chunks="${3:-40}"
printf '%-3s %10s %10s %10s %12s %12s %8s\n' D period_ms max_ms sum_ms period/max period/sum score
for depth in 1 2 3 4; do
  "$bin" run --json --topology pp1 --nproc 3 --chunks "$chunks" --hard-cut-every 0 --depth "$depth" \
    --decode-ms "$stage_ms" --generate-ms "$stage_ms" |
    python3 -c '
import json, sys
d = json.load(sys.stdin)["overlap"]
print("%-3s %10.2f %10.2f %10.2f %12.3f %12.3f %8.3f" % (sys.argv[1], d["period_ms"]["median"], d["max_stage_ms"],
      d["sum_stage_ms"], d["period_over_max"], d["period_over_sum"], d["overlap_score"]))' "$depth"
done
