# shellcheck shell=bash
# Azurite (Azure Storage emulator) for scripts/test. Sourced, not executed.
# Needs: ROOT, and say/die/port_open/log_tail from common.sh.

AZURITE_DIR="$ROOT/tools/azurite"
AZURITE_BIN="$AZURITE_DIR/node_modules/.bin/azurite"
# shellcheck disable=SC2034 # the account and key are used by scripts/test
AZURITE_ACCOUNT=devstoreaccount1
# Azurite's fixed, publicly documented development key: not a secret.
# shellcheck disable=SC2034
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

azurite_pinned_version() {
    node -p 'require(process.argv[1]).dependencies.azurite' "$AZURITE_DIR/package.json"
}

# Install the pinned Azurite into tools/azurite with `npm ci` (exactly what
# package-lock.json says), unless node_modules already matches the lock file.
azurite_install() {
    command -v node >/dev/null || die "node not found: Azurite needs Node.js 20+ (apt-get install nodejs npm)"
    command -v npm >/dev/null || die "npm not found: Azurite is installed with npm (apt-get install npm)"

    local version stamp want
    version=$(azurite_pinned_version)
    stamp="$AZURITE_DIR/node_modules/.signup-bridge-lock.sha256"
    want=$(sha256sum "$AZURITE_DIR/package-lock.json" | cut -d' ' -f1)

    # npm ci wipes node_modules, so the stamp disappears with it and a changed
    # lock file changes the hash: either way we reinstall.
    if [[ -x "$AZURITE_BIN" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        say "Azurite $version already installed in tools/azurite"
        return
    fi

    say "installing Azurite $version into tools/azurite (npm ci)"
    local started=$SECONDS
    # --ignore-scripts: Azurite is plain JavaScript and needs no install scripts.
    # --engine-strict=false: Azurite 3.36+ declares node >= 22 only because older
    # Node lines reached end of life; blob and queue run fine on Node 20.
    (cd "$AZURITE_DIR" && npm ci --no-audit --no-fund --ignore-scripts --engine-strict=false --loglevel=error) ||
        die "npm ci in tools/azurite failed (is the npm registry reachable?)"
    printf '%s\n' "$want" >"$stamp"
    say "Azurite installed in $((SECONDS - started))s"
}

# Start Azurite in the background: azurite_start DIR BLOB_PORT QUEUE_PORT TABLE_PORT.
# Sets AZURITE_PID and AZURITE_LOG. Data lives in DIR/azurite.
azurite_start() {
    local dir=$1 blob=$2 queue=$3 table=$4
    AZURITE_LOG="$dir/azurite.log"
    mkdir -p "$dir/azurite"
    say "starting Azurite on 127.0.0.1:$blob (blob) and 127.0.0.1:$queue (queue)"
    # The combined `azurite` command cannot leave the table service out, so it
    # gets a spare free port that nothing uses. --disableTelemetry: Azurite
    # otherwise tries to send usage data out of the machine.
    "$AZURITE_BIN" \
        --location "$dir/azurite" \
        --blobHost 127.0.0.1 --blobPort "$blob" \
        --queueHost 127.0.0.1 --queuePort "$queue" \
        --tableHost 127.0.0.1 --tablePort "$table" \
        --loose --skipApiVersionCheck --disableProductStyleUrl --disableTelemetry \
        </dev/null >"$AZURITE_LOG" 2>&1 &
    AZURITE_PID=$!
    printf '%s\n' "$AZURITE_PID" >"$dir/azurite.pid"
}

# Wait (bounded) until Azurite says both services listen and both ports accept
# connections. The log check makes sure it is our Azurite on those ports.
azurite_wait() {
    local blob=$1 queue=$2 timeout=${3:-60}
    local deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$AZURITE_PID" 2>/dev/null; then
            log_tail "$AZURITE_LOG"
            die "Azurite exited during start-up (log above)"
        fi
        if grep -q "Blob service is successfully listening at http://127.0.0.1:$blob" "$AZURITE_LOG" &&
            grep -q "Queue service is successfully listening at http://127.0.0.1:$queue" "$AZURITE_LOG" &&
            port_open "$blob" && port_open "$queue"; then
            return 0
        fi
        sleep 0.2
    done
    log_tail "$AZURITE_LOG"
    die "Azurite did not listen on 127.0.0.1:$blob and :$queue within ${timeout}s (log above)"
}

# Stop the Azurite whose pid is in DIR/azurite.pid, if it still runs.
azurite_stop() {
    local dir=$1 pid
    pid=$(cat "$dir/azurite.pid" 2>/dev/null) || return 0
    # Only signal the process if it is still an Azurite (pids get reused).
    if [[ -n "$pid" ]] && grep -qa azurite "/proc/$pid/cmdline" 2>/dev/null; then
        say "stopping Azurite (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
        # Reap it when it is our child, so bash prints no "Terminated" notice.
        wait "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/azurite.pid"
}
