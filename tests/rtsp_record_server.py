"""An RTSP server that accepts a published stream (RECORD) at /robot and saves its first decoded
frame as a PNG, then exits after a while: the receiving end of tests/test_gst_output.py.

Runs under a Python with PyGObject and gst-rtsp-server's introspection data (Debian: python3-gi,
gir1.2-gst-rtsp-server-1.0):  python3 tests/rtsp_record_server.py PORT OUT.png SECONDS
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port, out, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
server = GstRtspServer.RTSPServer()
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
factory.set_launch(f"( decodebin name=depay0 ! videoconvert ! pngenc snapshot=true ! filesink location={out} )")
server.get_mount_points().add_factory("/robot", factory)
server.attach(None)
print("listening", flush=True)
loop = GLib.MainLoop()
GLib.timeout_add_seconds(seconds, loop.quit)
loop.run()
