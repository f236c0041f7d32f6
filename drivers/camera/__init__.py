# Camera interface and the factory that picks the driver named in the config.
from __future__ import annotations

from drivers.camera.base import Camera, Frame
from drivers.camera.folder import FolderCamera


def open_camera(cfg, resolve) -> Camera:
    """cfg is a CameraConfig; resolve turns config paths into absolute ones."""
    if cfg.driver == "folder":
        return FolderCamera(resolve(cfg.folder))
    if cfg.driver == "v4l2":
        from drivers.camera.v4l2 import V4L2Camera  # cv2 video I/O only where a real camera is used

        return V4L2Camera(cfg.device, cfg.width, cfg.height, cfg.warmup_frames, cfg.jpeg_quality)
    raise ValueError(f"camera.driver {cfg.driver!r} unknown; one of folder, v4l2")


__all__ = ["Camera", "Frame", "FolderCamera", "open_camera"]
