# shellcheck shell=bash
# A throwaway PostgreSQL cluster for scripts/test. Sourced, not executed.
# Needs: say/die/warn/is_root/log_tail from common.sh.

PG_DB_NAME=signup_bridge_test
# Superuser role of the throwaway cluster (trust auth, loopback only).
PG_DB_USER=signup_test

# Set PG_BIN to the directory holding initdb and pg_ctl; false if none found.
pg_find_bin() {
    local initdb=""
    if command -v initdb >/dev/null; then
        initdb=$(command -v initdb)
    else
        # Debian keeps the server binaries off PATH, one directory per major version.
        initdb=$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | grep -v '\*' | sort -V | tail -n 1 || true)
    fi
    [[ -n "$initdb" ]] || return 1
    PG_BIN=$(dirname "$(readlink -f "$initdb")")
    [[ -x "$PG_BIN/pg_ctl" && -x "$PG_BIN/postgres" ]]
}

# Find the server binaries, installing Debian's postgresql package when they are
# missing and we are root; otherwise fail with what to do.
pg_ensure_installed() {
    local log=$1
    pg_find_bin && return 0
    if ! is_root; then
        die "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin.
       Install them, e.g.: sudo apt-get install -y postgresql"
    fi
    say "PostgreSQL not found: installing Debian's postgresql package (apt-get)"
    # A fresh machine may have empty package lists, hence the update.
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; } >"$log" 2>&1; then
        log_tail "$log"
        die "apt-get install postgresql failed (log above)"
    fi
    pg_find_bin || die "postgresql installed, but initdb/pg_ctl still not found in /usr/lib/postgresql/*/bin"
}

# PostgreSQL refuses to run as root. As root, run it as the `postgres` system
# user (created by Debian's package) or, failing that, a dedicated system user.
pg_pick_os_user() {
    if ! is_root; then
        PG_OS_USER=$(id -un)
    elif id -u postgres >/dev/null 2>&1; then
        PG_OS_USER=postgres
    else
        PG_OS_USER=signup-test
        if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
            say "creating system user $PG_OS_USER to run PostgreSQL (it refuses to run as root)"
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin "$PG_OS_USER"
        fi
    fi
}

# Run a command as the cluster's OS user, from a directory it can enter
# (initdb and pg_ctl fail when they cannot read their working directory).
as_pg() {
    local base=$1
    shift
    if is_root; then
        (cd "$base" && runuser -u "$(stat -c %U "$base")" -- "$@")
    else
        (cd "$base" && "$@")
    fi
}

# Choose and create PG_BASE (data, socket and logs of the cluster).
# Normally RUN_DIR/pg; a private directory under /tmp when the OS user cannot
# reach the checkout (e.g. under /root) or the socket path would be too long.
pg_prepare_dir() {
    local run_dir=$1
    PG_BASE="$run_dir/pg"
    mkdir -p "$PG_BASE"
    if is_root; then
        chmod 755 "$run_dir"
        chown "$PG_OS_USER:" "$PG_BASE"
    fi
    # Unix socket paths are limited to 107 bytes.
    local sock="$PG_BASE/sock/.s.PGSQL.65535"
    if ((${#sock} > 100)) || { is_root && ! runuser -u "$PG_OS_USER" -- test -w "$PG_BASE"; }; then
        rm -rf "$PG_BASE"
        PG_BASE=$(mktemp -d /tmp/signup-test-pg.XXXXXX)
        is_root && chown "$PG_OS_USER:" "$PG_BASE"
        say "PostgreSQL files go to $PG_BASE (the checkout is not usable for them)"
    fi
    # Remember where, so cleanup (or the next run, after a crash) can find it.
    printf '%s\n' "$PG_BASE" >"$run_dir/pg.base"
}

# initdb a fresh cluster in PG_BASE/data and start it on 127.0.0.1:PORT.
pg_start() {
    local port=$1
    say "starting PostgreSQL $("$PG_BIN/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port (as OS user $PG_OS_USER)"
    as_pg "$PG_BASE" mkdir -p "$PG_BASE/sock"
    # --no-sync and the settings below trade durability for speed: the cluster is thrown away.
    if ! as_pg "$PG_BASE" "$PG_BIN/initdb" -D "$PG_BASE/data" -U "$PG_DB_USER" --auth=trust \
        --encoding=UTF8 --locale=C --no-sync >"$PG_BASE/initdb.log" 2>&1; then
        log_tail "$PG_BASE/initdb.log"
        die "initdb failed (log above)"
    fi
    cat >>"$PG_BASE/data/postgresql.conf" <<EOF

# scripts/test: loopback only, private socket, no durability (throwaway cluster)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PG_BASE/sock'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    # -w -t 60: pg_ctl returns once the server accepts connections, or fails after 60 s.
    if ! as_pg "$PG_BASE" "$PG_BIN/pg_ctl" -D "$PG_BASE/data" -l "$PG_BASE/postgres.log" -w -t 60 start \
        >"$PG_BASE/pg_ctl.log" 2>&1; then
        log_tail "$PG_BASE/postgres.log"
        die "PostgreSQL did not start on 127.0.0.1:$port within 60s (log above)"
    fi
    if ! PGCONNECT_TIMEOUT=10 "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$port" -U "$PG_DB_USER" -d postgres \
        -v ON_ERROR_STOP=1 -c "CREATE DATABASE $PG_DB_NAME" >"$PG_BASE/createdb.log" 2>&1; then
        log_tail "$PG_BASE/createdb.log"
        die "could not create database $PG_DB_NAME (log above)"
    fi
}

# Stop the cluster in BASE/data if it runs (fast shutdown, then immediate).
pg_stop() {
    local base=$1
    [[ -f "$base/data/postmaster.pid" ]] || return 0
    pg_find_bin || return 0
    # A postmaster.pid left by a crash does not mean a server runs.
    as_pg "$base" "$PG_BIN/pg_ctl" -D "$base/data" status >/dev/null 2>&1 || return 0
    say "stopping PostgreSQL"
    as_pg "$base" "$PG_BIN/pg_ctl" -D "$base/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
        as_pg "$base" "$PG_BIN/pg_ctl" -D "$base/data" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
        warn "could not stop PostgreSQL in $base/data"
}
