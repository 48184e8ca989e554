#!/usr/bin/env bash
# The controller's own times with a job of real size: `arus job submit` to the job running
# and reading, `arus job stop` (a snapshot of everything decided so far, then the end) to
# stopped, and `arus job resume` to running again from that savepoint. The adjudication job
# on an embedded log of `arus gen --claims N` (default 1,000,000), store in memory, release
# build; the stop comes STOP_AFTER seconds into the first run (default 40: by then the job has
# read the whole log, 2.86 M records at 1 M claims, and is still deciding, ~60 s in all), so the
# stop's snapshot holds about a million claims' state. Prints one line per figure; nothing here
# is asserted.
#
#   benches/controller.sh [CLAIMS]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
claims="${1:-1000000}"
stop_after="${STOP_AFTER:-40}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/arus/target}"
cargo build --release --bin arus --manifest-path "$root/Cargo.toml" >&2
arus="$CARGO_TARGET_DIR/release/arus"
work="$(mktemp -d)"
trap 'kill "$controller" 2>/dev/null || true; pkill -KILL -f "$work/data" 2>/dev/null || true; rm -rf "$work"' EXIT

# The traffic, each topic of the job loaded into an embedded log.
"$arus" gen --claims "$claims" --days 365 --out "$work/gen" --quiet >&2
for file in "$work"/gen/*.events.jsonl; do
  topic="$(basename "$file" .jsonl)"
  "$arus" topics produce "$topic" --file "$file" --log "$work/log" >&2
done
rm -rf "$work/gen"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
field() { python3 -c "import json,sys; j=json.load(sys.stdin); print(j.get('$1') if j.get('$1') is not None else '')"; }

"$arus" controller --insecure-dev-issuer --addr 127.0.0.1:0 --data-dir "$work/data" 2>"$work/controller.log" &
controller=$!
until grep -q "^controller on " "$work/controller.log"; do sleep 0.05; done
export ARUS_TOKEN="$(sed -n 's/^ *export ARUS_TOKEN=//p' "$work/controller.log")"
export ARUS_CONTROLLER="$(sed -n 's/^controller on \(http:\/\/[^ ]*\).*/\1/p' "$work/controller.log")"
status() { "$arus" job status "$1" --output json; }

start=$(now)
id="$("$arus" job submit "$root/pipelines/adjudication.toml" \
  --set "source={kind=\"embedded\", dir=\"$work/log\"}" --set 'store={kind="memory"}' \
  --set 'checkpoint.interval="1h"')"
echo "submit answered: $(since "$start") s ($id)"
until [[ "$(status "$id" | field state)" == running ]]; do sleep 0.02; done
echo "submit to running: $(since "$start") s"
until [[ -n "$(status "$id" | field records)" && "$(status "$id" | field records)" != 0 ]]; do sleep 0.05; done
echo "submit to reading (its first metrics): $(since "$start") s"

sleep "$stop_after"
read_before_stop="$(status "$id" | field records)"
start=$(now)
"$arus" job stop "$id" >&2
echo "stop to stopped with a savepoint: $(since "$start") s ($read_before_stop records read before it)"
snapshot="$(ls -S "$work/data/jobs/$id/snapshots/"snapshot-*.arus | head -1)"
echo "the savepoint: $(du -m "$snapshot" | cut -f1) MB"

start=$(now)
"$arus" job resume "$id" >&2
until [[ "$(status "$id" | field state)" == running ]]; do sleep 0.02; done
echo "resume to running: $(since "$start") s"
# Nothing came after the stop: the resumed run loads the savepoint, finds nothing new to read
# and ends (its held events decided).
until [[ "$(status "$id" | field state)" == finished ]]; do sleep 0.1; done
echo "resume to finished (the savepoint loaded, nothing new on the log): $(since "$start") s"
