"""Charts to files: the Vega-Lite spec, PNG and SVG (vl-convert), and the inlined JavaScript.

vl-convert renders in-process (no browser, no network), so a figure's PNG and SVG depend only on
its spec and the fonts installed on the machine: the same spec gives the same bytes on one machine
(checked by the tests), while another machine with other fonts may draw the text differently.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import altair as alt
import vl_convert as vlc

# vl-convert names Vega-Lite versions "v6_4"; altair says which one it writes specs for.
VL_VERSION = "_".join(alt.SCHEMA_VERSION.split(".")[:2])
# Twice the chart's CSS size: legible when a PNG is pasted into a document or a pull request.
PNG_SCALE = 2


def chart_spec(chart: Any) -> dict[str, Any]:
    """The chart's Vega-Lite spec, validated by altair (data inlined as named datasets)."""
    return chart.to_dict()


def spec_json(spec: dict[str, Any]) -> str:
    """One spelling of a spec: sorted keys, no spaces, so equal charts give equal bytes."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)


def to_png(spec: dict[str, Any]) -> bytes:
    return bytes(vlc.vegalite_to_png(spec, vl_version=VL_VERSION, scale=PNG_SCALE))


# Vega numbers gradients and clip paths with counters that live as long as vl-convert's
# JavaScript runtime (the process), so the second SVG of a run says `gradient_3` where the first
# said `gradient_1`. Renumbering them by first appearance makes the SVG depend on the spec alone.
_SVG_REF = re.compile(r'(id="|url\(#|href="#)(gradient_|clip)(\d+)(?=["\)])')


def _renumber_ids(svg: str) -> str:
    seen: dict[tuple[str, str], int] = {}

    def sub(m: re.Match[str]) -> str:
        key = (m.group(2), m.group(3))
        n = seen.setdefault(key, sum(k[0] == key[0] for k in seen) + 1)
        return f"{m.group(1)}{m.group(2)}{n}"

    return _SVG_REF.sub(sub, svg)


def to_svg(spec: dict[str, Any]) -> str:
    return _renumber_ids(str(vlc.vegalite_to_svg(spec, vl_version=VL_VERSION)))


@functools.cache
def javascript_bundle() -> str:
    """Vega, Vega-Lite and vega-embed in one script that sets `window.vegaEmbed`: what altair's
    `to_html(inline=True)` inlines (altair.utils.html, template "inline"), built once per
    process. It holds no `</script` and fetches nothing."""
    return str(vlc.javascript_bundle(vl_version=VL_VERSION))
