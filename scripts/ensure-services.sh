#!/usr/bin/env bash
# Provide the real services the test suite needs, idempotently:
#   - a Docker engine (Debian's docker.io; dockerd with vfs storage, no iptables, no bridge)
#   - /usr/bin/redis-server (the test stack's redis runs the host binary in a container)
#   - tmux (end-to-end tests of the real binary in a real terminal)
#   - age (Debian's age binary: encrypted copies must open with `age -d -i KEY`), ssh-keygen
# Called by `make test` before pytest. Under CI=true, anything missing is an error;
# otherwise the script warns and the affected tests skip with the reason.
set -u

log() { printf 'ensure-services: %s\n' "$*" >&2; }

STRICT=0
case "${CI:-}" in true|TRUE|True|1|yes) STRICT=1 ;; esac

FAILED=()
fail() {
    FAILED+=("$1")
    log "ERROR: $1"
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    fi
fi

APT_UPDATED=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "apt-get not available; cannot install $*"
        return 1
    fi
    if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
        log "not root and no passwordless sudo; cannot install $*"
        return 1
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null || return 1
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

docker_ok() { docker info >/dev/null 2>&1; }

# ---------------------------------------------------------------- Docker engine
if docker_ok; then
    log "docker engine: answering"
else
    if ! command -v dockerd >/dev/null 2>&1; then
        apt_install docker.io || true
    fi
    if ! command -v docker >/dev/null 2>&1; then
        apt_install docker.io || true
    fi
    if command -v dockerd >/dev/null 2>&1; then
        LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/fovea-dockerd.XXXXXX")"
        log "starting dockerd (log: $LOG_DIR/dockerd.log)"
        # nohup + setsid: the engine outlives this script and the make process.
        $SUDO setsid nohup dockerd --storage-driver=vfs --iptables=false --bridge=none \
            >"$LOG_DIR/dockerd.log" 2>&1 < /dev/null &
        for _ in $(seq 1 60); do
            docker_ok && break
            sleep 1
        done
        if docker_ok; then
            log "docker engine: started"
        else
            tail -n 20 "$LOG_DIR/dockerd.log" >&2 2>/dev/null || true
            fail "dockerd did not answer within 60 s (log: $LOG_DIR/dockerd.log)"
        fi
    else
        fail "no Docker engine answers and dockerd could not be installed (apt package docker.io)"
    fi
fi

# ---------------------------------------------------------------- redis-server
if [ -x /usr/bin/redis-server ] && [ -x /usr/bin/redis-cli ]; then
    log "redis-server: present"
else
    apt_install redis-server || true
    [ -x /usr/bin/redis-server ] || fail "/usr/bin/redis-server missing and could not be installed (apt package redis-server)"
fi

# ---------------------------------------------------------------- tmux
if command -v tmux >/dev/null 2>&1; then
    log "tmux: present"
else
    apt_install tmux || true
    command -v tmux >/dev/null 2>&1 || fail "tmux missing and could not be installed (apt package tmux)"
fi

# ---------------------------------------------------------------- fault tools
# strace injects a fault into one syscall (ENOSPC on a late fsync); openssl makes the
# certificates of the SSL-only PostgreSQL; Debian's PostgreSQL 15 server (built with OpenSSL)
# runs it; setpriv drops root's bypass of file modes.
for tool in strace:strace openssl:openssl setpriv:util-linux; do
    cmd=${tool%%:*}; pkg=${tool#*:}
    if command -v "$cmd" >/dev/null 2>&1; then
        log "$cmd: present"
    else
        apt_install "$pkg" || true
        command -v "$cmd" >/dev/null 2>&1 || fail "$cmd missing and could not be installed (apt package $pkg)"
    fi
done
if [ -x /usr/lib/postgresql/15/bin/postgres ]; then
    log "postgresql-15 server: present"
else
    apt_install postgresql-15 || true
    [ -x /usr/lib/postgresql/15/bin/postgres ] || fail "PostgreSQL 15 server missing and could not be installed (apt package postgresql-15)"
fi

# ---------------------------------------------------------------- age
# Debian's age/age-keygen: the interoperability check for encrypted off-site copies.
if command -v age >/dev/null 2>&1 && command -v age-keygen >/dev/null 2>&1; then
    log "age: present"
else
    apt_install age || true
    command -v age >/dev/null 2>&1 || fail "age missing and could not be installed (apt package age)"
fi

# ---------------------------------------------------------------- ssh-keygen
# SSH recipients (ssh-ed25519, ssh-rsa) in the encryption tests.
if command -v ssh-keygen >/dev/null 2>&1; then
    log "ssh-keygen: present"
else
    apt_install openssh-client || true
    command -v ssh-keygen >/dev/null 2>&1 || fail "ssh-keygen missing and could not be installed (apt package openssh-client)"
fi

if [ "${#FAILED[@]}" -gt 0 ]; then
    if [ "$STRICT" -eq 1 ]; then
        log "CI=true and ${#FAILED[@]} service(s) could not be provided:"
        for f in "${FAILED[@]}"; do log "  - $f"; done
        exit 1
    fi
    log "continuing without them: the tests that need them will be skipped"
fi
exit 0
