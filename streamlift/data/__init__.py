"""Real mocap in, 2D camera views out: loading, the studio camera rig, and the views file format."""

from streamlift.data.cameras import Camera, project, studio_rig
from streamlift.data.mocap import Mocap, load_mocap, resample
from streamlift.data.views import View, load_views, make_views, save_views

__all__ = [
    "Camera", "project", "studio_rig", "Mocap", "load_mocap", "resample",
    "View", "load_views", "make_views", "save_views",
]
