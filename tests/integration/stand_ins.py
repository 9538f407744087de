"""Stand-ins for the programs of virtualization layers that this machine lacks."""

FAKE_MPS = """#!/bin/bash
# stand-in for nvidia-cuda-mps-control: records each call (argv, stdin, pipe dir). Its one
# server's clients are what a daemon's would be: the workers that reached it through its
# pipe directory (their environment names it). Started, it makes its socket as the daemon does.
input=""
if [ "$1" != "-d" ]; then read -r input; else : > "$CUDA_MPS_PIPE_DIRECTORY/control"; fi
echo "args=[$*] stdin=[$input] pipe=[$CUDA_MPS_PIPE_DIRECTORY]" >> "$FAKE_MPS_LOG"
case "$input" in
  get_server_list) echo 4242 ;;
  get_client_list*)
    for proc in /proc/[0-9]*; do
      tr '\\0' '\\n' < "$proc/environ" 2>/dev/null | grep -qxF "CUDA_MPS_PIPE_DIRECTORY=$CUDA_MPS_PIPE_DIRECTORY" \\
        && tr '\\0' ' ' < "$proc/cmdline" 2>/dev/null | grep -q "runners.worker" && echo "${proc#/proc/}"
    done ;;
esac
exit 0
"""
# A daemon the workers never reached (a wrong pipe directory, a client that fell back to
# running without MPS): it has a server and no client.
FAKE_MPS_UNREACHED = FAKE_MPS.replace('grep -q "runners.worker"', 'grep -q "no such client"')

# A daemon that cannot start: it says why in its log only, as the real one did when its
# socket path was too long, and exits 1 with nothing on stdout or stderr.
FAKE_MPS_BROKEN = """#!/bin/bash
echo "args=[$*] stdin=[] pipe=[$CUDA_MPS_PIPE_DIRECTORY]" >> "$FAKE_MPS_LOG"
echo "[2026-12-04 10:07:25.954 Control  1230] Failed to bind the control socket: no such device" \\
  >> "$CUDA_MPS_LOG_DIRECTORY/control.log"
exit 1
"""

FAKE_NVIDIA_SMI = """#!/bin/bash
cat <<'OUT'
GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-aaaa)
  MIG 3g.40gb     Device  0: (UUID: MIG-1111-aaaa)
  MIG 2g.20gb     Device  1: (UUID: MIG-2222-bbbb)
OUT
"""
