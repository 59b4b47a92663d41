#!/usr/bin/env bash
# postfix_milters.sh -- the Postfix side of `make bench-mailauth`: the anchor
# Postfix instance of ../shared/bench/postfix_baseline.sh (its `setup` mode,
# unchanged), plus what Postfix needs for mail authentication:
#
#   auth  opendkim (verify mode) and opendmarc as milters, policyd-spf
#         (postfix-policyd-spf-python) as a check_policy_service, and one
#         DNSBL zone (reject_rbl_client), as Gatehouse's smtp.checks does;
#   sign  opendkim in sign mode for the trusted client (127.0.0.1).
#
# Usage: postfix_milters.sh start auth|sign   configure and start; returns when listening
#        postfix_milters.sh stop              stop the instance and the milters it started
#
# The milters run in the foreground (-f), with config files in $WORK, never
# as system services. The load, the sink and the measurements are the
# caller's (test/relaybench -mailauth), which runs this inside a network
# namespace whose /etc/resolv.conf points at the bench's dnsmasq: opendkim,
# opendmarc, policyd-spf and smtpd (its chroot gets a copy) ask it.
#
# Environment: BASELINE (the anchor script), INSTANCE=pfauth, PF_PORT,
# SINK_PORT, WORK (scratch dir for configs and pid files), KEY (PEM
# private key for signing), DOMAIN, SELECTOR, AUTHSERV_ID, DNSBL_ZONE,
# TRUSTED (the trusted client's address: mynetworks, skipped by the checks),
# DNS (the bench's DNS server: Debian's opendkim resolves with libunbound,
# which ignores resolv.conf unless told and never asks 127.0.0.0/8, so the
# server has an address of its own).
set -Eeuo pipefail

MODE=${1:-}
KIND=${2:-}
BASELINE=${BASELINE:?the anchor script}
INSTANCE=${INSTANCE:-pfauth}
PF_PORT=${PF_PORT:-2545}
SINK_PORT=${SINK_PORT:-2546}
WORK=${WORK:?a scratch directory}
DOMAIN=${DOMAIN:-example.net}
SELECTOR=${SELECTOR:-bench}
AUTHSERV_ID=${AUTHSERV_ID:-bench.localdomain}
DNSBL_ZONE=${DNSBL_ZONE:-bl.test}
TRUSTED=${TRUSTED:-127.0.0.1}
DNS=${DNS:?the DNS server of the bench}
CONF=/etc/$INSTANCE
QUEUE=/var/spool/$INSTANCE
DKIM_PORT=8891
DMARC_PORT=8893

log() { printf '[postfix_milters] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
[[ "$INSTANCE" =~ ^[a-z][a-z0-9_-]*$ ]] || die "INSTANCE must match [a-z][a-z0-9_-]*"
for c in opendkim opendmarc policyd-spf; do
  command -v "$c" >/dev/null || [ -x "/usr/sbin/$c" ] || [ -x "/usr/bin/$c" ] || die "$c missing (make deps)"
done
pc() { postconf -c "$CONF" "$@"; }
listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
wait_listen() { for _ in $(seq 1 200); do listening "$1" && return 0; sleep 0.05; done; return 1; }

kill_pidfile() {   # pidfile comm
  local f=$1 want=$2 p c
  [ -f "$f" ] || return 0
  p=$(cat "$f" 2>/dev/null || true); rm -f "$f"
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
  c=$(cat "/proc/$p/comm" 2>/dev/null || true)
  [ "$c" = "$want" ] || return 0
  kill "$p" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
}

stop_all() {
  postfix -c "$CONF" stop >/dev/null 2>&1 || true
  kill_pidfile "$WORK/opendkim.run.pid" opendkim
  kill_pidfile "$WORK/opendmarc.run.pid" opendmarc
}

# start_milter name cmd...: in the foreground, in the background of this
# script's caller (setsid: it outlives this script; stop finds it by pid file).
start_milter() {
  local name=$1 port=$2; shift 2
  listening "$port" && die "port $port busy"
  setsid "$@" >"$WORK/$name.out" 2>&1 </dev/null &
  echo $! >"$WORK/$name.run.pid"
  wait_listen "$port" || die "$name did not start: $(tail -5 "$WORK/$name.out")"
}

start() {
  case "$KIND" in auth|sign) ;; *) die "start auth|sign" ;; esac
  mkdir -p "$WORK"
  stop_all
  # 1. the anchor, exactly as the baseline configures it
  INSTANCE=$INSTANCE PF_PORT=$PF_PORT SINK_PORT=$SINK_PORT "$BASELINE" setup >/dev/null
  postsuper -c "$CONF" -d ALL >/dev/null 2>&1 || true
  # the trusted client is the one address the checks skip and opendkim signs for
  pc -e "mynetworks = $TRUSTED/32" \
        "milter_default_action = tempfail" \
        "milter_protocol = 6"

  chown opendkim:opendkim "$WORK"; chmod 0755 "$WORK"
  local dk="$WORK/opendkim.conf"
  if [ "$KIND" = auth ]; then
    cat >"$dk" <<EOF
Mode v
Nameservers $DNS
Syslog no
Socket inet:$DKIM_PORT@127.0.0.1
UserID opendkim
AuthservID $AUTHSERV_ID
AlwaysAddARHeader yes
EOF
    printf '%s\n' "$TRUSTED" >"$WORK/dmarc-ignore"
    cat >"$WORK/opendmarc.conf" <<EOF
AuthservID $AUTHSERV_ID
TrustedAuthservIDs $AUTHSERV_ID
Socket inet:$DMARC_PORT@127.0.0.1
UserID opendmarc
Syslog false
IgnoreHosts $WORK/dmarc-ignore
PublicSuffixList /usr/share/publicsuffix/public_suffix_list.dat
RejectFailures true
SPFSelfValidate false
EOF
    # policyd-spf: Mail From checked (HELO only for the null sender, as
    # Gatehouse does), the trusted client skipped, the result prepended as
    # Received-SPF; nothing logged beyond errors.
    cat >"$WORK/policyd-spf.conf" <<EOF
debugLevel = 0
TestOnly = 1
HELO_reject = Null
Mail_From_reject = Fail
PermError_reject = False
TempError_Defer = False
skip_addresses = $TRUSTED/32
EOF
    chmod 0644 "$WORK"/*.conf "$WORK/dmarc-ignore"
    pc -MX policyd-spf/unix 2>/dev/null || true
    pc -M "policyd-spf/unix=policyd-spf unix - n n - 0 spawn user=policyd-spf argv=/usr/bin/policyd-spf $WORK/policyd-spf.conf"
    pc -e "policyd-spf_time_limit = 3600" \
          "smtpd_client_restrictions = reject_rbl_client $DNSBL_ZONE" \
          "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, check_policy_service unix:private/policyd-spf" \
          "smtpd_milters = inet:127.0.0.1:$DKIM_PORT, inet:127.0.0.1:$DMARC_PORT"
    start_milter opendkim "$DKIM_PORT" opendkim -f -x "$dk"
    start_milter opendmarc "$DMARC_PORT" opendmarc -f -c "$WORK/opendmarc.conf"
  else
    install -o opendkim -g opendkim -m 0600 "${KEY:?the signing key}" "$WORK/dkim.key"
    printf '%s\n' "$TRUSTED" >"$WORK/internal-hosts"
    cat >"$dk" <<EOF
Mode s
RequireSafeKeys false
Syslog no
Socket inet:$DKIM_PORT@127.0.0.1
UserID opendkim
Domain $DOMAIN
Selector $SELECTOR
KeyFile $WORK/dkim.key
Canonicalization relaxed/relaxed
SignatureAlgorithm rsa-sha256
InternalHosts $WORK/internal-hosts
EOF
    chmod 0644 "$dk" "$WORK/internal-hosts"
    pc -MX policyd-spf/unix 2>/dev/null || true
    pc -e "smtpd_milters = inet:127.0.0.1:$DKIM_PORT"
    start_milter opendkim "$DKIM_PORT" opendkim -f -x "$dk"
  fi
  # the chroot's resolv.conf (smtpd's DNSBL lookups) is this namespace's
  MAIL_CONFIG=$CONF /usr/lib/postfix/configure-instance.sh >/dev/null
  postfix -c "$CONF" check >/dev/null 2>&1 || true
  listening "$PF_PORT" && die "port $PF_PORT busy"
  postfix -c "$CONF" start >/dev/null 2>"$WORK/postfix-start.err" || die "postfix start: $(cat "$WORK/postfix-start.err")"
  wait_listen "$PF_PORT" || die "postfix is not listening on 127.0.0.1:$PF_PORT"
  log "postfix $(postconf -c "$CONF" -h mail_version) ($KIND) on 127.0.0.1:$PF_PORT, milters: $(pc -h smtpd_milters)"
}

case "$MODE" in
  start) start ;;
  stop) stop_all ;;
  *) die "usage: $0 start auth|sign | stop" ;;
esac
