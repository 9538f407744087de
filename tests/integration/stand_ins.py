"""Stand-ins for the programs of virtualization layers that this machine lacks."""

FAKE_MPS = """#!/bin/bash
# stand-in for nvidia-cuda-mps-control: records each call (argv, stdin, pipe dir). `-d` makes
# its control socket as the daemon does and starts a daemon that reads, from a FIFO in the
# pipe directory, the pid of each client that reached it (the MPS_CLIENT_C library, loaded by
# the worker, writes it); its one server's clients are those pids. A worker that never
# reached it (no client library, another pipe directory) is not listed, whatever its
# environment says. The pids it read are also kept in $FAKE_MPS_LOG.clients for the tests.
input=""
if [ "$1" != "-d" ]; then read -r input; else : > "$CUDA_MPS_PIPE_DIRECTORY/control"; fi
echo "args=[$*] stdin=[$input] pipe=[$CUDA_MPS_PIPE_DIRECTORY]" >> "$FAKE_MPS_LOG"
dir="$CUDA_MPS_PIPE_DIRECTORY"
if [ "$1" = "-d" ]; then
  mkfifo "$dir/clients.fifo" && : > "$dir/clients" || exit 1
  ( exec 3<>"$dir/clients.fifo"
    while read -r pid <&3; do echo "$pid" >> "$dir/clients"; echo "$pid" >> "$FAKE_MPS_LOG.clients"; done ) \\
    </dev/null >/dev/null 2>&1 &
  echo $! > "$dir/daemon.pid"
  exit 0
fi
case "$input" in
  get_server_list) [ -f "$dir/daemon.pid" ] && echo 4242 ;;
  get_client_list*) cat "$dir/clients" 2>/dev/null ;;
  quit) [ -f "$dir/daemon.pid" ] && kill "$(cat "$dir/daemon.pid")"; rm -f "$dir/clients.fifo" "$dir/daemon.pid" ;;
esac
exit 0
"""

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

# A stand-in for HAMi-core's libvgpu.so: on load (HAMi-core does it at its first CUDA call)
# it creates or attaches to the shared region named by CUDA_DEVICE_MEMORY_SHARED_CACHE, laid
# out as HAMi-core's shared_region_t (src/multiprocess/multiprocess_memory_limit.h), fixes the
# limits from the environment when it creates it and takes a process slot. -DLIMIT_SCALE=2
# makes it hold another limit than the one set (a layer that lies); -DNO_SLOT, a region this
# process never attached to. The library mapped alone (no region) is the plain _library.
HAMI_REGION_C = r"""
#include <fcntl.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#define CUDA_DEVICE_MAX_COUNT 16
#define SHARED_REGION_MAX_PROCESS_NUM 1024
#ifndef LIMIT_SCALE
#define LIMIT_SCALE 1
#endif
typedef struct {
    _Atomic uint64_t context_size, module_size, data_size, offset, total; uint64_t unused[3];
} device_memory_t;
typedef struct { _Atomic uint64_t dec_util, enc_util, sm_util; uint64_t unused[3]; } device_util_t;
typedef struct {
    _Atomic int32_t pid; _Atomic int32_t hostpid; device_memory_t used[CUDA_DEVICE_MAX_COUNT];
    _Atomic uint64_t monitorused[CUDA_DEVICE_MAX_COUNT]; device_util_t device_util[CUDA_DEVICE_MAX_COUNT];
    _Atomic int32_t status; _Atomic uint64_t seqlock; uint64_t unused[2];
} shrreg_proc_slot_t;
typedef char uuid[96];
typedef struct {
    _Atomic int32_t initialized_flag; uint32_t major_version; uint32_t minor_version; _Atomic int32_t sm_init_flag;
    _Atomic size_t owner_pid; sem_t sem; uint64_t device_num; uuid uuids[CUDA_DEVICE_MAX_COUNT];
    uint64_t limit[CUDA_DEVICE_MAX_COUNT]; uint64_t sm_limit[CUDA_DEVICE_MAX_COUNT];
    shrreg_proc_slot_t procs[SHARED_REGION_MAX_PROCESS_NUM]; _Atomic int proc_num; _Atomic int utilization_switch;
    _Atomic int recent_kernel; int priority; _Atomic uint64_t last_kernel_time; sem_t sem_postinit;
} shared_region_t;

static uint64_t from_env(const char *name) {  /* HAMi-core's get_limit_from_env */
    const char *text = getenv(name);
    if (!text || !*text) return 0;
    char *end;
    uint64_t n = strtoul(text, &end, 0);
    switch (*end) {
        case 'g': case 'G': return n << 30;
        case 'm': case 'M': return n << 20;
        case 'k': case 'K': return n << 10;
    }
    return n;
}

__attribute__((constructor)) static void attach(void) {
    const char *file = getenv("CUDA_DEVICE_MEMORY_SHARED_CACHE");
    if (!file) return;  /* HAMi-core would use /tmp/cudevshr.cache: a test writes nothing there */
    int fd = open(file, O_RDWR | O_CREAT, 0666);
    if (fd < 0 || lseek(fd, sizeof(shared_region_t), SEEK_SET) < 0 || write(fd, "", 1) != 1) return;
    shared_region_t *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (r == MAP_FAILED) return;
    lockf(fd, F_LOCK, sizeof *r);
    if (r->initialized_flag != 19920718) {
        r->major_version = 1; r->minor_version = 2;
        uint64_t sm = from_env("CUDA_DEVICE_SM_LIMIT");
        for (int i = 0; i < CUDA_DEVICE_MAX_COUNT; i++) {
            r->limit[i] = from_env("CUDA_DEVICE_MEMORY_LIMIT") * LIMIT_SCALE;
            r->sm_limit[i] = sm ? sm : 100;
        }
        r->proc_num = 0;
        r->initialized_flag = 19920718;
    }
#ifndef NO_SLOT
    r->procs[r->proc_num++].pid = getpid();
#endif
    lockf(fd, F_ULOCK, sizeof *r);
    munmap(r, sizeof *r);
    close(fd);
}
"""

# A stand-in CUDA runtime (a vGPU client's libcudart, or any runtime's): one device whose
# total memory is ORION_GMEM MiB (what a remoting client reports for its vGPU), or
# STAND_IN_TOTAL_MIB (a runtime that reports another size: the layer did not apply it).
CUDART_C = r"""
#include <stdlib.h>
#include <string.h>
int cudaGetDevice(int *device) {
    if (getenv("CUDA_VISIBLE_DEVICES") && !*getenv("CUDA_VISIBLE_DEVICES") && !getenv("STAND_IN_IGNORE_HIDDEN"))
        return 100;  /* cudaErrorNoDevice: the devices are hidden */
    *device = 0;
    return 0;
}
int cudaMemGetInfo(size_t *free_bytes, size_t *total) {
    const char *mib = getenv("STAND_IN_TOTAL_MIB") ? getenv("STAND_IN_TOTAL_MIB") : getenv("ORION_GMEM");
    *total = (size_t)atol(mib ? mib : "1024") << 20;
    *free_bytes = *total;
    return 0;
}
int cudaGetDeviceProperties(void *props, int device) {
    memset(props, 0, 272);
    strcpy((char *)props, "Stand-in vGPU");
    memset((char *)props + 256, 0xab, 16);
    return 0;
}
"""

# A stand-in for the MPS client side of libcuda: on load it reaches the daemon through the
# pipe directory (the FIFO the stand-in daemon reads), as a CUDA client connects to MPS.
# Opening a FIFO for writing without a reader fails: no daemon, no client.
MPS_CLIENT_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
__attribute__((constructor)) static void reach_daemon(void) {
    const char *pipe = getenv("CUDA_MPS_PIPE_DIRECTORY");
    char path[4096], line[32];
    if (!pipe) return;
    snprintf(path, sizeof path, "%s/clients.fifo", pipe);
    int fd = open(path, O_WRONLY | O_NONBLOCK);
    if (fd < 0) return;
    int n = snprintf(line, sizeof line, "%d\n", getpid());
    if (write(fd, line, n) != n) { /* the daemon did not get it: not a client */ }
    close(fd);
}
"""


def build_library(path, source, *defines):
    """A shared library built with gcc from C `source` (one of the stand-ins above)."""
    import subprocess

    path.parent.mkdir(parents=True, exist_ok=True)
    c_file = path.with_name(f".{path.name}.c")  # hidden: a client directory is globbed for libcudart.so*
    c_file.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", *defines, "-o", str(path), str(c_file)], check=True)
    return path


# Below Python: every process of the tree (the command, its worker, the runtimes' C++ code,
# anything they start) gets this library preloaded. It logs each process that loaded it, and
# each connect(), each sendto()/sendmsg() with an address and each name lookup, refusing
# every one that leaves the machine's Unix sockets: an AF_INET/AF_INET6 connection (loopback
# included: this command starts no server of its own) or a lookup of a name.
NETWORK_SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void note(const char *what, const char *detail) {
    const char *path = getenv("NETWORK_ATTEMPTS");
    FILE *log = path ? fopen(path, "a") : NULL;
    if (!log) return;
    fprintf(log, "%d %s %s\n", getpid(), what, detail);
    fclose(log);
}

__attribute__((constructor)) static void loaded(void) {
    char cmd[512] = "";
    FILE *f = fopen("/proc/self/cmdline", "r");
    if (f) {
        size_t n = fread(cmd, 1, sizeof cmd - 1, f);
        for (size_t i = 0; i < n; i++) if (!cmd[i]) cmd[i] = ' ';
        cmd[n] = 0;
        fclose(f);
    }
    note("loaded", cmd);
}

/* 1 (and logged) when the address leaves the process's Unix sockets */
static int outward(const char *what, const struct sockaddr *addr) {
    char detail[256];
    if (!addr) return 0;
    if (addr->sa_family == AF_UNIX) {
        snprintf(detail, sizeof detail, "unix %s", ((const struct sockaddr_un *)addr)->sun_path);
        note(what, detail);
        return 0;
    }
    snprintf(detail, sizeof detail, "family %d", addr->sa_family);
    note(what, detail);
    return 1;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    if (outward("connect", addr)) { errno = ENETUNREACH; return -1; }
    int (*real)(int, const struct sockaddr *, socklen_t) = dlsym(RTLD_NEXT, "connect");
    return real(fd, addr, len);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr, socklen_t len) {
    if (outward("sendto", addr)) { errno = ENETUNREACH; return -1; }
    ssize_t (*real)(int, const void *, size_t, int, const struct sockaddr *, socklen_t) = dlsym(RTLD_NEXT, "sendto");
    return real(fd, buf, n, flags, addr, len);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
    if (msg && outward("sendmsg", msg->msg_name)) { errno = ENETUNREACH; return -1; }
    ssize_t (*real)(int, const struct msghdr *, int) = dlsym(RTLD_NEXT, "sendmsg");
    return real(fd, msg, flags);
}

/* glibc's resolver connects through internal calls no preload sees: the lookups themselves.
   A numeric address (or none) is parsed, not looked up: passed on. */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
    unsigned char addr[16];
    if (node && inet_pton(AF_INET, node, addr) != 1 && inet_pton(AF_INET6, node, addr) != 1) {
        note("getaddrinfo", node);
        return EAI_FAIL;
    }
    int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **) =
        dlsym(RTLD_NEXT, "getaddrinfo");
    return real(node, service, hints, res);
}

struct hostent *gethostbyname(const char *name) {
    note("gethostbyname", name ? name : "(null)");
    h_errno = HOST_NOT_FOUND;
    return NULL;
}
"""


def outward_attempts(log: str) -> list[str]:
    """The logged attempts that would leave the machine's Unix sockets."""
    return [line for line in log.splitlines() if line.split(" ", 2)[1] != "loaded" and " unix " not in f" {line} "]
