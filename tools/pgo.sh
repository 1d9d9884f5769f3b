#!/usr/bin/env bash
# Refreshes cmd/authzd/default.pgo, the CPU profile the Go compiler builds
# authzd with (profile-guided optimization: it inlines and devirtualizes the
# calls the profile shows hot). The profile is authzd's own under make load:
# every run at 10 and at 10,000 tenants, start-up included, in profiles of
# 30 s fetched from its metrics port and merged. `make pgo` runs this; it
# takes about as long as make load (the load databases are made once).
set -euo pipefail

out=${1:-cmd/authzd/default.pgo}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

go build -o bin/ ./cmd/authzd ./cmd/authzgen ./cmd/authzload
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for tenants in 10 10000; do
	AUTHZ_METRICS_ADDR=127.0.0.1:$port bin/authzload --tenants "$tenants" &
	load=$!
	i=0
	while kill -0 "$load" 2>/dev/null; do
		i=$((i + 1))
		# Fails until authzd listens, and once it has stopped: a profile
		# cut short is dropped, so that the merge reads whole ones only.
		if ! curl -sf -o "$dir/$tenants-$i.pb" "http://127.0.0.1:$port/debug/pprof/profile?seconds=30"; then
			rm -f "$dir/$tenants-$i.pb"
			sleep 1
		fi
	done
	wait "$load"
done
go tool pprof -proto "$dir"/*.pb >"$out"
echo "pgo: $out from $(ls "$dir" | wc -l) profiles"
