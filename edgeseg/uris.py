"""The grammar of the network addresses a run names, checked before anything is opened.

One function per kind of address, shared by sources and outputs where the grammar is shared:
:func:`address` reads scheme, host, port and path and checks the port once for every kind;
:func:`http_output`, :func:`udp_output`, :func:`rtsp_output`, :func:`stream_source` and
:func:`csi_source` add what their kind needs. Each raises the error class it is given (a
:class:`~edgeseg.errors.SourceUriError` or :class:`~edgeseg.errors.OutputUriError`, both usage
errors) with one line naming the URI, what is wrong and an example of the right form.

Nothing here opens a socket, a device or a file; :func:`edgeseg.sources.check_source` and
:func:`edgeseg.sinks.check_output` call these for every source and output of a run first.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from edgeseg.errors import OutputUriError, SourceUriError

PORTS = "the port must be a number from 1 to 65535"
#: ``-o http://HOST:PORT`` without a host or port: every interface, this port
HTTP_DEFAULT_HOST = "0.0.0.0"
HTTP_DEFAULT_PORT = 8090
RTSP_PORT = 554  # an rtsp:// URI without a port
#: network sources, read by FFmpeg; udp:// and tcp:// may leave the host out (listen on every interface)
STREAM_SOURCE_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")
LISTENING_SOURCE_SCHEMES = ("udp", "tcp")

#: ``-o`` network outputs: scheme -> its form; udp and rtsp go through GStreamer (edgeseg.gst_output)
OUTPUT_SCHEMES = {"http": "http://HOST:PORT (a live MJPEG view)", "udp": "udp://HOST:PORT",
                  "rtsp": "rtsp://SERVER[:PORT]/PATH"}
GSTREAMER_OUTPUT_SCHEMES = ("udp", "rtsp")
OUTPUT_SCHEME_LIST = (f"{OUTPUT_SCHEMES['http']}, {OUTPUT_SCHEMES['udp']} or {OUTPUT_SCHEMES['rtsp']} "
                      "(H.264 through GStreamer)")

UriError = type[SourceUriError] | type[OutputUriError]


@dataclass(frozen=True)
class Address:
    """A network address as a URI gives it: ``scheme`` in lower case, ``host`` ("" when none;
    an IPv6 host without its brackets), ``port`` (None when none; else 1..65535), ``path`` and
    ``query`` as written."""

    uri: str
    scheme: str
    host: str
    port: int | None
    path: str
    query: str


def scheme_of(text: str) -> str | None:
    """The scheme of ``SCHEME://...`` in lower case, or None when *text* has none (a file path)."""
    head, sep, _ = text.partition("://")
    if not sep or not head or not (head[0].isalpha() and all(c.isalnum() or c in "+.-" for c in head)):
        return None
    return head.lower()


def address(uri: str, error: UriError) -> Address:
    """Scheme, host, port and path of *uri*; *error* when the port is not 1..65535 or the host is
    malformed (an unclosed IPv6 bracket)."""
    if any(c.isspace() for c in uri):
        raise error(f"{uri!r}: an address cannot contain spaces")
    try:
        parts = urlsplit(uri)
        host_port = parts.netloc.rpartition("@")[2]
        if host_port.count(":") > 1 and not host_port.startswith("["):
            raise error(f"{uri}: write an IPv6 host in brackets, e.g. {parts.scheme}://[::1]:5000")
        port = parts.port
    except ValueError as exc:
        if isinstance(exc, error):
            raise
        if "port" in str(exc).lower():
            raise error(f"{uri}: {PORTS}") from None
        raise error(f"{uri}: malformed address ({exc}); write SCHEME://HOST:PORT, an IPv6 host in brackets "
                    "([::1])") from None
    if port == 0:
        raise error(f"{uri}: {PORTS}")
    return Address(uri, parts.scheme.lower(), parts.hostname or "", port, parts.path, parts.query)


def output(uri: str) -> str:
    """The scheme of a network output ``-o SCHEME://...``, its address checked by the scheme's own
    function below; :class:`OutputUriError` for a scheme edgeseg does not send to."""
    scheme = scheme_of(uri) or uri.split("://", 1)[0]
    check = {"http": http_output, "udp": udp_output, "rtsp": rtsp_output}.get(scheme)
    if check is None:
        raise OutputUriError(f"{uri}: unknown output scheme {scheme}://; outputs are files, folders/, "
                             f"{OUTPUT_SCHEME_LIST}")
    check(uri)
    return scheme


def http_output(uri: str) -> tuple[str, int]:
    """(host, port) of ``-o http://[HOST][:PORT][/]``, the live MJPEG view; a missing host is
    every interface (0.0.0.0), a missing port 8090."""
    a = address(uri, OutputUriError)
    if a.path not in ("", "/") or a.query:
        raise OutputUriError(f"{uri}: the live view is served at the root; give http://HOST:PORT")
    return a.host or HTTP_DEFAULT_HOST, a.port or HTTP_DEFAULT_PORT


def udp_output(uri: str) -> Address:
    """``-o udp://HOST:PORT``: H.264 over RTP to a receiver (or a multicast group); both needed."""
    a = address(uri, OutputUriError)
    _no_quote(uri)
    if not a.host or a.port is None:
        raise OutputUriError(f"{uri}: give the receiver's address and port, e.g. -o udp://192.168.1.20:5000")
    if a.path not in ("", "/") or a.query:
        raise OutputUriError(f"{uri}: udp:// output takes no path or query; give udp://HOST:PORT")
    return a


def rtsp_output(uri: str) -> Address:
    """``-o rtsp://[USER:PASSWORD@]SERVER[:PORT]/PATH[?QUERY]``: published to an RTSP server
    (port 554 when none is given)."""
    a = address(uri, OutputUriError)
    if not a.host or a.path in ("", "/"):
        raise OutputUriError(f"{uri}: give the RTSP server and a stream path, e.g. -o rtsp://localhost:8554/robot")
    _no_quote(uri)
    return a


def _no_quote(uri: str) -> None:
    # the GStreamer pipeline quotes the host and the location
    if '"' in uri:
        raise OutputUriError(f"{uri}: an output URI cannot contain a double quote")


def stream_source(uri: str) -> Address:
    """A network stream read by FFmpeg (``rtsp://``, ``rtsps://``, ``rtmp://``, ``http(s)://``
    need a host; ``udp://`` and ``tcp://`` need a port and may leave the host out to listen)."""
    a = address(uri, SourceUriError)
    if a.scheme in LISTENING_SOURCE_SCHEMES:
        if a.port is None:
            raise SourceUriError(f"{uri}: give the port to read from, e.g. {a.scheme}://0.0.0.0:5000")
    elif not a.host:
        raise SourceUriError(f"{uri}: give the server, e.g. {a.scheme}://192.168.1.20:8554/stream")
    return a


def csi_source(uri: str) -> int:
    """The sensor id N of ``csi://N`` (a Jetson CSI camera)."""
    sensor = uri[len("csi://"):]
    if not (sensor.isascii() and sensor.isdigit()):
        raise SourceUriError(f"{uri}: write csi://N with N the sensor id, e.g. csi://0")
    return int(sensor)
