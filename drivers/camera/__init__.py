# Cameras: the Camera contract (base.py), a USB camera (v4l2.py) and its photograph-folder twin (folder.py).
