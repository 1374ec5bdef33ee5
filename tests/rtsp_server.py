"""A real RTSP server for the camera tests: GStreamer's gst-rtsp-server, serving a folder
of JPEG frames (numbered 00000.jpg, 00001.jpg, ...) as RTP/JPEG at a frame rate, looped.

Run by Debian's /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0), not the
project's interpreter:  python3 rtsp_server.py FRAMES_DIR PORT [--fps N] [--user U:P]
It prints "ready rtsp://127.0.0.1:PORT/cam" once it listens. With --user, RTSP Basic
authentication is required (a wrong password gets 401 Unauthorized).
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("frames")
    parser.add_argument("port", type=int)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--user", default="")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( multifilesrc location="{args.frames}/%05d.jpg" loop=true '
        f'caps="image/jpeg,framerate={args.fps}/1" ! jpegdec ! videorate ! '
        f"video/x-raw,framerate={args.fps}/1 ! jpegenc quality=85 ! "
        "rtpjpegpay name=pay0 pt=26 )"
    )
    factory.set_shared(True)  # every client sees the same live stream, like a camera
    if args.user:
        user, _, password = args.user.partition(":")
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role("viewer")
        permissions.add_permission_for_role(
            "viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True
        )
        permissions.add_permission_for_role(
            "viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True
        )
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    print(f"ready rtsp://127.0.0.1:{args.port}/cam", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
