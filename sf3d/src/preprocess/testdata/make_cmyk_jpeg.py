"""Generates cmyk.jpg, the CMYK JPEG fixture of decode_tests.rs (Pillow writes Adobe-style CMYK JPEGs).

16×16 pixels: left half pure cyan (C=255), right half pure yellow (Y=255), no black. Run with Pillow 13.0.0:
    python3 make_cmyk_jpeg.py
"""

from PIL import Image

img = Image.new("CMYK", (16, 16))
for y in range(16):
    for x in range(16):
        img.putpixel((x, y), (255, 0, 0, 0) if x < 8 else (0, 0, 255, 0))
img.save("cmyk.jpg", quality=95)
