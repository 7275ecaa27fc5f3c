#!/usr/bin/env bash
# dialplans/kamailio/kamailio.cfg with a real scamscreen node, on loopback, with sipp as the
# caller and as the PBX. No root needed; nothing is left running.
#
#   bash dialplans/kamailio/test/check.sh [SCAMSCREEN_BINARY]        # ~40 s, mark mode
#   SCREEN=1 bash dialplans/kamailio/test/check.sh [SCAMSCREEN_BINARY]  # + a screened call
#
# SCAMSCREEN_BINARY defaults to target/release/scamscreen. Needs kamailio 5.6 and sipp;
# SCREEN=1 also needs the model (make model), espeak-ng and sox. Ports 25060-25090 and RTP
# 26000-26099 on 127.0.0.1. Prints one line per check and "N passed, N failed".
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
CFG="$HERE/../kamailio.cfg"
PEERS="$REPO/tests/peers/sipp"
SS_BIN=${1:-$REPO/target/release/scamscreen}
K_EXT=25060 K_INT=25070 SS_PORT=25062 PBX=25090 UAC=25080
TMP=$(mktemp -d /tmp/scamscreen-kamailio.XXXXXX)
pass=0; fail=0; K_PID=""; SS_PID=""

cleanup() {
    [ -n "$SS_PID" ] && kill "$SS_PID" 2>/dev/null && wait "$SS_PID" 2>/dev/null
    [ -n "$K_PID" ] && kill "$K_PID" 2>/dev/null && wait "$K_PID" 2>/dev/null
}
trap cleanup EXIT

wait_udp() {  # until something is bound to UDP port $1
    local hex; hex=$(printf ':%04X ' "$1")
    for _ in $(seq 1 100); do grep -q "$hex" /proc/net/udp && return 0; sleep 0.1; done
    return 1
}

start_kamailio() {
    echo "1 sip:127.0.0.1:$SS_PORT 8 0 duid=ss1" >"$TMP/dispatcher.list"
    kamailio -f "$CFG" -DD -E -m 64 -Y "$TMP" -P "$TMP/kamailio.pid" \
        -A EXT_IP=127.0.0.1 -A EXT_PORT=$K_EXT -A INT_IP=127.0.0.1 -A INT_PORT=$K_INT \
        -A "PBX_URI=\"sip:127.0.0.1:$PBX\"" -A "DS_LIST=\"$TMP/dispatcher.list\"" \
        -A "CTL_SOCK=\"unix:$TMP/kamailio_ctl\"" >"$TMP/kamailio.log" 2>&1 &
    K_PID=$!
    wait_udp $K_EXT && wait_udp $K_INT
}

start_scamscreen() {  # start_scamscreen MODE
    (cd "$REPO" && exec "$SS_BIN" run --listen 127.0.0.1:$SS_PORT --upstream 127.0.0.1:$K_INT \
        --trust 127.0.0.0/8 --mode "$1" --rtp-ports 26000-26099 --db "$TMP/calls.db") \
        >>"$TMP/scamscreen.out" 2>>"$TMP/scamscreen.log" &
    SS_PID=$!
    wait_udp $SS_PORT
}

stop_scamscreen() {
    kill "$SS_PID" 2>/dev/null; wait "$SS_PID" 2>/dev/null; SS_PID=""
}

# call NAME WANT_UAC WANT_UAS UAS_XML UAC_XML SECS [uac args...]: one call through kamailio
call() {
    local name=$1 want_uac=$2 want_uas=$3 uas=$4 uac=$5 secs=$6; shift 6
    local d="$TMP/$name"; mkdir -p "$d"
    local common=(-i 127.0.0.1 -m 1 -nostdin -timeout "$secs" -timeout_error -trace_err -trace_msg)
    (cd "$d" && exec timeout $((secs + 10)) sipp -sf "$uas" -p $PBX "${common[@]}" >uas.out 2>&1) &
    local uas_pid=$!
    wait_udp $PBX
    local t0=$SECONDS
    (cd "$d" && exec timeout $((secs + 10)) sipp -sf "$uac" -p $UAC -s 15550002000 "${common[@]}" \
        "$@" 127.0.0.1:$K_EXT >uac.out 2>&1)
    local r_uac=$?
    wait $uas_pid; local r_uas=$?
    LAST_SECS=$((SECONDS - t0))
    if [ "$r_uac" = "$want_uac" ] && [ "$r_uas" = "$want_uas" ]; then
        pass=$((pass + 1)); echo "ok   $name (caller rc=$r_uac, PBX rc=$r_uas, ${LAST_SECS} s)"
    else
        fail=$((fail + 1))
        echo "FAIL $name (caller rc=$r_uac want $want_uac, PBX rc=$r_uas want $want_uas) logs: $d"
    fi
}

expect_log() {  # expect_log NAME PATTERN: kamailio logged PATTERN
    if grep -q "$2" "$TMP/kamailio.log"; then
        pass=$((pass + 1)); echo "ok   $1"
    else
        fail=$((fail + 1)); echo "FAIL $1 (no \"$2\" in $TMP/kamailio.log)"
    fi
}

# the PBX side: requires X-Scamscreen-Caller: withheld; callee-hangs-up variant from template
sed -e 's/HDR/X-Scamscreen-Caller/g' -e 's/RE/^ *withheld *$/g' \
    "$HERE/uas_marked_hangs_up.xml" >"$TMP/uas_marked_hangs_up.xml"
# a caller with a number that also sends a forged scamscreen header
sed 's/^\( *\)Max-Forwards: 70$/\1Max-Forwards: 70\n\1X-Scamscreen-Caller: withheld/' \
    "$PEERS/uac_call.xml" >"$TMP/uac_call_forged.xml"

command -v kamailio >/dev/null && command -v sipp >/dev/null || { echo "needs kamailio and sipp"; exit 2; }
[ -x "$SS_BIN" ] || { echo "no scamscreen binary at $SS_BIN (cargo build --release)"; exit 2; }
echo "logs: $TMP"

kamailio -c -f "$CFG" >"$TMP/config-check.log" 2>&1 \
    && { pass=$((pass + 1)); echo "ok   kamailio -c -f kamailio.cfg"; } \
    || { fail=$((fail + 1)); echo "FAIL kamailio -c (see $TMP/config-check.log)"; }

start_scamscreen mark || { echo "scamscreen did not start: $TMP/scamscreen.log"; exit 1; }
start_kamailio || { echo "kamailio did not start: $TMP/kamailio.log"; exit 1; }
sleep 1

call withheld-marked 0 0 "$PEERS/uas_expect_marked.xml" "$PEERS/uac_withheld.xml" 10
call withheld-callee-hangs-up 0 0 "$TMP/uas_marked_hangs_up.xml" "$HERE/uac_withheld_callee_hangs_up.xml" 10
call number-straight-to-pbx 0 0 "$PEERS/uas_call.xml" "$PEERS/uac_call.xml" 10 -key caller 15550001000
# the PBX refuses (500, exit 97) because kamailio removed the forged header
call forged-header-removed 1 97 "$PEERS/uas_expect_marked.xml" "$TMP/uac_call_forged.xml" 10 -key caller 15550001000
n_screen=$(grep -c "withheld caller" "$TMP/kamailio.log")
[ "$n_screen" = 2 ] && { pass=$((pass + 1)); echo "ok   only the 2 withheld calls went to scamscreen"; } \
    || { fail=$((fail + 1)); echo "FAIL $n_screen calls went to scamscreen, want 2"; }

stop_scamscreen
call node-down-fail-open 0 0 "$PEERS/uas_call.xml" "$PEERS/uac_withheld.xml" 10
expect_log "node marked down after its timeout" "did not answer"
call node-marked-down-direct 0 0 "$PEERS/uas_call.xml" "$PEERS/uac_withheld.xml" 10
expect_log "no node active: straight to the PBX" "no node active"

start_scamscreen mark
for _ in $(seq 1 30); do grep -q "node up:" "$TMP/kamailio.log" && break; sleep 1; done
expect_log "OPTIONS probe brings the node back" "node up:"
call node-back-marked 0 0 "$PEERS/uas_expect_marked.xml" "$PEERS/uac_withheld.xml" 10

# a node that stops is noticed by the probes alone, before any call: within ds_ping_interval
# (10 s) + tm's fr_timer for the unanswered OPTIONS (30 s by default)
stop_scamscreen
n_down=$(grep -c "node down:" "$TMP/kamailio.log")
for _ in $(seq 1 50); do [ "$(grep -c "node down:" "$TMP/kamailio.log")" -gt "$n_down" ] && break; sleep 1; done
[ "$(grep -c "node down:" "$TMP/kamailio.log")" -gt "$n_down" ] \
    && { pass=$((pass + 1)); echo "ok   OPTIONS probe marks a stopped node down"; } \
    || { fail=$((fail + 1)); echo "FAIL the stopped node was not marked down by the probes"; }
call probed-down-direct 0 0 "$PEERS/uas_call.xml" "$PEERS/uac_withheld.xml" 10
[ "$LAST_SECS" -le 1 ] && { pass=$((pass + 1)); echo "ok   ... without waiting for the node"; } \
    || { fail=$((fail + 1)); echo "FAIL the call waited ${LAST_SECS} s"; }

if [ "${SCREEN:-0}" = 1 ]; then
    # a screened call: scamscreen answers, listens, transcribes, then rings the PBX through
    # kamailio's "int" socket with X-Scamscreen-Verdict
    n_up=$(grep -c "node up:" "$TMP/kamailio.log")
    start_scamscreen screen
    for _ in $(seq 1 30); do [ "$(grep -c "node up:" "$TMP/kamailio.log")" -gt "$n_up" ] && break; sleep 1; done
    d="$TMP/screened-call"; mkdir -p "$d"
    espeak-ng -w "$d/espeak.wav" "Hello, this is Doctor Miller's dental office calling to confirm your appointment tomorrow at ten in the morning."
    sox "$d/espeak.wav" -r 8000 -c 1 -e u-law "$d/speech.wav"
    python3 "$REPO/tests/peers/make_rtp_pcap.py" "$d/speech.wav" "$d/speech.pcap" \
        --lead-silence-ms 5200 --trail-silence-ms 1500
    sed -e 's/X-Scamscreen-Caller:/X-Scamscreen-Verdict:/' -e 's/\^ \*withheld \*\$/^ *(allow|warn|unscreened) *$/' \
        "$PEERS/uas_expect_marked.xml" >"$TMP/uas_expect_verdict.xml"
    call screened-call 0 0 "$TMP/uas_expect_verdict.xml" "$PEERS/uac_screened_legit.xml" 40
fi

echo "kamailio checks: $pass passed, $fail failed"
[ "$fail" = 0 ]
