#!/usr/bin/env bash
# Set up a fresh Ubuntu GPU host for the Tiny Transformer Explorer, or bring one up to date:
# the NVIDIA driver check, Docker Engine with Compose, the NVIDIA container toolkit, the
# project checkout, then the app container (built, started, health-checked) and the SSH
# tunnel line to run on your laptop. Safe to run again: each step looks before it changes
# anything, and the first failure stops the script with the name of its step.
#
# Usage: bootstrap.sh [--dry-run] [--dir DIR] [--branch BRANCH] [REPO_URL]
#   REPO_URL      git URL of the project, to clone it (or env REPO_URL). Not needed when the
#                 checkout already exists, e.g. when this script runs from inside it.
#   --dir DIR     the checkout (env PROJECT_DIR). Default: the checkout this script lives in,
#                 else ~/tiny-transformer-explorer.
#   --branch NAME branch to check out (env BRANCH, default main).
#   --dry-run     print the plan step by step and change nothing (env DRY_RUN=1); needs no
#                 root, network, GPU or Docker.
# Run it as your everyday user with sudo rights; it calls sudo for the system steps.
# Also read: NVIDIA_TOOLKIT_REPO (apt repository of the toolkit), HEALTH_TIMEOUT, SSH_HOST.
set -Eeuo pipefail

SCRIPT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DRY_RUN="${DRY_RUN:-0}"
REPO_URL="${REPO_URL:-}"
BRANCH="${BRANCH:-main}"
PROJECT_DIR="${PROJECT_DIR:-}"
NVIDIA_SMI="${NVIDIA_SMI:-nvidia-smi}"
NVIDIA_TOOLKIT_REPO="${NVIDIA_TOOLKIT_REPO:-https://nvidia.github.io/libnvidia-container}"
TOOLKIT_KEYRING=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
TOOLKIT_LIST=/etc/apt/sources.list.d/nvidia-container-toolkit.list
# The image is built for CUDA 12.8 (docker/Dockerfile); older drivers may not run it.
MIN_DRIVER_CUDA=12.8
TOTAL_STEPS=8
STEP="reading the arguments"
SUDO=()
APT_UPDATED=0

say() { printf 'bootstrap: %s\n' "$*"; }
warn() { printf 'bootstrap: warning: %s\n' "$*" >&2; }
die() {
    printf 'bootstrap: FAILED in step "%s": %s\n' "${STEP}" "$*" >&2
    exit 1
}
on_error() {
    printf 'bootstrap: FAILED in step "%s": [%s] exited with %s (line %s)\n' \
        "${STEP}" "$3" "$1" "$2" >&2
    exit "$1"
}
trap 'on_error "$?" "${LINENO}" "${BASH_COMMAND}"' ERR

usage() {
    awk 'NR >= 8 && !/^#/ { exit } NR >= 8 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

dry() { [[ "${DRY_RUN}" == 1 ]]; }

step() {
    STEP="$2"
    printf '\n== step %s/%s: %s\n' "$1" "${TOTAL_STEPS}" "$2"
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
    if dry; then
        return 0
    fi
    "$@"
}

apt_install() {
    command -v apt-get > /dev/null || dry || die "apt-get not found: this script expects Ubuntu"
    if [[ "${APT_UPDATED}" == 0 ]]; then
        run "${SUDO[@]}" apt-get update
        APT_UPDATED=1
    fi
    run "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

parse_args() {
    while [[ $# -gt 0 ]]; do
        case "$1" in
            -n | --dry-run) DRY_RUN=1 ;;
            --dir)
                [[ $# -ge 2 ]] || die "--dir needs a folder"
                PROJECT_DIR="$2"
                shift
                ;;
            --branch)
                [[ $# -ge 2 ]] || die "--branch needs a name"
                BRANCH="$2"
                shift
                ;;
            -h | --help)
                usage
                exit 0
                ;;
            -*)
                usage >&2
                die "unknown option: $1"
                ;;
            *) REPO_URL="$1" ;;
        esac
        shift
    done
    if [[ -z "${PROJECT_DIR}" ]]; then
        if [[ -d "${SCRIPT_ROOT}/.git" && -f "${SCRIPT_ROOT}/docker/compose.yaml" ]]; then
            PROJECT_DIR="${SCRIPT_ROOT}"
        else
            PROJECT_DIR="${HOME}/tiny-transformer-explorer"
        fi
    fi
}

# 1. The host: Ubuntu expected, sudo for the system steps, git and curl for the later ones.
check_host() {
    local os_name="unknown"
    if [[ -r /etc/os-release ]]; then
        # shellcheck disable=SC1091  # a system file, not part of the project
        os_name="$(. /etc/os-release && printf '%s %s' "${ID:-?}" "${VERSION_ID:-?}")"
    fi
    say "system: ${os_name}; user: $(id -un); dry run: $(dry && echo yes || echo no)"
    [[ "${os_name}" == ubuntu* ]] || warn "written for Ubuntu 22.04/24.04; on ${os_name} some steps may need doing by hand"
    if [[ "$(id -u)" != 0 ]]; then
        SUDO=(sudo)
        command -v sudo > /dev/null || dry || die "not root and sudo is missing: run as a user with sudo rights"
    fi
    local missing=()
    command -v git > /dev/null || missing+=(git)
    command -v curl > /dev/null || missing+=(curl)
    command -v gpg > /dev/null || missing+=(gnupg)
    if ((${#missing[@]})); then
        apt_install ca-certificates "${missing[@]}"
    else
        say "git, curl and gpg are present"
    fi
}

# 2. The NVIDIA driver comes first and by hand: installing one needs a reboot.
check_driver() {
    local advice="install the driver, reboot, then run this script again:
    sudo apt-get update && sudo ubuntu-drivers install    (or a named one: sudo apt-get install nvidia-driver-570-server)
    sudo reboot
  then check that nvidia-smi lists the GPU"
    if ! command -v "${NVIDIA_SMI}" > /dev/null; then
        if dry; then
            say "nvidia-smi not found here; a real run stops at this step and says:"
            printf '  %s\n' "${advice}"
            return 0
        fi
        die "no NVIDIA driver (nvidia-smi not found): ${advice}"
    fi
    if dry; then
        say "would run nvidia-smi: the driver must answer, list a GPU and offer CUDA >= ${MIN_DRIVER_CUDA}"
        return 0
    fi
    local report cuda
    report="$("${NVIDIA_SMI}")" || die "nvidia-smi is installed but fails (driver not loaded? reboot after installing it): ${advice}"
    "${NVIDIA_SMI}" --query-gpu=name,driver_version,memory.total --format=csv,noheader
    cuda=""
    if [[ "${report}" =~ CUDA\ Version:\ *([0-9.]+) ]]; then
        cuda="${BASH_REMATCH[1]}"
    fi
    if [[ -n "${cuda}" && "$(printf '%s\n%s\n' "${MIN_DRIVER_CUDA}" "${cuda}" | sort -V | head -n 1)" != "${MIN_DRIVER_CUDA}" ]]; then
        warn "the driver offers CUDA ${cuda}; the image wants ${MIN_DRIVER_CUDA} (driver 570+). Upgrade the driver if torch reports no GPU."
    fi
}

# 3. Docker Engine and the Compose v2 plugin, from Ubuntu's own archive when missing.
install_docker() {
    if dry; then
        if command -v docker > /dev/null; then
            say "docker found at $(command -v docker); a real run checks that the engine and"
            say "'docker compose' answer, and installs whichever of these is missing:"
        else
            say "docker not found; a real run installs it:"
        fi
        apt_install docker.io docker-compose-v2
        run "${SUDO[@]}" systemctl enable --now docker
        if [[ "$(id -u)" != 0 ]]; then
            run "${SUDO[@]}" usermod -aG docker "$(id -un)"
        fi
        return 0
    fi
    local packages=()
    command -v docker > /dev/null || packages+=(docker.io)
    if ! docker compose version > /dev/null 2>&1; then
        # Docker's own packages (docker-ce) pair with docker-compose-plugin, Ubuntu's with -v2.
        if dpkg -s docker-ce > /dev/null 2>&1; then
            packages+=(docker-compose-plugin)
        else
            packages+=(docker-compose-v2)
        fi
    fi
    if ((${#packages[@]})); then
        apt_install "${packages[@]}"
    else
        say "docker and docker compose are installed"
    fi
    run "${SUDO[@]}" systemctl enable --now docker
    if [[ "$(id -u)" != 0 && " $(id -nG) " != *" docker "* ]]; then
        run "${SUDO[@]}" usermod -aG docker "$(id -un)"
        say "added $(id -un) to the docker group: it counts from your next login; until then sudo is used"
    fi
    "${SUDO[@]}" docker version --format 'engine {{.Server.Version}}' || die "the Docker engine does not answer"
}

# 4. The NVIDIA container toolkit lets containers reserve the GPU (compose's driver: nvidia).
install_toolkit() {
    if ! command -v nvidia-ctk > /dev/null; then
        local policy=""
        dry || policy="$(apt-cache policy nvidia-container-toolkit 2> /dev/null)" || true
        if [[ "${policy}" != *"Candidate: "[0-9]* ]]; then
            say "adding NVIDIA's apt repository for the toolkit (${NVIDIA_TOOLKIT_REPO})"
            local tmp=/tmp/nvidia-toolkit-repo
            dry || tmp="$(mktemp -d)"
            run curl -fsSL "${NVIDIA_TOOLKIT_REPO}/gpgkey" -o "${tmp}/gpgkey"
            run "${SUDO[@]}" gpg --batch --yes --dearmor -o "${TOOLKIT_KEYRING}" "${tmp}/gpgkey"
            run curl -fsSL "${NVIDIA_TOOLKIT_REPO}/stable/deb/nvidia-container-toolkit.list" -o "${tmp}/list"
            run sed -i "s#^deb https://#deb [signed-by=${TOOLKIT_KEYRING}] https://#" "${tmp}/list"
            run "${SUDO[@]}" install -m 644 "${tmp}/list" "${TOOLKIT_LIST}"
            dry || rm -rf "${tmp}"
            APT_UPDATED=0
        fi
        apt_install nvidia-container-toolkit
    else
        say "nvidia-container-toolkit is installed"
    fi
    if dry; then
        say "would register the nvidia runtime with Docker unless 'docker info' already lists it:"
        run "${SUDO[@]}" nvidia-ctk runtime configure --runtime=docker
        run "${SUDO[@]}" systemctl restart docker
        return 0
    fi
    local runtimes
    runtimes="$("${SUDO[@]}" docker info --format '{{json .Runtimes}}')"
    if [[ "${runtimes}" == *'"nvidia"'* ]]; then
        say "Docker already knows the nvidia runtime"
    else
        run "${SUDO[@]}" nvidia-ctk runtime configure --runtime=docker
        run "${SUDO[@]}" systemctl restart docker
    fi
}

# 5. Clone the project, or fast-forward an existing checkout whose tree is clean.
update_checkout() {
    if [[ -d "${PROJECT_DIR}/.git" ]]; then
        say "checkout found at ${PROJECT_DIR}"
        if dry; then
            say "would fetch origin and fast-forward ${BRANCH}, unless the tree has local changes"
            return 0
        fi
        run git -C "${PROJECT_DIR}" fetch --prune origin
        if [[ -n "$(git -C "${PROJECT_DIR}" status --porcelain --untracked-files=no)" ]]; then
            warn "${PROJECT_DIR} has local changes: left as it is, not updated"
            return 0
        fi
        run git -C "${PROJECT_DIR}" checkout "${BRANCH}"
        run git -C "${PROJECT_DIR}" merge --ff-only "origin/${BRANCH}"
    elif [[ -e "${PROJECT_DIR}" ]]; then
        die "${PROJECT_DIR} exists but is no git checkout: move it away or pass --dir"
    elif [[ -z "${REPO_URL}" ]]; then
        die "no checkout at ${PROJECT_DIR} and nothing to clone: pass the repository URL (argument or REPO_URL)"
    else
        run git clone --branch "${BRANCH}" "${REPO_URL}" "${PROJECT_DIR}"
    fi
}

# Steps 6 to 8 are docker/dev.sh commands of the checkout, so they match what you run later.
dev() {
    local dev_sh="${PROJECT_DIR}/docker/dev.sh"
    if [[ ! -f "${dev_sh}" ]]; then
        dry || die "${dev_sh} is missing: is ${PROJECT_DIR} this project's checkout?"
        say "would run: ${dev_sh} $*"
        return 0
    fi
    DRY_RUN="${DRY_RUN}" bash "${dev_sh}" "$@"
}

main() {
    parse_args "$@"
    dry && say "dry run: printing the plan; nothing is installed, cloned, built or started"

    step 1 "host check"
    check_host
    step 2 "NVIDIA driver"
    check_driver
    step 3 "Docker Engine and Compose"
    install_docker
    step 4 "NVIDIA container toolkit"
    install_toolkit
    step 5 "project checkout"
    update_checkout
    step 6 "app container: build, start, health check"
    dev up
    step 7 "GPU inside the container"
    dev gpu
    step 8 "connect from your laptop"
    dev tunnel
    say "JupyterLab, when you want it: ${PROJECT_DIR}/docker/dev.sh jupyter (prints its own tunnel line)"
    say "done$(dry && echo ' (dry run: nothing was changed)')"
}

main "$@"
