"""A write() that stalls half-way, in the kernel, for as long as the test wants.

The write's source buffer is memory whose second half is registered with userfaultfd:
the kernel copies the first half into the file, then faults on the second half and
waits (holding the inode's lock, as a writer throttled by dirty-page write-back or
descheduled mid-copy does) until `release` supplies those pages. The file meanwhile
stays in a torn state that no longer changes: what a scanner's double read cannot tell
from a finished write.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import platform
import struct
import threading

_SYSCALLS = {"x86_64": 323, "aarch64": 282}
_UFFDIO_API = 0xC018AA3F
_UFFDIO_REGISTER = 0xC020AA00
_UFFDIO_COPY = 0xC028AA03
_UFFD_API = 0xAA
_MODE_MISSING = 1
_PAGE = mmap.PAGESIZE

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int]
_libc.mmap.argtypes += [ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.syscall.restype = ctypes.c_long


class Unavailable(Exception):
    """userfaultfd cannot be used here (architecture, kernel, or permissions)."""


class StalledWrite:
    """pwrite(fd, data, 0) in a thread that stops after the first `len(data) // 2` bytes."""

    def __init__(self, fd: int, data: bytes) -> None:
        if len(data) % (2 * _PAGE):
            raise ValueError("data must be a whole number of page pairs")
        self._data = data
        self._half = len(data) // 2
        self._uffd = _userfaultfd()
        self._addr = _anonymous(len(data))
        ctypes.memmove(self._addr, data, self._half)  # present: copied at once
        register = struct.pack("QQQQ", self._addr + self._half, self._half, _MODE_MISSING, 0)
        try:
            fcntl.ioctl(self._uffd, _UFFDIO_REGISTER, bytearray(register))
        except OSError as exc:
            os.close(self._uffd)
            _libc.munmap(self._addr, len(data))
            raise Unavailable(f"UFFDIO_REGISTER: {exc}") from exc
        buffer = (ctypes.c_char * len(data)).from_address(self._addr)
        self._thread = threading.Thread(target=os.pwrite, args=(fd, memoryview(buffer), 0))
        self._thread.start()

    def release(self) -> None:
        """Supply the missing pages: the write completes."""
        source = ctypes.create_string_buffer(self._data[self._half :], self._half)
        # struct uffdio_copy: dst, src, len, mode, copy (written back by the kernel)
        fields = (self._addr + self._half, ctypes.addressof(source), self._half, 0, 0)
        copy = struct.pack("QQQQq", *fields)
        fcntl.ioctl(self._uffd, _UFFDIO_COPY, bytearray(copy))
        self._thread.join()
        os.close(self._uffd)
        _libc.munmap(self._addr, len(self._data))


def _userfaultfd() -> int:
    number = _SYSCALLS.get(platform.machine())
    if number is None:
        raise Unavailable(f"no userfaultfd syscall number for {platform.machine()}")
    fd = int(_libc.syscall(number, os.O_CLOEXEC))
    if fd < 0:
        raise Unavailable(f"userfaultfd: {os.strerror(ctypes.get_errno())}")
    try:
        fcntl.ioctl(fd, _UFFDIO_API, bytearray(struct.pack("QQQ", _UFFD_API, 0, 0)))
    except OSError as exc:
        os.close(fd)
        raise Unavailable(f"UFFDIO_API: {exc}") from exc
    return fd


def _anonymous(size: int) -> int:
    addr = _libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, _MAP_PRIVATE_ANON, -1, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise Unavailable(f"mmap: {os.strerror(ctypes.get_errno())}")
    return int(addr)


_MAP_PRIVATE_ANON = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
