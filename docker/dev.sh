#!/usr/bin/env bash
# One command for each thing you do with the GPU container of the Tiny Transformer Explorer.
# Run it on the GPU host, from anywhere; it finds the checkout it lives in.
#
# Usage: docker/dev.sh [--dry-run] COMMAND [ARGS...]
#   up        build the image if needed, start the app, wait for its health check,
#             then print the SSH tunnel line to run on your laptop
#   jupyter   start JupyterLab on the host's 127.0.0.1:8888 with a token; print the tunnel
#             line and the URL to open
#   shell     a bash shell in a fresh container (same image, mount and GPU as the app)
#   test      run the test suite in a fresh container; ARGS go to pytest (e.g. -k sampling)
#   gpu       what the container sees: nvidia-smi, and torch's CUDA device doing a matmul
#   restart   restart the app (after editing tinytf/ or explorer/) and wait for its health
#   logs      follow the app's log (`logs jupyter` for JupyterLab's)
#   build     build the image only
#   down      stop and remove the containers; runs/ stays on the host
#   tunnel    print the SSH tunnel lines for this host
#
# Environment: DRY_RUN=1 (as --dry-run: print each command, run none), SSH_HOST (the address
# printed in tunnel lines), HEALTH_TIMEOUT (seconds to wait for a health check, default 300),
# JUPYTER_TOKEN (else one is made once and kept in ~/.config/tiny-transformer-explorer/).
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
COMPOSE_FILE="${ROOT}/docker/compose.yaml"
DRY_RUN="${DRY_RUN:-0}"
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-300}"
TOKEN_FILE="${XDG_CONFIG_HOME:-${HOME}/.config}/tiny-transformer-explorer/jupyter-token"
DOCKER=(docker)

say() { printf 'dev: %s\n' "$*"; }
die() {
    printf 'dev: error: %s\n' "$*" >&2
    exit 1
}

# Any failing command stops the script with its name and status (the status is kept, so
# `dev.sh test` exits as pytest did).
on_error() {
    printf 'dev: error: [%s] exited with %s\n' "$2" "$1" >&2
    exit "$1"
}
trap 'on_error "$?" "${BASH_COMMAND}"' ERR

usage() {
    awk 'NR >= 5 && !/^#/ { exit } NR >= 5 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

# Print a command the way you would type it, then run it unless this is a dry run.
run() {
    local arg line="+"
    for arg in "$@"; do
        if [[ "${arg}" =~ ^[][A-Za-z0-9_./:=@%+,-]+$ ]]; then
            line+=" ${arg}"
        else
            line+=" '${arg//\'/\'\\\'\'}'"
        fi
    done
    printf '%s\n' "${line}"
    if [[ "${DRY_RUN}" == 1 ]]; then
        return 0
    fi
    "$@"
}

compose() {
    run "${DOCKER[@]}" compose -f "${COMPOSE_FILE}" "$@"
}

# Docker must answer before anything is built; fall back to sudo for a user who was only
# just added to the docker group (the new group counts from the next login).
ensure_engine() {
    if [[ "${DRY_RUN}" == 1 ]]; then
        return 0
    fi
    command -v docker > /dev/null || die "docker not found: run docker/bootstrap.sh on this host first"
    local info
    if ! info="$(docker info 2>&1)"; then
        if [[ "${info}" == *"permission denied"* ]] && command -v sudo > /dev/null; then
            say "no access to the Docker socket yet (log out and in after joining the docker group); using sudo"
            DOCKER=(sudo docker)
        else
            die "the Docker engine does not answer (sudo systemctl start docker; on a fresh host run docker/bootstrap.sh)"
        fi
    fi
    "${DOCKER[@]}" compose version > /dev/null 2>&1 \
        || die "Docker Compose v2 is missing: sudo apt-get install docker-compose-v2 (or docker-compose-plugin)"
}

# The container user takes the host user's ids, so files it writes into the checkout are
# yours. Root maps to uid 1000, which then needs runs/ to be its own to write there.
export_ids() {
    APP_UID="$(id -u)"
    APP_GID="$(id -g)"
    if [[ "${APP_UID}" == 0 ]]; then
        APP_UID=1000
        APP_GID=1000
        say "running as root: the container user gets uid 1000, and runs/ is handed to it"
        run mkdir -p "${ROOT}/runs"
        run chown 1000:1000 "${ROOT}/runs"
    fi
    export APP_UID APP_GID
}

ssh_target() {
    local user="${SUDO_USER:-$(id -un)}"
    local host="${SSH_HOST:-}"
    if [[ -z "${host}" ]]; then
        host="$(hostname -I 2> /dev/null | awk '{print $1}')" || host=""
    fi
    printf '%s@%s' "${user}" "${host:-THIS-HOST}"
}

print_tunnel() {
    local port="$1"
    say "on your laptop, keep this running:   ssh -L ${port}:localhost:${port} $(ssh_target)"
    say "(use the address you normally ssh to if it differs; SSH_HOST=... sets it here)"
}

wait_healthy() {
    local service="$1"
    if [[ "${DRY_RUN}" == 1 ]]; then
        say "would wait up to ${HEALTH_TIMEOUT}s for the ${service} container's health check"
        return 0
    fi
    local cid state="unknown" waited=0
    cid="$("${DOCKER[@]}" compose -f "${COMPOSE_FILE}" ps -q "${service}")"
    [[ -n "${cid}" ]] || die "the ${service} container did not start"
    say "waiting for the ${service} health check (up to ${HEALTH_TIMEOUT}s)"
    while ((waited < HEALTH_TIMEOUT)); do
        state="$("${DOCKER[@]}" inspect --format \
            '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}' "${cid}")"
        case "${state}" in
            */healthy)
                say "${service} is healthy"
                return 0
                ;;
            */unhealthy | exited/* | dead/* | restarting/*) break ;;
        esac
        sleep 2
        waited=$((waited + 2))
    done
    "${DOCKER[@]}" compose -f "${COMPOSE_FILE}" logs --tail=40 "${service}" >&2 || true
    die "${service} is not healthy after ${waited}s (state ${state}); its last log lines are above"
}

# A pseudo-terminal only when there is one to attach (CI and pipes have none).
tty_flag() {
    if [[ -t 0 && -t 1 ]]; then
        return 0
    fi
    printf '%s\n' "-T"
}

jupyter_token() {
    if [[ -n "${JUPYTER_TOKEN:-}" ]]; then
        return 0
    fi
    if [[ "${DRY_RUN}" == 1 ]]; then
        say "would read the token from ${TOKEN_FILE} (made once, mode 600, if missing)"
        JUPYTER_TOKEN="TOKEN-FROM-${TOKEN_FILE}"
    else
        if [[ ! -s "${TOKEN_FILE}" ]]; then
            mkdir -p "$(dirname "${TOKEN_FILE}")"
            (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > "${TOKEN_FILE}")
        fi
        JUPYTER_TOKEN="$(< "${TOKEN_FILE}")"
    fi
    export JUPYTER_TOKEN
}

cmd_up() {
    ensure_engine
    export_ids
    compose up -d --build app
    wait_healthy app
    print_tunnel 8501
    say "then open http://localhost:8501 in the laptop's browser"
}

cmd_jupyter() {
    ensure_engine
    export_ids
    jupyter_token
    compose --profile jupyter up -d --build jupyter
    wait_healthy jupyter
    print_tunnel 8888
    say "then open http://localhost:8888/lab?token=${JUPYTER_TOKEN}"
}

cmd_shell() {
    ensure_engine
    export_ids
    local -a flags
    mapfile -t flags < <(tty_flag)
    compose run --rm --no-deps "${flags[@]}" app bash
}

cmd_test() {
    ensure_engine
    export_ids
    local -a flags
    mapfile -t flags < <(tty_flag)
    compose run --rm --no-deps "${flags[@]}" app python -m pytest "$@"
}

cmd_gpu() {
    ensure_engine
    export_ids
    local probe='import torch; x = torch.randn(256, 256, device="cuda"); '
    probe+='print("torch", torch.__version__, "| CUDA", torch.version.cuda, "|", '
    probe+='torch.cuda.get_device_name(0), "| matmul finite:", bool(torch.isfinite(x @ x).all()))'
    compose run --rm --no-deps -T app nvidia-smi
    compose run --rm --no-deps -T app python -c "${probe}"
}

main() {
    while [[ $# -gt 0 && "$1" == -* ]]; do
        case "$1" in
            -n | --dry-run) DRY_RUN=1 ;;
            -h | --help)
                usage
                return 0
                ;;
            *)
                usage >&2
                die "unknown option: $1"
                ;;
        esac
        shift
    done
    if [[ $# -eq 0 ]]; then
        usage >&2
        die "no command given"
    fi
    local command="$1"
    shift
    case "${command}" in
        up) cmd_up ;;
        restart)
            ensure_engine
            export_ids
            compose restart app
            wait_healthy app
            ;;
        jupyter) cmd_jupyter ;;
        shell) cmd_shell ;;
        test) cmd_test "$@" ;;
        gpu) cmd_gpu ;;
        logs)
            ensure_engine
            compose logs -f --tail=100 "${1:-app}"
            ;;
        build)
            ensure_engine
            export_ids
            compose build app
            ;;
        down)
            ensure_engine
            compose --profile jupyter down
            ;;
        tunnel)
            print_tunnel 8501
            print_tunnel 8888
            ;;
        help) usage ;;
        *)
            usage >&2
            die "unknown command: ${command}"
            ;;
    esac
}

main "$@"
