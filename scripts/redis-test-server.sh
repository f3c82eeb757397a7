#!/usr/bin/env bash
# A throwaway redis-server for the Redis tests (tests/redis start their own through a pytest fixture;
# this script is for checking, installing, and for running one by hand).
#
#   scripts/redis-test-server.sh check     fail loudly unless redis-server is installed
#   scripts/redis-test-server.sh install   install Debian's redis-server if missing (root, apt-get)
#   scripts/redis-test-server.sh ensure    install it if missing and possible (root with apt-get), else check
#   scripts/redis-test-server.sh start DIR start one on a free loopback port, no persistence;
#                                          prints its URL (also in DIR/url); pid in DIR/pid
#   scripts/redis-test-server.sh stop DIR  stop the one started in DIR
set -euo pipefail

command=${1:-check}

check() {
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "redis-server is not installed; the Redis tests need it." >&2
        echo "Install it with: apt-get update && apt-get install -y redis-server" >&2
        echo "(or run: scripts/redis-test-server.sh install)" >&2
        exit 1
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

case "$command" in
check)
    check
    ;;
ensure)
    if ! command -v redis-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
    fi
    check
    ;;
install)
    if ! command -v redis-server >/dev/null 2>&1; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
    fi
    check
    ;;
start)
    check
    dir=${2:?usage: $0 start DIR}
    mkdir -p "$dir"
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
        --daemonize yes --pidfile "$dir/pid" --logfile "$dir/redis.log"
    for _ in $(seq 1 200); do
        if redis-cli -p "$port" ping >/dev/null 2>&1; then
            echo "redis://127.0.0.1:$port/0" | tee "$dir/url"
            exit 0
        fi
        sleep 0.05
    done
    echo "redis-server did not answer on port $port; see $dir/redis.log" >&2
    exit 1
    ;;
stop)
    dir=${2:?usage: $0 stop DIR}
    if [ -f "$dir/pid" ]; then
        kill "$(cat "$dir/pid")" 2>/dev/null || true
        rm -f "$dir/pid" "$dir/url"
    fi
    ;;
*)
    echo "usage: $0 check|ensure|install|start DIR|stop DIR" >&2
    exit 2
    ;;
esac
