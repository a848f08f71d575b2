"""The default seccomp filter of kapal's containers (OCI `linux.seccomp`, applied by runc).

Docker's default profile is an allow-list of some 350 system calls. kapal uses the equivalent
deny-list instead: every system call is allowed except those Docker's profile refuses to an
unprivileged container (one without CAP_SYS_ADMIN and the other capabilities kapal never grants).
Most of them would fail anyway for lack of a capability; the filter also shuts the kernel
interfaces a capability does not guard (keyrings, bpf, perf events, userfaultfd, io_uring, user
namespaces) and keeps them shut should a capability ever be added. Refused calls fail with EPERM,
as under Docker, except `clone3`, which fails with ENOSYS so that the C library falls back to
`clone`, where the namespace flags can be checked (seccomp cannot read clone3's argument struct).
ptrace stays allowed, as in Docker on kernels >= 4.8. Names the host's libseccomp does not know
are ignored by runc.
"""

from __future__ import annotations

import errno
import os
from typing import Any

# Refused with EPERM, grouped by what they reach.
DENIED_SYSCALLS: tuple[str, ...] = (
    # kernel keyrings (not namespaced)
    "add_key",
    "keyctl",
    "request_key",
    # kernel modules and rebooting into another kernel
    "create_module",
    "delete_module",
    "finit_module",
    "get_kernel_syms",
    "init_module",
    "kexec_file_load",
    "kexec_load",
    "query_module",
    "reboot",
    # filesystems, mounts and namespaces
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "mount",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "pivot_root",
    "umount",
    "umount2",
    "setns",
    "unshare",
    "quotactl",
    "quotactl_fd",
    "swapoff",
    "swapon",
    "name_to_handle_at",
    "open_by_handle_at",
    "nfsservctl",
    "sysfs",
    "ustat",
    "uselib",
    "_sysctl",
    # tracing, profiling and other processes' memory
    "bpf",
    "kcmp",
    "lookup_dcookie",
    "perf_event_open",
    "pidfd_getfd",
    "process_madvise",
    "process_vm_readv",
    "process_vm_writev",
    "userfaultfd",
    # io_uring (Docker refuses it since 25.0)
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    # the host's clock, accounting, kernel log, raw I/O and NUMA policy
    "acct",
    "clock_adjtime",
    "clock_settime",
    "settimeofday",
    "stime",
    "syslog",
    "ioperm",
    "iopl",
    "vm86",
    "vm86old",
    "get_mempolicy",
    "mbind",
    "set_mempolicy",
    "move_pages",
)

CLONE_NEWUSER = 0x10000000

# The architectures one filter covers, by the host's machine name (as Docker lists them).
_ARCHITECTURES: dict[str, list[str]] = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def default_seccomp(machine: str | None = None) -> dict[str, Any]:
    """The `linux.seccomp` object of every container's config.json."""
    arch = _ARCHITECTURES.get(machine or os.uname().machine)  # what platform.machine() reads
    profile: dict[str, Any] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": list(DENIED_SYSCALLS),
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EPERM,
            },
            {
                # New user namespaces through clone(2); unshare(2) is refused above.
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EPERM,
                "args": [
                    {
                        "index": 0,
                        "value": CLONE_NEWUSER,
                        "valueTwo": CLONE_NEWUSER,
                        "op": "SCMP_CMP_MASKED_EQ",
                    }
                ],
            },
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
        ],
    }
    if arch is not None:  # otherwise runc filters the native architecture only
        profile["architectures"] = arch
    return profile
