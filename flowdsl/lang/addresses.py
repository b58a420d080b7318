"""Dask scheduler addresses as flow reads them: in `executor dask "..."`, `--executor dask://...`,
`--dask-address` and FLOW_DASK_ADDRESS.

Checked here, in the language stage, so that `flow validate` can point at a
bad address without importing Dask; the run stage only ever sees the
normalised form `tcp://host:port` (or `tls://host:port`).
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from typing import Optional, Tuple

SCHEMES = ("tcp", "tls")
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)\Z")


class AddressError(ValueError):
    """A malformed address. `code` is E101 (not an address) or E102 (a port out of range)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def dask_address(text: str, bare: bool = False) -> str:
    """`tcp://host:port` for a valid address; raises AddressError.

    `bare` also accepts `host:port` and `dask://host:port` (the command line's
    and the environment's forms), both meaning tcp.
    """
    scheme, rest = _split(text.strip(), bare)
    host, port = _host_port(rest, text)
    return f"{scheme}://{host}:{port}"


def _split(text: str, bare: bool) -> Tuple[str, str]:
    scheme, sep, rest = text.partition("://")
    if not sep:
        if bare:
            return "tcp", text
        raise AddressError("E101", f"`{text}` is not a Dask scheduler address: write \"tcp://host:port\"")
    if scheme == "dask" and bare:
        return "tcp", rest
    if scheme not in SCHEMES:
        raise AddressError("E101", f"`{scheme}://` is not a Dask scheduler address's scheme: use tcp:// or tls://")
    return scheme, rest


def _host_port(rest: str, text: str) -> Tuple[str, int]:
    host, sep, port_text = rest.rpartition(":")
    if not sep or not host or "/" in rest:
        raise AddressError("E101", f"`{text}` is not a Dask scheduler address: write \"tcp://host:port\"")
    if not _HOST.match(host):
        raise AddressError("E101", f"`{host}` is not a host name or an IP address")
    if not (port_text.isascii() and port_text.isdigit()):  # isdigit alone takes `²` and `٣`
        raise AddressError("E101", f"the port of `{text}` must be a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise AddressError("E102", f"port {port} is out of range (1 to 65535)")
    return host, port


def problem(text: str) -> Optional[AddressError]:
    """What is wrong with an address written in a .flow file, or None."""
    try:
        dask_address(text)
    except AddressError as e:
        return e
    return None
