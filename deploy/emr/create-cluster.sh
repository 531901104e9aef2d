#!/usr/bin/env bash
# Creates an fxpipe cluster on EMR: instance fleets (instance-fleets.json), the bootstrap action
# that installs and starts the scheduler and executors (bootstrap.sh), then adds the load and
# normalize steps (steps.json). Prints the cluster id.
#
#   LAKE=s3://bank-lake/prod EXPORTS='s3://bank-lake/exports/2024-*.csv' \
#   BINARIES=s3://bank-lake/fxpipe/bin/ LOGS=s3://bank-lake/emr-logs/ \
#   SUBNETS=subnet-0abc,subnet-0def REGION=eu-west-1 CLIENT_CIDR=10.0.5.0/24 \
#   INSTANCE_PROFILE=fxpipe-emr-node CLIENT_ROLE_ARN=arn:aws:iam::123456789012:role/fxpipe-client \
#   deploy/emr/create-cluster.sh
#
# Upload the release binaries to BINARIES first (x86_64 Linux, `cargo build --release
# --workspace`): fxpipe, fxpipe-scheduler, fxpipe-executor, their SHA256SUMS (`sha256sum
# fxpipe fxpipe-scheduler fxpipe-executor > SHA256SUMS`: bootstrap.sh refuses a binary that
# does not match) and the cluster's TLS directory as tls/. BINARIES must not be inside LAKE.
# This script uploads bootstrap.sh next to them. Extra arguments go to every `aws` call (e.g. --profile, --endpoint-url).
#
# Credentials: the AWS CLI's own chain for these calls; on the nodes, only INSTANCE_PROFILE's
# role (iam-node-policy.json: read, add data files, never delete, commit or catalog), never a
# key. The steps on the primary assume CLIENT_ROLE_ARN (iam-client-policy.json, trusting the
# node role as iam-client-trust.json says). EMR_ROLE is EMR's service role.
set -euo pipefail

: "${LAKE:?LAKE=s3://bucket/prefix}" "${EXPORTS:?EXPORTS=s3://bucket/exports/*.csv}"
: "${BINARIES:?BINARIES=s3://bucket/prefix/}" "${LOGS:?LOGS=s3://bucket/prefix/}"
: "${SUBNETS:?SUBNETS=subnet-a,subnet-b (the fleets pick among them)}" "${REGION:?REGION=eu-west-1}"
: "${CLIENT_ROLE_ARN:?CLIENT_ROLE_ARN=arn:aws:iam::ACCOUNT:role/fxpipe-client (the role the steps assume: iam-client-policy.json)}"
: "${CLIENT_CIDR:?CLIENT_CIDR=10.0.5.0/24 (where fxpipe clients run: with the nodes themselves, the only addresses that reach ports 50050-50052)}"
instance_profile=${INSTANCE_PROFILE:-fxpipe-emr-node}
service_role=${EMR_ROLE:-EMR_DefaultRole_V2}
release=${RELEASE:-emr-7.5.0}
name=${NAME:-fxpipe}
here=$(cd "$(dirname "$0")" && pwd)
binaries=${BINARIES%/}

# Steps with this deployment's lake and exports (@LAKE@, @EXPORTS@ in steps.json).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$here/steps.json" "$work/steps.json" "$LAKE" "$EXPORTS" <<'PY'
import json, sys
steps = json.load(open(sys.argv[1]))
for step in steps:
    step["Args"] = [a.replace("@LAKE@", sys.argv[3]).replace("@EXPORTS@", sys.argv[4]) for a in step["Args"]]
json.dump(steps, open(sys.argv[2], "w"), indent=2)
PY

aws "$@" --region "$REGION" s3 cp --only-show-errors "$here/bootstrap.sh" "$binaries/bootstrap.sh"

# Security groups of this cluster alone (EMR's default managed groups are shared by every EMR
# cluster in the VPC): the scheduler's port (50050) and the executors' Flight and gRPC ports
# (50051-50052) open only between this cluster's nodes and to CLIENT_CIDR. EMR adds the rules
# it needs itself.
vpc=$(aws "$@" --region "$REGION" ec2 describe-subnets --subnet-ids "${SUBNETS%%,*}" \
    --query 'Subnets[0].VpcId' --output text)
suffix=$(date -u +%Y%m%d%H%M%S)
primary_sg=$(aws "$@" --region "$REGION" ec2 create-security-group --vpc-id "$vpc" \
    --group-name "$name-primary-$suffix" --description "fxpipe scheduler ($name)" \
    --query GroupId --output text)
nodes_sg=$(aws "$@" --region "$REGION" ec2 create-security-group --vpc-id "$vpc" \
    --group-name "$name-executors-$suffix" --description "fxpipe executors ($name)" \
    --query GroupId --output text)
open_ports() { # group, ports, then sources
    local group=$1 ports=$2
    shift 2
    local from=${ports%-*} to=${ports#*-}
    local permissions=()
    for source in "$@"; do
        case "$source" in
            sg-*) permissions+=("IpProtocol=tcp,FromPort=$from,ToPort=$to,UserIdGroupPairs=[{GroupId=$source}]") ;;
            *) permissions+=("IpProtocol=tcp,FromPort=$from,ToPort=$to,IpRanges=[{CidrIp=$source}]") ;;
        esac
    done
    aws "${aws_args[@]}" --region "$REGION" ec2 authorize-security-group-ingress --group-id "$group" \
        --ip-permissions "${permissions[@]}" >/dev/null
}
aws_args=("$@")
open_ports "$primary_sg" 50050-50050 "$primary_sg" "$nodes_sg" "$CLIENT_CIDR"
open_ports "$nodes_sg" 50051-50052 "$primary_sg" "$nodes_sg" "$CLIENT_CIDR"

cluster_id=$(aws "$@" --region "$REGION" emr create-cluster \
    --name "$name" \
    --release-label "$release" \
    --log-uri "$LOGS" \
    --service-role "$service_role" \
    --ec2-attributes "InstanceProfile=$instance_profile,SubnetIds=[$SUBNETS],EmrManagedMasterSecurityGroup=$primary_sg,EmrManagedSlaveSecurityGroup=$nodes_sg" \
    --instance-fleets "file://$here/instance-fleets.json" \
    --bootstrap-actions "Path=$binaries/bootstrap.sh,Name=fxpipe-node,Args=[$binaries/,$REGION,$LAKE,${EXPORTS%/*}/,$CLIENT_ROLE_ARN]" \
    --tags "app=fxpipe" \
    --no-auto-terminate \
    --query ClusterId --output text)

aws "$@" --region "$REGION" emr add-steps --cluster-id "$cluster_id" \
    --steps "file://$work/steps.json" >/dev/null
echo "$cluster_id"
