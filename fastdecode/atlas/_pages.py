"""The atlas' HTML: an index page and a page per decoded layer.

Pages are plain HTML with the package's own stylesheet and script (copied beside them); the data
of the detail view is embedded in each layer page as JSON, so they open from ``file://``.
"""

import html
import json
import math
import re

#: Display sizes in CSS pixels: a tile's pictures, a top image, the large filter of the detail.
TILE_PX = 72
TOP_PX = 84
LARGE_PX = 224


def esc(text):
    return html.escape(str(text), quote=True)


def page_name(index, name):
    """File name of a layer's page: its index and its name made safe."""
    return "layer-%02d-%s.html" % (index, re.sub(r"[^A-Za-z0-9_-]", "_", name)[:40])


def scale_for(cell, target):
    """CSS scale of a cell (w, h) shown about ``target`` pixels on its longer side: a whole
    number when enlarging (crisp pixels), a fraction when shrinking."""
    side = max(cell)
    return float(max(1, math.floor(target / side))) if side <= target else target / side


def fmt_error(e):
    return "%.2e" % e if e < 1e-3 else "%.4f" % e


def _px(v):
    return ("%d" % v) if float(v).is_integer() else ("%.2f" % v)


def sheet_css(selector, spec, scale):
    """CSS rules giving ``selector`` elements with class s<i> the i-th sheet as background."""
    rules = ["%s{width:%spx;height:%spx}" % (selector, _px(spec["cell"][0] * scale),
                                             _px(spec["cell"][1] * scale))]
    for i, (f, (w, h)) in enumerate(zip(spec["files"], spec["sizes"])):
        rules.append("%s.s%d{background-image:url('%s');background-size:%spx %spx}"
                     % (selector, i, esc(f), _px(w * scale), _px(h * scale)))
    return "\n".join(rules)


def cell_attrs(spec, index, scale):
    """class and style attributes placing cell ``index`` of a sheet."""
    sheet, i = divmod(index, spec["per_sheet"])
    r, c = divmod(i, spec["cols"])
    x, y = c * spec["cell"][0] * scale, r * spec["cell"][1] * scale
    return 'class="pic s%d" style="background-position:-%spx -%spx"' % (sheet, _px(x), _px(y))


def _head(title, extra_css=""):
    return """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="fastdecode atlas">
<title>%s</title>
<link rel="icon" type="image/png" href="assets/icon.png">
<link rel="stylesheet" href="assets/atlas.css">
%s</head>
""" % (esc(title), ("<style>\n%s\n</style>\n" % extra_css) if extra_css else "")


def _json_script(element_id, data):
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return '<script type="application/json" id="%s">%s</script>\n' % (element_id, text)


def _nav(ctx, current=None):
    links = ['<a href="index.html"%s>overview</a>' % (' aria-current="page"'
                                                      if current is None else "")]
    for lay in ctx["layers"]:
        links.append('<a href="%s"%s>%s</a>' % (
            esc(lay["page"]), ' aria-current="page"' if lay["name"] == current else "",
            esc(lay["name"])))
    return '<nav class="top"><span class="brand">%s</span> %s</nav>\n' % (
        esc(ctx["title"]), " ".join(links))


def _footer(ctx):
    return ('<footer>Made with fastdecode %s: filter decoding with substitution (Rafegas &amp; '
            'Vanrell). %s</footer>\n' % (esc(ctx["version"]), esc(ctx["made"])))


def index_page(ctx):
    """The overview: the model, its layers, Table 1 and a link and preview per decoded layer."""
    css = []
    for lay in ctx["layers"]:
        css.append(sheet_css("#prev-%d .pic" % lay["index"], lay["tiles"], lay["preview_scale"]))
    out = [_head(ctx["title"], "\n".join(css)), '<body class="index">\n', _nav(ctx),
           "<main>\n<h1>%s</h1>\n" % esc(ctx["title"])]
    out.append('<p class="lead">%s</p>\n' % ctx["lead"])
    # previews
    out.append('<section><h2>Decoded layers</h2>\n<div class="cards">\n')
    for lay in ctx["layers"]:
        out.append('<a class="card" href="%s" id="prev-%d"><h3>%s</h3><p>%d filters, '
                   '%s</p><div class="preview">' % (
                       esc(lay["page"]), lay["index"], esc(lay["name"]), lay["K"],
                       esc(lay["shape_text"])))
        for f in range(min(lay["K"], lay["n_preview"])):
            out.append("<span %s></span>" % cell_attrs(lay["tiles"], f, lay["preview_scale"]))
        out.append("</div></a>\n")
    out.append("</div>\n</section>\n")
    # Table 1
    if ctx["n_images"]:
        out.append('<section><h2>Table 1: Eq. 3 reconstruction error</h2>\n<p>%s</p>\n'
                   '<table class="table1">\n<thead><tr><th>layer</th><th>filters</th>'
                   '<th>Eq. 3, mean &plusmn; std over images</th><th>best filter</th>'
                   '<th>worst filter</th></tr></thead>\n<tbody>\n' % ctx["table1_note"])
        for lay in ctx["layers"]:
            t = lay["table1"]
            out.append('<tr><td><a href="%s">%s</a></td><td>%d</td><td>%s &plusmn; %s</td>'
                       '<td><a href="%s#f=%d">#%d</a> %s</td><td><a href="%s#f=%d">#%d</a> %s'
                       '</td></tr>\n' % (
                           esc(lay["page"]), esc(lay["name"]), lay["K"], fmt_error(t["mean"]),
                           fmt_error(t["std"]), esc(lay["page"]), t["best"], t["best"],
                           fmt_error(t["best_error"]), esc(lay["page"]), t["worst"],
                           t["worst"], fmt_error(t["worst_error"])))
        out.append("</tbody></table>\n</section>\n")
    # layers
    graph = any(row["inputs"] for row in ctx["net_rows"])
    out.append('<section><h2>Layers</h2>\n<table class="layers">\n<thead><tr><th>#</th>'
               '<th>name</th><th>layer</th>%s<th>channels</th><th>stride</th><th>padding</th>'
               '<th>receptive field</th><th>decoded filters</th></tr></thead>\n<tbody>\n'
               % ("<th>inputs</th>" if graph else ""))
    pages = {lay["name"]: lay for lay in ctx["layers"]}
    for row in ctx["net_rows"]:
        lay = pages.get(row["name"])
        name = ('<a href="%s">%s</a>' % (esc(lay["page"]), esc(row["name"])) if lay
                else esc(row["name"]))
        out.append('<tr%s><td>%d</td><td>%s</td><td>%s</td>%s<td>%d</td><td>%s</td><td>%s</td>'
                   '<td>%s</td><td>%s</td></tr>\n' % (
                       ' class="decoded"' if lay else "", row["index"], name,
                       esc(row["describe"]),
                       ('<td class="inputs">%s</td>' % esc(row["inputs"])) if graph else "",
                       row["channels"], esc(row["stride"]),
                       esc(row["padding"]), esc(row["receptive"]),
                       esc(row["decoded"]) if row["decoded"] else ""))
    out.append("</tbody></table>\n")
    out.append('<details class="summary"><summary>net.summary()</summary><pre>%s</pre>'
               '</details>\n</section>\n' % esc(ctx["summary"]))
    out.append("</main>\n")
    out.append(_footer(ctx))
    out.append("</body>\n</html>\n")
    return "".join(out)


def layer_page(ctx, lay):
    """A layer's page: a tile for every filter, sorting, jump-to-filter and the detail view."""
    ts = lay["tile_scale"]
    css = [sheet_css(".tiles .pic", lay["tiles"], ts),
           sheet_css("#detail .big.tiles-sheet", lay["large"], lay["large_scale"])]
    if lay.get("weights"):
        css.append(sheet_css("#detail .big.weights-sheet", lay["weights"],
                             lay["weights_scale"]))
    if lay.get("tops"):
        css.append(sheet_css("#detail .top-image .pic", lay["tops"], lay["top_scale"]))
    out = [_head("%s: %s" % (lay["name"], ctx["title"]), "\n".join(css)),
           '<body class="layer">\n', _nav(ctx, lay["name"]), "<main>\n"]
    out.append('<header class="layer-head"><h1>Layer %s <small>%s</small></h1>\n<p>%s</p>\n'
               % (esc(lay["name"]), esc(lay["describe"]), lay["facts"]))
    if lay.get("table1"):
        t = lay["table1"]
        out.append('<p class="table1-row">Eq. 3 reconstruction error over %d images: '
                   '<b>%s &plusmn; %s</b> (mean &plusmn; std, %s unpooling). Filters are '
                   'coloured by their own error in the bar under each tile.</p>\n'
                   % (ctx["n_images"], fmt_error(t["mean"]), fmt_error(t["std"]),
                      esc(ctx["unpool"])))
    out.append('<p class="legend">Each tile: the decoded filter (left) and its thresholded '
               'version (right, values below %g of the filter&rsquo;s largest magnitude set to '
               'zero). Each filter is scaled on its own: mid-grey is zero, white and black its '
               'largest positive and negative values. Click a tile for its detail.</p>\n'
               '</header>\n' % ctx["threshold"])
    has_err = lay.get("table1") is not None
    out.append('<div class="controls"><label>Sort <select id="sort">'
               '<option value="index">by filter index</option>')
    if has_err:
        out.append('<option value="error-desc">by Eq. 3 error, worst first</option>'
                   '<option value="error-asc">by Eq. 3 error, best first</option>')
    out.append('</select></label>\n<form id="jump" autocomplete="off" novalidate><label>'
               'Go to filter <input id="jump-to" type="number" min="0" max="%d" step="1" '
               'placeholder="0-%d"></label> <button type="submit">Show</button> '
               '<span id="jump-msg" role="status"></span></form>\n'
               '<span class="count">%d filters</span></div>\n'
               % (lay["K"] - 1, lay["K"] - 1, lay["K"]))
    out.append('<div class="tiles" id="tiles">\n')
    K = lay["K"]
    errors = lay.get("errors")
    emax = max(errors) if errors else 0.0
    for f in range(K):
        attrs = 'data-layer="%s" data-filter="%d"' % (esc(lay["name"]), f)
        cap = "<b>%d</b>" % f
        if lay.get("classes") and lay["classes"][f] != str(f):  # digits need no name
            cap += ' <span class="cls">%s</span>' % esc(lay["classes"][f])
        bar = ""
        if errors is not None:
            e = errors[f]
            attrs += ' data-error="%r"' % e
            cap += ' <span class="err">%s</span>' % fmt_error(e)
            frac = e / emax if emax > 0 else 0.0
            bar = '<i class="bar" style="width:%.1f%%"></i>' % (100 * frac)
        out.append('<div class="filter" %s tabindex="0" role="button" aria-label="filter %d">'
                   '<span %s></span><span %s></span><span class="cap">%s</span>%s</div>\n'
                   % (attrs, f, cell_attrs(lay["tiles"], f, ts),
                      cell_attrs(lay["tiles"], K + f, ts), cap, bar))
    out.append("</div>\n</main>\n")
    out.append('<aside id="detail" hidden aria-live="polite"></aside>\n')
    out.append(_footer(ctx))
    out.append(_json_script("atlas-data", lay["data"]))
    out.append('<script src="assets/atlas.js"></script>\n</body>\n</html>\n')
    return "".join(out)
