# Physically based synthetic photographs of colloidal-gold cassettes on the station tray, with known truth.
from station.lab.photogen.render import render, render_jpeg
from station.lab.photogen.scene import CASSETTE_FAULTS, SCENE_FAULTS, random_scene

__all__ = ["render", "render_jpeg", "random_scene", "CASSETTE_FAULTS", "SCENE_FAULTS"]
