"""The paper's reference values and the text that sets results beside them.

Rafegas & Vanrell report the Eq. 3 reconstruction error of MatConvNet's MNIST LeNet (nearest
unpooling) in their Table 1; :func:`paper_reference` looks a layer's value up and
:func:`format_table1` prints what :func:`fastdecode.table1` computed next to it.
"""

from ._validation import printable

__all__ = ["PAPER_TABLE1", "paper_reference", "format_table1"]

#: Table 1 of the paper (nearest unpooling, MNIST LeNet): Eq. 3 error at L3, L5 and L7.
PAPER_TABLE1 = (("L3", 0.002), ("L5", 0.012), ("L7", 0.078))


def _paper_row(net, layer):
    """The paper's (label, value) row for ``layer`` of a LeNet-shaped net, else None."""
    convs = net.conv_layers
    if len(convs) != len(PAPER_TABLE1) + 1:
        return None
    pos = convs.index(net.layers[net.conv_index(layer)].name)
    return PAPER_TABLE1[pos - 1] if pos >= 1 else None


def paper_reference(net, layer):
    """The paper's Table 1 value for a conv layer of a LeNet-shaped network.

    The paper's LeNet has four conv layers; its Table 1 gives the error of the second, third and
    fourth (L3, L5 and L7). Any network with four conv layers is matched to it by position.

    Parameters
    ----------
    net : fastdecode.Network
        The network evaluated.
    layer : str or int
        A conv layer's name or index.

    Returns
    -------
    float or None
        The paper's Eq. 3 error for that layer (nearest unpooling), or None for the first conv
        layer and for networks with other than four conv layers.

    Raises
    ------
    KeyError, IndexError or ValueError
        When ``layer`` names no conv layer of ``net``.
    """
    row = _paper_row(net, layer)
    return None if row is None else row[1]


def format_table1(net, results, *, title=None):
    """Table 1 as text: one row per layer, mean +- std per method, and the paper's value.

    Parameters
    ----------
    net : fastdecode.Network
        The network the results were computed on (the paper's values are matched to its conv
        layers by :func:`paper_reference`).
    results : dict
        What :func:`fastdecode.table1` returns: ``{(layer name, method): ReconstructionError}``.
    title : str, optional
        The first line; by default it names Eq. 3 and the number of images.

    Returns
    -------
    str
        The title, a header line and one line per layer, without a final newline.

    Raises
    ------
    ValueError
        When ``results`` is empty.
    """
    if not results:
        raise ValueError("results is empty: pass what table1 returns")
    layers = list(dict.fromkeys(k[0] for k in results))
    methods = list(dict.fromkeys(k[1] for k in results))
    n = len(next(iter(results.values())).per_image)
    lines = [title or "Table 1: Eq. 3 reconstruction error, mean +- std over %d images" % n]
    lines.append("%-10s %-10s" % ("layer", "paper") + "".join(" %19s" % m for m in methods))
    for layer in layers:
        row = _paper_row(net, layer)
        paper = "%s %.3f" % row if row is not None else "-"
        line = "%-10s %-10s" % (printable(layer), paper)
        for m in methods:
            r = results[(layer, m)]
            line += " %19s" % ("%.4f +- %.4f" % (r.mean, r.std))
        lines.append(line)
    return "\n".join(lines)
