"""A ROS 2 node that republishes a streamlift server's skeletons (docs/integrations.md).

    python examples/ros2/streamlift_bridge.py --from tcp://127.0.0.1:5556 [--stream ID]

Per stream S it publishes, stamped with the skeleton's capture time:
- /streamlift/S/markers  visualization_msgs/MarkerArray: the joints (SPHERE_LIST, 4 cm) and
  the bones (LINE_LIST, 1.5 cm), one colour per stream, for RViz;
- /streamlift/S/joints   geometry_msgs/PoseArray: the 17 joints in H36M-17 order as
  positions (orientations identity), for code.
frame_id is "<S>_optical" (--frame-prefix): the camera's optical frame of REP 103 (x right,
y down, z forward), which is exactly the published frame; units metres; the pelvis is at the
origin (root-relative), so place that frame with a static transform where the subject stands.

It needs a ROS 2 installation (rclpy is not on PyPI) and streamlift (for its subscriber).
The conversion itself (`skeleton_markers`, `joint_poses`) is plain Python, so that this file
imports, and is checked, without ROS; it has not been run against a ROS 2 installation here.
"""

from __future__ import annotations

import argparse

BONES = [(0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (0, 7), (7, 8), (8, 9), (9, 10),
         (8, 11), (11, 12), (12, 13), (8, 14), (14, 15), (15, 16)]  # H36M-17 (parent, child)
COLOURS = [(0.90, 0.33, 0.05), (0.19, 0.51, 0.74), (0.19, 0.64, 0.33), (0.46, 0.42, 0.69)]
SPHERE_LIST, LINE_LIST = 7, 5  # visualization_msgs/Marker types


def skeleton_markers(stream: str, joints, index: int, frame_prefix: str = "") -> list[dict]:
    """The two markers of one skeleton (17 x 3 metres) as plain dicts of Marker fields."""
    r, g, b = COLOURS[index % len(COLOURS)]
    pts = [tuple(map(float, p)) for p in joints]
    common = {"frame_id": f"{frame_prefix}{stream}_optical", "ns": stream,
              "color": (r, g, b, 1.0)}
    return [dict(common, id=0, type=SPHERE_LIST, scale=(0.04, 0.04, 0.04), points=pts),
            dict(common, id=1, type=LINE_LIST, scale=(0.015, 0.0, 0.0),
                 points=[pts[i] for bone in BONES for i in bone])]


def joint_poses(joints) -> list[tuple]:
    """PoseArray entries: (x, y, z, qx, qy, qz, qw) per joint, orientation identity."""
    return [(float(x), float(y), float(z), 0.0, 0.0, 0.0, 1.0) for x, y, z in joints]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="source", default="tcp://127.0.0.1:5556",
                    help="the streamlift server's PUB endpoint")
    ap.add_argument("--stream", action="append", help="only this stream (repeatable)")
    ap.add_argument("--frame-prefix", default="", help="prepended to every frame_id")
    a = ap.parse_args(argv)

    import rclpy  # only here: the module imports without ROS
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import Point, Pose, PoseArray
    from std_msgs.msg import ColorRGBA, Header
    from visualization_msgs.msg import Marker, MarkerArray

    from streamlift.serve.clients import Subscriber
    from streamlift.serve.messages import Skeleton

    rclpy.init()
    node = rclpy.create_node("streamlift_bridge")
    pubs: dict[str, tuple] = {}
    sub = Subscriber(a.source, a.stream)
    try:
        while rclpy.ok():
            msg = sub.recv(100)
            if not isinstance(msg, Skeleton):
                continue
            if msg.stream not in pubs:
                base = f"/streamlift/{msg.stream.replace('.', '_').replace(':', '_')}"
                pubs[msg.stream] = (node.create_publisher(MarkerArray, f"{base}/markers", 10),
                                    node.create_publisher(PoseArray, f"{base}/joints", 10),
                                    len(pubs))
            markers_pub, poses_pub, index = pubs[msg.stream]
            sec = int(msg.t_capture)
            stamp = Time(sec=sec, nanosec=int((msg.t_capture - sec) * 1e9))
            header = Header(stamp=stamp, frame_id=f"{a.frame_prefix}{msg.stream}_optical")
            out = MarkerArray()
            for m in skeleton_markers(msg.stream, msg.joints, index, a.frame_prefix):
                mk = Marker(header=header, ns=m["ns"], id=m["id"], type=m["type"],
                            action=Marker.ADD)
                mk.scale.x, mk.scale.y, mk.scale.z = m["scale"]
                mk.color = ColorRGBA(r=m["color"][0], g=m["color"][1], b=m["color"][2],
                                     a=m["color"][3])
                mk.pose.orientation.w = 1.0
                mk.points = [Point(x=x, y=y, z=z) for x, y, z in m["points"]]
                out.markers.append(mk)
            markers_pub.publish(out)
            poses = PoseArray(header=header)
            for x, y, z, qx, qy, qz, qw in joint_poses(msg.joints):
                p = Pose()
                p.position.x, p.position.y, p.position.z = x, y, z
                p.orientation.x, p.orientation.y = qx, qy
                p.orientation.z, p.orientation.w = qz, qw
                poses.poses.append(p)
            poses_pub.publish(poses)
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
        node.destroy_node()
        rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
