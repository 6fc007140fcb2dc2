"""SEV-SNP evidence through the ``/dev/sev-guest`` ioctls (Linux uapi ``linux/sev-guest.h``).

``SNP_GET_EXT_REPORT`` asks the firmware for an ATTESTATION_REPORT over our 64
bytes and the host for its certificate table in the same call. The structures::

    struct snp_report_req { u8 user_data[64]; u32 vmpl; u8 rsvd[28]; }          // 96
    struct snp_ext_report_req { snp_report_req data; u64 certs_address;
                                u32 certs_len; }                              // 112
    struct snp_report_resp { u8 data[4000]; }   // MSG_REPORT_RSP: u32 status,
                                                // u32 report_size, 24 rsvd, report
    struct snp_guest_request_ioctl { u8 msg_version; u64 req_data; u64 resp_data;
                                     union { u64 exitinfo2;
                                             struct { u32 fw_error, vmm_error; }; }; }

with ``SNP_GET_REPORT = _IOWR('S', 0, snp_guest_request_ioctl)`` and
``SNP_GET_EXT_REPORT = _IOWR('S', 2, ...)``. The kernel takes certificate buffers
of whole pages up to 16 KiB (``SEV_FW_BLOB_MAX_SIZE``), so one maximal buffer is
passed and no retry on ``INVALID_LEN`` is needed.

This machine has no SEV-SNP guest: the code is tested with an injected ioctl that
checks the request bytes and writes a constructed response.
"""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from jobruntime.attestation.providers.certificate_table import sev_snp_certificates
from jobruntime.attestation.providers.errors import CollectError
from jobruntime.attestation.providers.evidence import Evidence, EvidenceKind, check_report_data
from jobruntime.attestation.report import REPORT_SIZE

SEV_GUEST_DEVICE = Path("/dev/sev-guest")
MSG_VERSION = 1
_IOCTL = struct.Struct("<B7xQQQ")  # snp_guest_request_ioctl, 32 bytes
_REPORT_REQ = struct.Struct("<64sI28x")  # snp_report_req, 96 bytes
_EXT_REPORT_REQ = struct.Struct("<96sQI4x")  # snp_ext_report_req, 112 bytes
_REPORT_RSP = struct.Struct("<II24x")  # MSG_REPORT_RSP header
RESPONSE_SIZE = 4000
CERTS_SIZE = 0x4000  # SEV_FW_BLOB_MAX_SIZE


def _iowr(number: int) -> int:
    return 3 << 30 | _IOCTL.size << 16 | ord("S") << 8 | number


SNP_GET_REPORT = _iowr(0x0)
SNP_GET_EXT_REPORT = _iowr(0x2)

# MSG_REPORT_RSP status values (SEV-SNP firmware ABI) and the VMM errors of exitinfo2.
_REPORT_STATUS = {0x16: "INVALID_PARAM", 0x27: "INVALID_KEY"}
_VMM_ERRORS = {1: "INVALID_LEN", 2: "BUSY"}

Ioctl = Callable[[int, int, bytearray], int]
if TYPE_CHECKING:  # ctypes is imported to collect, not by every pod that imports detect()
    import ctypes

    _Buffer = ctypes.Array[ctypes.c_char]


def _system_ioctl(fd: int, request: int, arg: bytearray) -> int:
    return int(fcntl.ioctl(fd, request, arg, True))


class SevGuestProvider:
    """SEV-SNP evidence from ``/dev/sev-guest`` (optionally without the certificate table)."""

    kind: ClassVar[EvidenceKind] = "sev-snp"

    def __init__(
        self,
        device: Path = SEV_GUEST_DEVICE,
        *,
        vmpl: int = 0,
        extended: bool = True,
        ioctl: Ioctl = _system_ioctl,
    ) -> None:
        if not 0 <= vmpl <= 3:
            raise ValueError("vmpl must be 0-3")
        self.device, self.vmpl, self.extended, self.ioctl = device, vmpl, extended, ioctl

    def unavailable(self) -> str | None:
        if not self.device.exists():
            return f"{self.device}: missing"
        if not os.access(self.device, os.R_OK | os.W_OK):
            return f"{self.device}: not readable and writable"
        return None

    def collect(self, report_data: bytes) -> Evidence:
        import ctypes

        check_report_data(report_data)
        certs = ctypes.create_string_buffer(CERTS_SIZE) if self.extended else None
        raw = _REPORT_REQ.pack(report_data, self.vmpl)
        if certs is not None:
            raw = _EXT_REPORT_REQ.pack(raw, ctypes.addressof(certs), CERTS_SIZE)
        request = ctypes.create_string_buffer(raw, len(raw))
        response = ctypes.create_string_buffer(RESPONSE_SIZE)
        self._call(request, response)
        status, size = _REPORT_RSP.unpack_from(response.raw)
        if status:
            name = _REPORT_STATUS.get(status, "unknown")
            raise CollectError(f"firmware refused the report: status {status:#x} ({name})")
        if size != REPORT_SIZE:
            raise CollectError(f"firmware returned a {size}-byte report, not {REPORT_SIZE}")
        report = response.raw[_REPORT_RSP.size : _REPORT_RSP.size + REPORT_SIZE]
        table = b"" if certs is None else certs.raw
        return Evidence(self.kind, report, sev_snp_certificates(report, table))

    def _call(self, request: _Buffer, response: _Buffer) -> None:
        import ctypes

        number = SNP_GET_EXT_REPORT if self.extended else SNP_GET_REPORT
        arg = bytearray(
            _IOCTL.pack(MSG_VERSION, ctypes.addressof(request), ctypes.addressof(response), 0)
        )
        try:
            fd = os.open(self.device, os.O_RDWR)
        except OSError as exc:
            raise CollectError(f"cannot open {self.device}: {exc.strerror}") from None
        try:
            self.ioctl(fd, number, arg)
        except OSError as exc:
            exitinfo2 = _IOCTL.unpack(arg)[3]
            fw_error, vmm_error = exitinfo2 & 0xFFFFFFFF, exitinfo2 >> 32
            vmm = _VMM_ERRORS.get(vmm_error, "unknown") if vmm_error else "none"
            raise CollectError(
                f"{self.device} ioctl failed: {exc.strerror or exc}; firmware error"
                f" {fw_error:#x}, VMM error {vmm_error:#x} ({vmm})"
            ) from None
        finally:
            os.close(fd)
