#!/usr/bin/env bash
# ai-gateway: build, install, run as a systemd service, or deploy to a server over SSH.
# Safe to re-run. Every path written locally can be moved under a root prefix with DESTDIR.
set -euo pipefail

SELF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SELF_DIR
# Where config.yaml and .env are taken from (default: next to this script).
readonly SOURCE_DIR="${SOURCE_DIR:-$SELF_DIR}"

# This script's own settings (besides SSH_*): meant for this machine, never uploaded with .env.
readonly DEPLOY_SETTINGS='SOURCE_DIR|DESTDIR|BIN_DIR|CONF_DIR|UNIT_DIR|SERVICE_USER|BINARY|REMOTE_DIR'

# The rest may come from .env too, so they are fixed once it has been read.
settings() {
  readonly DESTDIR="${DESTDIR:-}"
  readonly BIN_DIR="${BIN_DIR:-/usr/local/bin}"
  readonly CONF_DIR="${CONF_DIR:-/etc/ai-gateway}"
  readonly UNIT_DIR="${UNIT_DIR:-/etc/systemd/system}"
  readonly SERVICE_USER="${SERVICE_USER:-ai-gateway}"
  readonly BINARY="${BINARY:-$SELF_DIR/dist/ai-gateway}"
  readonly UNIT_FILE="$SELF_DIR/deploy/ai-gateway.service"
  readonly REMOTE_DIR="${REMOTE_DIR:-/opt/ai-gateway}"
}

usage() {
  cat <<'EOF'
Usage: ./install.sh COMMAND [--force]

Commands:
  build             build dist/ai-gateway, one self-contained executable (needs npm)
  install           copy the executable to BIN_DIR
  install-service   create the SERVICE_USER system user and CONF_DIR (config.yaml and .env, mode 600),
                    install the unit in UNIT_DIR, reload systemd; an existing config is kept unless --force
  deploy            on SSH_HOST: upload executable, unit, config.yaml and .env (without SSH_*, DESTDIR,
                    SOURCE_DIR, REMOTE_DIR, BINARY, BIN_DIR, CONF_DIR, UNIT_DIR and SERVICE_USER lines),
                    install, enable, restart, then check /health there, at the gateway's address
                    (config.yaml's host:, else 127.0.0.1) and port (config.yaml's port:, else PORT
                    in .env, else 8080)
  deploy-docker     on SSH_HOST: upload the compose project, `docker compose up -d --build`, wait until
                    the container reports healthy
  help              show this help

Settings, from the environment or ./.env:
  SSH_HOST (required for deploy and deploy-docker), SSH_USER (default root), SSH_PORT (default 22),
  SSH_KEY (identity file), DOMAIN (printed URL; the container's Host rule),
  CERT_RESOLVER (Traefik's, for deploy-docker; default letsencrypt),
  DESTDIR (root prefix for every local path written),
  SOURCE_DIR (where config.yaml and .env are read, default: next to install.sh),
  REMOTE_DIR (default /opt/ai-gateway), BINARY (default dist/ai-gateway),
  BIN_DIR (default /usr/local/bin), CONF_DIR (default /etc/ai-gateway),
  UNIT_DIR (default /etc/systemd/system), SERVICE_USER (default ai-gateway).
EOF
}

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'install.sh: %s\n' "$*" >&2
  exit 1
}
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required but not installed${2:+ ($2)}"; }

# A line of a .env file: KEY=VALUE or export KEY=VALUE, the value perhaps in quotes (see unquote). A
# line may end in CR LF (saved on Windows): the CR is dropped before matching, as systemd's
# EnvironmentFile= (for which a CR ends a line) drops it.
readonly ENV_LINE='^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$'
unquote() {
  local value="$1"
  value="${value%\"}" && value="${value#\"}"
  value="${value%\'}" && value="${value#\'}"
  printf '%s' "$value"
}

# KEY=VALUE lines of ./.env, for settings not already in the environment. Parsed, never sourced, and
# never exported: the rest of the file is the service's environment (keys, NODE_ENV=production, which
# makes `npm ci` leave out what the build needs), none of npm's or ssh's business.
load_env_file() {
  local file="$SOURCE_DIR/.env" line key value
  [[ -f "$file" ]] || return 0
  while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line%$'\r'}"
    [[ "$line" =~ $ENV_LINE ]] || continue
    key="${BASH_REMATCH[2]}"
    value="$(unquote "${BASH_REMATCH[3]}")"
    [[ -n "${!key:-}" ]] || printf -v "$key" '%s' "$value"
  done <"$file"
}

# env_value FILE KEY: the value FILE gives KEY (its last line for KEY wins, as with systemd's
# EnvironmentFile); nothing when FILE does not set it.
env_value() {
  local line value=''
  [[ -f "$1" ]] || return 0
  while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line%$'\r'}"
    if [[ "$line" =~ $ENV_LINE && "${BASH_REMATCH[2]}" == "$2" ]]; then
      value="$(unquote "${BASH_REMATCH[3]}")"
    fi
  done <"$1"
  printf '%s' "$value"
}

# top_level CONFIG KEY: the value on CONFIG's top-level `KEY:` line, without a comment, surrounding
# blanks (a CR too) or quotes; fails when there is no such line. The config is read with patterns, not
# a YAML parser, so only such a line counts.
top_level() {
  local line value
  line="$(grep -E "^$2:([[:space:]]|\$)" "$1")" || return 1
  value="${line#"$2":}"
  value="${value%%[[:space:]]#*}"
  [[ "$value" =~ ^[[:space:]]*(.*[^[:space:]])?[[:space:]]*$ ]]
  unquote "${BASH_REMATCH[1]}"
}

# gateway_port CONFIG ENV_FILE: the port the gateway will listen on, decided as it decides: the config's
# port (a number, ${VAR} or ${VAR:-number}), else PORT, else 8080 (src/config.ts), with variables from
# ENV_FILE, the service's whole environment (this shell's never reaches the server). A value in any
# other form is taken as 8080, with a warning.
gateway_port() {
  local value port
  # With no port in the config, the gateway does what ${PORT:-8080} says.
  value="$(top_level "$1" port)" || value="\${PORT:-8080}"
  if [[ "$value" =~ ^[0-9]+$ ]]; then
    port="$value"
  elif [[ "$value" =~ ^\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([0-9]+))?\}$ ]]; then
    port="$(env_value "$2" "${BASH_REMATCH[1]}")"
    [[ -n "$port" ]] || port="${BASH_REMATCH[3]}"
  fi
  if [[ ! "${port:-}" =~ ^[0-9]+$ ]]; then
    log "cannot tell the gateway's port from config.yaml (port: ${value}) and .env; checking 8080"
    port=8080
  fi
  printf '%s\n' "$port"
}

# config_host CONFIG ENV_FILE: the config's host (a value, ${VAR} or ${VAR:-value}, variables from
# ENV_FILE, as for the port); nothing when it sets none.
config_host() {
  local value host
  value="$(top_level "$1" host)" || return 0
  host="$value"
  if [[ "$value" =~ ^\$\{([A-Za-z_][A-Za-z0-9_]*)(:-(.*))?\}$ ]]; then
    host="$(env_value "$2" "${BASH_REMATCH[1]}")"
    [[ -n "$host" ]] || host="${BASH_REMATCH[3]}"
  fi
  printf '%s' "$host"
}

# gateway_host CONFIG ENV_FILE: the address the gateway can be reached at on its server, for a URL: the
# config's host, or 127.0.0.1 when it listens on every interface (no host, 0.0.0.0 or ::). Anything
# but a host name or an IP address is taken as 127.0.0.1, with a warning: it goes into a command run
# on the server.
gateway_host() {
  local host
  host="$(config_host "$1" "$2")"
  case "$host" in
    '' | 0.0.0.0 | ::) host=127.0.0.1 ;;
    *[!A-Za-z0-9.:-]*)
      log "cannot tell the gateway's address from config.yaml's host: and .env; checking 127.0.0.1"
      host=127.0.0.1
      ;;
    *:*) host="[$host]" ;;
  esac
  printf '%s\n' "$host"
}

cmd_build() {
  need npm "Node.js 20 or later; the build brings its own Node 24"
  cd "$SELF_DIR"
  [[ -d node_modules ]] || npm ci --no-audit --no-fund
  npm run --silent build
}

cmd_install() {
  [[ -x "$BINARY" ]] || die "$BINARY not found: run ./install.sh build first"
  install -D -m 0755 "$BINARY" "$DESTDIR$BIN_DIR/ai-gateway"
  log "installed $DESTDIR$BIN_DIR/ai-gateway"
}

# uid:gid of the service user as the target root sees it (DESTDIR/etc/passwd when testing).
service_ids() {
  local entry
  entry="$(grep -E "^$SERVICE_USER:" "$DESTDIR/etc/passwd" || true)"
  [[ -n "$entry" ]] || die "user $SERVICE_USER is missing from $DESTDIR/etc/passwd"
  printf '%s:%s\n' "$(cut -d: -f3 <<<"$entry")" "$(cut -d: -f4 <<<"$entry")"
}

ensure_user() {
  if grep -qE "^$SERVICE_USER:" "$DESTDIR/etc/passwd" 2>/dev/null; then
    return 0
  fi
  need useradd
  local prefix=()
  [[ -z "$DESTDIR" ]] || prefix=(--prefix "$DESTDIR")
  useradd "${prefix[@]}" --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin "$SERVICE_USER"
  log "created system user $SERVICE_USER"
}

# Copies a secret file with mode 600, owned by the service user, through FILTER (default cat); keeps an
# existing one unless forced.
install_secret() {
  local source="$1" target="$2" ids="$3" filter="${4:-cat}"
  if [[ ! -f "$source" ]]; then
    log "no $(basename "$source") next to install.sh, skipping"
    return 0
  fi
  if [[ -f "$target" && "$FORCE" != 1 ]]; then
    log "keeping existing $target (use --force to overwrite)"
    return 0
  fi
  # Made empty with its owner and mode first: the secrets never sit in a file others may read.
  install -m 0600 -o "${ids%%:*}" -g "${ids##*:}" /dev/null "$target"
  "$filter" <"$source" >"$target"
  log "installed $target"
}

# An env file as systemd's EnvironmentFile= reads it. That parser ignores a line starting with
# `export NAME=` (an invalid assignment, logged and dropped), which a shell, docker compose and this
# script all take: the prefix is dropped.
systemd_env() { sed -E 's/^([[:space:]]*)export[[:space:]]+([A-Za-z_][A-Za-z0-9_]*=)/\1\2/'; }

# $1 for the right-hand side of a sed s|…|…| command. (sed, not ${1//…}: bash 5.2 reads & there too.)
# shellcheck disable=SC2001
sed_text() { sed -e 's/[\\&|]/\\&/g' <<<"$1"; }

# unit_text GROUP: the unit, running what install and install-service put where BIN_DIR, CONF_DIR and
# SERVICE_USER say (deploy/ai-gateway.service holds the defaults).
unit_text() {
  sed -e "s|/usr/local/bin/ai-gateway|$(sed_text "$BIN_DIR")/ai-gateway|g" \
    -e "s|/etc/ai-gateway|$(sed_text "$CONF_DIR")|g" \
    -e "s|^User=ai-gateway\$|User=$(sed_text "$SERVICE_USER")|" \
    -e "s|^Group=ai-gateway\$|Group=$(sed_text "$1")|" "$UNIT_FILE"
}

cmd_install_service() {
  [[ -f "$UNIT_FILE" ]] || die "$UNIT_FILE not found"
  # Unquoted in the unit's ExecStart=, a blank would split the path.
  [[ "$BIN_DIR$CONF_DIR" != *[[:space:]]* ]] || die "BIN_DIR and CONF_DIR cannot hold blanks (systemd splits them)"
  ensure_user
  local ids group
  ids="$(service_ids)"
  # The name of the user's group, for the unit (its number, should the group file not name it).
  group="$(cut -d: -f1,3 "$DESTDIR/etc/group" | grep -m1 -E ":${ids##*:}\$" | cut -d: -f1 || true)"
  install -d -m 0750 -o "${ids%%:*}" -g "${ids##*:}" "$DESTDIR$CONF_DIR"
  install_secret "$SOURCE_DIR/config.yaml" "$DESTDIR$CONF_DIR/config.yaml" "$ids"
  install_secret "$SOURCE_DIR/.env" "$DESTDIR$CONF_DIR/.env" "$ids" systemd_env
  install -D -m 0644 /dev/null "$DESTDIR$UNIT_DIR/ai-gateway.service"
  unit_text "${group:-${ids##*:}}" >"$DESTDIR$UNIT_DIR/ai-gateway.service"
  log "installed $DESTDIR$UNIT_DIR/ai-gateway.service"
  if [[ -z "$DESTDIR" ]] && command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    log "systemd reloaded; start with: systemctl enable --now ai-gateway"
  fi
}

# A scratch directory for what is uploaded, removed when the script exits.
new_stage() {
  STAGE="$(mktemp -d)"
  trap 'rm -rf "$STAGE"' EXIT
}

ssh_options() {
  SSH_OPTS=(-p "${SSH_PORT:-22}" -o BatchMode=yes -o ConnectTimeout=15)
  SCP_OPTS=(-P "${SSH_PORT:-22}" -o BatchMode=yes -o ConnectTimeout=15)
  if [[ -n "${SSH_KEY:-}" ]]; then
    SSH_OPTS+=(-i "$SSH_KEY")
    SCP_OPTS+=(-i "$SSH_KEY")
  fi
  TARGET="${SSH_USER:-root}@${SSH_HOST:?SSH_HOST is required for deploy (set it in the environment or .env)}"
  # Anyone but root reaches the system's directories through sudo.
  SUDO=''
  [[ "${SSH_USER:-root}" == root ]] || SUDO='sudo '
}

# The command is built here on purpose: the remote shell runs it as given.
# shellcheck disable=SC2029
remote() { ssh "${SSH_OPTS[@]}" "$TARGET" "$@"; }

# The .env for the server: everything but this script's own deploy settings, which only matter here.
stage_env() {
  local staged="$1"
  if [[ -f "$SOURCE_DIR/.env" ]]; then
    grep -vE "^[[:space:]]*(export[[:space:]]+)?(SSH_[A-Za-z0-9_]*|$DEPLOY_SETTINGS)=" \
      "$SOURCE_DIR/.env" >"$staged" || true
  else
    : >"$staged"
  fi
  chmod 600 "$staged"
}

# wait_for TRIES INTERVAL CHECK DIAGNOSE MESSAGE: runs CHECK until it succeeds; after TRIES failures,
# shows what DIAGNOSE prints and dies with MESSAGE.
wait_for() {
  local tries="$1" interval="$2" check="$3" diagnose="$4" message="$5" n=0
  until "$check"; do
    n=$((n + 1))
    if ((n >= tries)); then
      "$diagnose" >&2 || true
      die "$message"
    fi
    sleep "$interval"
  done
}

# upload DIR: copies the contents of DIR to REMOTE_DIR on the server.
upload() {
  log "uploading to $TARGET:$REMOTE_DIR"
  # Made by root when need be, and handed to the SSH user, whose scp writes into it. Mode 700 before
  # anything lands: config.yaml and .env stay there (the copies install-service took, or the files
  # the container mounts), for no one else on the server to read; a REMOTE_DIR an older deploy left
  # at 755 is closed too.
  remote "${SUDO}mkdir -p '$REMOTE_DIR' && ${SUDO}chown '${SSH_USER:-root}' '$REMOTE_DIR' && chmod 700 '$REMOTE_DIR'"
  scp "${SCP_OPTS[@]}" -r "$1/." "$TARGET:$REMOTE_DIR/"
}

# print_url PORT
print_url() {
  if [[ -n "${DOMAIN:-}" ]]; then
    log "ai-gateway is up: https://$DOMAIN/v1 (health: https://$DOMAIN/health)"
  else
    log "ai-gateway is up on $SSH_HOST port $1 (set DOMAIN to print its public URL)"
  fi
}

cmd_deploy() {
  need ssh
  need scp
  [[ -x "$BINARY" ]] || die "$BINARY not found: run ./install.sh build first"
  [[ -f "$SOURCE_DIR/config.yaml" ]] || die "config.yaml not found in $SOURCE_DIR (start from config.yaml.example)"
  ssh_options
  new_stage
  local stage="$STAGE"
  mkdir -p "$stage/dist" "$stage/deploy"
  cp "$BINARY" "$stage/dist/ai-gateway"
  cp "$UNIT_FILE" "$stage/deploy/"
  cp "$SELF_DIR/install.sh" "$SOURCE_DIR/config.yaml" "$stage/"
  stage_env "$stage/.env"
  # What the service will run with: install-service --force puts these two in place over there.
  local port host
  port="$(gateway_port "$stage/config.yaml" "$stage/.env")"
  host="$(gateway_host "$stage/config.yaml" "$stage/.env")"
  upload "$stage"
  log "installing on $SSH_HOST"
  remote "cd '$REMOTE_DIR' && ${SUDO}./install.sh install && ${SUDO}./install.sh install-service --force \
    && ${SUDO}systemctl enable ai-gateway && ${SUDO}systemctl restart ai-gateway"
  log "checking health on $SSH_HOST"
  # curl, or wget where it is missing (Debian's standard system utilities bring wget, not curl).
  local url="http://$host:$port/health"
  remote_healthy() {
    remote "if command -v curl >/dev/null; then curl -fsS --max-time 3 $url; else wget -q -T 3 -O - $url; fi" \
      >/dev/null 2>&1
  }
  service_log() { remote "${SUDO}journalctl -u ai-gateway -n 30 --no-pager"; }
  wait_for "${HEALTH_TRIES:-30}" 1 remote_healthy service_log \
    "ai-gateway did not answer /health on $SSH_HOST:$port"
  print_url "$port"
}

cmd_deploy_docker() {
  need ssh
  need scp
  [[ -f "$SOURCE_DIR/config.yaml" ]] || die "config.yaml not found in $SOURCE_DIR (start from config.yaml.example)"
  ssh_options
  new_stage
  local stage="$STAGE"
  # The compose project: what the image is built from, plus the mounted config and the env file.
  (cd "$SELF_DIR" && tar cf - Dockerfile .dockerignore docker-compose.yml package.json package-lock.json \
    tsconfig.json bin src scripts) | (cd "$stage" && tar xf -)
  cp "$SOURCE_DIR/config.yaml" "$stage/"
  stage_env "$stage/.env"
  # docker-compose.yml reads these from .env on the server: given in this shell instead (which wins over
  # .env here, as for every setting), they go there too, last, where they win.
  local name
  for name in DOMAIN CERT_RESOLVER; do
    [[ -z "${!name:-}" ]] || printf '\n%s=%s\n' "$name" "${!name}" >>"$stage/.env"
  done
  # Traefik reaches the container over its network: bound to one address (127.0.0.1, say), the gateway
  # would pass the health check, which asks 127.0.0.1 inside, and answer nothing else.
  case "$(config_host "$stage/config.yaml" "$stage/.env")" in
    '' | 0.0.0.0 | ::) ;;
    *) die "in the container the gateway must listen on every interface: remove host: from config.yaml" ;;
  esac
  upload "$stage"
  # The container's unprivileged user reads the mounted config as "other": at mode 600 (as
  # install-service and the gateway's warning have it) it is locked out and the container restarts
  # forever. So the config is 644 (its keys are ${VAR} references filled from .env) in a directory
  # only the SSH user enters (see upload). Set on the server, since scp keeps the mode of a file
  # already there.
  remote "cd '$REMOTE_DIR' && chmod 644 config.yaml && docker compose up -d --build"
  log "waiting for the container to report healthy"
  container_healthy() {
    [[ "$(remote "cd '$REMOTE_DIR' && docker inspect --format '{{.State.Health.Status}}' \"\$(docker compose ps -q ai-gateway)\"" || true)" == healthy ]]
  }
  container_log() { remote "cd '$REMOTE_DIR' && docker compose logs --tail 30 ai-gateway"; }
  wait_for "${HEALTH_TRIES:-60}" 2 container_healthy container_log "the container did not become healthy"
  # docker-compose.yml has the container listen on 8080.
  print_url 8080
}

main() {
  local command="${1:-help}"
  FORCE="${FORCE:-0}"
  shift || true
  for arg in "$@"; do
    case "$arg" in
      --force) FORCE=1 ;;
      *) die "unknown option: $arg (see ./install.sh help)" ;;
    esac
  done
  load_env_file
  settings
  case "$command" in
    build) cmd_build ;;
    install) cmd_install ;;
    install-service) cmd_install_service ;;
    deploy) cmd_deploy ;;
    deploy-docker) cmd_deploy_docker ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command: $command"
      ;;
  esac
}

main "$@"
