#!/usr/bin/env bash
# EMR bootstrap action for an fxpipe cluster: runs on every node before it joins, installs the
# fxpipe binaries from S3, and starts the node's role as a systemd service:
#   primary node (isMaster)      -> fxpipe-scheduler on port 50050
#   core and task nodes          -> fxpipe-executor, one task slot per core (nproc)
#
#   Args: s3://BUCKET/PREFIX/ (where create-cluster.sh put fxpipe, fxpipe-scheduler and
#         fxpipe-executor, and tls/), the region, the lake and the exports' prefix (the only
#         locations the nodes open), and the client role's ARN (iam-client-policy.json).
#
# Credentials: `aws s3 cp` and the services use the cluster's EC2 instance profile
# (iam-node-policy.json: no delete, no commit, no Glue); no key is written anywhere. On the
# primary, the steps' user gets an AWS profile `fxpipe-client` that assumes the client role
# from the instance profile, so only the steps commit, vacuum and catalog. The node's role is
# read from EMR's own node metadata, not guessed from host names.
#
# Overridable for tests (defaults are EMR's paths): FXPIPE_ROOT (the file system root the
# files go under), FXPIPE_INSTANCE_JSON, FXPIPE_JOB_FLOW_JSON, FXPIPE_NPROC.
set -euo pipefail

usage="usage: bootstrap.sh s3://BUCKET/PREFIX/ REGION LAKE INPUTS_PREFIX CLIENT_ROLE_ARN"
binaries=${1:?$usage}
region=${2:?$usage}
# The only locations the node's plans may touch: the lake and the exports' prefix.
lake=${3:?$usage}
inputs=${4:?$usage}
client_role=${5:?$usage}
case "$client_role" in
    arn:aws*:iam::*:role/*) ;;
    *)
        echo "bootstrap.sh: $client_role is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)" >&2
        exit 1
        ;;
esac
root=${FXPIPE_ROOT:-/}
instance_json=${FXPIPE_INSTANCE_JSON:-/mnt/var/lib/info/instance.json}
job_flow_json=${FXPIPE_JOB_FLOW_JSON:-/mnt/var/lib/info/job-flow.json}
cores=${FXPIPE_NPROC:-$(nproc)}

# Bootstrap actions run as the `hadoop` user, which has password-less sudo.
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)

# A JSON field without jq (not on every EMR image): python3 is on all of them.
json_field() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$1" "$2"
}

is_master=$(json_field "$instance_json" isMaster)
instance_role=$(json_field "$instance_json" instanceRole)
case "$is_master:$instance_role" in
    True:*) role=scheduler ;;
    False:core | False:task | False:Core | False:Task) role=executor ;;
    *)
        echo "bootstrap.sh: unexpected node in $instance_json: isMaster=$is_master instanceRole=$instance_role" >&2
        exit 1
        ;;
esac

bin_dir="${root%/}/usr/local/bin"
unit_dir="${root%/}/etc/systemd/system"
env_dir="${root%/}/etc/fxpipe"
"${sudo[@]}" install -d -m 0755 "$bin_dir" "$unit_dir"
"${sudo[@]}" install -d -m 0755 "$env_dir"

# Binaries under the lake's prefix could be replaced by any job that writes the lake.
case "${binaries%/}/" in
    "${lake%/}/"*)
        echo "bootstrap.sh: the binaries' prefix ${binaries} is inside the lake ${lake}: keep them where no job writes" >&2
        exit 1
        ;;
esac

download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
# Each binary must match the SHA-256 list published beside it (sha256sum's format): a binary
# that changed since the list was made is refused, and nothing starts.
aws s3 cp --only-show-errors "${binaries%/}/SHA256SUMS" "$download/SHA256SUMS" || {
    echo "bootstrap.sh: no ${binaries%/}/SHA256SUMS beside the binaries (sha256sum fxpipe fxpipe-scheduler fxpipe-executor > SHA256SUMS)" >&2
    exit 1
}
for binary in fxpipe "fxpipe-$role"; do
    aws s3 cp --only-show-errors "${binaries%/}/$binary" "$download/$binary"
    expected=$(awk -v name="$binary" '$2 == name || $2 == "*" name { print $1 }' "$download/SHA256SUMS")
    actual=$(sha256sum "$download/$binary" | cut -d' ' -f1)
    if [ -z "$expected" ] || [ "$expected" != "$actual" ]; then
        echo "bootstrap.sh: $binary does not match SHA256SUMS (expected ${expected:-no entry}, got $actual): refusing to install it" >&2
        exit 1
    fi
done
for binary in fxpipe "fxpipe-$role"; do
    "${sudo[@]}" install -m 0755 "$download/$binary" "$bin_dir/$binary"
done

# The cluster's TLS directory (ca.pem, cert.pem, key.pem), from the private prefix beside the
# binaries (s3://BUCKET/PREFIX/tls/): made once with
#   fxpipe cluster certs --out certs --hosts '*.ec2.internal,*.REGION.compute.internal'
# and uploaded with `aws s3 cp --recursive certs/<name>/ s3://BUCKET/PREFIX/tls/` (the CA key
# stays off S3). Nodes refuse to serve the network without it. Root-only on the node; the
# services read it as a systemd credential.
tls_dir="$env_dir/tls"
mkdir -p "$download/tls"
for file in ca.pem cert.pem key.pem; do
    if ! aws s3 cp --only-show-errors "${binaries%/}/tls/$file" "$download/tls/$file"; then
        echo "bootstrap.sh: no ${binaries%/}/tls/$file: upload the cluster's TLS directory there (fxpipe cluster certs)" >&2
        exit 1
    fi
done
"${sudo[@]}" install -d -m 0700 "$tls_dir"
"${sudo[@]}" install -m 0644 "$download/tls/ca.pem" "$download/tls/cert.pem" "$tls_dir/"
"${sudo[@]}" install -m 0600 "$download/tls/key.pem" "$tls_dir/key.pem"
if [ "$role" = scheduler ]; then
    # The steps (command-runner.jar, as this user) connect as clients with the same files.
    client_tls=${FXPIPE_CLIENT_TLS:-$HOME/fxpipe-tls}
    install -d -m 0700 "$client_tls"
    install -m 0600 "$download/tls/ca.pem" "$download/tls/cert.pem" "$download/tls/key.pem" "$client_tls/"
    # ... and act as the client role (steps.json sets AWS_PROFILE=fxpipe-client): the instance
    # profile alone cannot delete, commit or catalog.
    aws configure set profile.fxpipe-client.role_arn "$client_role"
    aws configure set profile.fxpipe-client.credential_source Ec2InstanceMetadata
    aws configure set profile.fxpipe-client.role_session_name fxpipe-steps
    aws configure set profile.fxpipe-client.region "$region"
fi

# Settings shared by both roles' units. No credentials: the instance profile provides them.
{
    echo "AWS_REGION=$region"
    echo "RUST_LOG=info"
    echo "FXPIPE_LAKE=$lake"
    echo "FXPIPE_ALLOW=$inputs"
    if [ "$role" = executor ]; then
        # The primary's private name, which EMR writes on every node before bootstrap runs.
        echo "FXPIPE_SCHEDULER_HOST=${FXPIPE_SCHEDULER_HOST:-$(json_field "$job_flow_json" masterPrivateDnsName)}"
        # The name the others reach this executor by, which its certificate's wildcard covers.
        echo "FXPIPE_EXTERNAL_HOST=${FXPIPE_EXTERNAL_HOST:-$(hostname -f)}"
    fi
} >"$download/cluster.env"
"${sudo[@]}" install -m 0644 "$download/cluster.env" "$env_dir/cluster.env"

# The sandbox of deploy/ec2's units (tests/deploy.rs checks they agree), with a dynamic user:
# nothing to add to /etc/passwd on a node that lives as long as the cluster.
sandbox() {
    cat <<'EOF'
DynamicUser=yes
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateUsers=yes
PrivateMounts=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RemoveIPC=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM
CapabilityBoundingSet=
AmbientCapabilities=
DevicePolicy=closed
UMask=0077
EOF
}

unit="fxpipe-$role.service"
if [ "$role" = scheduler ]; then
    exec_start="/usr/local/bin/fxpipe-scheduler --tls-dir \${CREDENTIALS_DIRECTORY}/tls --bind-host 0.0.0.0 --bind-port 50050"
    extra=""
else
    # One slot per core of this node (fleets mix instance sizes), registered under its
    # private DNS name (which its TLS certificate covers).
    exec_start="/usr/local/bin/fxpipe-executor --tls-dir \${CREDENTIALS_DIRECTORY}/tls --scheduler-host \${FXPIPE_SCHEDULER_HOST} --scheduler-port 50050 --external-host \${FXPIPE_EXTERNAL_HOST} --bind-host 0.0.0.0 --bind-port 50051 --bind-grpc-port 50052 --vcores $cores --work-dir /var/cache/fxpipe-executor"
    # Shuffle files; /var/cache is on the node's instance store or EBS root on EMR.
    extra=$'CacheDirectory=fxpipe-executor\nCacheDirectoryMode=0700'
fi
{
    cat <<EOF
# Written by fxpipe's EMR bootstrap action (deploy/emr/bootstrap.sh) for this node's role.
[Unit]
Description=fxpipe cluster $role (Apache Ballista), EMR node
Wants=network-online.target
After=network-online.target
# Nodes come up in any order: an executor started before the scheduler keeps retrying.
StartLimitIntervalSec=0

[Service]
Type=simple
EnvironmentFile=/etc/fxpipe/cluster.env
InaccessiblePaths=-/etc/fxpipe/ingest.env
LoadCredential=tls:/etc/fxpipe/tls
ExecStart=$exec_start
Restart=always
RestartSec=10s
TimeoutStopSec=30s
StandardOutput=journal
StandardError=journal
SyslogIdentifier=fxpipe-$role
LimitNOFILE=65536
EOF
    [ -z "$extra" ] || echo "$extra"
    sandbox
    printf '\n[Install]\nWantedBy=multi-user.target\n'
} >"$download/$unit"
"${sudo[@]}" install -m 0644 "$download/$unit" "$unit_dir/$unit"

if [ "$root" = / ]; then
    "${sudo[@]}" systemctl daemon-reload
    "${sudo[@]}" systemctl enable --now "$unit"
else
    # A test root: enable it there (the symlink), start nothing.
    systemctl --root="$root" enable "$unit" 2>/dev/null
fi
echo "bootstrap.sh: $unit installed and enabled (${cores} cores)"
