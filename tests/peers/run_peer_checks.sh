#!/usr/bin/env bash
# Real-peer smoke check: every sipp pair directly (sipp -> sipp), then through
# kamailio (bench/kamailio/kamailio.cfg, tm + rr), then baresip through
# kamailio. One call each, every run bounded by -timeout / timeout(1).
#
#   bash tests/peers/run_peer_checks.sh            # all
#   PROXY_CMD='target/release/scamscreen ... {listen} {upstream}' \
#       bash tests/peers/run_peer_checks.sh proxy   # pairs through another proxy
#
# Ports (UDP, 127.0.0.1) can be moved with PEER_UAC_PORT, PEER_UAS_PORT,
# PEER_PROXY_PORT. Logs go to $PEER_LOGDIR (default: a temp dir, kept on failure).
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
S="$HERE/sipp"
UAC_PORT=${PEER_UAC_PORT:-15070}
UAS_PORT=${PEER_UAS_PORT:-15090}
PROXY_PORT=${PEER_PROXY_PORT:-15060}
LOGDIR=${PEER_LOGDIR:-$(mktemp -d /tmp/peer-checks.XXXXXX)}
mkdir -p "$LOGDIR"
what=${1:-all}
pass=0; fail=0

# sipp options shared by every run: loopback, no keyboard, hard time limit
COMMON=(-i 127.0.0.1 -m 1 -nostdin -timeout 10 -timeout_error -trace_err -trace_msg)

# pair NAME EXPECT_UAC EXPECT_UAS UAS_XML UAC_XML TARGET_PORT [uac args...]
# EXPECT_UAS "-" means: no UAS (the proxy answers itself).
pair() {
    local name=$1 exp_uac=$2 exp_uas=$3 uas=$4 uac=$5 tgt=$6; shift 6
    local d="$LOGDIR/$name"; mkdir -p "$d"
    local up="" r_uas="-"
    if [ "$exp_uas" != "-" ]; then
        (cd "$d" && exec timeout 20 sipp -sf "$S/$uas" -p "$UAS_PORT" "${COMMON[@]}" >uas.out 2>&1) &
        up=$!
        sleep 0.3
    fi
    (cd "$d" && exec timeout 20 sipp -sf "$S/$uac" -p "$UAC_PORT" -s 15550002000 "${COMMON[@]}" "$@" \
        "127.0.0.1:$tgt" >uac.out 2>&1)
    local r_uac=$?
    if [ -n "$up" ]; then wait "$up"; r_uas=$?; fi
    if [ "$r_uac" = "$exp_uac" ] && [ "$r_uas" = "$exp_uas" ]; then
        pass=$((pass+1)); echo "ok   $name (uac rc=$r_uac, uas rc=$r_uas)"
    else
        fail=$((fail+1)); echo "FAIL $name (uac rc=$r_uac want $exp_uac, uas rc=$r_uas want $exp_uas) logs: $d"
    fi
}

pairs() {  # pairs PREFIX TARGET_PORT OPTIONS_EXPECT_UAS
    local p=$1 t=$2 o=$3
    pair "$p-call"      0 0  uas_call.xml          uac_call.xml        "$t" -key caller 15550001000
    pair "$p-cancel"    0 0  uas_ring_forever.xml  uac_cancel.xml      "$t" -key caller 15550001000 -d 200
    pair "$p-withheld"  0 0  uas_call.xml          uac_withheld.xml    "$t"
    # nobody adds X-Scamscreen-Caller here: the UAS must refuse (500, exit 97)
    pair "$p-unmarked"  1 97 uas_expect_marked.xml uac_withheld.xml    "$t"
    pair "$p-403"       0 0  uas_reject_403.xml    uac_expect_403.xml  "$t" -key caller 15550001000
    pair "$p-bench"     0 0  uas_bench.xml         uac_bench.xml       "$t"
    if [ "$o" = "-" ]; then
        pair "$p-options" 0 - "" uac_options.xml "$t"
    else
        pair "$p-options" 0 0 uas_options.xml uac_options.xml "$t"
    fi
}

PROXY_PID=""
stop_proxy() {
    if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null; PROXY_PID=""; fi
}
trap stop_proxy EXIT

wait_udp() {  # wait_udp PORT: until something is bound to 127.0.0.1:PORT
    local hex; hex=$(printf ':%04X' "$1")
    for _ in $(seq 1 100); do
        grep -q "$hex " /proc/net/udp 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

start_kamailio() {
    mkdir -p "$LOGDIR/kam-run"
    kamailio -f "$REPO/bench/kamailio/kamailio.cfg" -DD -E -m 256 -M 16 \
        -l "udp:127.0.0.1:$PROXY_PORT" -l "tcp:127.0.0.1:$PROXY_PORT" \
        -A "UPSTREAM=\"sip:127.0.0.1:$UAS_PORT\"" -A WORKERS=1 \
        -Y "$LOGDIR/kam-run" -P "$LOGDIR/kam-run/kamailio.pid" >"$LOGDIR/kamailio.log" 2>&1 &
    PROXY_PID=$!
    wait_udp "$PROXY_PORT" || { echo "kamailio did not start: $LOGDIR/kamailio.log"; exit 2; }
}

baresip_call() {  # baresip_call NAME TARGET_PORT
    local name=$1 t=$2 d="$LOGDIR/$1"; mkdir -p "$d"
    cp "$HERE/baresip/config" "$HERE/baresip/accounts" "$d/"
    (cd "$d" && exec timeout 20 sipp -sf "$S/uas_call.xml" -p "$UAS_PORT" "${COMMON[@]}" >uas.out 2>&1) &
    local up=$!
    sleep 0.3
    timeout -k 2 15 baresip -f "$d" -e "/dial sip:15550002000@127.0.0.1:$t" -t 3 </dev/null >"$d/baresip.out" 2>&1
    local r_bs=$?
    wait "$up"; local r_uas=$?
    if [ "$r_bs" = 0 ] && [ "$r_uas" = 0 ] && grep -q "Call established" "$d/baresip.out"; then
        pass=$((pass+1)); echo "ok   $name (baresip rc=$r_bs, uas rc=$r_uas, call established)"
    else
        fail=$((fail+1)); echo "FAIL $name (baresip rc=$r_bs, uas rc=$r_uas) logs: $d"
    fi
}

case "$what" in
all|direct)
    pairs direct "$UAS_PORT" uas
    command -v baresip >/dev/null && baresip_call direct-baresip "$UAS_PORT"
    ;;
esac
case "$what" in
all|kamailio)
    start_kamailio
    pairs kamailio "$PROXY_PORT" -
    command -v baresip >/dev/null && baresip_call kamailio-baresip "$PROXY_PORT"
    stop_proxy
    ;;
proxy)
    cmd=${PROXY_CMD:?set PROXY_CMD}
    cmd=${cmd//\{listen\}/127.0.0.1:$PROXY_PORT}
    cmd=${cmd//\{upstream\}/127.0.0.1:$UAS_PORT}
    bash -c "exec $cmd" >"$LOGDIR/proxy.log" 2>&1 &
    PROXY_PID=$!
    wait_udp "$PROXY_PORT" || { echo "proxy did not start: $LOGDIR/proxy.log"; exit 2; }
    pairs proxy "$PROXY_PORT" -
    command -v baresip >/dev/null && baresip_call proxy-baresip "$PROXY_PORT"
    stop_proxy
    ;;
esac

echo "peer checks: $pass passed, $fail failed"
[ "$fail" = 0 ] && [ -z "${PEER_LOGDIR:-}" ] && rm -rf "$LOGDIR"
[ "$fail" = 0 ]
