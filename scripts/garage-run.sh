# A throwaway single-node Garage S3 engine for scripts (the demo, the S3 benchmark); the Rust
# tests use pgseal_testkit::TestGarage instead. Source this file, then:
#
#     garage_start DIR BUCKET   # Garage in DIR (made), on free loopback ports, with one key
#                               #   and BUCKET; exports AWS_ENDPOINT_URL, AWS_REGION,
#                               #   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; sets garage_pid
#     garage_stop               # kills exactly that server
#
# The binary comes from scripts/garage.sh (built once per machine). Secrets reach Garage through
# its 0600 configuration file and its standard input, never its command line.

garage_start() {
    local dir=$1 bucket=$2 root node key bucket_id _
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    garage_bin="$(bash "$root/scripts/garage.sh")"
    garage_conf="$dir/garage.toml"
    mkdir -p "$dir/meta" "$dir/data"
    local s3port rpcport adminport
    s3port="$(_garage_free_port)"
    rpcport="$(_garage_free_port)"
    adminport="$(_garage_free_port)"
    (
        umask 077
        cat > "$garage_conf" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$rpcport"
rpc_public_addr = "127.0.0.1:$rpcport"
rpc_secret = "$(_garage_hex)"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3port"
[admin]
api_bind_addr = "127.0.0.1:$adminport"
admin_token = "$(_garage_hex)"
TOML
    )
    "$garage_bin" -c "$garage_conf" server > "$dir/garage.log" 2>&1 &
    garage_pid=$!
    for _ in $(seq 150); do
        node="$(_garage_admin GetClusterStatus 2>/dev/null | _garage_field '["nodes"][0]["id"]' 2>/dev/null)" && break
        sleep 0.2
    done
    [ -n "$node" ] || { echo "garage did not start; see $dir/garage.log" >&2; return 1; }
    echo "{\"roles\": [{\"id\": \"$node\", \"zone\": \"dc1\", \"capacity\": 1000000000, \"tags\": []}]}" |
        _garage_admin UpdateClusterLayout - >/dev/null
    echo '{"version": 1}' | _garage_admin ApplyClusterLayout - >/dev/null
    for _ in $(seq 150); do
        [ "$(_garage_admin GetClusterHealth 2>/dev/null | _garage_field '["status"]' 2>/dev/null)" = healthy ] && break
        sleep 0.2
    done
    key="$(echo '{"name": "pgseal-scripts"}' | _garage_admin CreateKey -)"
    bucket_id="$(echo "{\"globalAlias\": \"$bucket\"}" | _garage_admin CreateBucket - | _garage_field '["id"]')"
    export AWS_ENDPOINT_URL="http://127.0.0.1:$s3port" AWS_REGION=garage
    AWS_ACCESS_KEY_ID="$(echo "$key" | _garage_field '["accessKeyId"]')"
    AWS_SECRET_ACCESS_KEY="$(echo "$key" | _garage_field '["secretAccessKey"]')"
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    echo "{\"bucketId\": \"$bucket_id\", \"accessKeyId\": \"$AWS_ACCESS_KEY_ID\", \"permissions\": {\"read\": true, \"write\": true, \"owner\": true}}" |
        _garage_admin AllowBucketKey - >/dev/null
    for _ in $(seq 50); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $s3port), 1)" 2>/dev/null && return 0
        sleep 0.2
    done
    echo "garage's S3 port $s3port does not answer; see $dir/garage.log" >&2
    return 1
}

garage_stop() {
    if [ -n "${garage_pid:-}" ]; then
        kill "$garage_pid" 2>/dev/null || true
        wait "$garage_pid" 2>/dev/null || true
        garage_pid=
    fi
}

_garage_admin() { "$garage_bin" -c "$garage_conf" json-api "$@"; }
_garage_field() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }
_garage_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
_garage_hex() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
