"""Figures of the paper as PNG files: decoded-filter grids (Fig. 4), responses (Fig. 3), Figure 1.

Every figure is drawn on a stand-alone matplotlib ``Figure`` (Agg, no pyplot state) and written
whole or not at all. Filters are shown with a symmetric grey scale per filter: zero is mid-grey,
the filter's largest magnitude is black (negative) or white (positive).
"""

import numpy as np

from ._io import atomic_path
from ._validation import float_array
from .evaluation import rescale_per_image, threshold_filters

__all__ = ["save_filter_grid", "save_response_figure", "save_activation_matrix",
           "save_top_images", "filter_mosaic"]

#: Default threshold of the "thresholded" panels: a fraction of each filter's max |value|.
THRESHOLD = 0.5
DPI = 100
#: Filters shown as bars in Figure 3 for layers with 1x1 outputs.
N_BARS = 50


def _figure(width, height):
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), dpi=DPI)


def _save(fig, path):
    """Write a figure to ``path`` as PNG, atomically, cropped to what is drawn."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.15)
    return str(path)


def _finish(fig, title, fontsize=11):
    """Tight layout, then the suptitle just above the highest axes (fixed-aspect axes may sit
    well below the top of the space the layout gave them; saving crops the rest)."""
    fig.tight_layout()
    if title:
        top = 0.0
        for ax in fig.axes:
            ax.apply_aspect()
            top = max(top, ax.get_position().y1 + (0.3 if ax.get_title() else 0.05)
                      / fig.get_figheight())
        fig.suptitle(title, fontsize=fontsize, y=top + 0.08 / fig.get_figheight(),
                     va="bottom")


def _to_display(f):
    """One filter (C, h, w) as an (h, w) or (h, w, 3) image in [0, 1], zero at 0.5."""
    f = np.asarray(f, dtype=np.float64)
    if f.shape[0] == 3:
        img = np.moveaxis(f, 0, -1)
    else:
        img = f.mean(axis=0)
    m = np.abs(img).max()
    return 0.5 + img / (2.0 * m) if m > 0 else np.full_like(img, 0.5)


def _minmax(img):
    img = np.asarray(img, dtype=np.float64)
    lo, hi = img.min(), img.max()
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def filter_mosaic(tiles, ncols, gap=1):
    """Tile images into one array, ``ncols`` per row, with NaN in the gaps.

    Parameters
    ----------
    tiles : array_like
        (n, h, w) or (n, h, w, 3) images in [0, 1].
    ncols : int
        Tiles per row.
    gap : int, optional
        Pixels between tiles.

    Returns
    -------
    numpy.ndarray
        (rows * (h + gap) - gap, ncols * (w + gap) - gap[, 3]) float64.
    """
    tiles = np.asarray(tiles, dtype=np.float64)
    n, h, w = tiles.shape[:3]
    rest = tiles.shape[3:]
    nrows = -(-n // ncols)
    out = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap) + rest, np.nan)
    for i in range(n):
        r, c = divmod(i, ncols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[i]
    return out


def _show_mosaic(ax, mosaic, *, title=None, background="#d0e4f5"):
    import matplotlib
    cmap = matplotlib.colormaps["gray"].with_extremes(bad=background)
    if mosaic.ndim == 3:  # RGB: paint gaps with the background
        rgb = np.where(np.isnan(mosaic), np.array(matplotlib.colors.to_rgb(background)), mosaic)
        ax.imshow(np.clip(rgb, 0, 1), interpolation="nearest")
    else:
        ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, vmin=0, vmax=1,
                  interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)


def _label_tiles(ax, labels, ncols, h, w, gap=1):
    for i, text in enumerate(labels):
        r, c = divmod(i, ncols)
        ax.text(c * (w + gap) + 0.5, r * (h + gap) + 0.5, str(text), color="#c00000",
                fontsize=6, va="top", ha="left")


def save_filter_grid(filters, path, *, title=None, threshold=None, labels=None, ncols=None):
    """Save a grid of filters as a PNG file (Figure 4).

    Filters of three channels are shown in colour, others as their channel mean.

    Parameters
    ----------
    filters : array_like
        (F, C, h, w) filters, e.g. from :func:`fastdecode.decode`.
    path : str or os.PathLike
        The PNG file to write (whole or not at all).
    title : str, optional
        The figure's title.
    threshold : float, optional
        None for the raw filters only; a fraction in [0, 1] to add, beside the raw grid, the
        thresholded filters (values below that fraction of each filter's max ``|value|`` set to
        zero, see :func:`fastdecode.threshold_filters`).
    labels : sequence, optional
        One label per filter, e.g. the filter indices; drawn on tiles of at least 10x10 pixels.
    ncols : int, optional
        Filters per row (default: about a square grid).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        When ``labels`` does not hold one label per filter.

    Examples
    --------
    >>> import os, tempfile
    >>> import fastdecode as fd
    >>> from fastdecode import models
    >>> from fastdecode.plotting import save_filter_grid
    >>> net = models.load("lenet-mnist")
    >>> D = fd.decode(net, "layer3")
    >>> D.shape
    (50, 1, 14, 14)
    >>> path = os.path.join(tempfile.mkdtemp(), "layer3.png")
    >>> save_filter_grid(D, path, threshold=0.5, title="lenet-mnist, layer3") == path
    True
    """
    filters = float_array("filters", filters, ndim=4)
    F, C, h, w = filters.shape
    if labels is not None and len(labels) != F:
        raise ValueError("labels has %d entries for %d filters" % (len(labels), F))
    stacked = threshold is not None and F <= 12  # a few filters: one row per panel
    if ncols is None:
        ncols = F if F <= 12 else int(np.ceil(np.sqrt(F * h / w)))
    ncols = max(1, min(F, int(ncols)))
    panels = [("decoded filters", filters)]
    if threshold is not None:
        panels.append(("thresholded at %g of max |value|" % threshold,
                       threshold_filters(filters, threshold)))
    mosaics = [filter_mosaic([_to_display(f) for f in p], ncols) for _, p in panels]
    mh, mw = mosaics[0].shape[:2]
    # at least one screen pixel per filter pixel, within 3.5 to 13 inches per panel
    panel_w = min(13.0, max(3.5, min(6.5, 0.45 * ncols * max(1.0, w / 10.0)), 1.1 * mw / DPI))
    panel_h = panel_w * mh / mw
    if stacked:  # axes placed by hand, in inches: suptitle, then (panel title, panel) rows
        top = 0.1 + (0.22 * (str(title).count("\n") + 1) if title else 0.0)
        row = 0.35 + panel_h
        W, H = panel_w + 0.4, top + row * len(panels) + 0.1
        fig = _figure(W, H)
        axes = [fig.add_axes((0.2 / W, (H - top - (i + 1) * row) / H, panel_w / W, panel_h / H))
                for i in range(len(panels))]
        if title:
            fig.suptitle(title, fontsize=11, y=1 - 0.1 / H, va="top")
    else:
        fig = _figure(panel_w * len(panels) + 0.4, panel_h + 0.9)
        axes = [fig.add_subplot(1, len(panels), i + 1) for i in range(len(panels))]
    for ax, (name, _), mosaic in zip(axes, panels, mosaics):
        _show_mosaic(ax, mosaic, title=name if len(panels) > 1 else None)
        if labels is not None and min(h, w) >= 10:  # no room on smaller tiles
            _label_tiles(ax, labels, ncols, h, w)
    if not stacked:
        _finish(fig, title)
    return _save(fig, path)


def save_response_figure(image, layers, path, *, title=None, n_maps=8):
    """Figure 3: a network's responses next to the decoded filters' correlations for one image.

    Each R and D is rescaled to [0, 1] by its own minimum and maximum over the layer (Eq. 3's
    rescaling). Spatial layers show the first ``n_maps`` maps of R and of D; layers with 1x1
    outputs show R and D per filter as bars. The last column plots every rescaled value of D
    against R, titled with the image's Eq. 3 error.

    Parameters
    ----------
    image : array_like
        (C, H, W) or (H, W), as shown (e.g. the raw pixels).
    layers : sequence of tuple
        ``(name, R (K, Ho, Wo), D (K, Ho, Wo))`` per layer, one row each.
    path : str or os.PathLike
        The PNG file to write.
    title : str, optional
        The figure's title.
    n_maps : int, optional
        Maps shown per spatial layer.

    Returns
    -------
    str
        ``path``.
    """
    rows = len(layers)
    fig = _figure(12.0, 2.4 * rows + 0.6)
    gs = fig.add_gridspec(rows, 4, width_ratios=[0.8, 3, 3, 1.6])
    img = np.asarray(image, dtype=np.float64)
    img = img if img.ndim == 2 else (img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1))
    ax = fig.add_subplot(gs[0, 0])
    ax.imshow(_minmax(img), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title("input", fontsize=9)
    ax.axis("off")
    for r, (name, R, D) in enumerate(layers):
        Rn = rescale_per_image(np.asarray(R)[None])[0][0]  # Eq. 3's rescaling, one image
        Dn = rescale_per_image(np.asarray(D)[None])[0][0]
        if R.shape[1] * R.shape[2] > 1:
            k = min(n_maps, R.shape[0])
            for c, (label, maps) in enumerate((("network response R", Rn), ("decoded D", Dn))):
                _show_mosaic(fig.add_subplot(gs[r, 1 + c]), filter_mosaic(maps[:k], -(-k // 2)),
                             title="%s: %s, maps 0-%d of %d" % (name, label, k - 1, R.shape[0]))
        else:
            _response_bars(fig.add_subplot(gs[r, 1:3]), name, Rn, Dn)
        _response_scatter(fig.add_subplot(gs[r, 3]), Rn, Dn)
    _finish(fig, title)
    return _save(fig, path)


def _response_bars(ax, name, Rn, Dn):
    """Figure 3 for a layer with 1x1 outputs: R and D of the first filters as bars."""
    K = Rn.shape[0]
    shown = min(K, N_BARS)
    idx = np.arange(shown)
    ax.bar(idx - 0.2, Rn[:shown, 0, 0], width=0.4, label="network response R")
    ax.bar(idx + 0.2, Dn[:shown, 0, 0], width=0.4, label="decoded D")
    ax.set_xticks(idx[::max(1, shown // 25)])
    ax.set_xlim(-0.6, shown - 0.4)
    ax.set_ylim(0, 1.25)
    ax.set_xlabel("filter", fontsize=8)
    ax.set_ylabel("normalised", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    ax.set_title("%s: %s%d filters, 1x1 outputs" % (
        name, "filters 0-%d of " % (shown - 1) if shown < K else "", K), fontsize=10)


def _response_scatter(ax, Rn, Dn):
    """Every normalised value of D against R, titled with the image's Eq. 3 error."""
    err = float(np.mean((Rn - Dn) ** 2))  # Eq. 3 for this image
    ax.plot(Rn.ravel(), Dn.ravel(), ".", ms=2, alpha=0.5)
    ax.plot([0, 1], [0, 1], "k-", lw=0.6)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)
    ax.set_xlabel("R", fontsize=8)
    ax.set_ylabel("D", fontsize=8)
    ax.set_title("Eq. 3 error %.4f" % err, fontsize=9)


def _image_tiles(images):
    """Images (n, H, W) or (n, C, H, W) as display tiles in [0, 1], each min-max scaled."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4:
        images = images[:, 0] if images.shape[1] == 1 else np.moveaxis(images, 1, -1)
    return np.stack([_minmax(i) for i in images])


def _matrix_block(fig, ax, matrix, images, decoded, thresholded, names, heading):
    """One block of Figure 1 in one axes: the heatmap in cells [0, K) x [0, K), each column's
    image above it, each row's decoded filter (raw, thresholded) to its left."""
    K = matrix.shape[0]
    im = ax.imshow(matrix, cmap="viridis", interpolation="nearest",
                   extent=(-0.5, K - 0.5, K - 0.5, -0.5))
    tiles = _image_tiles(images)
    for j in range(K):
        ax.imshow(tiles[j], cmap="gray", vmin=0, vmax=1, interpolation="nearest",
                  extent=(j - 0.45, j + 0.45, -0.65, -1.55))
    for c, flt in enumerate((decoded, thresholded)):
        x0 = -1.6 - 1.0 * (1 - c)
        for i in range(K):
            ax.imshow(_to_display(flt[i]), cmap="gray", vmin=0, vmax=1, interpolation="nearest",
                      extent=(x0 - 0.45, x0 + 0.45, i + 0.45, i - 0.45))
    ax.set_xlim(-3.15, K - 0.5)
    ax.set_ylim(K - 0.5, -1.6)
    ax.set_aspect("equal")
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_xticks(range(K))
    ax.set_xticklabels(names, fontsize=7, rotation=90)
    ax.set_yticks(range(K))
    ax.set_yticklabels(names, fontsize=7)
    ax.yaxis.tick_right()
    ax.tick_params(length=0)
    ax.text(-2.6, -0.7, "raw", ha="center", va="bottom", fontsize=7)
    ax.text(-1.6, -0.7, "thr.", ha="center", va="bottom", fontsize=7)
    ax.set_xlabel("image maximising filter j (above); rows: filter i", fontsize=8)
    ax.set_title(heading, fontsize=10)
    cbar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.04 + 0.012 * max(map(len, names)))
    cbar.ax.tick_params(labelsize=6)


def save_activation_matrix(matrix, decoded, path, *, class_names=None, title=None,
                           threshold=THRESHOLD):
    """Figure 1: maximum activations of a layer's filters over a dataset.

    Parameters
    ----------
    matrix : dict
        ``{heading: (M (K, K), images (K, ...))}``, one block each, with ``M[i, j]`` filter i's
        score on the image maximising filter j (see :func:`fastdecode.max_activation_matrix`)
        and the images as shown.
    decoded : array_like
        The layer's decoded filters (K, C, h, w), drawn raw and thresholded beside the rows.
    path : str or os.PathLike
        The PNG file to write.
    class_names : sequence of str, optional
        A name per filter (default: its index).
    title : str, optional
        The figure's title.
    threshold : float, optional
        The fraction of :func:`fastdecode.threshold_filters` for the thresholded filters.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        When the shapes of the blocks, the filters and the names disagree.
    """
    decoded = float_array("decoded", decoded, ndim=4)
    K = decoded.shape[0]
    names = [str(n) for n in (class_names if class_names is not None else range(K))]
    if len(names) != K:
        raise ValueError("class_names has %d entries for %d filters" % (len(names), K))
    thresholded = threshold_filters(decoded, threshold)
    blocks = list(matrix.items())
    fig = _figure(6.0 * len(blocks), 5.6)
    for b, (heading, (M, imgs)) in enumerate(blocks):
        M = np.asarray(M, dtype=np.float64)
        if M.shape != (K, K) or len(imgs) != K:
            raise ValueError("matrix %r must be (%d, %d) with %d images, got %s and %d"
                             % (heading, K, K, K, M.shape, len(imgs)))
        _matrix_block(fig, fig.add_subplot(1, len(blocks), b + 1), M, imgs, decoded, thresholded,
                      names, heading)
    _finish(fig, title)
    return _save(fig, path)


def save_top_images(images, network_top, decoded_top, decoded, path, *, filters=None,
                    labels=None, title=None):
    """Figure 4c/d: each filter's decoded filter and its top images, by the network and decoded.

    One row per filter: the decoded filter, its k top images by the network, its k top images by
    the decoded filter; images in both lists are framed.

    Parameters
    ----------
    images : array_like
        (N, H, W) or (N, C, H, W) images as shown (e.g. the raw pixels).
    network_top, decoded_top : array_like
        (K, k) image indices, as :class:`fastdecode.evaluation.TopImages` holds them.
    decoded : array_like
        The layer's decoded filters (K, C, h, w).
    path : str or os.PathLike
        The PNG file to write.
    filters : sequence of int, optional
        The filters to show (default: all).
    labels : sequence of str, optional
        A name per filter (default: its index).
    title : str, optional
        The figure's title.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        When the two lists differ in shape, or ``labels`` does not name every filter.
    """
    network_top = np.asarray(network_top)
    decoded_top = np.asarray(decoded_top)
    K, k = network_top.shape
    if decoded_top.shape != (K, k):
        raise ValueError("network_top %s and decoded_top %s differ in shape"
                         % (network_top.shape, decoded_top.shape))
    filters = np.arange(K) if filters is None else np.asarray(filters)
    labels = [str(f) for f in range(K)] if labels is None else [str(l) for l in labels]
    if len(labels) != K:
        raise ValueError("labels has %d entries for %d filters" % (len(labels), K))
    decoded = float_array("decoded", decoded, ndim=4)
    n = len(filters)
    height = 0.6 * n + 1.1
    width = 1.8 + 0.55 * (2 * k + 1)
    fig = _figure(width, height)
    gs = fig.add_gridspec(n, 3, width_ratios=[1, k, k], wspace=0.08, hspace=0.08,
                          top=1 - 0.85 / height, bottom=0.15 / height, left=1.1 / width,
                          right=0.98)
    for r, f in enumerate(filters):
        ax = fig.add_subplot(gs[r, 0])
        _show_mosaic(ax, _to_display(decoded[f]))
        ax.set_ylabel(labels[f], fontsize=7, rotation=0, labelpad=4, ha="right", va="center")
        for c, (top, name) in enumerate(((network_top, "top %d by the network" % k),
                                         (decoded_top, "top %d by the decoded filter" % k))):
            ax = fig.add_subplot(gs[r, 1 + c])
            both = np.isin(top[f], network_top[f]) & np.isin(top[f], decoded_top[f])
            _show_mosaic(ax, filter_mosaic(_image_tiles(np.asarray(images)[top[f]]), k))
            h, w = np.asarray(images).shape[-2:]
            for j, shared in enumerate(both):
                if shared:  # frame the images both lists hold
                    ax.add_patch(_rect(j * (w + 1) + 0.5, 0.5, w - 2, h - 2))
            if r == 0:
                ax.set_title(name, fontsize=9)
    fig.suptitle((title + "\n" if title else "") + "green frame: among the top %d of both" % k,
                 fontsize=10)
    return _save(fig, path)


def _rect(x, y, w, h):
    from matplotlib.patches import Rectangle
    return Rectangle((x, y), w, h, fill=False, edgecolor="#00c040", linewidth=1.5)
