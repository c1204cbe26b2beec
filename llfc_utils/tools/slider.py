"""The alpha slider: one self-contained HTML widget over a chapter's frames (no kernel, no network)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

SLIDER_WARN_BYTES = 3_000_000  # a page with several sliders must stay a few MB

if TYPE_CHECKING:  # IPython is there whenever a notebook calls this; not a dependency otherwise
    from IPython.display import HTML


def alpha_slider(
    figures: Sequence[Figure], alphas: Sequence[float], *, title: str = "", dpi: int = 80
) -> HTML:
    """One self-contained HTML slider over `figures` (one per alpha); each figure is closed.

    The frames are PNGs inlined as base64 and swapped by a small inline script on the range
    input's `input` event: no network and no kernel are needed to view it. DOM contract (the site
    check relies on it): `div.llfc-slider#llfc-slider-<uuid>` holding `input.llfc-slider-input`
    (min 0, max N-1, starts in the middle), `span.llfc-slider-label` ("alpha = 0.50") and
    `img.llfc-slider-frame`.
    """
    import base64
    import html
    import io
    import json
    import math
    import uuid
    import warnings

    from IPython.display import HTML

    figures, alphas = list(figures), [float(a) for a in alphas]
    if len(figures) != len(alphas):
        raise ValueError(
            f"alpha_slider: got {len(figures)} figures and {len(alphas)} alphas; pass one figure per alpha"
        )
    if len(figures) < 2:
        raise ValueError("alpha_slider: a slider needs at least 2 figures (one per alpha)")
    if not all(math.isfinite(a) for a in alphas):
        raise ValueError(f"alpha_slider: every alpha must be a finite number, got {alphas}")
    if not all(isinstance(f, Figure) for f in figures):
        raise TypeError("alpha_slider: every item of `figures` must be a matplotlib Figure")
    frames = []
    for fig in figures:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        plt.close(fig)
        frames.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
    labels = [f"alpha = {a:.2f}" for a in alphas]
    uid = f"llfc-slider-{uuid.uuid4().hex}"
    mid = (len(frames) - 1) // 2
    data = json.dumps({"frames": frames, "labels": labels}).replace("</", "<\\/")
    heading = f'<div class="llfc-slider-title"><b>{html.escape(title)}</b></div>' if title else ""
    page = f"""<div class="llfc-slider" id="{uid}">{heading}
<input type="range" class="llfc-slider-input" min="0" max="{len(frames) - 1}" step="1" value="{mid}" aria-label="alpha" style="width: 60%; vertical-align: middle;">
<span class="llfc-slider-label">{html.escape(labels[mid])}</span><br>
<img class="llfc-slider-frame" src="{frames[mid]}" alt="{html.escape(title or "figure")} at {html.escape(labels[mid])}" style="max-width: 100%;">
<script type="application/json" class="llfc-slider-data">{data}</script>
</div>
<script>
(function () {{
  var root = document.getElementById("{uid}");
  var data = JSON.parse(root.querySelector(".llfc-slider-data").textContent);
  var input = root.querySelector(".llfc-slider-input");
  var frame = root.querySelector(".llfc-slider-frame");
  var label = root.querySelector(".llfc-slider-label");
  input.addEventListener("input", function () {{
    var i = Number(input.value);
    frame.src = data.frames[i];
    label.textContent = data.labels[i];
    frame.alt = frame.alt.replace(/alpha = \\S+$/, data.labels[i]);
  }});
}})();
</script>"""
    if len(page) > SLIDER_WARN_BYTES:
        warnings.warn(
            f"alpha_slider: the HTML is {len(page) / 1e6:.1f} MB; use fewer alphas, a lower dpi or "
            "smaller figures to keep the page light",
            stacklevel=2,
        )
    return HTML(page)
