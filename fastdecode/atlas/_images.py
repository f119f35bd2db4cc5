"""Pictures of the atlas: filters and images as 8-bit pixels, packed into sprite sheets.

A layer's tiles are cells of a few large PNG files (sheets) rather than one file each; the pages
show a cell with the sheet as a CSS background at the cell's offset.
"""

import os

import numpy as np

#: Largest side, in pixels, of one sheet (browsers decode far larger images, but a few
#: moderate sheets load and scale more smoothly than one huge one).
SHEET_SIDE = 4096

#: Colour of the pixels of a patch that lie in the network's zero padding, outside the image.
PADDING_RGB = (150, 170, 200)


def filter_pixels(f, peak=None):
    """One filter (C, h, w) as uint8 pixels: (h, w, 3) for C = 3, else (h, w) grey (the mean of
    the channels). Zero is mid-grey; +-``peak`` (default the filter's own largest magnitude over
    its channels and pixels) is white and black."""
    f = np.asarray(f, dtype=np.float64)
    img = np.moveaxis(f, 0, -1) if f.shape[0] == 3 else f.mean(axis=0)
    m = np.abs(img).max() if peak is None else float(peak)
    v = 0.5 + img / (2.0 * m) if m > 0 else np.full_like(img, 0.5)
    return np.clip(np.rint(v * 255.0), 0, 255).astype(np.uint8)


def _area_taps(n, m):
    """(lo (m,), weights (T, m)): output i of an area average of n samples down to m is
    sum over t of weights[t, i] * sample[lo[i] + t] (a sample partly inside a bin counts by its
    part)."""
    t = np.arange(m + 1) * (n / m)
    lo = np.floor(t[:-1]).astype(np.int64)
    T = int(np.ceil(n / m)) + 1
    w = np.zeros((T, m))
    for k in range(T):
        j = lo + k
        w[k] = np.clip(np.minimum(t[1:], j + 1) - np.maximum(t[:-1], j), 0, None) * (m / n)
    return lo, w


def _area_axis(a, m, axis):
    """``a`` shrunk to m samples along ``axis`` (of n >= m) by area averaging."""
    n = a.shape[axis]
    if m == n:
        return a
    lo, w = _area_taps(n, m)
    shape = [1] * a.ndim
    shape[axis] = m
    out = None
    for k in range(len(w)):
        if not w[k].any():
            continue
        part = np.take(a, np.minimum(lo + k, n - 1), axis=axis) * w[k].astype(a.dtype).reshape(
            shape)
        out = part if out is None else out + part
    return out


def filter_cells(filters, cell, peaks=None):
    """Filters (k, C, h, w) as uint8 cells of size ``cell`` (ch, cw): (k, ch, cw, 3) for
    C = 3, else (k, ch, cw) grey (the mean of the channels), shrunk by area averaging.

    Zero is mid-grey; +-peak is white and black, peak per filter (default each filter's own
    largest magnitude over the pixels shown, before shrinking). Returns (cells, peaks)."""
    f = np.asarray(filters, dtype=np.float32)
    img = f if f.shape[1] == 3 else f.mean(axis=1, keepdims=True)
    if peaks is None:
        peaks = np.abs(img).reshape(len(img), -1).max(axis=1).astype(np.float64)
    h, w = img.shape[2:]
    small = _area_axis(_area_axis(img, cell[0], 2), cell[1], 3)
    m = np.asarray(peaks, dtype=np.float64)[:, None, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(m > 0, 0.5 + small / (2.0 * np.where(m > 0, m, 1.0)), 0.5)
    px = np.clip(np.rint(v * 255.0), 0, 255).astype(np.uint8)
    px = np.moveaxis(px, 1, -1) if px.shape[1] == 3 else px[:, 0]
    return px, peaks


def to_uint8_images(images):
    """Display images as uint8 (N, H, W) or (N, H, W, 3).

    Accepts uint8 pixels, or floats in 0..255 (or 0..1 when no value exceeds 1), shaped
    (N, H, W), (N, 1, H, W), (N, 3, H, W) or (N, H, W, 3)."""
    x = np.asarray(images)
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = np.moveaxis(x, 1, -1)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] != 3):
        raise ValueError("display images must be (N, H, W), (N, C, H, W) or (N, H, W, 3) with "
                         "1 or 3 channels, got shape %s" % (np.shape(images),))
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind not in "biuf":
        raise TypeError("display images must be numeric, got dtype %s" % x.dtype)
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError("display images contain non-finite values")
    if x.size and x.min() >= 0 and x.max() <= 1:
        x = x * 255.0
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def rescaled_for_display(images):
    """Preprocessed network input (N, C, H, W) as uint8 pictures, each image stretched by its own
    minimum and maximum (used when no display images are given)."""
    x = np.asarray(images, dtype=np.float64)
    if x.shape[1] not in (1, 3):
        x = x.mean(axis=1, keepdims=True)
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    rng = x.max(axis=(1, 2, 3), keepdims=True) - lo
    v = np.where(rng > 0, (x - lo) / np.where(rng > 0, rng, 1), 0.5)
    return to_uint8_images(np.rint(v * 255).astype(np.uint8))


def crop(image, top, left, h, w):
    """The (h, w) window of a uint8 image (H, W) or (H, W, 3) at (top, left), which may reach
    beyond the image (the network's padding): those pixels are painted PADDING_RGB. Returns RGB
    when the window leaves the image, else the image's own kind."""
    H, W = image.shape[:2]
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + h, H), min(left + w, W)
    inside = image[t0:t1, l0:l1] if t1 > t0 and l1 > l0 else None
    if top >= 0 and left >= 0 and top + h <= H and left + w <= W:
        return image[top:top + h, left:left + w]
    out = np.empty((h, w, 3), np.uint8)
    out[:] = PADDING_RGB
    if inside is not None:
        part = inside if inside.ndim == 3 else np.repeat(inside[..., None], 3, axis=-1)
        out[t0 - top:t1 - top, l0 - left:l1 - left] = part
    return out


def _resized(pixels, size):
    """uint8 pixels (h, w[, 3]) resized to ``size`` (h, w) with Pillow (area-averaging when
    shrinking)."""
    from PIL import Image
    if pixels.shape[:2] == tuple(size):
        return pixels
    img = Image.fromarray(pixels)
    return np.asarray(img.resize((size[1], size[0]), Image.Resampling.BOX
                                 if size[0] < pixels.shape[0] else Image.Resampling.NEAREST))


def cell_size(shape, largest):
    """Cell (h, w) for pictures of ``shape`` (h, w): as they are when both sides are at most
    ``largest``, else shrunk to fit, aspect kept."""
    h, w = shape
    if max(h, w) <= largest:
        return (h, w)
    s = largest / max(h, w)
    return (max(1, int(round(h * s))), max(1, int(round(w * s))))


class Sheets:
    """Same-sized cells of uint8 pictures written as one or a few PNG sheets.

    ``add`` returns a cell's index; cells are laid out row by row, ``cols`` to a row and
    ``per_sheet`` to a sheet. ``spec`` describes the layout for the pages' script.
    jpeg: write JPEG (quality 90, no chroma subsampling) rather than PNG, for sheets of colour
    photos and of shrunk colour filters, which PNG stores many times larger and slower.
    """

    def __init__(self, stem, cell, *, rgb=False, jpeg=False):
        self.stem = stem
        self.cell = (int(cell[0]), int(cell[1]))
        self.rgb = rgb or jpeg
        self.jpeg = jpeg
        self.cells = []
        h, w = self.cell
        self.cols = max(1, SHEET_SIDE // w)
        self.per_sheet = self.cols * max(1, SHEET_SIDE // h)

    def __len__(self):
        return len(self.cells)

    def add(self, pixels):
        pixels = np.asarray(pixels, dtype=np.uint8)
        if pixels.shape[:2] != self.cell:
            pixels = _resized(pixels, self.cell)
        if pixels.ndim == 3 and not self.rgb:  # an RGB cell turns the whole sheet RGB
            self.rgb = True
        self.cells.append(pixels)
        return len(self.cells) - 1

    def files(self):
        n = max(1, -(-len(self.cells) // self.per_sheet))
        return ["%s-%d.%s" % (self.stem, i, "jpg" if self.jpeg else "png") for i in range(n)]

    def sheet_shapes(self):
        h, w = self.cell
        shapes = []
        for start in range(0, max(1, len(self.cells)), self.per_sheet):
            n = max(1, min(self.per_sheet, len(self.cells) - start))
            cols = min(self.cols, n)
            shapes.append(((-(-n // self.cols)) * h, cols * w))
        return shapes

    def position(self, index):
        """(file, x, y) in pixels of cell ``index`` on its sheet."""
        sheet, i = divmod(index, self.per_sheet)
        r, c = divmod(i, self.cols)
        return self.files()[sheet], c * self.cell[1], r * self.cell[0]

    def spec(self, prefix=""):
        """The layout as plain data: files (with ``prefix``), their sizes [w, h], cell [w, h],
        cols and per_sheet."""
        return {"files": [prefix + f for f in self.files()],
                "sizes": [[s[1], s[0]] for s in self.sheet_shapes()],
                "cell": [self.cell[1], self.cell[0]], "cols": self.cols,
                "per_sheet": self.per_sheet}

    def write(self, directory):
        """Write the sheets into ``directory``; returns the file names."""
        from PIL import Image
        h, w = self.cell
        names = self.files()
        for k, (name, (H, W)) in enumerate(zip(names, self.sheet_shapes())):
            sheet = np.zeros((H, W, 3) if self.rgb else (H, W), np.uint8)
            sheet[:] = 255
            cells = self.cells[k * self.per_sheet:(k + 1) * self.per_sheet]
            for i, px in enumerate(cells):
                if self.rgb and px.ndim == 2:
                    px = np.repeat(px[..., None], 3, axis=-1)
                r, c = divmod(i, self.cols)
                sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = px
            if self.jpeg:
                Image.fromarray(sheet).save(os.path.join(directory, name), format="JPEG",
                                            quality=90, subsampling=0)
            else:
                Image.fromarray(sheet).save(os.path.join(directory, name), format="PNG",
                                            compress_level=6)
        return names
