"""A ROS 2 node: segments sensor_msgs/Image frames, publishes a label image and the detections.

    source /opt/ros/humble/setup.bash        # or jazzy: rclpy comes with ROS 2, not from pip
    python3 samples/ros2_node.py --ros-args -p model:=maskrcnn.engine -r image:=/camera/image_raw

NOT RUN IN CI: rclpy cannot be installed on the CI machine, so this file is only linted and
type-checked there (its ROS imports live inside main()); its numpy helpers are tested.

Subscribes:  image               sensor_msgs/Image (bgr8, rgb8, bgra8, rgba8 or mono8), newest only
Publishes:   ~/label_image       sensor_msgs/Image mono8, same header as the input image:
                                 semantic models: the class id of every pixel;
                                 instance models: 0 = background, k = the k-th detection (1-based)
             ~/detections        instance models: vision_msgs/Detection2DArray (ROS 2 Humble or
                                 newer: class name in results[0].hypothesis.class_id, id = k);
                                 without vision_msgs, a std_msgs/String holding the same as JSON
Stamps:      every output carries the input's header, so its stamp is the frame's capture time (set
             by the camera driver); a driver that leaves the stamp at zero gets the time the
             frame reached this node instead, the nearest to capture there is
Parameters:  model (path of an .onnx or .engine, required), threads (0: all cores),
             min_score (instance models: drop weaker detections, default 0.5)
"""

from __future__ import annotations

import array
import json
import sys
from typing import Any

import cv2
import numpy as np

import edgeseg

PROG = "ros2_node"

# sensor_msgs/Image encoding -> (bytes per pixel, OpenCV conversion to BGR or None).
ENCODINGS: dict[str, tuple[int, int | None]] = {
    "bgr8": (3, None),
    "rgb8": (3, cv2.COLOR_RGB2BGR),
    "bgra8": (4, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, cv2.COLOR_RGBA2BGR),
    "mono8": (1, cv2.COLOR_GRAY2BGR),
}


def image_to_bgr(msg: Any) -> np.ndarray | None:
    """An HxWx3 uint8 BGR frame from a sensor_msgs/Image, or None for an unsupported encoding.

    Done with numpy rather than cv_bridge, which is one dependency less and reads the rows with
    their padding (``step``) correctly.
    """
    spec = ENCODINGS.get(msg.encoding)
    if spec is None:
        return None
    channels, code = spec
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    pixels = rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)
    return cv2.cvtColor(pixels, code) if code is not None else np.ascontiguousarray(pixels)


def kept(result: edgeseg.InstanceResult, min_score: float) -> int:
    """How many detections score at least *min_score* (results come highest score first)."""
    return int(np.count_nonzero(np.asarray(result.scores) >= min_score))


def label_image(result: Any, min_score: float) -> np.ndarray:
    """The HxW uint8 image published on ~/label_image (see the module docstring)."""
    if isinstance(result, edgeseg.SemanticResult):
        return np.ascontiguousarray(result.label_map, dtype=np.uint8)
    n = min(kept(result, min_score), 255)  # mono8 holds ids up to 255
    ids = np.zeros(result.masks.shape[1:], dtype=np.uint8)
    # Lowest score first, so where masks overlap the most confident object wins.
    for k in range(n - 1, -1, -1):
        ids[result.masks[k] != 0] = k + 1
    return ids


def detections_json(result: edgeseg.InstanceResult, min_score: float, header: Any) -> str:
    """The detections as JSON, for std_msgs/String when vision_msgs is not installed."""
    rows = [
        {"id": k + 1, "class": result.classes[int(result.labels[k])], "score": round(float(result.scores[k]), 4),
         "box": [round(float(v), 2) for v in result.boxes[k]]}  # x0, y0, x1, y1 in pixels
        for k in range(min(kept(result, min_score), 255))
    ]
    stamp = {"sec": int(header.stamp.sec), "nanosec": int(header.stamp.nanosec)}
    return json.dumps({"stamp": stamp, "frame_id": header.frame_id, "detections": rows})


def stamp_capture_time(header: Any, arrival_ns: int) -> Any:
    """*header* (a std_msgs/Header, changed in place) stamped with the frame's capture time: the
    driver's own stamp where it set one; where it left it at zero, *arrival_ns* (nanoseconds on
    the node's clock, taken when the frame arrived)."""
    if int(header.stamp.sec) == 0 and int(header.stamp.nanosec) == 0:
        header.stamp.sec, header.stamp.nanosec = divmod(int(arrival_ns), 1_000_000_000)
    return header


class SegmentationNode:
    """The node's state and callbacks; *ros* holds rclpy and the message classes."""

    def __init__(self, ros: dict[str, Any]) -> None:
        self.ros = ros
        self.node = ros["rclpy"].create_node("edgeseg")
        model_path = str(self.node.declare_parameter("model", "").value)
        threads = int(self.node.declare_parameter("threads", 0).value)
        self.min_score = float(self.node.declare_parameter("min_score", 0.5).value)
        if not model_path:
            raise edgeseg.ArgumentError("no model given: add --ros-args -p model:=/path/to/model.onnx (or .engine)")
        self.model = edgeseg.load(model_path, threads=threads or None)
        self.node.get_logger().info(f"loaded {self.model!r}")

        qos = ros["QoSProfile"](depth=1, history=ros["HistoryPolicy"].KEEP_LAST,
                                reliability=ros["ReliabilityPolicy"].BEST_EFFORT)
        Image = ros["Image"]
        self.labels_pub = self.node.create_publisher(Image, "~/label_image", 1)
        self.detections_pub: Any = None
        if self.model.metadata.kind == "instance":
            kind = ros["Detection2DArray"] or ros["String"]
            self.detections_pub = self.node.create_publisher(kind, "~/detections", 1)
        # Depth 1, best effort: while the model is busy the middleware keeps only the newest frame,
        # so the node never works through a backlog of stale ones (as edgeseg's live pipeline does).
        self.node.create_subscription(Image, "image", self.on_image, qos)

    def on_image(self, msg: Any) -> None:
        arrival_ns = int(self.node.get_clock().now().nanoseconds)  # before any work on the frame
        frame = image_to_bgr(msg)
        if frame is None:
            self.node.get_logger().warn(
                f"cannot read {msg.encoding!r} images; publish one of {', '.join(ENCODINGS)}",
                throttle_duration_sec=5.0)
            return
        try:
            result = self.model(frame)
        except edgeseg.EdgesegError as exc:  # e.g. FrameError: says what is wrong with the frame
            self.node.get_logger().error(str(exc), throttle_duration_sec=5.0)
            return
        # The input's header (capture stamp, frame_id) goes on every output, so subscribers can
        # match them to the image, to each other and to other sensors (message_filters).
        stamp_capture_time(msg.header, arrival_ns)
        self.labels_pub.publish(self.mono8(msg.header, label_image(result, self.min_score)))
        if self.detections_pub is not None and isinstance(result, edgeseg.InstanceResult):
            if self.ros["Detection2DArray"] is not None:
                self.detections_pub.publish(self.detection_array(msg.header, result))
            else:
                text = self.ros["String"]()
                text.data = detections_json(result, self.min_score, msg.header)
                self.detections_pub.publish(text)

    def mono8(self, header: Any, pixels: np.ndarray) -> Any:
        out = self.ros["Image"]()
        out.header = header
        out.height, out.width = int(pixels.shape[0]), int(pixels.shape[1])
        out.encoding = "mono8"
        out.is_bigendian = 0
        out.step = int(pixels.shape[1])
        # An array('B') is taken as it is; other sequences are checked element by element.
        out.data = array.array("B", np.ascontiguousarray(pixels).tobytes())
        return out

    def detection_array(self, header: Any, result: edgeseg.InstanceResult) -> Any:
        ros = self.ros
        detections = ros["Detection2DArray"]()
        detections.header = header
        for k in range(min(kept(result, self.min_score), 255)):
            x0, y0, x1, y1 = (float(v) for v in result.boxes[k])
            det = ros["Detection2D"]()
            det.header = header
            det.id = str(k + 1)  # the value of its pixels on ~/label_image
            det.bbox.center.position.x = (x0 + x1) / 2
            det.bbox.center.position.y = (y0 + y1) / 2
            det.bbox.size_x = x1 - x0
            det.bbox.size_y = y1 - y0
            hypothesis = ros["ObjectHypothesisWithPose"]()
            hypothesis.hypothesis.class_id = result.classes[int(result.labels[k])]
            hypothesis.hypothesis.score = float(result.scores[k])
            det.results.append(hypothesis)
            detections.detections.append(det)
        return detections


def import_ros() -> dict[str, Any]:
    """rclpy and the message classes; ImportError outside a ROS 2 environment."""
    import rclpy  # type: ignore[import-not-found]
    from rclpy.executors import ExternalShutdownException  # type: ignore[import-not-found]
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # type: ignore[import-not-found]
    from sensor_msgs.msg import Image  # type: ignore[import-not-found]
    from std_msgs.msg import String  # type: ignore[import-not-found]

    ros: dict[str, Any] = {
        "rclpy": rclpy, "ExternalShutdownException": ExternalShutdownException, "QoSProfile": QoSProfile,
        "HistoryPolicy": HistoryPolicy, "ReliabilityPolicy": ReliabilityPolicy, "Image": Image, "String": String,
        "Detection2DArray": None, "Detection2D": None, "ObjectHypothesisWithPose": None,
    }
    try:
        from vision_msgs.msg import (  # type: ignore[import-not-found]
            Detection2D,
            Detection2DArray,
            ObjectHypothesisWithPose,
        )
    except ImportError:  # `sudo apt install ros-$ROS_DISTRO-vision-msgs` for the typed messages
        return ros
    ros.update(Detection2DArray=Detection2DArray, Detection2D=Detection2D,
               ObjectHypothesisWithPose=ObjectHypothesisWithPose)
    return ros


def main(argv: list[str] | None = None) -> int:
    try:
        ros = import_ros()
    except ImportError as exc:
        print(f"{PROG}: error: ROS 2 is not available ({exc}); source its setup first, "
              "e.g. `source /opt/ros/humble/setup.bash`", file=sys.stderr)
        return 1
    rclpy = ros["rclpy"]
    rclpy.init(args=argv)  # None: sys.argv, whose --ros-args set parameters and remappings
    try:
        node = SegmentationNode(ros)
    except edgeseg.EdgesegError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        rclpy.shutdown()
        return 1
    try:
        rclpy.spin(node.node)
    except (KeyboardInterrupt, ros["ExternalShutdownException"]):
        pass  # Ctrl-C, or SIGTERM from ros2 launch: a normal way to stop
    finally:
        node.node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
