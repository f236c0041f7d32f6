# Barcode/QR scanners: serial (virtual COM), hid (keyboard wedge) and a pty twin; see base.py.
