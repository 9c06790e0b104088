"""streamlift: real-time unsupervised 3D human pose lifting, served over ZeroMQ."""

__version__ = "0.1.0"
