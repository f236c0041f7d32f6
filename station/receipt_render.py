# Receipt lines → one 1-bit image, drawn with the bundled CJK font: printers get pixels, never GB18030 text.
"""Pure apart from reading the bundled font. Why an image: python-escpos sends text as raw GB18030 in the
printer's own font, which garbles full-width and maths symbols (：≤) and cannot print rare name characters."""
from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from station.errors import StationError
from station.receipt import Line, Receipt, footer

FONT = "fonts/receipt-cjk.ttf"
SIZES = {"title": 30, "body": 22, "big": 30, "small": 18}  # pixels at 384 dots; scaled for 80 mm paper
MARGIN = 8
# Closing punctuation never starts a line (hangs into the margin instead), as Chinese typesetting requires.
CLOSERS = set("，。、；：！？）」』】》〉”’,.;:!?)]%")


@cache
def font(size: int) -> Any:
    from PIL import ImageFont

    ref = resources.files("station").joinpath(FONT)
    try:
        with resources.as_file(ref) as path:
            return ImageFont.truetype(str(path), size)
    except OSError as exc:
        raise StationError(f"receipt font {ref} cannot be loaded ({exc}); the station package is incomplete: "
                           "reinstall it, or run scripts/subset-font in a checkout") from None


def wrap(text: str, face: Any, width: int) -> list[str]:
    """Greedy wrap by measured width: Chinese has no spaces, so any character may end a line; a Latin word
    moves whole to the next line, and one wider than the paper is cut."""
    out, line = [], ""
    for word in _tokens(text):
        if not line or word in CLOSERS or face.getlength(line + word) <= width:
            line += word
        else:
            out.append(line.rstrip())
            line = word.lstrip()
        while len(line) > 1 and face.getlength(line) > width and line[-1] not in CLOSERS:
            cut = max([i for i in range(1, len(line)) if face.getlength(line[:i]) <= width] or [1])
            out.append(line[:cut])
            line = line[cut:]
    out.append(line)
    return out


def _tokens(text: str) -> list[str]:
    """Runs of ASCII letters/digits stay together; every other character is a token by itself."""
    tokens: list[str] = []
    for ch in text:
        if tokens and ch.isascii() and ch.isalnum() and tokens[-1][-1:].isascii() and tokens[-1][-1:].isalnum():
            tokens[-1] += ch
        else:
            tokens.append(ch)
    return tokens


def qr_modules(text: str) -> list[list[bool]]:
    """The QR's modules, quiet zone included (4 modules, as readers expect)."""
    import qrcode

    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    qr.add_data(text)
    qr.make(fit=True)
    return qr.get_matrix()


def render_lines(lines: tuple[Line, ...] | list[Line], width: int) -> Any:
    """Lines as a white image with black text, width dots wide."""
    from PIL import Image, ImageDraw

    scale = width / 384
    rows: list[tuple[str, Any, str]] = []
    for ln in lines:
        face = font(round(SIZES.get(ln.style, SIZES["body"]) * scale))
        if ln.style == "rule":
            rows.append(("", face, "rule"))
            continue
        for part in wrap(ln.text, face, width - 2 * MARGIN):
            rows.append((part, face, ln.style))
    heights = [_row_height(face, style) for _, face, style in rows]
    img = Image.new("L", (width, sum(heights) + MARGIN), 255)
    draw = ImageDraw.Draw(img)
    y = MARGIN // 2
    for (text, face, style), h in zip(rows, heights, strict=True):
        if style == "rule":
            for x in range(MARGIN, width - MARGIN, 12):
                draw.line((x, y + h // 2, x + 6, y + h // 2), fill=0, width=2)
        else:
            x = (width - face.getlength(text)) / 2 if style == "title" else MARGIN
            draw.text((x, y), text, font=face, fill=0)
        y += h
    return img


def _row_height(face: Any, style: str) -> int:
    return face.size // 2 + 4 if style == "rule" else round(face.size * 1.35)


def render_qr(text: str, width: int) -> Any:
    """The QR centred, modules drawn as whole dots so no module is smeared by scaling."""
    from PIL import Image

    m = qr_modules(text)
    n = len(m)
    box = max(2, int(width * 0.62) // n)
    img = Image.new("L", (width, n * box), 255)
    left = (width - n * box) // 2
    px = img.load()
    for r, row in enumerate(m):
        for c, dark in enumerate(row):
            if dark:
                for dy in range(box):
                    for dx in range(box):
                        px[left + c * box + dx, r * box + dy] = 0
    return img


def render(receipt: Receipt, width: int) -> Any:
    """The whole slip, as a 1-bit PIL image ("1": 0 = black dot)."""
    from PIL import Image

    parts = [render_lines(receipt.lines, width), render_qr(receipt.qr, width),
             render_lines((Line(receipt.qr, "small"), footer()), width)]
    if receipt.certificate:
        parts.append(render_lines(receipt.certificate, width))
    img = Image.new("L", (width, sum(p.height for p in parts)), 255)
    y = 0
    for p in parts:
        img.paste(p, (0, y))
        y += p.height
    return img.point(lambda v: 0 if v < 128 else 255).convert("1", dither=Image.Dither.NONE)
