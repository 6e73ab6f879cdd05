"""Draw the app icon (a pink osu!-style circle with an approach ring and a waveform) with PIL.

    python assets/make_icon.py      # writes assets/icon.png, assets/icon.ico and mapperator_app/static/icon.png
"""
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent


def draw(size: int = 512) -> Image.Image:
    s = size / 512
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(image)
    d.ellipse([16 * s, 16 * s, 496 * s, 496 * s], fill=(36, 30, 52, 255))
    d.ellipse([40 * s, 40 * s, 472 * s, 472 * s], outline=(255, 255, 255, 200), width=int(14 * s))
    d.ellipse([96 * s, 96 * s, 416 * s, 416 * s], fill=(255, 102, 170, 255), outline=(255, 255, 255, 255),
              width=int(18 * s))
    bars = [0.35, 0.6, 0.9, 0.55, 1.0, 0.7, 0.4]
    width = 22 * s
    gap = 12 * s
    total = len(bars) * width + (len(bars) - 1) * gap
    x = 256 * s - total / 2
    for h in bars:
        half = h * 110 * s
        d.rounded_rectangle([x, 256 * s - half, x + width, 256 * s + half], radius=width / 2, fill=(255, 255, 255, 255))
        x += width + gap
    return image


def main() -> None:
    big = draw(512)
    big.save(HERE / "icon.png")
    big.resize((256, 256), Image.LANCZOS).save(HERE.parent / "mapperator_app" / "static" / "icon.png")
    big.save(HERE / "icon.ico", sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)])


if __name__ == "__main__":
    main()
