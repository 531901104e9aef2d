#!/usr/bin/env bash
# A whole fxpipe deployment on this machine, for trying the distributed mode: moto's S3 server
# with a bucket, a scheduler, N executors and the rates ingester sidecar, all on 127.0.0.1 and
# free ports, from the binaries `cargo build --workspace` built. It prints the `fxpipe` command
# line (and the environment) that uses them, and stops everything on Ctrl-C or SIGTERM.
#
#   cargo build --workspace --bins
#   deploy/local/up.sh                       # 2 executors, sample rates for the last 14 days
#   deploy/local/up.sh --executors 3 --rates ecb
#
# Started in the background of a non-interactive shell (`up.sh &`), it cannot see SIGINT (the
# shell ignores it for background jobs, for good): stop it with SIGTERM then.
#
# The lake lives in moto's memory: it is gone when the script stops. The S3 credentials are
# moto's documented dummies ("testing"); moto accepts any, and no real key is ever needed here.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: deploy/local/up.sh [OPTIONS]

  --executors N     executors to start (default 2)
  --vcores N        task slots per executor (default 2)
  --rates SOURCE    the ingester's source: `sample` (generated files for the last 14 days,
                    offline; the default), `ecb`, `oxr` (OXR_APP_ID from the environment) or
                    file://DIR (DIR/historical/YYYY-MM-DD.json)
  --bin-dir DIR     where fxpipe, fxpipe-scheduler and fxpipe-executor are
                    (default: $CARGO_TARGET_DIR or ./target, release if built, else debug)
  --work-dir DIR    logs, executor scratch and sample rates (default: a temporary folder,
                    removed on exit)
  --bucket NAME     the lake's bucket (default fxpipe-local)
  --sample DIR      the quick start's sample (`cargo run -- quickstart` writes ./sample), for
                    the try-out commands printed at the end (default: the repo's ./sample)
EOF
}

executors=2
vcores=2
rates=sample
bin_dir=
work_dir=
bucket=fxpipe-local
sample=
while [ $# -gt 0 ]; do
    case "$1" in
        --executors) executors=$2; shift 2 ;;
        --vcores) vcores=$2; shift 2 ;;
        --rates) rates=$2; shift 2 ;;
        --bin-dir) bin_dir=$2; shift 2 ;;
        --work-dir) work_dir=$2; shift 2 ;;
        --bucket) bucket=$2; shift 2 ;;
        --sample) sample=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "up.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$executors" in '' | *[!0-9]* | 0) echo "up.sh: --executors must be a positive number" >&2; exit 2 ;; esac

repo=$(cd "$(dirname "$0")/../.." && pwd)
sample=${sample:-$repo/sample}
case "$sample" in /*) ;; *) sample=$PWD/$sample ;; esac
if [ -z "$bin_dir" ]; then
    target=${CARGO_TARGET_DIR:-$repo/target}
    bin_dir=$target/debug
    [ -x "$target/release/fxpipe-executor" ] && bin_dir=$target/release
fi
for binary in fxpipe fxpipe-scheduler fxpipe-executor; do
    if [ ! -x "$bin_dir/$binary" ]; then
        echo "up.sh: $bin_dir/$binary is missing: run \`cargo build --workspace --bins\` first" >&2
        exit 1
    fi
done
python3 -c 'import moto.server, boto3' 2>/dev/null || {
    echo "up.sh: moto's server is missing: pip install 'moto[server]>=5.2.5'" >&2
    exit 1
}

own_work_dir=false
if [ -z "$work_dir" ]; then
    work_dir=$(mktemp -d "${TMPDIR:-/tmp}/fxpipe-local.XXXXXX")
    own_work_dir=true
fi
mkdir -p "$work_dir/logs"
work_dir=$(cd "$work_dir" && pwd)

# Each child runs in a session and process group of its own (setsid; its pid is the group's
# id), so Ctrl-C in the terminal reaches only this script, which then stops the children in
# order (the ingester first, so it can finish the day in flight; moto last, so nobody loses
# the lake mid-commit), and a child's own children go with it.
pids=()
names=()
stopping=false

stop_all() {
    $stopping && return
    stopping=true
    trap '' INT TERM
    local i deadline
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM -- "-${pids[i]}" 2>/dev/null || true
        # Up to 15 s each; the ingester's day in flight is seconds against moto.
        deadline=$((SECONDS + 15))
        while kill -0 -- "-${pids[i]}" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.1
        done
        if kill -0 -- "-${pids[i]}" 2>/dev/null; then
            echo "up.sh: ${names[i]} ignored SIGTERM for 15 s, killing it" >&2
            kill -KILL -- "-${pids[i]}" 2>/dev/null || true
        fi
        wait "${pids[i]}" 2>/dev/null || true
    done
    if $own_work_dir; then
        rm -rf "$work_dir"
    fi
    echo "fxpipe local cluster stopped" >&2
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

# A child whose output goes to its log file; `name` is what the messages call it.
start() {
    local name=$1
    shift
    setsid "$@" </dev/null >"$work_dir/logs/$name.log" 2>&1 &
    pids+=("$!")
    names+=("$name")
}

# Free ports, all at once so they differ (the OS hands each out once while the sockets live).
read -r -a ports < <(python3 - "$((4 + 3 * executors))" <<'EOF'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
EOF
)
s3_port=${ports[0]}
scheduler_port=${ports[1]}
ingester_port=${ports[2]}

# Runs `check ARGS...` until it succeeds; after 60 s fails saying what did not happen and
# showing the end of the log of the process concerned.
wait_until() {
    local what=$1 log=$2 deadline=$((SECONDS + 60))
    shift 2
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "up.sh: $what within 60 s; the end of $log:" >&2
            tail -n 20 "$log" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
}
# Any HTTP answer at all (the ingester's /healthz says 503 until it has rates).
# curl options for the cluster's TLS REST API (set once the certificates exist).
client_tls=()
answers() { curl -s -o /dev/null --max-time 2 "${client_tls[@]}" "$1"; }
# A 2xx answer.
healthy() { curl -sf -o /dev/null --max-time 2 "$1"; }
registered_executors_at_least() {
    [ "$(curl -s --max-time 2 "${client_tls[@]}" "https://127.0.0.1:$scheduler_port/api/executors" | grep -o '"id"' | wc -l)" -ge "$1" ]
}

# Every process of this cluster carries the marker in its environment: `grep -l` over
# /proc/*/environ finds any that outlived the script.
export FXPIPE_LOCAL_CLUSTER="$work_dir"
# Only for the processes below (and the lines printed for the user): moto's dummy credentials.
export AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port"
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
# No instance metadata lookups on a laptop (aws-config would wait for them to time out).
export AWS_EC2_METADATA_DISABLED=true
# Keys of the caller's own profile must not leak in through the shared files.
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_SESSION_TOKEN

start moto python3 -m moto.server -H 127.0.0.1 -p "$s3_port"
wait_until "moto's S3 server did not answer" "$work_dir/logs/moto.log" answers "$AWS_ENDPOINT_URL/moto-api/"
python3 - "$bucket" <<'EOF'
import os, sys, boto3
boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket=sys.argv[1])
EOF
lake="s3://$bucket/lake"

# Mutual TLS between every member, as on a real cluster: a CA, a directory for the nodes and
# one for clients (keys 0600).
"$bin_dir/fxpipe" cluster certs --out "$work_dir/certs" --hosts 127.0.0.1 >/dev/null
node_tls=$work_dir/certs/127.0.0.1
client_dir=$work_dir/certs/client
client_tls=(--cacert "$client_dir/ca.pem" --cert "$client_dir/cert.pem" --key "$client_dir/key.pem")

# The nodes touch only the lake and the sample's folder.
node_scope=(--lake "$lake" --allow "$sample")
start scheduler "$bin_dir/fxpipe-scheduler" --tls-dir "$node_tls" "${node_scope[@]}" \
    --bind-host 127.0.0.1 --external-host 127.0.0.1 --bind-port "$scheduler_port"
wait_until "the scheduler did not answer" "$work_dir/logs/scheduler.log" \
    answers "https://127.0.0.1:$scheduler_port/api/version"
cluster="df://127.0.0.1:$scheduler_port"

for ((n = 0; n < executors; n++)); do
    mkdir -p "$work_dir/executor-$n"
    start "executor-$n" "$bin_dir/fxpipe-executor" --tls-dir "$node_tls" "${node_scope[@]}" \
        --scheduler-host 127.0.0.1 --scheduler-port "$scheduler_port" \
        --bind-host 127.0.0.1 --external-host 127.0.0.1 \
        --bind-port "${ports[3 + 3 * n]}" --bind-grpc-port "${ports[4 + 3 * n]}" \
        --bind-health-port "${ports[5 + 3 * n]}" \
        --work-dir "$work_dir/executor-$n" --vcores "$vcores"
done
wait_until "the executors did not register" "$work_dir/logs/executor-0.log" \
    registered_executors_at_least "$executors"

source=$rates
if [ "$rates" = sample ]; then
    # Offline sample rates (a seeded random walk, not real rates) for the days the ingester's
    # catch-up covers, so it has something to store at once.
    "$bin_dir/fxpipe" gen rates --from "$(date -u -d '14 days ago' +%F)" \
        --to "$(date -u -d yesterday +%F)" --out "$work_dir/rates" >/dev/null
    source="file://$work_dir/rates"
fi
start ingester "$bin_dir/fxpipe" --lake "$lake" ingest --daemon --source "$source" \
    --http "127.0.0.1:$ingester_port"
healthz="http://127.0.0.1:$ingester_port/healthz"
if [ "$rates" = sample ]; then
    # Its first catch-up stores the last 7 days: then /healthz says 200.
    wait_until "the ingester stored no rates" "$work_dir/logs/ingester.log" healthy "$healthz"
else
    # A remote source may be slow or unreachable: the ingester retries on its own.
    wait_until "the ingester did not answer" "$work_dir/logs/ingester.log" answers "$healthz"
fi

fx="$bin_dir/fxpipe --lake $lake --cluster $cluster --tls-dir $client_dir"
if [ -f "$sample/transactions.csv" ]; then
    sample_note="the quick start's sample in $sample"
else
    sample_note="the quick start's sample ($sample is missing: run \`cargo run -- quickstart\` first)"
fi
cat <<EOF
fxpipe local cluster is up; Ctrl-C stops it.
  S3 (moto)   $AWS_ENDPOINT_URL, lake $lake (in memory: gone when stopped)
  scheduler   $cluster, mutual TLS (jobs: curl --cacert $client_dir/ca.pem --cert $client_dir/cert.pem --key $client_dir/key.pem https://127.0.0.1:$scheduler_port/api/jobs)
  executors   $executors x $vcores task slots
  ingester    rates from $source, http://127.0.0.1:$ingester_port/healthz and /metrics
  logs        $work_dir/logs
pids: ${pids[*]}

In another shell, the daily job (fxpipe run) on the cluster with $sample_note.
The ingester stores only recent days, and the sample's transactions are from 2017-2018: the
run ingests the sample's rates for them, loads the sample and normalizes what changed.
export AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL AWS_REGION=$AWS_REGION AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY AWS_EC2_METADATA_DISABLED=true
$fx run --source file://$sample/rates --from 2017-01-01 --to 2018-12-31 --inputs $sample/transactions.csv
$fx report creditworthiness
ready
EOF

# Until a signal, or until a child dies on its own: a cluster missing a part is no use.
while true; do
    wait -n || true
    for ((i = 0; i < ${#pids[@]}; i++)); do
        if ! kill -0 "${pids[i]}" 2>/dev/null; then
            echo "up.sh: ${names[i]} exited; its log ($work_dir/logs/${names[i]}.log):" >&2
            tail -n 20 "$work_dir/logs/${names[i]}.log" >&2 || true
            exit 1
        fi
    done
done
