# shellcheck shell=bash
# Shared helpers for scripts/test. Sourced, not executed.

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Print N distinct free TCP ports on 127.0.0.1. All sockets stay open until
# every port is chosen, so the kernel never hands out the same port twice.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Print the last lines of a log file, indented, to stderr (for failure messages).
log_tail() {
    local file=$1 lines=${2:-30}
    printf -- '--- last %s lines of %s ---\n' "$lines" "$file" >&2
    if [[ -f "$file" ]]; then tail -n "$lines" "$file" | sed 's/^/    /' >&2; else echo "    (no log file)" >&2; fi
    printf -- '---\n' >&2
}
