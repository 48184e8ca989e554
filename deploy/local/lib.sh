# Shared helpers for the local-service scripts. Sourced, not run.
# Everything installed or started lives under $ARUS_CACHE (outside the clone), so a fresh
# clone reuses what an earlier run built.

ARUS_CACHE="${ARUS_CACHE:-$HOME/.cache/arus}"
ARUS_LOGS="$ARUS_CACHE/logs"
mkdir -p "$ARUS_CACHE" "$ARUS_LOGS"

say() { printf '[arus %s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { printf '[arus %s] error: %s\n' "$(basename "$0" .sh)" "$*" >&2; exit 1; }

# port_open HOST PORT: is something accepting TCP connections there?
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_until SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds or time runs out.
wait_until() {
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if (( SECONDS >= deadline )); then return 1; fi
    sleep 0.2
  done
  say "$what is ready"
}

# apt_install PACKAGE...: install Debian packages that are missing (updating the index once).
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  (( ${#missing[@]} == 0 )) && return 0
  command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
  local sudo=""; (( EUID == 0 )) || sudo="sudo"
  say "installing ${missing[*]} from Debian"
  if [[ ! -f "$ARUS_CACHE/.apt-updated" ]] || [[ -n "$(find "$ARUS_CACHE/.apt-updated" -mmin +1440 2>/dev/null)" ]]; then
    $sudo apt-get update -qq >"$ARUS_LOGS/apt-update.log" 2>&1 || die "apt-get update failed: see $ARUS_LOGS/apt-update.log"
    touch "$ARUS_CACHE/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >"$ARUS_LOGS/apt-install.log" 2>&1 || die "apt-get install ${missing[*]} failed: see $ARUS_LOGS/apt-install.log"
}
